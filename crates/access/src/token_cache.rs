//! A short-lived memory of tokens that authenticated, so that a host application's stream of invocations
//! does not cost a database query each.
//!
//! An entry answers for at most [`FRESH_FOR`]; after that the token is looked up again (which also records
//! its last use). Every change this process makes to tokens or users empties the cache, so a revocation,
//! role change, disabling or deletion made through the API applies to the very next request. A change made by
//! another process on the same database (`plugwatch user …`, another replica) applies within `FRESH_FOR`.
//! Unknown secrets are never remembered, so guessing cannot fill the cache; it is bounded regardless.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use crate::Principal;

/// How long a remembered token answers without asking the database.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(5);
/// Entries kept at most; past this the cache starts over.
const CAPACITY: usize = 4096;

struct Entry {
    principal: Principal,
    /// The token's own expiry, checked on every hit.
    expires_at: Option<SystemTime>,
    fresh_until: SystemTime,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    /// By the sha256 of the secret.
    entries: RwLock<HashMap<[u8; 32], Entry>>,
}

impl TokenCache {
    /// The principal remembered for the secret whose sha256 is `hash`, if still fresh and the token not
    /// expired at `now`.
    pub(crate) fn get(&self, hash: &[u8; 32], now: SystemTime) -> Option<Principal> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(hash)?;
        (now < entry.fresh_until && entry.expires_at.is_none_or(|at| now < at)).then(|| entry.principal.clone())
    }

    pub(crate) fn put(&self, hash: [u8; 32], principal: Principal, expires_at: Option<SystemTime>, now: SystemTime) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(hash, Entry { principal, expires_at, fresh_until: now + FRESH_FOR });
    }

    /// Forgets everything: called after any change to tokens or users.
    pub(crate) fn clear(&self) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
