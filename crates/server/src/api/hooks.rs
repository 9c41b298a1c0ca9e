//! Firing hooks: the host application's entry point.

use super::ApiErrors;
use crate::AppState;
use crate::dto::{HookList, HookRequest, HookResponse, HookSubscribers, InputDto};
use crate::error::{ApiError, dispatch_status};
use crate::extract::{ApiBytes, ApiPath};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use plugwatch_registry::HookMode;

/// Hooks with at least one enabled subscriber.
#[utoipa::path(get, path = "/api/v1/hooks", tag = "invoke", responses((status = 200, body = HookList), ApiErrors))]
pub async fn list(State(state): State<AppState>) -> Json<HookList> {
    let hooks =
        state.registry.hooks().into_iter().map(|(hook, subscribers)| HookSubscribers { hook, subscribers }).collect();
    Json(HookList { hooks })
}

/// Runs every enabled subscriber of the hook. 200 with the final payload (filter) or every result
/// (actions); 502 when a `fail_closed` plugin failed (the body names it); 503 with `Retry-After` when that
/// failure was an overload. An empty body fires the hook with empty input.
#[utoipa::path(post, path = "/api/v1/hooks/{hook}", tag = "invoke", params(("hook" = String, Path)),
    request_body(content = HookRequest, content_type = "application/json"),
    responses((status = 200, body = HookResponse), (status = 502, body = HookResponse, description = "A fail_closed plugin failed"),
        (status = 503, body = HookResponse, description = "A fail_closed plugin was overloaded"), ApiErrors))]
pub async fn fire(
    State(state): State<AppState>,
    ApiPath(hook): ApiPath<String>,
    ApiBytes(body): ApiBytes,
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
    let input = InputDto { input: request.input, input_base64: request.input_base64 }.bytes()?.into_owned();
    let outcome = state.registry.dispatch(&hook, input, mode).await?;
    let (status, retry_after) = dispatch_status(outcome.failed.is_some(), outcome.overloaded);
    let mut response = (status, Json(HookResponse::from(&outcome))).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    Ok(response)
}
