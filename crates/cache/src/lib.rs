//! Optional Redis (`--cache redis://…`): a shared cache for dashboard reads and pub/sub for the replicas'
//! change announcements, behind [`SharedCache`]. Redis is never needed for correctness: while it is away
//! every read is a miss, every write is dropped and every publish says `false` (the database's own channel
//! carries it), each at once, without waiting on a connection (one reconnect attempt per second at most).
//! That it went away is logged once, and that it is back once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use plugwatch_model::shared::{CacheFuture, SharedCache};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long one Redis command or connection attempt may take before it counts as Redis being away.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long after a failure the next attempt waits: meanwhile, callers do without Redis at once.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "not a Redis URL plugwatch can use ({0}): expected redis://[:password@]host[:port][/db] (TLS, rediss://, is not built in)"
    )]
    BadUrl(String),
}

/// A Redis connection shared by a process's readers, publishers and its subscription.
pub struct Redis {
    client: redis::Client,
    /// Keys and the channel are under `<namespace>:`, so that several clusters can share one Redis.
    namespace: String,
    connection: Mutex<Option<ConnectionManager>>,
    health: Health,
    stats: Stats,
}

/// What the cache did since the start, for `/metrics`.
#[derive(Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    connects: AtomicU64,
    published: AtomicU64,
}

/// Counters of a [`Redis`] since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads Redis answered without one.
    pub misses: u64,
    /// Commands that failed, or were skipped because Redis was away.
    pub errors: u64,
    /// Announcements Redis took.
    pub published: u64,
    /// Attempts to connect (the first, and one per second at most while Redis is away).
    pub connects: u64,
    /// Whether the last command succeeded.
    pub up: bool,
}

/// Whether Redis answered last time, and when to try again if not; logs each change once.
struct Health {
    up: AtomicBool,
    started: Instant,
    /// While Redis is away: milliseconds after `started` before which nobody tries it again.
    retry_at_ms: AtomicU64,
    /// Commands that succeeded, so that a command that fails after another succeeded meanwhile (it was
    /// sent on the connection that broke) does not report Redis away again.
    successes: AtomicU64,
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether to send a command now: always while Redis is up; while it is away, once a second, to one
    /// caller only (the others do without it at once rather than wait on the same attempt).
    fn may_try(&self) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let (now, at) = (self.now_ms(), self.retry_at_ms.load(Ordering::Relaxed));
        now >= at
            && self
                .retry_at_ms
                .compare_exchange(at, now + RETRY_AFTER.as_millis() as u64, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// A command begun when [`Health::successes`] was `seen` failed because Redis could not be reached.
    fn failed(&self, seen: u64, what: &str, error: &dyn std::fmt::Display) {
        if self.successes.load(Ordering::Acquire) != seen {
            return;
        }
        self.retry_at_ms.store(self.now_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                message = "Redis is unavailable: serving without the shared cache until it is back.",
                during = what,
                %error
            );
        }
    }

    fn succeeded(&self) {
        self.successes.fetch_add(1, Ordering::AcqRel);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(message = "Redis is back: using the shared cache again.");
        }
    }
}

impl Redis {
    /// A client for `url`; connects on first use, so that a Redis that is away at startup delays nothing.
    pub fn new(url: &str, namespace: &str) -> Result<Redis, CacheError> {
        let client = redis::Client::open(url).map_err(|e| CacheError::BadUrl(e.to_string()))?;
        Ok(Redis {
            client,
            namespace: namespace.to_owned(),
            connection: Mutex::new(None),
            health: Health {
                up: AtomicBool::new(true),
                started: Instant::now(),
                retry_at_ms: AtomicU64::new(0),
                successes: AtomicU64::new(0),
            },
            stats: Stats::default(),
        })
    }

    /// The channel change announcements travel on.
    pub fn channel(&self) -> String {
        format!("{}:changes", self.namespace)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            connects: self.stats.connects.load(Ordering::Relaxed),
            published: self.stats.published.load(Ordering::Relaxed),
            up: self.health.up.load(Ordering::Relaxed),
        }
    }

    /// The connection, made if there is none; `None` when that fails (within [`TIMEOUT`]).
    async fn connection(&self, seen: u64) -> Option<ConnectionManager> {
        if let Some(c) = self.connection.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(c);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(TIMEOUT, self.client.get_connection_manager_with_config(config)).await {
            Ok(Ok(c)) => {
                *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                Some(c)
            }
            Ok(Err(error)) => {
                self.health.failed(seen, "connect", &error);
                None
            }
            Err(_) => {
                self.health.failed(seen, "connect", &"timed out");
                None
            }
        }
    }

    /// Runs one command within [`TIMEOUT`] (connecting included), recording the outcome in the health and
    /// the stats. Only a failure to reach Redis marks it away; an error it answers (out of memory, a
    /// refused command) is counted and the command done without.
    async fn run<T, F>(&self, what: &str, command: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.health.may_try() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let seen = self.health.successes.load(Ordering::Acquire);
        let attempt = async {
            let connection = self.connection(seen).await?;
            Some(command(connection).await)
        };
        let result = tokio::time::timeout(TIMEOUT, attempt).await;
        match result {
            Ok(Some(Ok(value))) => {
                self.health.succeeded();
                Some(value)
            }
            Ok(None) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Some(Err(error))) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                {
                    self.health.failed(seen, what, &error);
                } else {
                    tracing::debug!(message = "Redis refused a command.", during = what, %error);
                }
                None
            }
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.health.failed(seen, what, &"timed out");
                None
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    /// Subscribes to the change channel. The subscription reconnects by itself.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            client: self.client.clone(),
            channel: self.channel(),
            stream: None,
            since: Instant::now(),
            missed: false,
        }
    }
}

