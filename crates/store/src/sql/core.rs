//! One database's store: its pool and what every query module shares, and the statements that differ
//! most between the databases (size, closing). Compiled once per database, like every file in `sql/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{DB, DIALECT};
use crate::backend::Dialect;
use crate::secrets::Keyring;
use crate::{Result, StoreError};

/// The pool and the state its queries share. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: sqlx::Pool<DB>,
    /// `(plugin, version)` → series id, as written (ids never change).
    pub(crate) series: Arc<Mutex<HashMap<(String, String), i64>>>,
    pub(crate) keyring: Arc<Keyring>,
    /// The replica whose telemetry rows this process writes (`""` for the one process of a SQLite store).
    pub(crate) replica: Arc<str>,
}

impl Db {
    pub(crate) fn new(pool: sqlx::Pool<DB>, keyring: Keyring) -> Db {
        Db { pool, series: Default::default(), keyring: keyring.into(), replica: "".into() }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Bytes the database occupies (SQLite: pages in use; PostgreSQL: the database's size on disk).
    pub async fn size_bytes(&self) -> Result<u64> {
        let size: i64 = match DIALECT {
            Dialect::Sqlite => {
                let (count,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(&self.pool).await?;
                let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count").fetch_one(&self.pool).await?;
                let (size,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(&self.pool).await?;
                (count - free) * size
            }
            Dialect::Postgres => {
                sqlx::query_as::<_, (i64,)>("SELECT pg_database_size(current_database())")
                    .fetch_one(&self.pool)
                    .await?
                    .0
            }
        };
        u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("database size {size}")))
    }

    /// Waits for in-flight work and closes every connection. SQLite first copies the WAL into the database
    /// file (so a stopped data directory is one self-contained file, as a backup wants).
    pub async fn close(&self) {
        if DIALECT == Dialect::Sqlite {
            // On a connection of its own, closed here: a connection dropped back into the pool is returned
            // by a spawned task, and `Pool::close` can finish before that task has closed it (the WAL files
            // then outlive `close`, and a restore or a byte-for-byte check races them).
            let checkpoint = async {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await?;
                conn.close().await
            };
            if let Err(error) = checkpoint.await {
                tracing::warn!(message = "The database could not be checkpointed on close.", %error);
            }
        }
        self.pool.close().await;
    }
}
