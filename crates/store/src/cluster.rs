//! What several replicas on one PostgreSQL database coordinate through it: which one leads the singleton
//! work (a session-level advisory lock held on a connection of its own), the changes one replica tells the
//! others about (`LISTEN`/`NOTIFY` on one channel; the shared cache's pub/sub instead when Redis is configured
//! and answers), and plugin components every replica can fetch (the
//! `artifact_chunks` table). On SQLite there is one process: it always leads, nobody listens, and the
//! components stay in the data directory.
//!
//! # Leadership and fencing
//!
//! The leader holds `pg_try_advisory_lock(LEADER_LOCK)` on a dedicated connection whose server side probes
//! the client with TCP keepalives (idle 5 s, every 2 s, 3 probes): PostgreSQL ends the session of a leader
//! that died or was cut off within about 11 s, which releases the lock, and the next replica to try takes
//! it (`tcp_user_timeout` bounds the same when the cut came with data unacknowledged). The leader checks
//! its connection every time it asks [`Leadership::check`] (each with a 3 s bound), and steps down at the
//! first failed check; a leader cut off from the database therefore stops leading (after at most one check
//! interval plus 3 s) before the database lets another take over. When the database itself ends the
//! session (a restart, `pg_terminate_backend`), another replica may lead before the old one's next check:
//! two leaders for up to one check interval, whose notifications may then go out twice (at least once).

use std::path::Path;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener};

use crate::backend::Backend;
use crate::{Result, Store, StoreError};

/// The advisory lock the leader holds ("plugwatc" in ASCII).
const LEADER_LOCK: i64 = 0x706c_7567_7761_7463;
/// The first key of the advisory lock a replica holds on its id (`pg_try_advisory_lock(int, int)`, a key
/// space apart from the leader's bigint one), "plug" in ASCII; the second is a hash of the id.
const REPLICA_LOCK: i32 = 0x706c_7567;
/// The advisory lock every running replica holds shared and `plugwatch secrets rotate` exclusively
/// ("plugrota" in ASCII).
const ROTATION_LOCK: i64 = 0x706c_7567_726f_7461;
/// How long a starting replica waits for its id or for a rotation in progress.
const CLAIM_PATIENCE: Duration = Duration::from_secs(15);
/// The channel replicas tell each other about changes on.
const CHANGES_CHANNEL: &str = "plugwatch_changes";
/// How long one check of the leader's connection may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The size of one stored chunk of a plugin component.
const CHUNK_BYTES: usize = 1 << 20;

/// Whether this process leads the singleton work, kept up to date by [`Leadership::check`].
pub struct Leadership {
    inner: Inner,
}

enum Inner {
    /// One process on SQLite: always the leader.
    Alone,
    Postgres {
        options: Box<PgConnectOptions>,
        conn: Option<PgConnection>,
        held: bool,
    },
}

impl Leadership {
    /// Whether this process leads now: a held lock is kept while its connection answers; without it, one
    /// attempt to take it. Never fails: a database that does not answer means "not the leader".
    pub async fn check(&mut self) -> bool {
        let Inner::Postgres { options, conn, held } = &mut self.inner else { return true };
        match tokio::time::timeout(CHECK_TIMEOUT, step(options, conn, *held)).await {
            Ok(Ok(now_held)) => *held = now_held,
            Ok(Err(error)) => {
                if *held {
                    tracing::warn!(message = "Lost the leader's database connection: stepping down.", %error);
                }
                (*conn, *held) = (None, false);
            }
            Err(_) => {
                if *held {
                    tracing::warn!(message = "The leader's database connection did not answer: stepping down.");
                }
                (*conn, *held) = (None, false);
            }
        }
        *held
    }

    /// Whether the last [`check`](Leadership::check) found this process leading.
    pub fn is_leader(&self) -> bool {
        match &self.inner {
            Inner::Alone => true,
            Inner::Postgres { held, .. } => *held,
        }
    }