impl SharedCache for Redis {
    fn get<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let key = self.key(key);
            let answer: Option<Option<Vec<u8>>> = self.run("get", |mut c| async move { c.get(key).await }).await;
            match &answer {
                Some(Some(_)) => self.stats.hits.fetch_add(1, Ordering::Relaxed),
                Some(None) => self.stats.misses.fetch_add(1, Ordering::Relaxed),
                None => 0,
            };
            answer.flatten()
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> CacheFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key(key);
            let millis = ttl.as_millis().max(1) as u64;
            let _: Option<()> = self
                .run("set", |mut c| async move {
                    redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis).query_async(&mut c).await
                })
                .await;
        })
    }

    fn publish<'a>(&'a self, message: &'a str) -> CacheFuture<'a, bool> {
        Box::pin(async move {
            let channel = self.channel();
            let receivers: Option<i64> =
                self.run("publish", |mut c| async move { c.publish(channel, message).await }).await;
            if receivers.is_some() {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            receivers.is_some()
        })
    }
}

/// What a [`Subscription`] hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// A message published on the change channel.
    Message(String),
    /// The subscription was lost and is back: messages published meanwhile were not heard.
    Missed,
}

/// The change channel, subscribed on a connection of its own.
pub struct Subscription {
    client: redis::Client,
    channel: String,
    stream: Option<redis::aio::PubSubStream>,
    /// When the current stream was subscribed.
    since: Instant,
    /// Whether the subscription was lost since the last message handed out.
    missed: bool,
}

impl Subscription {
    /// The next message, waiting as long as it takes: while Redis is away, it tries to subscribe again
    /// every second, and once it has, says [`Heard::Missed`]. Losing the subscription is logged once,
    /// and so is having it again.
    pub async fn recv(&mut self) -> Heard {
        loop {
            if self.stream.is_none() {
                match self.connect().await {
                    Ok(stream) => (self.stream, self.since) = (Some(stream), Instant::now()),
                    Err(error) => {
                        if !std::mem::replace(&mut self.missed, true) {
                            tracing::warn!(message = "Cannot subscribe to the change channel in Redis; retrying.", %error);
                        }
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                }
                if std::mem::take(&mut self.missed) {
                    tracing::info!(message = "Subscribed to the change channel in Redis again.");
                    return Heard::Missed;
                }
            }
            let stream = self.stream.as_mut().expect("subscribed above");
            match stream.next().await {
                Some(message) => match message.get_payload::<String>() {
                    Ok(payload) => return Heard::Message(payload),
                    Err(error) => {
                        tracing::warn!(message = "Ignored a malformed message on the change channel.", %error)
                    }
                },
                None => {
                    tracing::warn!(
                        message = "Lost the subscription to the change channel in Redis; subscribing again."
                    );
                    // Not in a tight loop with a server that accepts and drops at once.
                    if self.since.elapsed() < RETRY_AFTER {
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    (self.stream, self.missed) = (None, true);
                }
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<redis::aio::PubSubStream> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok(pubsub.into_on_message())
        };
        match tokio::time::timeout(TIMEOUT * 2, connect).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_not_redis_is_refused_with_the_reason() {
        let error = Redis::new("postgres://localhost/x", "pw").err().expect("refused").to_string();
        assert!(error.contains("redis://"), "{error}");
    }

    /// Nothing listens on this port: every operation does without Redis, and after the first failure
    /// without even trying to connect again until a second has passed.
    #[tokio::test]
    async fn without_redis_reads_miss_writes_drop_and_publishing_says_so_without_retrying_each_time() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let redis = Redis::new(&format!("redis://127.0.0.1:{port}"), "pw").unwrap();
        assert_eq!(redis.get("k").await, None);
        redis.put("k", b"v".to_vec(), Duration::from_secs(5)).await;
        assert!(!redis.publish("m").await);
        for _ in 0..100 {
            assert_eq!(redis.get("k").await, None);
        }
        let stats = redis.stats();
        assert_eq!(stats, CacheStats { hits: 0, misses: 0, errors: 103, published: 0, connects: 1, up: false });
    }
}
