//! plugwatch's HTTP server — the only crate that speaks HTTP and JSON. It serves the versioned JSON API
//! (`/api/v1`), the operations endpoints (`/healthz`, `/readyz`, `/metrics`), runs the background tasks
//! (plugin loading, telemetry flush, host sampler, retention, demo traffic) under one shutdown signal, and
//! drains in-flight work on shutdown.
//!
//! Startup answers at once: the listener is bound before any plugin is compiled, `/healthz` says alive,
//! and `/readyz` is 503 (naming what is still loading) until the stored plugins (and, with `--demo`, the
//! example plugins) are loaded in the background. Shutdown never waits for a compile.

mod api;
mod auth;
pub mod config;
mod dashboard;
mod demo;
mod dto;
mod error;
mod extract;
mod frame;
mod live;
mod ops;
mod pages;
mod serve;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use axum::Router;
use plugwatch_access::Access;
use plugwatch_alerts::Alerts;
use plugwatch_registry::Registry;
use plugwatch_runtime::Runtime;
use plugwatch_store::{Artifacts, Store};
use plugwatch_telemetry::{Telemetry, TelemetryConfig};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use config::ServeConfig;

/// What every handler can reach. Handlers and the access layer each take a copy per request, so it is
/// one shared allocation: a clone is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    pub registry: Registry,
    pub access: Access,
    pub alerts: Alerts,
    pub backups: Arc<plugwatch_backup::Backups>,
    /// Asks [`Server::run`] to stop and return [`Stopped::Restart`] (to finish a restore).
    restart: tokio::sync::Notify,
    /// The dashboard's live feed.
    pub live: live::Hub,
    /// The OpenAPI document, as served.
    pub openapi: String,
    pub config: ServeConfig,
    /// Every plugin to be loaded at startup is loaded (the server is ready once this is true).
    pub(crate) started: AtomicBool,
    /// Whether this process leads the singleton work: always on SQLite; on PostgreSQL while it holds the
    /// leader's lock (`tasks::leader_loop`).
    pub(crate) leader: tokio::sync::watch::Sender<bool>,
    /// The shared cache (Redis), if configured.
    pub cache: Option<Arc<plugwatch_cache::Redis>>,
    /// Another replica announced a flush: read its telemetry now (`tasks::peers_loop`).
    pub(crate) peers_flushed: tokio::sync::Notify,
    /// This replica's id, held against another process taking it too (PostgreSQL).
    _replica_claim: plugwatch_store::ReplicaClaim,
}

impl AppState {
    /// Whether this process runs alerting, retention and backups (see [`Shared::leader`]).
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Has the server stop as on shutdown, and its `run` return [`Stopped::Restart`].
    pub fn request_restart(&self) {
        self.restart.notify_one();
    }
}