    /// Gives the lock up (at shutdown), so that another replica takes over at once.
    pub async fn release(&mut self) {
        if let Inner::Postgres { conn, held, .. } = &mut self.inner
            && let Some(mut conn) = conn.take()
        {
            // Unlocked before the connection closes: its backend may end a moment after `close` returns.
            if *held {
                let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LEADER_LOCK).execute(&mut conn);
                let _ = tokio::time::timeout(CHECK_TIMEOUT, unlocked).await;
            }
            let _ = conn.close().await;
            *held = false;
        }
    }
}

async fn step(options: &PgConnectOptions, conn: &mut Option<PgConnection>, held: bool) -> Result<bool> {
    let connection = match conn {
        Some(connection) => connection,
        None => conn.insert(PgConnection::connect_with(options).await?),
    };
    if held {
        sqlx::query("SELECT 1").execute(&mut *connection).await?;
        return Ok(true);
    }
    let (taken,): (bool,) =
        sqlx::query_as("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut *connection).await?;
    Ok(taken)
}

/// Writes a component's chunks (what is there already stays).
pub(crate) async fn insert_chunks(conn: &mut PgConnection, sha256: &str, bytes: &[u8]) -> Result<()> {
    for (seq, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
        sqlx::query(
            "INSERT INTO artifact_chunks (sha256, seq, bytes) VALUES ($1, $2, $3)
             ON CONFLICT (sha256, seq) DO NOTHING",
        )
        .bind(sha256)
        .bind(seq as i64)
        .bind(chunk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A change another replica made, as [`ChangeListener::recv`] hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// What changed (`registry:<plugin>`, `access`, `alerts`, …), as the other replica named it.
    Changed(String),
    /// The listening connection was lost and is back: changes made meanwhile were not heard, so re-read
    /// everything.
    Missed,
}

/// Hears the changes other replicas announce with [`Store::announce`].
pub struct ChangeListener {
    listener: PgListener,
    replica: String,
}

impl ChangeListener {
    /// The next change another replica announced (this replica's own are skipped). Reconnects by itself
    /// after a lost connection and then says [`Change::Missed`].
    pub async fn recv(&mut self) -> Result<Change> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(Change::Missed),
                Some(notification) => {
                    if let Some(what) = heard_change(notification.payload(), &self.replica) {
                        return Ok(Change::Changed(what.to_owned()));
                    }
                }
            }
        }
    }
}

/// What this process's connections to PostgreSQL are called (`pg_stat_activity.application_name`):
/// `plugwatch <pid>@<host>`, within PostgreSQL's 63 bytes, for an operator (and the rotation's refusal)
/// to tell the processes apart.
pub(crate) fn application_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut name = format!("plugwatch {}@{}", std::process::id(), host.trim());
    // The leader's connection adds " leader".
    while name.len() > 56 {
        name.pop();
    }
    name
}

/// This replica's claim on its id, held while the process runs (on a connection of its own, probed like
/// the leader's: the database drops it within about 11 s when the process dies). Nothing on SQLite,
/// which has one process.
pub struct ReplicaClaim {
    _conn: Option<PgConnection>,
}

/// `plugwatch secrets rotate`'s exclusive hold on the rotation lock: no replica starts while it lives.
pub struct RotationLock {
    _conn: Option<PgConnection>,
}

/// A connection of its own for a session-level lock (`role` names it in `pg_stat_activity`), whose
/// server side probes the client with TCP keepalives, so that the lock is released within about 11 s of
/// the process dying or being cut off.
fn dedicated_options(db: &crate::postgres::Db, role: &str) -> PgConnectOptions {
    (*db.pool.connect_options()).clone().application_name(&format!("{} {role}", application_name())).options([
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
        // Unacknowledged data (a cut while the process was writing) ends the session too.
        ("tcp_user_timeout", "11000"),
    ])
}

/// What an announcement heard on either channel (the database's, or the shared cache's) says changed;
/// `None` for this replica's own (`replica`), which it applied already.
pub fn heard_change<'a>(payload: &'a str, replica: &str) -> Option<&'a str> {
    let (origin, what) = payload.split_once(' ').unwrap_or(("", payload));
    (origin != replica).then_some(what)
}

