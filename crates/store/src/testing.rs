//! For the tests of every crate: which database a test runs on. `cargo xtask test` runs the store and API
//! tests once on SQLite and once more with `PLUGWATCH_TEST_POSTGRES` naming a PostgreSQL server (e.g.
//! `postgres://postgres@127.0.0.1:5432`), where each test gets a database of its own.

use std::path::Path;

use sha2::Digest as _;
use sqlx::Connection as _;

use crate::Result;

/// The environment variable naming the PostgreSQL server tests run against.
pub const POSTGRES_SERVER: &str = "PLUGWATCH_TEST_POSTGRES";

/// The PostgreSQL server the tests run against, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_SERVER).ok().filter(|url| !url.is_empty())
}

/// The prefix of every test database's name (so a test run can drop what an earlier one left).
pub const DATABASE_PREFIX: &str = "plugwatch_test_";

/// The URL of the database on `server` that belongs to the test directory `dir`, created if it does not
/// exist yet: a test that reopens its directory reopens its database.
pub async fn postgres_database(server: &str, dir: &Path) -> Result<String> {
    let hash = hex::encode(sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    let name = format!("{DATABASE_PREFIX}{}", &hash[..16]);
    let server = server.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    let exists: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1").bind(&name).fetch_optional(&mut admin).await?;
    if exists.is_none() {
        // `name` is a fixed prefix and hex digits.
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    }
    admin.close().await?;
    Ok(format!("{server}/{name}"))
}
