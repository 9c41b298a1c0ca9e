//! Users: the first admin, creation with the username and password policy, role and password changes,
//! disabling and deletion, with the last enabled admin protected.

use plugwatch_store::{Guarded, UserChange, UserRecord};

use crate::secret::{generate_password, hash_password};
use crate::{
    Access, AccessError, AuditEntry, AuditResult, Principal, Result, Role, User, audit::record_at, parse_stored,
};

/// What to change about a user; `None` fields stay as they are. Its `Debug` leaves out the password.
#[derive(Clone, Copy, Default)]
pub struct UserUpdate<'a> {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<&'a str>,
}

impl std::fmt::Debug for UserUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserUpdate")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("password", &self.password.map(|_| "<redacted>"))
            .finish()
    }
}

/// The longest username.
pub(crate) const MAX_USERNAME_LEN: usize = 64;
/// The longest password accepted; argon2 would take more, but nobody types this much.
const MAX_PASSWORD_LEN: usize = 1024;
/// The first user's name.
const FIRST_ADMIN: &str = "admin";

/// Whether `name` is 1 to 64 characters of `a-z`, `0-9`, `.`, `_` and `-`.
pub(crate) fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

impl Access {
    /// On first start, when there is no user at all, creates `admin` (role admin) with `password`, or with a
    /// generated strong password. Returns the generated password, to print once; `None` when one was given
    /// or when users already exist (then nothing changes).
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Option<String>> {
        if !self.store.users().await?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(given) => {
                self.check_password(given)?;
                (given.to_owned(), None)
            }
            None => {
                let generated = generate_password();
                (generated.clone(), Some(generated))
            }
        };
        let hash = hash_password(&password).await;
        let now = self.now();
        if self.store.insert_first_user(FIRST_ADMIN, &hash, Role::Admin.as_str(), now).await?.is_none() {
            // Another caller created the first user meanwhile.
            return Ok(None);
        }
        tracing::info!(
            message = "Created the first user.",
            username = FIRST_ADMIN,
            generated_password = generated.is_some()
        );
        let entry = AuditEntry {
            actor: Some(Principal::system()),
            action: "user.create".into(),
            target: FIRST_ADMIN.into(),
            source: None,
            result: AuditResult::Ok,
            detail: Some("first start".into()),
        };
        record_at(&self.store, now, entry).await?;
        Ok(generated)
    }

    /// Every user, by username.
    pub async fn users(&self) -> Result<Vec<User>> {
        self.store.users().await?.into_iter().map(user).collect()
    }

    /// Creates a user. The username is 1 to 64 characters of `a-z`, `0-9`, `.`, `_` and `-`; the password
    /// follows the policy (`min_password_len`).
    pub async fn create_user(&self, username: &str, role: Role, password: &str) -> Result<User> {
        if !valid_username(username) {
            return Err(AccessError::InvalidInput(format!(
                "username: must be 1 to {MAX_USERNAME_LEN} characters of a-z, 0-9, '.', '_' and '-'"
            )));
        }
        self.check_password(password)?;
        let hash = hash_password(password).await;
        match self.store.insert_user(username, &hash, role.as_str(), self.now()).await? {
            Some(record) => user(record),
            None => Err(AccessError::UserExists(username.to_owned())),
        }
    }

    /// Applies every field of `update` to a user, or none: every field is checked first, then all are
    /// stored in one transaction, refused as a whole if the user is unknown or if the result would leave no
    /// enabled admin. A new password (following the policy) or disabling ends the user's sessions; a new
    /// role applies to its sessions at once and limits its tokens; a disabled user's tokens stop working.
    pub async fn update_user(&self, username: &str, update: UserUpdate<'_>) -> Result<User> {
        if let Some(password) = update.password {
            self.check_password(password)?;
        }
        let hash = match update.password {
            Some(password) => Some(hash_password(password).await),
            None => None,
        };
        let change = UserChange {
            role: update.role.map(Role::as_str),
            disabled: update.disabled,
            password_hash: hash.as_deref(),
        };
        let changed = self.store.update_user(username, &change, self.now()).await?;
        self.tokens_changed().await;
        guarded(username, changed).and_then(user)
    }

    /// Changes a user's role (see [`Access::update_user`]).
    pub async fn set_role(&self, username: &str, role: Role) -> Result<User> {
        self.update_user(username, UserUpdate { role: Some(role), ..UserUpdate::default() }).await
    }

    /// Replaces a user's password and ends its sessions (see [`Access::update_user`]).
    pub async fn set_password(&self, username: &str, password: &str) -> Result<()> {
        self.update_user(username, UserUpdate { password: Some(password), ..UserUpdate::default() }).await.map(drop)
    }

    /// Disables or re-enables a user (see [`Access::update_user`]).
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<User> {
        self.update_user(username, UserUpdate { disabled: Some(disabled), ..UserUpdate::default() }).await
    }

    /// Deletes a user, never the last enabled admin: ends its sessions and revokes its tokens (which stay
    /// listed, under its name).
    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let deleted = self.store.delete_user(username, self.now()).await?;
        self.tokens_changed().await;
        guarded(username, deleted)
    }

    fn check_password(&self, password: &str) -> Result<()> {
        let min = self.config.min_password_len;
        let len = password.chars().count();
        if len < min {
            return Err(AccessError::InvalidInput(format!("password: must be at least {min} characters")));
        }
        if len > MAX_PASSWORD_LEN {
            return Err(AccessError::InvalidInput(format!("password: must be at most {MAX_PASSWORD_LEN} characters")));
        }
        Ok(())
    }
}

fn guarded<T>(username: &str, outcome: Guarded<T>) -> Result<T> {
    match outcome {
        Guarded::Done(value) => Ok(value),
        Guarded::NotFound => Err(AccessError::UnknownUser(username.to_owned())),
        Guarded::LastAdmin => Err(AccessError::LastAdmin),
    }
}

fn user(r: UserRecord) -> Result<User> {
    Ok(User {
        id: r.id,
        role: parse_stored(&r.role, "role")?,
        username: r.username,
        disabled: r.disabled,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}
