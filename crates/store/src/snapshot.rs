//! What a backup needs of the store: a consistent copy of the database taken while the server keeps
//! serving (`VACUUM INTO`: one read transaction, so the copy is one instant of the database), the schema
//! version it is at, and which artifacts it references.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::Connection as _;

use crate::{Result, Store, StoreError};

/// The migrations this build knows, in one place: opening runs them, backups compare against the newest.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The schema version this build writes (its newest migration): an archive at a newer one is refused.
pub fn latest_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What a database holds, kind by kind, as a backup reports it and a restore reports what it restored.
/// The kinds are written down here once: (name in reports, table).
const KINDS: &[(&str, &str)] = &[
    ("plugins", "plugins"),
    ("plugin_versions", "plugin_versions"),
    ("users", "users"),
    ("api_tokens", "api_tokens"),
    ("alert_rules", "alert_rules"),
    ("alert_channels", "alert_channels"),
    ("silences", "silences"),
    ("alert_history", "alert_history"),
    ("audit_entries", "audit_log"),
    ("telemetry_rollups", "rollups"),
    ("host_samples", "host_samples"),
];

impl Store {
    /// Writes a consistent, compacted copy of the whole database to `path` (which must not exist), while
    /// other connections go on reading and writing.
    pub async fn snapshot_to(&self, path: &Path) -> Result<()> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("snapshot path {} is not UTF-8", path.display())))?;
        sqlx::query("VACUUM INTO $1").bind(target).execute(&self.pool).await?;
        Ok(())
    }

    /// The newest migration applied: the schema version a snapshot is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let (version,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(version)
    }

    /// The number of rows of each kind of data (see `KINDS`).
    pub async fn counts(&self) -> Result<BTreeMap<String, i64>> {
        let mut conn = self.pool.acquire().await?;
        counts_on(&mut conn).await
    }
}

/// Runs SQLite's own integrity check on a database file (read-only, touching nothing): `Ok(())` or what it
/// found wrong.
pub async fn check_database_file(path: &Path) -> Result<std::result::Result<(), String>> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let rows: std::result::Result<Vec<(String,)>, _> =
        sqlx::query_as("PRAGMA integrity_check").fetch_all(&mut conn).await;
    conn.close().await?;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let problems: Vec<String> = rows.into_iter().map(|(r,)| r).filter(|r| r != "ok").collect();
    Ok(if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) })
}

/// What a snapshot file holds, read from the file itself (so that writes after the snapshot do not
/// count): its schema version, rows per kind of data, and the artifacts it references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub schema_version: i64,
    pub counts: BTreeMap<String, i64>,
    pub artifacts: Vec<String>,
}

/// Reads a database file's [`SnapshotInfo`] (read-only, touching nothing).
pub async fn describe_snapshot(path: &Path) -> Result<SnapshotInfo> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let info = async {
        let (schema_version,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&mut conn)
                .await?;
        let counts = counts_on(&mut conn).await?;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT sha256 FROM plugin_versions ORDER BY sha256").fetch_all(&mut conn).await?;
        Ok::<_, StoreError>(SnapshotInfo {
            schema_version,
            counts,
            artifacts: rows.into_iter().map(|(s,)| s).collect(),
        })
    }
    .await;
    conn.close().await?;
    info
}

async fn counts_on(conn: &mut sqlx::SqliteConnection) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for (kind, table) in KINDS {
        // `table` comes from the constant above, never from input.
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *conn).await?;
        out.insert((*kind).to_owned(), n);
    }
    Ok(out)
}
