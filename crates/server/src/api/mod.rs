//! The versioned JSON API under `/api/v1`.

mod hooks;
mod plugins;
mod telemetry;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins/{name}", get(plugins::get).delete(plugins::delete))
        .route("/plugins/{name}/enable", post(plugins::enable))
        .route("/plugins/{name}/disable", post(plugins::disable))
        .route("/plugins/{name}/versions", get(plugins::versions))
        .route("/plugins/{name}/versions/{version}/activate", post(plugins::activate))
        .route("/plugins/{name}/rollback", post(plugins::rollback))
        .route("/plugins/{name}/invoke", post(plugins::invoke))
        .route("/plugins/{name}/series", get(telemetry::series))
        .route("/plugins/{name}/invocations", get(telemetry::invocations))
        .route("/hooks", get(hooks::list))
        .route("/hooks/{hook}", post(hooks::fire))
        .route("/overview", get(telemetry::overview))
        .route("/host", get(telemetry::host))
}

/// The upload handler, routed separately so that it gets the larger body limit.
pub fn upload_handler() -> axum::routing::MethodRouter<AppState> {
    post(plugins::upload).get(plugins::list)
}