impl Store {
    /// This process's [`Leadership`]: always the leader on SQLite; on PostgreSQL, whoever holds the lock.
    pub fn leadership(&self) -> Leadership {
        match &self.backend {
            Backend::Sqlite(_) => Leadership { inner: Inner::Alone },
            Backend::Postgres(db) => {
                let options = dedicated_options(db, "leader");
                Leadership { inner: Inner::Postgres { options: Box::new(options), conn: None, held: false } }
            }
        }
    }

    /// Tells the other replicas that `what` changed (a plugin, access, alerting): through the database
    /// (a no-op on SQLite), and through the shared cache as well when one is configured, so that a
    /// replica whose Redis subscription is broken without knowing it still hears it (hearing it twice is
    /// harmless). At most once per channel: a replica that was listening on neither catches up by polling.
    pub async fn announce(&self, what: &str) -> Result<()> {
        let message = format!("{} {what}", self.replica());
        if let Some(shared) = &self.shared {
            shared.cache.publish(&message).await;
        }
        self.notify(&message).await
    }

    /// Tells the other replicas of a live update (a flush), which they would otherwise read at their next
    /// periodic read: through the shared cache when it takes it, else through the database.
    pub async fn announce_live(&self, what: &str) -> Result<()> {
        let message = format!("{} {what}", self.replica());
        if let Some(shared) = &self.shared
            && shared.cache.publish(&message).await
        {
            return Ok(());
        }
        self.notify(&message).await
    }

    async fn notify(&self, message: &str) -> Result<()> {
        if let Backend::Postgres(db) = &self.backend {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(message).execute(&db.pool).await?;
        }
        Ok(())
    }

