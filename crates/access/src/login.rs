//! Signing in with a password, lockout after repeated failures, and browser sessions.
//!
//! Lockout counts failed attempts per username (since its last successful sign-in) and per source address
//! (successes do not reset these, so an attacker with one valid account cannot clear its address's count).
//! `lockout_threshold` failures within `lockout_window` lock the username or address out until
//! `lockout_duration` after the last of them; attempts refused during a lockout do not count, so they do not
//! prolong it, and are audited as one entry per lockout whose `count` says how many were refused. An attempt counts as a failure from before its password is checked, so a burst
//! of simultaneous guesses gets no more checks than the threshold (within this process).

use std::time::{Duration, SystemTime};

use plugwatch_store::{AttemptKey, StoreError};

use crate::secret::{random_secret, sha256_hex, verify_password};
use crate::users::{MAX_USERNAME_LEN, valid_username};
use crate::{
    Access, AccessError, ActorKind, AuditEntry, AuditResult, Principal, Result, Session, audit, audit::record_at, clip,
    parse_stored,
};

/// A lockout still running.
struct Lockout<'k> {
    /// What is locked out: the username or the address.
    key: AttemptKey<'k>,
    /// The failure that started it.
    started_at: SystemTime,
    retry_after: Duration,
}

/// The longest source address recorded.
const MAX_SOURCE_LEN: usize = 128;
/// A session's last-seen time is written at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

impl Access {
    /// Signs in with a username and password from `source` (the caller's address) and starts a session.
    ///
    /// Every attempt is recorded for lockout and written to the audit log (`login`: ok, failed, or denied
    /// when locked out or disabled). A username or address that is locked out is refused with
    /// [`AccessError::LockedOut`] without checking the password. An unknown username costs the same hashing
    /// as a known one, so timing does not tell which usernames exist.
    pub async fn login(&self, username: &str, password: &str, source: &str) -> Result<(Principal, Session)> {
        let now = self.now();
        // Values an anonymous caller chose are bounded before they are stored.
        let name = clip(username, MAX_USERNAME_LEN);
        let source = clip(source, MAX_SOURCE_LEN);
        let audit = |result: AuditResult, detail: Option<String>| AuditEntry {
            actor: None,
            action: "login".into(),
            target: name.to_owned(),
            source: Some(source.to_owned()),
            result,
            detail,
        };

        // The attempt counts as a failure from before its password is checked until it succeeds, and the
        // lockout check and that record are one step: however many attempts arrive at once, no more than
        // `lockout_threshold` of them get their password checked.
        let gate = self.login_gate.lock().await;
        if let Some(lockout) = self.locked_out(name, source, now).await? {
            // One audit entry per lockout counts every attempt it refuses, so that refused attempts (which
            // cost the caller nothing) cannot grow the log; it is written inside the gate so that a burst
            // of them shares one entry.
            let by = match lockout.key {
                AttemptKey::Username(_) => "username",
                AttemptKey::Source(_) => "address",
            };
            let detail = format!("locked out (by {by}); `count` is the number of attempts refused");
            let row = audit::row(now, audit(AuditResult::Denied, Some(detail)));
            self.store.count_refused_login(lockout.key, lockout.started_at, &row).await?;
            drop(gate);
            return Err(AccessError::LockedOut { retry_after: lockout.retry_after });
        }
        let attempt = self.store.insert_login_attempt(now, name, source, false).await?;
        drop(gate);

        let user = if valid_username(username) { self.store.user(username).await? } else { None };
        let matches = verify_password(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|e| StoreError::Corrupt(format!("password hash of user `{name}`: {e}")))?;
        let user = match user {
            Some(user) if matches => user,
            user => {
                let mut detail = if user.is_some() { "wrong password" } else { "unknown user" }.to_owned();
                if let Some(Lockout { retry_after, .. }) = self.locked_out(name, source, now).await? {
                    tracing::warn!(
                        message = "Repeated failed sign-ins: locking out.",
                        username = name,
                        source,
                        seconds = retry_after.as_secs()
                    );
                    detail.push_str(&format!("; locked out for {} s", retry_after.as_secs().max(1)));
                }
                record_at(&self.store, now, audit(AuditResult::Failed, Some(detail))).await?;
                return Err(AccessError::InvalidCredentials);
            }
        };
        if user.disabled {
            record_at(&self.store, now, audit(AuditResult::Denied, Some("user is disabled".into()))).await?;
            return Err(AccessError::UserDisabled);
        }

        self.store.mark_login_success(attempt).await?;
        let (secret, csrf) = (random_secret(), random_secret());
        let expires_at = now + self.config.session_absolute;
        self.store.insert_session(&sha256_hex(&secret), user.id, &csrf, now, expires_at).await?;
        let principal = Principal {
            kind: ActorKind::User,
            role: parse_stored(&user.role, "role")?,
            name: user.username,
            user_id: Some(user.id),
            token_id: None,
        };
        let entry = AuditEntry { actor: Some(principal.clone()), ..audit(AuditResult::Ok, None) };
        record_at(&self.store, now, entry).await?;
        Ok((principal, Session { secret, csrf, expires_at }))
    }

