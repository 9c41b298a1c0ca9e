//! The types of the public API: who acts, users, tokens, sessions and audit entries.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::{AccessError, Role};

/// What kind of principal acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A signed-in user.
    User,
    /// An API token.
    Token,
    /// plugwatch itself (first start, the command line).
    System,
    /// Nobody authenticated (a failed sign-in).
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorKind {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ActorKind::User, ActorKind::Token, ActorKind::System, ActorKind::Anonymous]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                AccessError::InvalidInput(format!(
                    "actor kind: unknown kind `{s}` (expected user, token, system or anonymous)"
                ))
            })
    }
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditResult {
    Ok,
    /// Refused: not allowed, locked out, disabled.
    Denied,
    /// Attempted and failed: wrong credentials, invalid input, an error.
    Failed,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Failed => "failed",
        }
    }
}

impl fmt::Display for AuditResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditResult {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [AuditResult::Ok, AuditResult::Denied, AuditResult::Failed].into_iter().find(|r| r.as_str() == s).ok_or_else(
            || AccessError::InvalidInput(format!("result: unknown result `{s}` (expected ok, denied or failed)")),
        )
    }
}

/// Who is acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub kind: ActorKind,
    /// The username, or the token's name.
    pub name: String,
    /// For a token, its role as limited by its owner's current role.
    pub role: Role,
    /// The user, or the user a token belongs to (`None` for a service token and the system).
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
}

impl Principal {
    /// plugwatch itself, acting as an admin (first start, the command line).
    pub fn system() -> Principal {
        Principal { kind: ActorKind::System, name: "system".into(), role: Role::Admin, user_id: None, token_id: None }
    }
}

/// A new browser session. Its `Debug` shows neither the secret nor the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The cookie's value, returned only here.
    pub secret: String,
    /// The token a change made with this session must carry.
    pub csrf: String,
    /// The absolute end of the session (it also ends after `session_idle` without a request).
    pub expires_at: SystemTime,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("secret", &"<redacted>")
            .field("csrf", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A user, never with its password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// An API token as listed, never with its secret or the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The owner's username (kept after the owner is deleted); `None` for a service token.
    pub owner: Option<String>,
    /// The first 8 characters of the secret, to recognise it.
    pub prefix: String,
    /// Who created it: a username, `token:<name>` or `system`.
    pub created_by: String,
    pub created_at: SystemTime,
    pub expires_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
    pub revoked_at: Option<SystemTime>,
}

/// A token to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    /// No higher than the creator's own role.
    pub role: Role,
    pub expires_in: Option<Duration>,
    /// A service token, tied to no user (admins only).
    pub service: bool,
}

/// An entry to append to the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// `None`: anonymous.
    pub actor: Option<Principal>,
    /// What was done, e.g. `plugin.upload`, `user.create`, `login`.
    pub action: String,
    /// What it was done to (a plugin, a username, a token).
    pub target: String,
    /// The caller's address.
    pub source: Option<String>,
    pub result: AuditResult,
    pub detail: Option<String>,
}

/// An audit entry read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: SystemTime,
    pub actor_kind: ActorKind,
    /// The username or token name; empty for anonymous entries.
    pub actor: String,
    pub role: Option<Role>,
    pub action: String,
    pub target: String,
    pub source: Option<String>,
    pub result: AuditResult,
    pub detail: Option<String>,
    /// How many events the entry stands for: 1, or the sign-ins refused during one lockout (one entry per
    /// lockout, counted as they come).
    pub count: u64,
}

/// Which audit entries to read; every field that is set must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// The username or token name, exactly.
    pub actor: Option<String>,
    /// A prefix of the action (`plugin.` matches `plugin.upload`).
    pub action: Option<String>,
    pub target: Option<String>,
    pub result: Option<AuditResult>,
    /// Entries at or after this time.
    pub from: Option<SystemTime>,
    /// Entries before this time.
    pub to: Option<SystemTime>,
    /// Entries older than this id, to page backwards.
    pub before_id: Option<i64>,
    /// At most this many entries (capped at 500).
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            actor: None,
            action: None,
            target: None,
            result: None,
            from: None,
            to: None,
            before_id: None,
            limit: 100,
        }
    }
}
