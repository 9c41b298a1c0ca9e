//! The records of access control — users, API tokens, browser sessions, login attempts and the audit
//! log — as the store reads and writes them (the queries are in `sql/access.rs`).
//!
//! Roles, actor kinds and audit results travel as the strings `plugwatch-access` defines: the store holds no
//! access policy, with one exception. It guards the last enabled admin itself ([`ADMIN_ROLE`]), inside the
//! statement that makes the change, so that two concurrent changes cannot each remove "the other" admin.
//!
//! No query returns a secret's hash except the user record's password hash, which login needs; the audit
//! log has no update or delete query other than retention.

use std::fmt;
use std::time::SystemTime;

/// The role whose last enabled holder the guarded user changes protect.
pub const ADMIN_ROLE: &str = "admin";

/// A condition true when the user row being changed is not the last enabled admin.
pub(crate) fn keeps_an_admin() -> String {
    format!(
        "(role <> '{ADMIN_ROLE}' OR disabled = TRUE
          OR (SELECT COUNT(*) FROM users WHERE role = '{ADMIN_ROLE}' AND disabled = FALSE) > 1)"
    )
}

/// A stored user. Its `Debug` leaves out the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// The outcome of a change that must not remove the last enabled admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guarded<T> {
    Done(T),
    /// No user has that name.
    NotFound,
    /// The change would leave no enabled admin; nothing was changed.
    LastAdmin,
}

/// What to change about a user; `None` fields stay as they are. Its `Debug` leaves out the password hash.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct UserChange<'a> {
    pub role: Option<&'a str>,
    pub disabled: Option<bool>,
    /// The new argon2id PHC string.
    pub password_hash: Option<&'a str>,
}

impl fmt::Debug for UserChange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserChange")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("password_hash", &self.password_hash.map(|_| "<redacted>"))
            .finish()
    }
}

/// A session read back, with the current state of its user. Its `Debug` leaves out the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub disabled: bool,
    pub csrf_token: String,
    pub created_at: SystemTime,
    pub last_seen_at: SystemTime,
    pub expires_at: SystemTime,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token about to be stored. Its `Debug` leaves out the secret's hash.
#[derive(Clone)]
pub struct NewTokenRecord {
    pub name: String,
    /// The owning user; `None` for a service token.
    pub owner_id: Option<i64>,
    pub role: String,
    /// The sha256 (hex) of the secret.
    pub secret_hash: String,
    pub prefix: String,
    pub created_by: String,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for NewTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTokenRecord")
            .field("name", &self.name)
            .field("owner_id", &self.owner_id)
            .field("role", &self.role)
            .field("secret_hash", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A stored token (never its secret's hash), with the current state of its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    /// The owner's id while the owner exists.
    pub owner_id: Option<i64>,
    /// The owner's username, kept after the owner is deleted; `None` for a service token.
    pub owner_name: Option<String>,
    /// The owner's current role, `None` when there is no owner (any more).
    pub owner_role: Option<String>,
    pub owner_disabled: bool,
    pub role: String,
    pub prefix: String,
    pub created_by: String,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
    pub revoked_at: Option<SystemTime>,
}

/// Which login attempts count towards a lockout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKey<'a> {
    /// Attempts at one username since its last successful login.
    Username(&'a str),
    /// Attempts from one source address (a success does not reset these).
    Source(&'a str),
}

/// An audit log entry about to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditRow {
    pub at: SystemTime,
    pub actor_kind: String,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    pub source: Option<String>,
    pub result: String,
    pub detail: Option<String>,
}

/// An audit log entry read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: SystemTime,
    pub actor_kind: String,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    pub source: Option<String>,
    pub result: String,
    pub detail: Option<String>,
    /// How many events the entry stands for: 1, or the sign-ins a lockout refused.
    pub count: u64,
}

/// Which audit entries to read; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Matches actions that start with it (`plugin.` matches `plugin.upload`).
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    pub result: Option<String>,
    /// Entries at or after this time.
    pub from: Option<SystemTime>,
    /// Entries before this time.
    pub to: Option<SystemTime>,
    /// Entries with a smaller id (paging backwards).
    pub before_id: Option<i64>,
    pub limit: u32,
}
