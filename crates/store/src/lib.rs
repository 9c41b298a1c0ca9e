//! plugwatch's storage: the schema and its migrations, every query the product makes, and plugin artifacts
//! on disk, content-addressed by sha256. SQLite (WAL) is the embedded default; the SQL is written so that
//! PostgreSQL can follow (positional `$n` parameters, no SQLite-only functions in queries).
//!
//! It knows nothing of HTTP or wasmtime: callers hand it domain types and get domain types back.

mod access;
mod alerts;
mod artifacts;
mod model;
mod plugins;
mod retention;
mod secrets;
mod snapshot;
mod telemetry;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, Pool, Sqlite};

pub use access::{
    ADMIN_ROLE, AttemptKey, AuditFilter, AuditRow, Guarded, NewAuditRow, NewTokenRecord, SessionRecord, TokenRecord,
    UserChange, UserRecord,
};
pub use artifacts::Artifacts;
pub use model::*;
pub use retention::{PruneReport, Retention};
pub use secrets::{KEY_FILE, KeyOrigin, KeySource, Rotated, SecretBox, SecretError, SecretKey, SecretValue};
pub use snapshot::{SnapshotInfo, check_database_file, describe_snapshot, latest_schema_version};
pub use telemetry::{HostPoint, StoredRollup};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the connection a snapshot, or a look at a snapshot file, runs on (see `Store::snapshot_to`).
    #[error("database error: {0}")]
    File(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
    #[error("no plugin named `{0}`")]
    UnknownPlugin(String),
    #[error("plugin `{plugin}` has no version `{version}`")]
    UnknownVersion { plugin: String, version: String },
    #[error("plugin `{plugin}` version `{version}` already exists with a different component (sha256 {existing})")]
    VersionConflict { plugin: String, version: String, existing: String },
    #[error("plugin `{0}` has no previous version to roll back to")]
    NoPreviousVersion(String),
    #[error("artifact {0} is missing or corrupt")]
    BadArtifact(String),
    #[error("{} no longer exists (was the data directory deleted?); it is created only at startup", .0.display())]
    DirectoryGone(std::path::PathBuf),
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: i64 },
    /// The change contradicts what is stored, e.g. "a rule named `x` already exists"; nothing was changed.
    #[error("{0}")]
    Conflict(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database. Cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool<Sqlite>,
    /// The database file, for the snapshots taken on a connection of their own.
    path: std::sync::Arc<std::path::PathBuf>,
    series: std::sync::Arc<Mutex<HashMap<(String, String), i64>>>,
    keyring: std::sync::Arc<secrets::Keyring>,
}

impl Store {
    /// Opens (creating if needed) `plugwatch.db` in `data_dir` with the data directory's secret key
    /// (`secret.key`, generated on the first start): [`Store::open_with`] and [`KeySource::DataDir`].
    pub async fn open(data_dir: &Path) -> Result<Store> {
        Store::open_with(data_dir, KeySource::DataDir).await
    }

    /// Opens (creating if needed) `plugwatch.db` in `data_dir`, runs the migrations, checks `keys` against
    /// the sealed secrets and seals any clear-text secrets an older database holds (one transaction). A
    /// key that did not seal the stored secrets is refused, naming both key ids, with nothing written.
    pub async fn open_with(data_dir: &Path, keys: KeySource) -> Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(data_dir.join("plugwatch.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Takes effect when the file is created: lets retention give pages back with incremental vacuum.
            .auto_vacuum(sqlx::sqlite::SqliteAutoVacuum::Incremental);
        // The key is checked against the stored secrets first, on a connection that cannot write, so a
        // refused start changes no byte: read-only, and immutable (touching no WAL file) unless a WAL holds
        // transactions not yet in the database (after a crash), which only a WAL-reading connection sees.
        let db = data_dir.join("plugwatch.db");
        let stored = if db.exists() {
            let wal = std::fs::metadata(data_dir.join("plugwatch.db-wal")).is_ok_and(|m| m.len() > 0);
            let read_only = SqliteConnectOptions::new().filename(&db).read_only(true).immutable(!wal);
            // One connection, not a pool: closing it is done when `close` returns (a pool returns a used
            // connection from a spawned task, which its `close` can miss, leaving the WAL files behind).
            let mut conn = sqlx::SqliteConnection::connect_with(&read_only).await?;
            let stored = secrets::stored_key_ids(&mut conn).await;
            conn.close().await?;
            stored?
        } else {
            Default::default()
        };
        let keyring = secrets::keyring(&stored, data_dir, keys)?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let opened = async {
            snapshot::MIGRATOR.run(&pool).await?;
            let store = Store {
                pool: pool.clone(),
                path: db.clone().into(),
                series: Default::default(),
                keyring: keyring.into(),
            };
            let sealed = store.seal_clear_rows().await?;
            if sealed > 0 {
                tracing::info!(message = "Encrypted the clear-text secrets of an older database.", values = sealed);
            }
            Ok::<_, StoreError>(store)
        }
        .await;
        if opened.is_err() {
            // Closing checkpoints and removes the WAL files: a refused start leaves the directory as it was.
            pool.close().await;
        }
        opened
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Bytes the database occupies (pages in use), for storage figures.
    pub async fn size_bytes(&self) -> Result<u64> {
        let (count,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(&self.pool).await?;
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count").fetch_one(&self.pool).await?;
        let (size,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(&self.pool).await?;
        Ok(((count - free) * size) as u64)
    }

    /// Copies the WAL into the database file (so a stopped data directory is one self-contained file, as
    /// a backup wants), waits for in-flight work and closes every connection.
    pub async fn close(&self) {
        // On a connection of its own, closed here: a connection dropped back into the pool is returned by a
        // spawned task, and `Pool::close` can finish before that task has closed it (the WAL files then
        // outlive `close`, and a restore or a byte-for-byte check races them).
        let checkpoint = async {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await?;
            conn.close().await
        };
        if let Err(error) = checkpoint.await {
            tracing::warn!(message = "The database could not be checkpointed on close.", %error);
        }
        self.pool.close().await;
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since the Unix epoch, rounded up: the exclusive bound for "rows that start before `t`" (a row
/// starting at 12:00:00 is before 12:00:00.5).
pub(crate) fn unix_ceil(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0))
}
