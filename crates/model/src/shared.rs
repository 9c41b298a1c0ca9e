//! What several replicas may share besides the database: a cache of reads and a channel for change
//! announcements. Implemented over Redis by `plugwatch-cache`; the store uses it without knowing Redis.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future a [`SharedCache`] returns.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A cache and announcement channel several replicas share. Best effort by contract: when it is away, a
/// read is a miss, a write is dropped and a publish says `false` (the caller then uses the database), each
/// promptly, so that a client never waits on it or sees its errors.
pub trait SharedCache: Send + Sync {
    /// The value stored under `key`, if any and if the cache answers.
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` under `key` for `ttl`.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> CacheFuture<'a, ()>;
    /// Sends `message` to every replica subscribed to the change channel; whether the cache took it.
    fn publish<'a>(&'a self, message: &'a str) -> CacheFuture<'a, bool>;
}
