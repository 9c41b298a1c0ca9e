//! What a backup needs of the store: a consistent copy of the database taken while the server keeps
//! serving (`VACUUM INTO`: one read transaction, so the copy is one instant of the database), the schema
//! version it is at, and which artifacts it references.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::OpenFlags;

use crate::{Result, Store, StoreError};

/// The migrations this build knows, in one place: opening runs them, backups compare against the newest.
pub(crate) static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// PostgreSQL's migrations: the same versions, each with the same meaning as SQLite's (a test checks that
/// the versions and descriptions agree), so a schema version names one schema whichever database holds it.
pub(crate) static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The schema version this build writes (its newest migration): an archive at a newer one is refused.
pub fn latest_schema_version() -> i64 {
    SQLITE_MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What a database holds, kind by kind, as a backup reports it and a restore reports what it restored.
/// The kinds are written down here once: (name in reports, table).
pub(crate) const KINDS: &[(&str, &str)] = &[
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
    /// other connections go on reading and writing: SQLite's `VACUUM INTO`, or PostgreSQL's rows in one
    /// repeatable-read transaction copied into a SQLite file of the same schema (`export.rs`).
    ///
    /// Blocking, on the calling thread and a connection of its own (not the pool's, whose worker threads
    /// run at normal priority): a backup runs it on its own low-priority thread, so rebuilding a large
    /// database takes only the CPU that serving leaves.
    pub fn snapshot_to(&self, path: &Path) -> Result<()> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("snapshot path {} is not UTF-8", path.display())))?;
        let Some(db) = self.sqlite_file() else {
            // PostgreSQL: its rows copied into a SQLite file of the same schema, the backups' format.
            let crate::backend::Backend::Postgres(pg) = &self.backend else { unreachable!("SQLite has a file") };
            return crate::export::postgres_to_file(&pg.pool.connect_options(), path);
        };
        let conn = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // The copy is a scratch file, read once by whoever asked for it: it need not reach the disk first.
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }
}

/// The newest migration applied (`success` a flag on both databases).
pub(crate) const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

/// `table` comes from `KINDS`, never from input.
pub(crate) fn count(table: &str) -> String {
    format!("SELECT COUNT(*) FROM {table}")
}

/// A database file opened read-only, touching nothing (no WAL, no lock): a snapshot, or one out of an
/// archive. Blocking, like everything on such a file here: callers run it off the async runtime.
fn open_file(path: &Path) -> Result<rusqlite::Connection> {
    let uri = url_path(path)?;
    Ok(rusqlite::Connection::open_with_flags(
        format!("file:{uri}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )?)
}

/// `path` as the path of a `file:` URI (`%`, `?` and `#` escaped).
fn url_path(path: &Path) -> Result<String> {
    let text =
        path.to_str().ok_or_else(|| StoreError::Corrupt(format!("database path {} is not UTF-8", path.display())))?;
    Ok(text.replace('%', "%25").replace('?', "%3f").replace('#', "%23"))
}

/// Runs SQLite's own integrity check on a database file (read-only, touching nothing): `Ok(())` or what it
/// found wrong. Blocking.
pub fn check_database_file(path: &Path) -> Result<std::result::Result<(), String>> {
    let checked = open_file(path).and_then(|conn| {
        let mut statement = conn.prepare("PRAGMA integrity_check")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    });
    let rows = match checked {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let problems: Vec<String> = rows.into_iter().filter(|r| r != "ok").collect();
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

/// Reads a database file's [`SnapshotInfo`] (read-only, touching nothing). Blocking.
pub fn describe_snapshot(path: &Path) -> Result<SnapshotInfo> {
    let conn = open_file(path)?;
    let schema_version = conn.query_row(SCHEMA_VERSION, [], |row| row.get(0))?;
    let mut counts = BTreeMap::new();
    for (kind, table) in KINDS {
        counts.insert((*kind).to_owned(), conn.query_row(&count(table), [], |row| row.get(0))?);
    }
    let mut statement = conn.prepare("SELECT DISTINCT sha256 FROM plugin_versions ORDER BY sha256")?;
    let artifacts = statement.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(SnapshotInfo { schema_version, counts, artifacts })
}

#[cfg(test)]
mod tests {
    /// A schema version means one schema whichever database holds it: both sets have the same versions,
    /// with the same descriptions.
    #[test]
    fn both_databases_have_the_same_migrations() {
        let list =
            |m: &sqlx::migrate::Migrator| m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>();
        assert_eq!(list(&super::SQLITE_MIGRATOR), list(&super::POSTGRES_MIGRATOR));
    }
}
