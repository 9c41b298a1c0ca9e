//! The shared cache against a real `redis-server` of the test's own, on a loopback port: values and their
//! time to live, pub/sub, and Redis stopped and started again under it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plugwatch_cache::{Heard, Redis};
use plugwatch_model::shared::SharedCache;

/// A `redis-server` on `port` that keeps nothing on disk; stopped when dropped.
struct Server(Child);

impl Server {
    fn start(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("these tests need redis-server (Debian's redis-server package; `cargo xtask tools` installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it holds; the deadline only keeps a broken cache from hanging the test.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn values_live_for_their_ttl_under_their_namespace() {
    let port = free_port();
    let _server = Server::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let (a, b) = (Redis::new(&url, "cluster-a").unwrap(), Redis::new(&url, "cluster-b").unwrap());
    a.put("k", b"\x00binary\xff".to_vec(), Duration::from_secs(60)).await;
    assert_eq!(a.get("k").await.as_deref(), Some(&b"\x00binary\xff"[..]));
    assert_eq!(b.get("k").await, None, "another namespace's key");
    a.put("short", b"v".to_vec(), Duration::from_millis(1)).await;
    eventually("a 1 ms value expired", || async { a.get("short").await.is_none() }).await;
    let stats = a.stats();
    assert!(stats.up && stats.hits >= 1 && stats.misses >= 1 && stats.errors == 0, "{stats:?}");
}

#[tokio::test]
async fn redis_stopped_and_started_again_is_done_without_and_then_used_again() {
    let port = free_port();
    let server = Server::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let (publisher, listener) = (Redis::new(&url, "pw").unwrap(), Redis::new(&url, "pw").unwrap());
    let mut subscription = listener.subscribe();
    // The subscription is made on the first `recv`: keep publishing until one is heard.
    let heard = tokio::spawn(async move {
        let first = subscription.recv().await;
        (first, subscription)
    });
    eventually("a published message is heard", || async {
        publisher.publish("r1 registry:promo").await;
        heard.is_finished()
    })
    .await;
    let (first, mut subscription) = heard.await.unwrap();
    assert_eq!(first, Heard::Message("r1 registry:promo".into()));

    drop(server);
    // Every operation does without Redis: no error, no value, and a publish that says it did not go.
    eventually("the publisher sees Redis gone", || async { !publisher.publish("r1 access").await }).await;
    assert_eq!(publisher.get("k").await, None);
    publisher.put("k", b"v".to_vec(), Duration::from_secs(60)).await;
    assert!(!publisher.stats().up);

    let _server = Server::start(port);
    eventually("values are kept again", || async {
        publisher.put("k", b"v".to_vec(), Duration::from_secs(60)).await;
        publisher.get("k").await.is_some()
    })
    .await;
    assert!(publisher.stats().up);
    // The subscriber says it missed what was published meanwhile, then hears again.
    let resumed = tokio::spawn(async move {
        // (Skipping the copies of the first message published while the first was on its way.)
        let mut missed = subscription.recv().await;
        while missed == Heard::Message("r1 registry:promo".into()) {
            missed = subscription.recv().await;
        }
        let next = subscription.recv().await;
        (missed, next)
    });
    eventually("the subscriber hears again", || async {
        publisher.publish("r2 alerts").await;
        resumed.is_finished()
    })
    .await;
    let (missed, next) = resumed.await.unwrap();
    assert_eq!((missed, next), (Heard::Missed, Heard::Message("r2 alerts".into())));
}