/// Why [`Server::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown signal came.
    Shutdown,
    /// A restore was committed: bind again (on the same address) to finish it.
    Restart,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
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
    #[error("access control: {0}")]
    Access(#[from] plugwatch_access::AccessError),
    #[error("alerting: {0}")]
    Alerts(#[from] plugwatch_alerts::AlertsError),
    #[error("backups: {0}")]
    Backup(#[from] plugwatch_backup::BackupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The router and its OpenAPI document, before state is attached. Every operation in the document carries
/// its access rule (`x-required`) and security requirements.
pub fn routes(config: &ServeConfig) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = api::router(config.http.max_upload_bytes).split_for_parts();
    document_access(&mut openapi);
    (router, openapi)
}

/// Every access rule as (path template, method), so tests can check them against the OpenAPI document.
pub fn access_rules() -> Vec<(&'static str, String)> {
    auth::RULES.iter().map(|r| (r.path, r.method.to_string())).collect()
}

/// The whole application (for tests that call it without a socket).
pub fn app(state: AppState) -> Router {
    let (router, openapi) = routes(&state.config);
    let swagger = utoipa_swagger_ui::SwaggerUi::new("/api/v1/docs").url("/api/v1/docs/openapi.json", openapi);
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .merge(swagger_behind_login(state.clone(), swagger))
        .merge(pages::router())
        .merge(dashboard::router(state.clone()))
        .fallback(fallback);
    // A span and two clock reads per request are a measurable share of a short invocation: the request
    // trace is only there when someone asked for it (`PLUGWATCH_LOG=tower_http=debug`). Failures are logged
    // where they happen either way.
    let traced = tracing::enabled!(target: "tower_http::trace::on_response", tracing::Level::DEBUG);
    let router = if traced { router.layer(TraceLayer::new_for_http()) } else { router };
    // Around the routed application as one service (`frame.rs` says why it is not a layer of the router).
    Router::new().fallback_service(frame::around(router.with_state(state.clone()), state))
}

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Opens (creating it if needed) the data directory and runs the migrations, reads the plugins (without
    /// compiling them: [`Server::run`] loads them in the background), restores the telemetry that was still
    /// accumulating, and binds the listener.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        // A restore committed before the last stop (or a crash) is finished before the database opens.
        if let Some(restored) = plugwatch_backup::recover(&config.data_dir)? {
            tracing::warn!(
                message = "Restored a backup.",
                archive = %restored.archive,
                safety_backup = restored.safety_backup.as_deref().unwrap_or("none"),
                counts = ?restored.counts,
            );
        }
        let backups = Arc::new(plugwatch_backup::Backups::open(&config.data_dir, config.backup.clone())?);
        let cache = config.shared_cache().map_err(ServerError::Config)?;
        let store = config.open_store(cache.as_ref()).await?;
        let replica_claim = store.claim_replica().await.map_err(|e| ServerError::Config(e.to_string()))?;
        log_secret_key(&store);
        let artifacts = Artifacts::new(&config.data_dir)?;
        let runtime = Runtime::new(config.runtime_config())?;
        let telemetry =
            Arc::new(Telemetry::new(TelemetryConfig { bucket: Duration::from_secs(10), ..TelemetryConfig::default() }));
        let access = Access::new(store.clone(), config.access.access_config());
        if let Some(generated) =
            access.bootstrap_admin(config.admin_password.as_ref().map(config::Secret::expose)).await?
        {
            tracing::warn!(
                message = "Created the first user, `admin`, with a generated password. It is shown this once: \
                           sign in and change it (or set PLUGWATCH_ADMIN_PASSWORD before the first start).",
                username = "admin",
                password = %generated,
            );
        }
        let registry = Registry::open(runtime, store.clone(), artifacts, telemetry.clone()).await?;
        registry.restore_telemetry(SystemTime::now()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let inventory = Arc::new(tasks::Inventory { registry: registry.clone(), backups: backups.clone() });
        let bound = listener.local_addr()?;
        let leader = tokio::sync::watch::Sender::new(!store.is_shared());
        let alerts = Alerts::open(store, telemetry, inventory, config.alerts_config(bound)).await?;
        let (_, openapi) = routes(&config);
        let openapi = openapi.to_pretty_json().expect("the OpenAPI document serialises");
        let state = AppState(Arc::new(Shared {
            registry,
            access,
            alerts,
            backups,
            restart: tokio::sync::Notify::new(),
            live: live::Hub::default(),
            openapi,
            config,
            started: AtomicBool::new(false),
            leader,
            cache,
            peers_flushed: tokio::sync::Notify::new(),
            _replica_claim: replica_claim,
        }));
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, loading the plugins meanwhile; then stops accepting, lets in-flight
    /// requests finish (up to `drain_timeout_secs`), stops the background tasks (abandoning a load still in
    /// progress) and flushes telemetry. Connections are served under the `[http]` limits (see `serve`).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<Stopped, ServerError> {
        let Server { listener, state } = self;
        let (stop_tasks, stopped) = tokio::sync::watch::channel(false);
        let tasks = tasks::spawn(&state, stopped);
        let registry = state.registry.clone();
        let drain_timeout = Duration::from_secs(state.config.drain_timeout_secs);
        let live = state.clone();
        let on_shutdown = move || {
            tracing::info!(message = "Shutting down: draining in-flight requests.");
            registry.start_draining();
            // Live streams never end by themselves: end them, so that draining does not wait for them.
            live.live.close();
        };
        let restarting = Arc::new(AtomicBool::new(false));
        let stop = {
            let (state, restarting) = (state.clone(), restarting.clone());
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = state.restart.notified() => {
                        tracing::info!(message = "Restarting in place to finish a restore.");
                        restarting.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        };
        let result =
            serve::serve(listener, app(state.clone()), &state.config.http, stop, on_shutdown, drain_timeout).await;
        let _ = stop_tasks.send(true);
        tasks::join(tasks, &state).await;
        state.registry.store().close().await;
        result.map_err(ServerError::Io)?;
        Ok(if restarting.load(std::sync::atomic::Ordering::SeqCst) { Stopped::Restart } else { Stopped::Shutdown })
    }
}

/// Says which key encrypts secrets, and loudly when it was just generated (never the key itself).
fn log_secret_key(store: &Store) {
    let key_id = store.secret_key_id().unwrap_or_default();
    match store.secret_key_origin() {
        plugwatch_store::KeyOrigin::DataDir { path, generated: true } => tracing::warn!(
            message = "Generated a secret key that encrypts plugin secrets at rest. Keep it, and back it up \
                       separately from the database: without it the secrets cannot be read. To use your own key, \
                       set PLUGWATCH_SECRET_KEY or PLUGWATCH_SECRET_KEY_FILE (see the README).",
            key_file = %path.display(),
            key_id = %key_id,
        ),
        origin => tracing::info!(message = "Secrets are encrypted at rest.", key_id = %key_id, key = %origin),
    }
}

/// Adds each operation's access rule (`x-required`) and its security requirements to the document.
fn document_access(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let rule = auth::rule_for(&method, path);
            let required = rule.map_or("none", |r| auth::requirement_name(r.requirement));
            let mut extensions = operation.extensions.take().unwrap_or_default();
            extensions.insert("x-required".to_owned(), serde_json::Value::from(required));
            operation.extensions = Some(extensions);
            if rule.is_some_and(|r| r.requirement != auth::Requirement::Public) {
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("session", Vec::<String>::new()),
                ]);
            }
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> Vec<(axum::http::Method, &mut utoipa::openapi::path::Operation)> {
    use axum::http::Method;
    [
        (Method::GET, item.get.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Unknown paths: 401 to anonymous callers (nothing is reachable without credentials; a browser is sent to
/// the sign-in page), 404 otherwise.
async fn fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match auth::authenticate(&state, &headers).await {
        Ok(auth::Credentials::None) => {
            auth::anonymous(&headers, &uri, "sign in or send `Authorization: Bearer <token>`")
        }
        Err(e) => e.into_response(),
        Ok(_) => error::ApiError::not_found("no such route").into_response(),
    }
}

/// The browsable API docs (Swagger UI, vendored into the binary): for signed-in callers only.
fn swagger_behind_login(state: AppState, swagger: utoipa_swagger_ui::SwaggerUi) -> Router<AppState> {
    use axum::http::{HeaderValue, header};
    Router::<AppState>::new()
        .merge(swagger)
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(pages::DOCS_CSP),
        ))
        .layer(axum::middleware::from_fn_with_state(state, auth::require_authenticated))
}
