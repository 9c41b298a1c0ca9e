//! Access control's queries: users, API tokens, browser sessions, login attempts and the audit log
//! (compiled once per database, see `backend.rs`).

use crate::{Result, StoreError};
use sqlx::Row;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Conn, Db, DbRow};
#[allow(unused_imports)]
use crate::access::*;

impl Db {
    /// Creates a user; `None` if the username is taken.
    pub async fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now: SystemTime,
    ) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, disabled, created_at_us, updated_at_us)
             VALUES ($1, $2, $3, FALSE, $4, $4) ON CONFLICT (username) DO NOTHING RETURNING *",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_record).transpose()
    }

    /// Creates a user only if there is no user at all (first start); `None` if there already was one.
    pub async fn insert_first_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now: SystemTime,
    ) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, disabled, created_at_us, updated_at_us)
             SELECT $1, $2, $3, FALSE, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING *",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_record).transpose()
    }

    /// Every user, by username.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(&self.pool).await?;
        rows.iter().map(user_record).collect()
    }

    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE username = $1").bind(username).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_record).transpose()
    }

    /// Applies every field of `change` to a user in one transaction, or none of them: refused as a whole
    /// when the user does not exist or when the result would leave no enabled admin (checked in the
    /// statement itself, so two concurrent changes cannot each remove "the other" admin). A new password or
    /// disabling ends the user's sessions, in the same transaction.
    pub async fn update_user(
        &self,
        username: &str,
        change: &UserChange<'_>,
        now: SystemTime,
    ) -> Result<Guarded<UserRecord>> {
        let mut tx = self.pool.begin().await?;
        // The new row is still an enabled admin, or the old one was not the last enabled admin.
        let row = sqlx::query(&format!(
            "UPDATE users SET role = COALESCE($1, role), disabled = COALESCE($2, disabled),
                password_hash = COALESCE($3, password_hash), updated_at_us = $4
             WHERE username = $5
               AND ((COALESCE($1, role) = '{ADMIN_ROLE}' AND NOT COALESCE($2, disabled)) OR {})
             RETURNING *",
            keeps_an_admin()
        ))
        .bind(change.role)
        .bind(change.disabled)
        .bind(change.password_hash)
        .bind(micros(now))
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            return self.why_not(username).await;
        };
        let user = user_record(&row)?;
        if change.password_hash.is_some() || change.disabled == Some(true) {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Guarded::Done(user))
    }

    /// Deletes a user, unless it is the last enabled admin: revokes its tokens (which stay listed under its
    /// name) and ends its sessions.
    pub async fn delete_user(&self, username: &str, now: SystemTime) -> Result<Guarded<()>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at_us = $1
             WHERE revoked_at_us IS NULL AND owner_id = (SELECT id FROM users WHERE username = $2)",
        )
        .bind(micros(now))
        .bind(username)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query(&format!("DELETE FROM users WHERE username = $1 AND {}", keeps_an_admin()))
            .bind(username)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            // Dropping the transaction rolls back the revocations.
            drop(tx);
            return self.why_not(username).await;
        }
        tx.commit().await?;
        Ok(Guarded::Done(()))
    }

    /// Why a guarded change matched no row.
    async fn why_not<T>(&self, username: &str) -> Result<Guarded<T>> {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if exists.is_some() { Guarded::LastAdmin } else { Guarded::NotFound })
    }

    /// Stores a new session under the hash of its secret.
    pub async fn insert_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at_us, last_seen_at_us, expires_at_us)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(micros(now))
        .bind(micros(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session stored under `id_hash`, with its user's current name, role and state.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT s.user_id, u.username, u.role, u.disabled, s.csrf_token, s.created_at_us, s.last_seen_at_us,
                    s.expires_at_us
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SessionRecord {
            user_id: row.get("user_id"),
            username: row.get("username"),
            role: row.get("role"),
            disabled: row.get("disabled"),
            csrf_token: row.get("csrf_token"),
            created_at: from_micros(row.get("created_at_us")),
            last_seen_at: from_micros(row.get("last_seen_at_us")),
            expires_at: from_micros(row.get("expires_at_us")),
        }))
    }

    pub async fn touch_session(&self, id_hash: &str, now: SystemTime) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at_us = $1 WHERE id_hash = $2")
            .bind(micros(now))
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends one session; `false` if there was none.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_token(&self, t: &NewTokenRecord) -> Result<TokenRecord> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_tokens (name, owner_id, owner_name, role, secret_hash, prefix, created_by, created_at_us,
                expires_at_us)
             VALUES ($1, $2, (SELECT username FROM users WHERE id = $2), $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&t.name)
        .bind(t.owner_id)
        .bind(&t.role)
        .bind(&t.secret_hash)
        .bind(&t.prefix)
        .bind(&t.created_by)
        .bind(micros(t.created_at))
        .bind(t.expires_at.map(micros))
        .fetch_one(&self.pool)
        .await?;
        self.token(id).await?.ok_or_else(|| StoreError::Corrupt(format!("token {id} vanished after insert")))
    }

    pub async fn token(&self, id: i64) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.id = $1")).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(token_record))
    }

    /// The token whose secret hashes to `secret_hash`, whatever its state.
    pub async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.secret_hash = $1"))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(token_record))
    }

    /// Every token, by id.
    pub async fn all_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!("{TOKEN_SELECT} ORDER BY t.id")).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(token_record).collect())
    }

    /// The tokens one user owns, by id.
    pub async fn tokens_of(&self, owner_id: i64) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.owner_id = $1 ORDER BY t.id"))
            .bind(owner_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(token_record).collect())
    }

    pub async fn touch_token(&self, id: i64, now: SystemTime) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at_us = $1 WHERE id = $2")
            .bind(micros(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a token (a revoked one keeps its first revocation time); `None` if there is no such token.
    pub async fn revoke_token(&self, id: i64, now: SystemTime) -> Result<Option<TokenRecord>> {
        sqlx::query("UPDATE api_tokens SET revoked_at_us = COALESCE(revoked_at_us, $1) WHERE id = $2")
            .bind(micros(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.token(id).await
    }

    /// Records a login attempt; returns its id.
    pub async fn insert_login_attempt(
        &self,
        at: SystemTime,
        username: &str,
        source: &str,
        success: bool,
    ) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO login_attempts (at_us, username, source, success) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(micros(at))
        .bind(username)
        .bind(source)
        .bind(success)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Marks a recorded attempt as successful.
    pub async fn mark_login_success(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE login_attempts SET success = TRUE WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// The times of the newest `limit` failed login attempts at or after `since` that count for `key`,
    /// newest first.
    pub async fn login_failures(&self, key: AttemptKey<'_>, since: SystemTime, limit: u32) -> Result<Vec<SystemTime>> {
        let query = match key {
            AttemptKey::Username(_) => {
                "SELECT at_us FROM login_attempts WHERE username = $1 AND success = FALSE AND at_us >= $2
                   AND at_us > COALESCE((SELECT MAX(at_us) FROM login_attempts WHERE username = $1 AND success = TRUE), 0)
                 ORDER BY at_us DESC LIMIT $3"
            }
            AttemptKey::Source(_) => {
                "SELECT at_us FROM login_attempts WHERE source = $1 AND success = FALSE AND at_us >= $2
                 ORDER BY at_us DESC LIMIT $3"
            }
        };
        let (AttemptKey::Username(value) | AttemptKey::Source(value)) = key;
        let rows: Vec<(i64,)> =
            sqlx::query_as(query).bind(value).bind(micros(since)).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(at,)| from_micros(at)).collect())
    }

    /// Appends one entry to the audit log.
    pub async fn insert_audit(&self, e: &NewAuditRow) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, e).await
    }

    /// Counts one sign-in refused by the lockout of `key` that started at `started_at`: the first one appends
    /// `entry` to the audit log, every later one adds one to that entry's count. One transaction; returns the
    /// entry's id.
    pub async fn count_refused_login(
        &self,
        key: AttemptKey<'_>,
        started_at: SystemTime,
        entry: &NewAuditRow,
    ) -> Result<i64> {
        let (kind, value) = match key {
            AttemptKey::Username(v) => ("username", v),
            AttemptKey::Source(v) => ("source", v),
        };
        let mut tx = self.pool.begin().await?;
        // A write first, so the transaction takes the write lock at once (waiting its turn behind another
        // sign-in's): one that read first would fail with SQLITE_BUSY_SNAPSHOT when a concurrent refusal
        // wrote in between.
        let counted: Option<(i64,)> = sqlx::query_as(
            "UPDATE audit_log SET count = count + 1
             WHERE id = (SELECT audit_id FROM lockouts WHERE key_kind = $1 AND key = $2 AND started_at_us = $3)
             RETURNING id",
        )
        .bind(kind)
        .bind(value)
        .bind(micros(started_at))
        .fetch_optional(&mut *tx)
        .await?;
        let id = match counted {
            Some((id,)) => id,
            None => {
                let id = insert_audit(&mut tx, entry).await?;
                sqlx::query("INSERT INTO lockouts (key_kind, key, started_at_us, audit_id) VALUES ($1, $2, $3, $4)")
                    .bind(kind)
                    .bind(value)
                    .bind(micros(started_at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(id)
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log
             WHERE ($1 IS NULL OR actor = $1)
               AND ($2 IS NULL OR substr(action, 1, length($2)) = $2)
               AND ($3 IS NULL OR target = $3)
               AND ($4 IS NULL OR result = $4)
               AND at_us >= $5 AND at_us < $6 AND id < $7
             ORDER BY id DESC LIMIT $8",
        )
        .bind(&filter.actor)
        .bind(&filter.action_prefix)
        .bind(&filter.target)
        .bind(&filter.result)
        .bind(filter.from.map_or(i64::MIN, micros))
        .bind(filter.to.map_or(i64::MAX, micros))
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditRow {
                id: row.get("id"),
                at: from_micros(row.get("at_us")),
                actor_kind: row.get("actor_kind"),
                actor: row.get("actor"),
                role: row.get("role"),
                action: row.get("action"),
                target: row.get("target"),
                source: row.get("source"),
                result: row.get("result"),
                detail: row.get("detail"),
                count: row.get::<i64, _>("count").max(0) as u64,
            })
            .collect())
    }

    /// Retention: deletes audit entries older than `older_than`.
    pub async fn prune_audit(&self, older_than: SystemTime) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM audit_log WHERE at_us < $1").bind(micros(older_than)).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Deletes login attempts and lockouts older than `older_than` (lockout no longer needs them).
    pub async fn prune_login_attempts(&self, older_than: SystemTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM login_attempts WHERE at_us < $1")
            .bind(micros(older_than))
            .execute(&self.pool)
            .await?;
        let lockouts = sqlx::query("DELETE FROM lockouts WHERE started_at_us < $1")
            .bind(micros(older_than))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() + lockouts.rows_affected())
    }

    /// Deletes sessions past their absolute expiry at `now`, or not seen since `idle_since`.
    pub async fn prune_sessions(&self, now: SystemTime, idle_since: SystemTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at_us <= $1 OR last_seen_at_us <= $2")
            .bind(micros(now))
            .bind(micros(idle_since))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn insert_audit(conn: &mut Conn, e: &NewAuditRow) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_log (at_us, actor_kind, actor, role, action, target, source, result, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(micros(e.at))
    .bind(&e.actor_kind)
    .bind(&e.actor)
    .bind(&e.role)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.source)
    .bind(&e.result)
    .bind(&e.detail)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

const TOKEN_SELECT: &str = "SELECT t.id, t.name, t.owner_id, t.owner_name, u.role AS owner_role,
        COALESCE(u.disabled, FALSE) AS owner_disabled, t.role, t.prefix, t.created_by, t.created_at_us, t.expires_at_us,
        t.last_used_at_us, t.revoked_at_us
    FROM api_tokens t LEFT JOIN users u ON u.id = t.owner_id";

fn user_record(row: &DbRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: row.try_get("role")?,
        disabled: row.try_get("disabled")?,
        created_at: from_micros(row.try_get("created_at_us")?),
        updated_at: from_micros(row.try_get("updated_at_us")?),
    })
}

fn token_record(row: &DbRow) -> TokenRecord {
    let time = |column: &str| row.get::<Option<i64>, _>(column).map(from_micros);
    TokenRecord {
        id: row.get("id"),
        name: row.get("name"),
        owner_id: row.get("owner_id"),
        owner_name: row.get("owner_name"),
        owner_role: row.get("owner_role"),
        owner_disabled: row.get("owner_disabled"),
        role: row.get("role"),
        prefix: row.get("prefix"),
        created_by: row.get("created_by"),
        created_at: from_micros(row.get("created_at_us")),
        expires_at: time("expires_at_us"),
        last_used_at: time("last_used_at_us"),
        revoked_at: time("revoked_at_us"),
    }
}

/// Microseconds since the Unix epoch (negative before it), saturating.
fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |us| -us),
    }
}

fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}