    /// Starts hearing the other replicas' changes; `None` on SQLite (there are none).
    pub async fn listen(&self) -> Result<Option<ChangeListener>> {
        let Backend::Postgres(db) = &self.backend else { return Ok(None) };
        let mut listener = PgListener::connect_with(&db.pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener, replica: db.replica.to_string() }))
    }

    /// Claims this store's replica id for as long as the returned claim lives, and holds the rotation
    /// lock shared meanwhile (so that `plugwatch secrets rotate` sees this process). Waits up to
    /// [`CLAIM_PATIENCE`] for either (a process of the same id that died a moment ago keeps its session
    /// until the database notices; a rotation takes seconds), then refuses, saying which.
    pub async fn claim_replica(&self) -> Result<ReplicaClaim> {
        let Backend::Postgres(db) = &self.backend else { return Ok(ReplicaClaim { _conn: None }) };
        let mut conn = PgConnection::connect_with(&dedicated_options(db, "claim")).await?;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(db.replica.as_bytes());
        let key = i32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let id_refused = format!(
            "another running plugwatch uses the replica id `{}` on this database: give each replica its own \
             (`--replica-id`, `cluster.replica_id`)",
            db.replica
        );
        let locks = [
            (
                "SELECT pg_try_advisory_lock(($1::bigint)::int4, ($2::bigint)::int4)",
                vec![i64::from(REPLICA_LOCK), i64::from(key)],
                id_refused,
            ),
            (
                "SELECT pg_try_advisory_lock_shared($1)",
                vec![ROTATION_LOCK],
                "a secrets rotation is in progress on this database (`plugwatch secrets rotate`): start again once \
                 it is done"
                    .to_owned(),
            ),
        ];
        for (sql, keys, refusal) in locks {
            let started = std::time::Instant::now();
            loop {
                let mut query = sqlx::query_scalar::<_, bool>(sql);
                for key in &keys {
                    query = query.bind(*key);
                }
                if query.fetch_one(&mut conn).await? {
                    break;
                }
                if started.elapsed() >= CLAIM_PATIENCE {
                    let _ = conn.close().await;
                    return Err(StoreError::Conflict(refusal));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok(ReplicaClaim { _conn: Some(conn) })
    }

    /// Takes the rotation lock for `plugwatch secrets rotate`, refused while any replica runs (each holds
    /// it shared from its start, see [`Store::claim_replica`]), naming their connections. Nothing on
    /// SQLite, where the data directory's lock says whether a server runs.
    pub async fn lock_for_rotation(&self) -> Result<RotationLock> {
        let Backend::Postgres(db) = &self.backend else { return Ok(RotationLock { _conn: None }) };
        let mut conn = PgConnection::connect_with(&dedicated_options(db, "rotation")).await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(ROTATION_LOCK).fetch_one(&mut conn).await?;
        if taken {
            return Ok(RotationLock { _conn: Some(conn) });
        }
        // A bigint key's lock shows as its high and low 32 bits.
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT coalesce(a.application_name, '') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid::bigint = $1 AND l.objid::bigint = $2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY 1",
        )
        .bind(ROTATION_LOCK >> 32)
        .bind(ROTATION_LOCK & 0xffff_ffff)
        .fetch_all(&mut conn)
        .await?;
        let _ = conn.close().await;
        Err(StoreError::Conflict(format!(
            "plugwatch is still running on this database ({}): stop every replica first, rotate, then start them \
             all with the new key",
            holders.join(", ")
        )))
    }

    /// Whether several replicas may share this database (PostgreSQL): plugin components are then kept in
    /// it for all of them, and readers merge every replica's telemetry. SQLite has one process.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Stores a plugin component in the database, in chunks, unless it is there already (PostgreSQL; a
    /// no-op on SQLite). Its hash is checked by whoever reads it back.
    pub async fn put_shared_artifact(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let Backend::Postgres(db) = &self.backend else { return Ok(()) };
        let mut tx = db.pool.begin().await?;
        let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM artifact_chunks WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&mut *tx)
            .await?;
        if stored > 0 {
            return Ok(());
        }
        insert_chunks(&mut tx, sha256, bytes).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A plugin component from the database, `None` when it is not there (always on SQLite).
    pub async fn shared_artifact(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let Backend::Postgres(db) = &self.backend else { return Ok(None) };
        let chunks: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, bytes FROM artifact_chunks WHERE sha256 = $1 ORDER BY seq")
                .bind(sha256)
                .fetch_all(&db.pool)
                .await?;
        if chunks.is_empty() {
            return Ok(None);
        }
        if chunks.iter().enumerate().any(|(i, (seq, _))| *seq != i as i64) {
            return Err(StoreError::BadArtifact(sha256.to_owned()));
        }
        Ok(Some(chunks.into_iter().flat_map(|(_, bytes)| bytes).collect()))
    }

    /// Writes every component the database holds that `local` lacks into `local` (PostgreSQL; a no-op on
    /// SQLite), e.g. before a backup archives them from the data directory. Returns how many.
    pub async fn cache_shared_artifacts(&self, local: &crate::Artifacts) -> Result<usize> {
        let Backend::Postgres(db) = &self.backend else { return Ok(0) };
        let stored: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT sha256 FROM artifact_chunks").fetch_all(&db.pool).await?;
        let mut written = 0;
        for (sha256,) in stored.into_iter().filter(|(sha,)| !local.has(sha)) {
            if let Some(bytes) = self.shared_artifact(&sha256).await?
                && local.put(&bytes)? == sha256
            {
                written += 1;
            }
        }
        Ok(written)
    }

    /// Replaces everything the PostgreSQL database holds with a backup's database file and components
    /// (`<sha256>.wasm` files in `components`), in one transaction; the rows written.
    pub async fn import_backup(&self, database_file: &Path, components: &Path) -> Result<u64> {
        let Backend::Postgres(db) = &self.backend else {
            return Err(StoreError::Unsupported("importing a backup into SQLite (a restore swaps the file)"));
        };
        let options = (*db.pool.connect_options()).clone();
        let (file, components) = (database_file.to_owned(), components.to_owned());
        let written =
            tokio::task::spawn_blocking(move || crate::export::file_to_postgres(&file, &components, &options))
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
        // Series ids are the backup's now.
        db.series.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(written)
    }

    /// Removes a plugin component from the database (PostgreSQL; a no-op on SQLite).
    pub async fn remove_shared_artifact(&self, sha256: &str) -> Result<()> {
        if let Backend::Postgres(db) = &self.backend {
            sqlx::query("DELETE FROM artifact_chunks WHERE sha256 = $1").bind(sha256).execute(&db.pool).await?;
        }
        Ok(())
    }
}
