//! Operations endpoints: liveness, readiness and Prometheus metrics. Only `/healthz` and `/readyz` are meant
//! to be reachable without credentials.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is alive.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// The process can serve: the database answers, the engine is up, and it is not draining.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if let Err(error) = state.registry.store().ping().await {
        tracing::warn!(message = "Readiness: database unreachable.", %error);
        problems.push("database unreachable");
    }
    if state.registry.is_draining() {
        problems.push("draining");
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if problems.is_empty() { "ready" } else { "not_ready" },
        "problems": problems,
        "plugins": state.registry.plugins().len(),
    });
    (status, axum::Json(body))
}

/// Prometheus text exposition of every plugin's series, the host and the process.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let host = state.host.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = String::with_capacity(16 << 10);
    state.registry.telemetry().encode_prometheus(host.as_ref(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
