//! A PostgreSQL database in a backup's format and back: every row copied, in one repeatable-read
//! transaction (one instant of the database, as `VACUUM INTO` is for SQLite), into a SQLite file migrated
//! to the same schema version; and such a file's rows written into a PostgreSQL database in one
//! transaction, replacing what it held. The schemas mean the same on both (a schema version names one
//! schema), so an archive is the same whichever database it came from, and it is verified the same way.
//!
//! Blocking, each on a runtime and connections of its own (a backup runs on its own idle-priority thread).

use std::path::Path;

use futures::TryStreamExt as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column as _, Connection as _, Row as _, TypeInfo as _, ValueRef as _};

use crate::snapshot::{SCHEMA_VERSION, SQLITE_MIGRATOR};
use crate::{Result, StoreError};

/// Tables a copy leaves out: each database's own record of its migrations (a copy gets the target's).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// PostgreSQL's copy of the components: an archive carries them as members of their own.
const COMPONENTS_TABLE: &str = "artifact_chunks";

/// One value on its way between the databases.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Copies the database at `options` into a new SQLite file at `path`. Blocking.
pub(crate) fn postgres_to_file(options: &PgConnectOptions, path: &Path) -> Result<()> {
    runtime()?.block_on(async {
        let mut pg = PgConnection::connect_with(options).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut pg).await?;
        let (version,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&mut pg).await?;
        let latest = crate::latest_schema_version();
        if version != latest {
            return Err(StoreError::Corrupt(format!(
                "the database is at schema version {version}, this build writes {latest}: start this version of \
                 plugwatch on it first"
            )));
        }
        let file = SqliteConnectOptions::new().filename(path).create_if_missing(true).foreign_keys(false);
        let mut lite = SqliteConnection::connect_with(&file).await?;
        SQLITE_MIGRATOR.run(&mut lite).await?;
        let mut tx = lite.begin().await?;
        for table in tables(&mut tx).await?.into_iter().filter(|t| t != COMPONENTS_TABLE) {
            let columns = columns(&mut tx, &table).await?;
            let (select, insert) = statements(&table, &columns, "");
            // Row by row: a telemetry table may not fit in memory.
            let mut rows = sqlx::query(&select).fetch(&mut pg);
            while let Some(row) = rows.try_next().await? {
                let row = &row;
                let mut query = sqlx::query(&insert);
                for i in 0..columns.len() {
                    query = match from_postgres(row, i)? {
                        Value::Null => query.bind(None::<i64>),
                        Value::Int(v) => query.bind(v),
                        Value::Real(v) => query.bind(v),
                        Value::Text(v) => query.bind(v),
                        Value::Blob(v) => query.bind(v),
                    };
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        lite.close().await?;
        sqlx::query("ROLLBACK").execute(&mut pg).await?;
        pg.close().await?;
        Ok(())
    })
}

/// Replaces every row of the PostgreSQL database at `options` (at the schema version of the file) with
/// the rows of the SQLite file at `path` and the components in `components` (`<sha256>.wasm` files), in
/// one transaction, and sets each identity past its largest id. Returns the rows written. Blocking.
pub(crate) fn file_to_postgres(path: &Path, components: &Path, options: &PgConnectOptions) -> Result<u64> {
    runtime()?.block_on(async {
        let file = SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
        let mut lite = SqliteConnection::connect_with(&file).await?;
        let mut pg = PgConnection::connect_with(options).await?;
        crate::snapshot::POSTGRES_MIGRATOR.run(&mut pg).await?;
        let (theirs,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&mut lite).await?;
        let (ours,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&mut pg).await?;
        if theirs != ours {
            return Err(StoreError::Corrupt(format!(
                "the backup is at schema version {theirs}, the database at {ours}"
            )));
        }
        let tables = tables(&mut lite).await?;
        let mut tx = pg.begin().await?;
        sqlx::query(&format!("TRUNCATE {} RESTART IDENTITY CASCADE", tables.join(", "))).execute(&mut *tx).await?;
        let mut written = 0u64;
        for table in &tables {
            let columns = columns(&mut lite, table).await?;
            let types = postgres_types(&mut tx, table, &columns).await?;
            let (select, insert) = statements(table, &columns, "OVERRIDING SYSTEM VALUE");
            let mut rows = sqlx::query(&select).fetch(&mut lite);
            while let Some(row) = rows.try_next().await? {
                let row = &row;
                let mut query = sqlx::query(&insert);
                for (i, kind) in types.iter().enumerate() {
                    query = match (from_sqlite(row, i)?, kind.as_str()) {
                        (Value::Null, "boolean") => query.bind(None::<bool>),
                        (Value::Null, "text") => query.bind(None::<String>),
                        (Value::Null, "bytea") => query.bind(None::<Vec<u8>>),
                        (Value::Null, "double precision") => query.bind(None::<f64>),
                        (Value::Null, _) => query.bind(None::<i64>),
                        (Value::Int(v), "boolean") => query.bind(v != 0),
                        (Value::Int(v), "double precision") => query.bind(v as f64),
                        (Value::Int(v), _) => query.bind(v),
                        (Value::Real(v), _) => query.bind(v),
                        (Value::Text(v), _) => query.bind(v),
                        (Value::Blob(v), _) => query.bind(v),
                    };
                }
                query.execute(&mut *tx).await?;
                written += 1;
            }
            // Identities go on after the restored ids.
            let identities: Vec<(String,)> = sqlx::query_as(
                "SELECT column_name::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            for (column,) in identities {
                sqlx::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        for entry in std::fs::read_dir(components).into_iter().flatten() {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(sha256) = name.strip_suffix(".wasm") else { continue };
            crate::cluster::insert_chunks(&mut tx, sha256, &std::fs::read(entry.path())?).await?;
        }
        tx.commit().await?;
        pg.close().await?;
        lite.close().await?;
        Ok(written)
    })
}

/// The data tables of a SQLite database, parents before children (the order they were created in).
async fn tables(conn: &mut SqliteConnection) -> Result<Vec<String>> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> $1 ORDER BY rowid",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(conn)
    .await?;
    Ok(names.into_iter().map(|(n,)| n).collect())
}

/// A SQLite table's columns, in order. `table` comes from `sqlite_master`, never from input.
async fn columns(conn: &mut SqliteConnection, table: &str) -> Result<Vec<String>> {
    let names: Vec<(String,)> =
        sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")).fetch_all(conn).await?;
    Ok(names.into_iter().map(|(n,)| n).collect())
}

/// The `SELECT` of `columns` of `table` and the `INSERT` of one row of them (`overriding` between the
/// columns and `VALUES`). The names come from the database's own catalogue, never from input.
fn statements(table: &str, columns: &[String], overriding: &str) -> (String, String) {
    let list = columns.join(", ");
    let marks = (1..=columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    (format!("SELECT {list} FROM {table}"), format!("INSERT INTO {table} ({list}) {overriding} VALUES ({marks})"))
}

/// The PostgreSQL types of `columns` of `table` (`bigint`, `boolean`, `text`, `bytea`, …), in order.
async fn postgres_types(conn: &mut PgConnection, table: &str, columns: &[String]) -> Result<Vec<String>> {
    let known: std::collections::HashMap<String, String> = sqlx::query_as(
        "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    columns
        .iter()
        .map(|column| {
            known
                .get(column)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("the database has no column {table}.{column}")))
        })
        .collect()
}

fn from_postgres(row: &PgRow, i: usize) -> Result<Value> {
    if row.try_get_raw(i)?.is_null() {
        return Ok(Value::Null);
    }
    let kind = row.column(i).type_info().name().to_owned();
    Ok(match kind.as_str() {
        "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
        "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
        "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
        "BOOL" => Value::Int(i64::from(row.try_get::<bool, _>(i)?)),
        "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
        "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i)?)),
        "TEXT" | "VARCHAR" | "NAME" => Value::Text(row.try_get::<String, _>(i)?),
        "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {} has the unexpected type {other}",
                row.column(i).name()
            )));
        }
    })
}

fn from_sqlite(row: &SqliteRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_owned();
    Ok(match kind.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Int(row.try_get::<i64, _>(i)?),
        "REAL" => Value::Real(row.try_get::<f64, _>(i)?),
        "TEXT" => Value::Text(row.try_get::<String, _>(i)?),
        "BLOB" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {} has the unexpected type {other}",
                row.column(i).name()
            )));
        }
    })
}
