//! What a backup needs of the store: a consistent copy of the database taken while the server keeps
//! serving (`VACUUM INTO`: one read transaction, so the copy is one instant of the database), the schema
//! version it is at, and which artifacts it references.

use std::path::Path;

use crate::{Result, Store, StoreError};

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

    /// The sha256 of every plugin version's component: the artifacts a backup must carry.
    pub async fn referenced_artifacts(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT sha256 FROM plugin_versions ORDER BY sha256").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }
}

/// Runs SQLite's own integrity check on a database file (read-only, touching nothing): `Ok(())` or what it
/// found wrong.
pub async fn check_database_file(path: &Path) -> Result<std::result::Result<(), String>> {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let options = SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let rows: std::result::Result<Vec<(String,)>, _> = sqlx::query_as("PRAGMA integrity_check").fetch_all(&pool).await;
    pool.close().await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let problems: Vec<String> = rows.into_iter().map(|(r,)| r).filter(|r| r != "ok").collect();
    Ok(if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) })
}
