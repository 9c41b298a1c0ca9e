//! plugwatch's access control: users and their roles, API tokens, browser sessions, sign-in lockout and the
//! audit log. Everything except HTTP: the server turns requests into calls here and owns cookies, headers and
//! CSRF checking.
//!
//! Secrets (passwords, token secrets, session secrets) are never stored in clear and never returned, except
//! once: a new token's secret, a new session's secret, a generated first admin password. Passwords are
//! argon2id PHC strings; token and session secrets carry 256 bits from the operating system's CSPRNG and are
//! stored as their sha256, which is enough for secrets that cannot be guessed. No `Debug` output, log line or
//! audit entry written here contains a secret.
//!
//! All SQL lives in `plugwatch-store`; this crate holds the policy.

mod audit;
mod login;
mod model;
mod role;
mod secret;
mod token_cache;
mod tokens;
mod users;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plugwatch_store::{Store, StoreError};

pub use model::{
    ActorKind, AuditEntry, AuditQuery, AuditRecord, AuditResult, NewToken, Principal, Session, TokenInfo, User,
};
pub use role::{Permission, Role};
pub use secret::generate_password;
pub use users::UserUpdate;

/// Everything that can go wrong in access control. Messages are fit to show the caller, except `Store`'s.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed sign-in attempts; try again in {} s", retry_after.as_secs().max(1))]
    LockedOut { retry_after: Duration },
    #[error("this user is disabled")]
    UserDisabled,
    #[error("no user named `{0}`")]
    UnknownUser(String),
    #[error("a user named `{0}` already exists")]
    UserExists(String),
    #[error("no token with id {0}")]
    UnknownToken(i64),
    #[error("this would leave no enabled admin")]
    LastAdmin,
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The message starts with the name of the offending field.
    #[error("invalid {0}")]
    InvalidInput(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// Session lifetimes, lockout and retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however active.
    pub session_absolute: Duration,
    /// Failed sign-ins within `lockout_window`, for one username or from one address, that lock it out.
    /// Zero turns lockout off.
    pub lockout_threshold: u32,
    pub lockout_window: Duration,
    /// How long a lockout lasts after the last failure that caused it.
    pub lockout_duration: Duration,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// The shortest password accepted, in characters.
    pub min_password_len: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 3600),
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(5 * 60),
            lockout_duration: Duration::from_secs(15 * 60),
            audit_retention: Duration::from_secs(365 * 86_400),
            min_password_len: 12,
        }
    }
}

/// How a change to tokens or users is named to the other replicas (see [`Store::announce`]).
pub const ACCESS_CHANGE: &str = "access";

/// Access control over the store. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    store: Store,
    config: Arc<AccessConfig>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    /// Makes a sign-in's lockout check and the recording of its attempt one step (see `login`).
    login_gate: Arc<tokio::sync::Mutex<()>>,
    /// Tokens that authenticated recently (see `token_cache`).
    token_cache: Arc<token_cache::TokenCache>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(store: Store, config: AccessConfig) -> Self {
        Self::with_clock(store, config, SystemTime::now)
    }

    /// Like [`Access::new`], reading the time from `clock` (for tests of expiry and lockout).
    pub fn with_clock(
        store: Store,
        config: AccessConfig,
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
    ) -> Self {
        Access {
            store,
            config: Arc::new(config),
            clock: Arc::new(clock),
            login_gate: Default::default(),
            token_cache: Default::default(),
        }
    }

    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// Forgets the tokens that authenticated recently, here and (announced) on the other replicas: a
    /// change to tokens or users applies at once everywhere the announcement is heard, and within the
    /// cache's 5 s anyway.
    async fn tokens_changed(&self) {
        self.token_cache.clear();
        if let Err(error) = self.store.announce(ACCESS_CHANGE).await {
            tracing::warn!(message = "Could not tell the other replicas of an access change.", %error);
        }
    }

    /// Forgets the tokens that authenticated recently: another replica changed tokens or users.
    pub fn forget_cached_tokens(&self) {
        self.token_cache.clear();
    }

    /// Deletes audit entries past retention, login attempts lockout no longer needs, and expired sessions;
    /// returns how many rows went.
    pub async fn prune(&self, now: SystemTime) -> Result<u64> {
        let c = &self.config;
        let before = |d: Duration| now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
        let audit = self.store.prune_audit(before(c.audit_retention)).await?;
        let attempts = self.store.prune_login_attempts(before(c.lockout_window + c.lockout_duration)).await?;
        let sessions = self.store.prune_sessions(now, before(c.session_idle)).await?;
        if audit + attempts + sessions > 0 {
            tracing::debug!(message = "Pruned access data.", audit, attempts, sessions);
        }
        Ok(audit + attempts + sessions)
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

/// Parses a value read from the store; a value this crate never writes means a corrupt row.
fn parse_stored<T: FromStr>(value: &str, what: &str) -> Result<T> {
    value.parse().map_err(|_| AccessError::Store(StoreError::Corrupt(format!("unknown {what} `{value}`"))))
}

/// At most `max` characters of `s`, for values an anonymous caller chooses.
fn clip(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(at, _)| &s[..at])
}
