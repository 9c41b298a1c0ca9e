//! Serving connections with time and count limits: hyper's connection builder with a header-read timeout,
//! an idle keep-alive timeout, a cap on open connections (an accept loop bounded by a semaphore), and
//! graceful shutdown that lets in-flight requests finish. (Each request body's deadline is `frame.rs`'s.)
//!
//! `axum::serve` hides these settings, so the accept loop is ours. A connection over the cap is not
//! accepted: it waits in the kernel's listen backlog until a connection closes (its client sees no error,
//! only a wait; one that gives up is dropped by the kernel). The header timer of hyper's HTTP/1 connection
//! also runs while a kept-alive connection waits for its next request, so an idle connection closes after
//! `keep_alive_secs`, which must not exceed `header_timeout_secs`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, tells every connection to
/// finish its current request and close, and waits for them up to `drain_timeout` before closing the
/// rest. `on_shutdown` runs once the signal has come, before the drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_shutdown: impl FnOnce() + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(http.header_timeout_secs))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let keep_alive = Duration::from_secs(http.keep_alive_secs);
    let slots = Arc::new(Semaphore::new(http.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Take a slot before accepting: over the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(message = "Cannot accept a connection.", %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let (builder, app, mut stopping) = (builder.clone(), app.clone(), stopping.clone());
        connections.spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let service = hyper::service::service_fn({
                let activity = activity.clone();
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let (app, activity) = (app.clone(), activity.clone());
                    async move {
                        let _busy = activity.busy();
                        let mut request = request.map(Body::new);
                        request.extensions_mut().insert(ConnectInfo(peer));
                        app.oneshot(request).await
                    }
                }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut check =
                tokio::time::interval(keep_alive.min(Duration::from_secs(1)).max(Duration::from_millis(100)));
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(message = "Connection ended with an error.", %peer, %error);
                        }
                        break;
                    }
                    _ = stopping.changed(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = check.tick(), if !closing => {
                        if activity.idle_for() >= keep_alive {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }

    drop(listener);
    on_shutdown();
    let _ = stop.send(true);
    let drained = tokio::time::timeout(drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(message = "Drain timeout reached; closing the remaining connections.");
        connections.shutdown().await;
    }
    Ok(())
}

/// Whether a connection is serving a request, and since when it has been idle.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request (or to the connection's start).
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), in_flight: AtomicUsize::new(0), last: AtomicU64::new(0) }
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.last.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
