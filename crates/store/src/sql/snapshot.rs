//! The queries of `snapshot.rs` (compiled once per database, see `backend.rs`): the schema version a
//! database is at and what it holds, kind by kind.

use std::collections::BTreeMap;

use super::Db;
use crate::Result;
use crate::snapshot::{KINDS, SCHEMA_VERSION, count};

impl Db {
    /// The newest migration applied: the schema version a snapshot is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let (version,): (i64,) = sqlx::query_as(SCHEMA_VERSION).fetch_one(&self.pool).await?;
        Ok(version)
    }

    /// The number of rows of each kind of data (see `KINDS`).
    pub async fn counts(&self) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        let mut conn = self.pool.acquire().await?;
        for (kind, table) in KINDS {
            let (n,): (i64,) = sqlx::query_as(&count(table)).fetch_one(&mut *conn).await?;
            out.insert((*kind).to_owned(), n);
        }
        Ok(out)
    }
}
