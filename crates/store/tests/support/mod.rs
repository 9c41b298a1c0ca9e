//! The database a store test runs on: SQLite in the test's directory, or a PostgreSQL database of the
//! test's own when `PLUGWATCH_TEST_POSTGRES` names a server (see `plugwatch_store::testing`).

#![allow(dead_code)] // each test file uses part of it

use std::path::Path;

use plugwatch_store::{KeySource, Result, Store, testing};

/// Opens the test's store, as [`Store::open`] would.
pub async fn open(dir: &Path) -> Store {
    open_with(dir, KeySource::DataDir).await.expect("the test database opens")
}

/// Opens the test's store with `keys`, as [`Store::open_with`] would; on PostgreSQL, the database that
/// belongs to `dir`.
pub async fn open_with(dir: &Path, keys: KeySource) -> Result<Store> {
    match testing::postgres_server() {
        None => Store::open_with(dir, keys).await,
        Some(server) => Store::connect(&testing::postgres_database(&server, dir).await?, dir, keys).await,
    }
}

/// Runs `sql` (with `$1` bound to `id`) on the test's database behind the store's back, e.g. to plant a row
/// the store would never write.
pub async fn execute(dir: &Path, sql: &str, id: i64) {
    use sqlx::Connection as _;
    match testing::postgres_server() {
        None => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.join("plugwatch.db").display()))
                .await
                .unwrap();
            sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Some(server) => {
            let url = testing::postgres_database(&server, dir).await.unwrap();
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sql).bind(id).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// The one integer `sql` selects on the test's database, read behind the store's back.
pub async fn count(dir: &Path, sql: &str) -> i64 {
    use sqlx::Connection as _;
    match testing::postgres_server() {
        None => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.join("plugwatch.db").display()))
                .await
                .unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            n
        }
        Some(server) => {
            let url = testing::postgres_database(&server, dir).await.unwrap();
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            n
        }
    }
}
