//! Sealing and rotation on the stored rows, and the key check before the migrations (compiled once per
//! database, see `backend.rs`); the key, the cipher and the format are in `secrets.rs`.

use crate::Result;
use sqlx::{Acquire, Connection};
use std::collections::BTreeSet;
use std::sync::Arc;
use zeroize::Zeroizing;

use super::{Conn, DIALECT, Db};
use crate::backend::Dialect;
#[allow(unused_imports)]
use crate::secrets::*;

/// The ids of the keys that sealed the stored values.
pub(crate) async fn stored_key_ids(conn: &mut Conn) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    // Before the migrations: a new or older database has no sealed column yet, so nothing sealed.
    let (column_count, table_count) = match DIALECT {
        Dialect::Sqlite => (
            "SELECT COUNT(*) FROM pragma_table_info('plugin_config') WHERE name = 'sealed'",
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        ),
        Dialect::Postgres => (
            "SELECT COUNT(*) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'plugin_config' AND column_name = 'sealed'",
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
        ),
    };
    let (sealed_columns,): (i64,) = sqlx::query_as(column_count).fetch_one(&mut *conn).await?;
    if sealed_columns == 0 {
        return Ok(ids);
    }
    for column in SEALED_COLUMNS {
        let (tables,): (i64,) = sqlx::query_as(table_count).bind(column.table).fetch_one(&mut *conn).await?;
        if tables == 0 {
            continue;
        }
        let rows: Vec<(i64, String, String)> = sqlx::query_as(column.select).bind(true).fetch_all(&mut *conn).await?;
        for (_, context, value) in rows {
            let (id, _) =
                split_sealed(&value).ok_or(SecretError::Malformed { context, reason: "no `pw1:<key id>:` prefix" })?;
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

impl Db {
    fn sealer(&self, context: &str) -> Result<Arc<SecretBox>> {
        self.keyring
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| SecretError::NoKey { context: context.to_owned() }.into())
    }

    /// Seals `value` for `context` with the current key.
    pub(crate) fn seal(&self, context: &str, value: &SecretValue) -> Result<String> {
        Ok(self.sealer(context)?.seal(context, value))
    }

    /// Opens a value sealed for `context`.
    pub(crate) fn unseal(&self, context: &str, sealed: &str) -> Result<SecretValue> {
        Ok(self.sealer(context)?.open(context, sealed)?)
    }

    /// The id of the key in use, if any.
    pub fn secret_key_id(&self) -> Option<String> {
        self.keyring.current.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|b| b.key_id().to_owned())
    }

    /// Where the key in use came from (the server logs it when it was generated).
    pub fn secret_key_origin(&self) -> KeyOrigin {
        self.keyring.origin.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Seals the clear-text secrets an older database holds, in one transaction; returns how many. Run on
    /// every open with a key (a no-op once done).
    pub(crate) async fn seal_clear_rows(&self) -> Result<usize> {
        let Some(current) = self.keyring.current.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(0);
        };
        self.reseal(&current, None).await
    }

    /// Re-encrypts every secret with `new` in one transaction and makes it the key in use. The old
    /// ciphertexts are scrubbed from the files (secure delete, `VACUUM`, WAL checkpoint), so a leaked old
    /// key opens nothing left behind. Stop the server first: one still running keeps sealing with the old key.
    pub async fn rotate_secret_key(&self, new: &SecretKey) -> Result<Rotated> {
        let old = self.sealer("rotation")?;
        if old.key_id() == new.id() {
            return Err(SecretError::SameKey(new.id().to_owned()).into());
        }
        let new_box = Arc::new(SecretBox::new(new));
        let values = self.reseal(&new_box, Some(&old)).await?;
        *self.keyring.current.write().unwrap_or_else(|e| e.into_inner()) = Some(new_box);
        *self.keyring.origin.write().unwrap_or_else(|e| e.into_inner()) = KeyOrigin::Configured("rotation".into());
        Ok(Rotated { old_key_id: old.key_id().to_owned(), new_key_id: new.id().to_owned(), values })
    }

    /// Seals clear rows with `to` and, with `from`, re-seals the rows `from` sealed; one transaction. When
    /// anything changed, what the rows held before is scrubbed from the database files.
    async fn reseal(&self, to: &SecretBox, from: Option<&SecretBox>) -> Result<usize> {
        let mut conn = self.pool.acquire().await?;
        let pending: usize = {
            let mut n = 0;
            for column in SEALED_COLUMNS {
                let rows: Vec<(i64, String, String)> =
                    sqlx::query_as(column.select).bind(false).fetch_all(&mut *conn).await?;
                n += rows.len();
            }
            n
        };
        if pending == 0 && from.is_none() {
            return Ok(0);
        }
        if DIALECT == Dialect::Sqlite {
            // Freed cells and pages are zeroed, not just unlinked. Only on this connection, closed afterwards.
            sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
        }
        let mut changed = 0;
        {
            let mut tx = conn.begin().await?;
            for column in SEALED_COLUMNS {
                for sealed in [false, true] {
                    let Some(opener) = (if sealed { from } else { Some(to) }) else { continue };
                    let rows: Vec<(i64, String, String)> =
                        sqlx::query_as(column.select).bind(sealed).fetch_all(&mut *tx).await?;
                    for (id, context, value) in rows {
                        let value = Zeroizing::new(value);
                        let plain =
                            if sealed { opener.open(&context, &value)? } else { SecretValue::new(value.as_str()) };
                        sqlx::query(column.update).bind(to.seal(&context, &plain)).bind(id).execute(&mut *tx).await?;
                        changed += 1;
                    }
                }
            }
            tx.commit().await?;
        }
        if changed > 0 {
            scrub(&mut conn).await?;
        }
        conn.detach().close().await?;
        Ok(changed)
    }
}

/// SQLite: rewrites the database without its free space (rows deleted before secure delete was on), then
/// copies the WAL into the database and truncates it, so no earlier page image stays in either file.
/// PostgreSQL: rewrites the tables holding secrets without their dead row versions (`VACUUM FULL`); the
/// server's own write-ahead log keeps the old values until it recycles its segments, which only the
/// database's operator controls.
async fn scrub(conn: &mut Conn) -> Result<()> {
    if DIALECT == Dialect::Postgres {
        let tables = SEALED_COLUMNS.iter().map(|c| c.table).collect::<Vec<_>>().join(", ");
        sqlx::query(&format!("VACUUM FULL {tables}")).execute(&mut *conn).await?;
        return Ok(());
    }
    sqlx::query("VACUUM").execute(&mut *conn).await?;
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
    if busy != 0 {
        tracing::warn!(
            message = "The write-ahead log could not be checkpointed after re-encrypting secrets (another process \
                       is reading the database); the earlier values stay in plugwatch.db-wal until the next checkpoint.",
        );
    }
    Ok(())
}
