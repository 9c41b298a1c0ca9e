//! plugwatch's HTTP server — the only crate that speaks HTTP and JSON. It serves the versioned JSON API
//! (`/api/v1`), the operations endpoints (`/healthz`, `/readyz`, `/metrics`), runs the background tasks
//! (telemetry flush, host sampler, retention, demo traffic) under one shutdown signal, and drains in-flight
//! work on shutdown.

mod api;
pub mod config;
mod demo;
mod dto;
mod error;
mod extract;
mod ops;
mod tasks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use plugwatch_registry::Registry;
use plugwatch_runtime::Runtime;
use plugwatch_store::{Artifacts, Store};
use plugwatch_telemetry::{HostSample, Telemetry, TelemetryConfig};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use config::ServeConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    /// The latest host sample.
    pub host: Arc<Mutex<Option<HostSample>>>,
    pub config: Arc<ServeConfig>,
}

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open the data directory: {0}")]
    Store(#[from] plugwatch_store::StoreError),
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(#[from] plugwatch_runtime::RuntimeError),
    #[error("cannot load the plugin registry: {0}")]
    Registry(#[from] plugwatch_registry::RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The whole application as a router (for tests that call it without a socket).
pub fn app(state: AppState) -> Router {
    let http = &state.config.http;
    api::routes(http.max_upload_bytes)
        .merge(ops::routes())
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Opens the data directory (running migrations), loads every plugin, restores the telemetry that was
    /// still accumulating, and binds the listener.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let store = Store::open(&config.data_dir).await?;
        let artifacts = Artifacts::new(&config.data_dir)?;
        let runtime = Runtime::new(config.runtime_config())?;
        let telemetry =
            Arc::new(Telemetry::new(TelemetryConfig { bucket: Duration::from_secs(10), ..TelemetryConfig::default() }));
        telemetry.seed(store.current_rollups(SystemTime::now()).await?);
        let registry = Registry::open(runtime, store, artifacts, telemetry).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let state = AppState { registry, host: Arc::new(Mutex::new(None)), config: Arc::new(config) };
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish (up to
    /// `drain_timeout_secs`), stops the background tasks and flushes telemetry.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Server { listener, state } = self;
        let (stop_tasks, stopped) = tokio::sync::watch::channel(false);
        let tasks = tasks::spawn(&state, stopped);
        let registry = state.registry.clone();
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let drain_timeout = Duration::from_secs(state.config.drain_timeout_secs);
        let serve = axum::serve(listener, app(state.clone()).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!(message = "Shutting down: draining in-flight requests.");
                registry.start_draining();
                let _ = draining_tx.send(());
            });
        let mut server = tokio::spawn(async move { serve.await });
        let result = tokio::select! {
            result = &mut server => result,
            _ = async { let _ = draining_rx.await; tokio::time::sleep(drain_timeout).await } => {
                tracing::warn!(message = "Drain timeout reached; closing the remaining connections.");
                server.abort();
                Ok(Ok(()))
            }
        };
        let _ = stop_tasks.send(true);
        tasks::join(tasks, &state).await;
        state.registry.store().close().await;
        match result {
            Ok(inner) => inner.map_err(ServerError::Io),
            Err(join) if join.is_cancelled() => Ok(()),
            Err(join) => Err(ServerError::Io(std::io::Error::other(join))),
        }
    }
}