    /// The lockout of the username or the address still running, if either is (the one that lasts longer
    /// when both are).
    async fn locked_out<'k>(&self, username: &'k str, source: &'k str, now: SystemTime) -> Result<Option<Lockout<'k>>> {
        let c = &*self.config;
        if c.lockout_threshold == 0 {
            return Ok(None);
        }
        // A failure older than this can neither lock out nor be part of a lockout still running.
        let since = now.checked_sub(c.lockout_window + c.lockout_duration).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut longest: Option<Lockout<'k>> = None;
        for key in [AttemptKey::Username(username), AttemptKey::Source(source)] {
            let failures = self.store.login_failures(key, since, c.lockout_threshold).await?;
            let (Some(&newest), Some(&oldest)) = (failures.first(), failures.last()) else { continue };
            let within_window = newest.duration_since(oldest).unwrap_or_default() <= c.lockout_window;
            if failures.len() as u64 >= u64::from(c.lockout_threshold) && within_window {
                let left = (newest + c.lockout_duration).duration_since(now).unwrap_or_default();
                if !left.is_zero() && longest.as_ref().is_none_or(|l| left > l.retry_after) {
                    // Refused attempts are not recorded as failures, so the newest failure stays the one
                    // that started this lockout for as long as it runs.
                    longest = Some(Lockout { key, started_at: newest, retry_after: left });
                }
            }
        }
        Ok(longest)
    }

    /// The signed-in user and the session's CSRF token, for a session cookie's secret. `None` if the session
    /// is unknown, idle for `session_idle`, past `session_absolute`, or its user is disabled or deleted. The
    /// principal carries the user's current role.
    pub async fn session(&self, secret: &str) -> Result<Option<(Principal, String)>> {
        let id_hash = sha256_hex(secret);
        let Some(s) = self.store.session(&id_hash).await? else { return Ok(None) };
        let now = self.now();
        let idle = now.duration_since(s.last_seen_at).unwrap_or_default();
        if s.disabled || now >= s.expires_at || idle >= self.config.session_idle {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        }
        if idle >= TOUCH_INTERVAL.min(self.config.session_idle / 4) {
            self.store.touch_session(&id_hash, now).await?;
        }
        let principal = Principal {
            kind: ActorKind::User,
            name: s.username,
            role: parse_stored(&s.role, "role")?,
            user_id: Some(s.user_id),
            token_id: None,
        };
        Ok(Some((principal, s.csrf_token)))
    }

    /// Ends the session with this secret (nothing happens if there is none).
    pub async fn logout(&self, secret: &str) -> Result<()> {
        self.store.delete_session(&sha256_hex(secret)).await?;
        Ok(())
    }
}
