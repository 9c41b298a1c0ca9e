//! Operations endpoints: liveness and readiness (the only routes that answer without credentials),
//! Prometheus metrics, and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use crate::api::ApiErrors;
use crate::dto::{CacheDto, Cluster, ClusterReplica, Health, Ready};

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: every plugin is loaded, the database answers and it is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = Ready, description = "Not ready")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if !state.started.load(std::sync::atomic::Ordering::SeqCst) {
        problems.push("loading plugins");
    }
    if let Err(error) = state.registry.store().ping().await {
        tracing::warn!(message = "Readiness: database unreachable.", %error);
        problems.push("database unreachable");
    }
    if state.registry.is_draining() {
        problems.push("draining");
    }
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let ready = problems.is_empty();
    (
        status,
        Json(Ready {
            status: if ready { "ready" } else { "not_ready" },
            problems,
            plugins: state.registry.plugins().len(),
            loading: state.registry.loading(),
        }),
    )
}

/// This replica, whether it leads, and the replicas seen lately on the same database.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "operations", responses((status = 200, body = Cluster), ApiErrors))]
pub async fn cluster(State(state): State<AppState>) -> Result<Json<Cluster>, crate::error::ApiError> {
    let store = state.registry.store();
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    let replicas = store
        .replicas(since)
        .await?
        .into_iter()
        .map(|r| ClusterReplica { replica: r.replica, last_seen: crate::dto::rfc3339_secs(r.last_sample) })
        .collect();
    Ok(Json(Cluster {
        database: if store.is_shared() { "postgres" } else { "sqlite" },
        replica: store.replica(),
        leader: state.is_leader(),
        replicas,
        cache: state.cache.as_ref().map(|cache| {
            let stats = cache.stats();
            CacheDto {
                up: stats.up,
                hits: stats.hits,
                misses: stats.misses,
                errors: stats.errors,
                published: stats.published,
            }
        }),
    }))
}

/// Prometheus text exposition of every plugin's series, the host and the process.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"), ApiErrors))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let host = state.registry.telemetry().latest_host();
    let mut out = String::with_capacity(16 << 10);
    let telemetry = state.registry.telemetry();
    telemetry.encode_prometheus(host.as_ref(), &mut out);
    let plugins = state.registry.plugins();
    let active: Vec<(&str, &str, &plugwatch_model::Limits)> = plugins
        .iter()
        .filter_map(|e| {
            e.active.as_ref().map(|a| (e.record.name.as_str(), a.version.version.as_str(), &a.version.limits))
        })
        .collect();
    telemetry.encode_headroom(std::time::SystemTime::now(), &active, &mut out);
    let pools: Vec<(&str, &str, plugwatch_model::PoolStats)> = plugins
        .iter()
        .filter_map(|e| {
            let active = e.active.as_ref()?;
            Some((e.record.name.as_str(), active.version.version.as_str(), active.loaded.plugin()?.pool()))
        })
        .collect();
    plugwatch_telemetry::encode_pools(&pools, state.registry.runtime().pool_memory(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// This document (OpenAPI 3.1). A browsable version is at `/api/v1/docs/`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"), ApiErrors))]
pub async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.as_str().to_owned())
}
