//! plugwatch's storage: the schema and its migrations, every query the product makes, and plugin artifacts
//! on disk, content-addressed by sha256. SQLite (WAL) in the data directory is the embedded default;
//! PostgreSQL is the choice for several replicas. One store API over both: the queries in `sql/` are
//! written once and compiled for each database (`backend.rs`), with one migration set per database, the
//! same versions meaning the same schema.
//!
//! It knows nothing of HTTP or wasmtime: callers hand it domain types and get domain types back.

mod access;
mod alerts;
mod artifacts;
mod backend;
mod cluster;
mod export;
mod model;
mod plugins;
// `sql/` is compiled once per database, by design (see `backend.rs`).
#[allow(clippy::duplicate_mod)]
mod postgres;
mod retention;
mod secrets;
mod shared;
mod snapshot;
#[allow(clippy::duplicate_mod)]
mod sqlite;
mod telemetry;
#[doc(hidden)]
pub mod testing;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use backend::Backend;

pub use access::{
    ADMIN_ROLE, AttemptKey, AuditFilter, AuditRow, Guarded, NewAuditRow, NewTokenRecord, SessionRecord, TokenRecord,
    UserChange, UserRecord,
};
pub use artifacts::Artifacts;
pub use cluster::{Change, ChangeListener, Leadership, ReplicaClaim, RotationLock, heard_change};
pub use model::*;
pub use retention::{PruneReport, Retention};
pub use secrets::{KEY_FILE, KeyOrigin, KeySource, Rotated, SecretBox, SecretError, SecretKey, SecretValue};
pub use snapshot::{SnapshotInfo, check_database_file, describe_snapshot, latest_schema_version};
pub use telemetry::{HostPoint, MinuteRequests, ReplicaSeen, StoredRollup};

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
    /// What the configured database cannot do, e.g. a SQLite snapshot file of a PostgreSQL database.
    #[error("not supported on this database: {0}")]
    Unsupported(&'static str),
    /// A database URL this build does not know.
    #[error("{0}")]
    BadUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database. Cheap to clone (a pool).
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// SQLite's database file, for the snapshots taken on a connection of their own.
    sqlite_file: Option<Arc<PathBuf>>,
    /// The cache several replicas share, if one is configured ([`Store::with_cache`]).
    shared: Option<shared::Shared>,
}

/// Connections per process to PostgreSQL (SQLite has 4: one writer at a time anyway).
const POSTGRES_CONNECTIONS: u32 = 8;

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
        let db = data_dir.join("plugwatch.db");
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&db)
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
        let stored = if db.exists() {
            let wal = std::fs::metadata(data_dir.join("plugwatch.db-wal")).is_ok_and(|m| m.len() > 0);
            let read_only = SqliteConnectOptions::new().filename(&db).read_only(true).immutable(!wal);
            // One connection, not a pool: closing it is done when `close` returns (a pool returns a used
            // connection from a spawned task, which its `close` can miss, leaving the WAL files behind).
            let mut conn = sqlx::SqliteConnection::connect_with(&read_only).await?;
            let stored = sqlite::stored_key_ids(&mut conn).await;
            conn.close().await?;
            stored?
        } else {
            Default::default()
        };
        let keyring = secrets::keyring(&stored, data_dir, keys)?;
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let store = Store {
            backend: Backend::Sqlite(sqlite::Db::new(pool, keyring)),
            sqlite_file: Some(db.into()),
            shared: None,
        };
        let opened = store.finish_open().await;
        if opened.is_err() {
            // Closing checkpoints and removes the WAL files: a refused start leaves the directory as it was.
            store.close().await;
        }
        opened.map(|()| store)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/database`), runs
    /// the migrations and checks `keys` like [`Store::open_with`]. `data_dir` is where a key of
    /// [`KeySource::DataDir`] lives; with several replicas every one needs the same key, so configure it.
    pub async fn connect(url: &str, data_dir: &Path, keys: KeySource) -> Result<Store> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(bad_url(url, &e)))?
            .application_name(&cluster::application_name());
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        let stored = postgres::stored_key_ids(&mut conn).await;
        conn.close().await?;
        let keyring = secrets::keyring(&stored?, data_dir, keys)?;
        let pool = PgPoolOptions::new().max_connections(POSTGRES_CONNECTIONS).connect_with(options).await?;
        let store =
            Store { backend: Backend::Postgres(postgres::Db::new(pool, keyring)), sqlite_file: None, shared: None };
        let opened = store.finish_open().await;
        if opened.is_err() {
            store.close().await;
        }
        opened.map(|()| store)
    }

    /// The migrations, then the clear-text secrets of an older database sealed.
    async fn finish_open(&self) -> Result<()> {
        let sealed = match &self.backend {
            Backend::Sqlite(db) => {
                snapshot::SQLITE_MIGRATOR.run(&db.pool).await?;
                db.seal_clear_rows().await?
            }
            Backend::Postgres(db) => {
                snapshot::POSTGRES_MIGRATOR.run(&db.pool).await?;
                db.seal_clear_rows().await?
            }
        };
        if sealed > 0 {
            tracing::info!(message = "Encrypted the clear-text secrets of an older database.", values = sealed);
        }
        Ok(())
    }

    /// This store writing its telemetry (rollups, host samples) as the replica `id`: with several
    /// replicas on one database, each its own (two processes with one id would overwrite each other's
    /// rows). Every reader merges the rows of all replicas. A SQLite store is the one replica `""`.
    pub fn with_replica(mut self, id: &str) -> Store {
        match &mut self.backend {
            Backend::Sqlite(db) => db.replica = id.into(),
            Backend::Postgres(db) => db.replica = id.into(),
        }
        self
    }

    /// SQLite's database file, or `None` on PostgreSQL.
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref().map(PathBuf::as_path)
    }
}

/// What is wrong with a database URL, without its password.
fn bad_url(url: &str, error: &sqlx::Error) -> String {
    // Everything between `//` and the last `@` but the user name is a password (which may hold `@`).
    let mut shown = match (url.split_once("//"), url.rsplit_once('@')) {
        (Some((scheme, after)), Some((_, host))) if after.contains('@') => {
            let user = after.split([':', '@']).next().unwrap_or_default();
            format!("{scheme}//{user}:***@{host}")
        }
        _ => url.to_owned(),
    };
    if let Some(at) = shown.find("password=") {
        let end = shown[at..].find('&').map_or(shown.len(), |i| at + i);
        shown.replace_range(at + "password=".len()..end, "***");
    }
    format!("the database URL `{shown}` is not a PostgreSQL URL (postgres://user:password@host:port/database): {error}")
}

/// A REAL to store: NaN is no number (SQLite stores it as NULL, PostgreSQL would keep it), so both keep
/// NULL, and a NaN where a number is required is refused by the column's NOT NULL in both.
pub(crate) fn number(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_refused_database_url_never_shows_its_password() {
        let error = sqlx::Error::Configuration("bad".into());
        for (url, password) in [
            ("postgres://app:s3cret@db:5432/x?sslmode=maybe", "s3cret"),
            ("postgres://app:p@ss@word@db/x?x=1", "ss@word"),
            ("postgres://db/x?user=app&password=hunter2&sslmode=maybe", "hunter2"),
        ] {
            let shown = super::bad_url(url, &error);
            assert!(!shown.contains(password), "{shown}");
            assert!(shown.contains("app") || shown.contains("user=app"), "{shown}");
        }
    }
}
