//! Firing hooks: the host application's entry point.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plugwatch_registry::HookMode;
use serde_json::json;

use crate::AppState;
use crate::dto::{HookRequest, HookResponse, InputDto};
use crate::error::ApiError;

/// Hooks with at least one enabled subscriber.
pub async fn list(State(state): State<AppState>) -> Json<serde_json::Value> {
    let hooks: Vec<_> =
        state.registry.hooks().into_iter().map(|(hook, n)| json!({ "hook": hook, "subscribers": n })).collect();
    Json(json!({ "hooks": hooks }))
}

/// Runs every enabled subscriber of the hook. 200 with the final payload (filter) or every result
/// (actions); 502 when a `fail_closed` plugin failed (the body names it); 503 with `Retry-After` when that
/// failure was an overload.
pub async fn fire(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // An empty body fires the hook with empty input.
    let request: HookRequest = if body.is_empty() {
        HookRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let mode = match request.mode.as_deref() {
        None | Some("filter") => HookMode::Filter,
        Some("actions") => HookMode::Actions,
        Some(other) => {
            return Err(ApiError::bad_request(format!("unknown mode `{other}` (expected `filter` or `actions`)")));
        }
    };
    let input = InputDto { input: request.input, input_base64: request.input_base64 }.bytes()?;
    let outcome = state.registry.dispatch(&hook, input, mode).await?;
    let status = match (&outcome.failed, outcome.overloaded) {
        (None, _) => StatusCode::OK,
        (Some(_), false) => StatusCode::BAD_GATEWAY,
        (Some(_), true) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = (status, Json(HookResponse::from(&outcome))).into_response();
    if outcome.overloaded {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, 1.into());
    }
    Ok(response)
}
