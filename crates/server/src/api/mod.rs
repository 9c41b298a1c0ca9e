//! The versioned JSON API under `/api/v1`.

mod hooks;
mod plugins;
mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::AppState;

/// Every API route, with its full path (flat routes are cheaper to match than a nested router).
pub fn routes(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        // Uploads get their own, larger body limit.
        .route(
            "/api/v1/plugins",
            post(plugins::upload).get(plugins::list).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/api/v1/plugins/{name}", get(plugins::get).delete(plugins::delete))
        .route("/api/v1/plugins/{name}/enable", post(plugins::enable))
        .route("/api/v1/plugins/{name}/disable", post(plugins::disable))
        .route("/api/v1/plugins/{name}/versions", get(plugins::versions))
        .route("/api/v1/plugins/{name}/versions/{version}/activate", post(plugins::activate))
        .route("/api/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route("/api/v1/plugins/{name}/invoke", post(plugins::invoke))
        .route("/api/v1/plugins/{name}/invoke/{hook}", post(plugins::invoke_raw))
        .route("/api/v1/plugins/{name}/series", get(telemetry::series))
        .route("/api/v1/plugins/{name}/invocations", get(telemetry::invocations))
        .route("/api/v1/hooks", get(hooks::list))
        .route("/api/v1/hooks/{hook}", post(hooks::fire))
        .route("/api/v1/overview", get(telemetry::overview))
        .route("/api/v1/host", get(telemetry::host))
}
