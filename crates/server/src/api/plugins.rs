//! Plugin registry endpoints: upload, list, inspect, enable/disable, activate/rollback, delete, invoke.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plugwatch_runtime::Outcome;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiErrors;
use crate::AppState;
use crate::auth::AuditTarget;
use crate::dto::{
    InputDto, InvocationDto, InvokeRequest, ManifestDto, PluginDetail, PluginDto, PluginList, RolledBack, UploadForm,
    Uploaded, VersionDto, VersionList,
};
use crate::error::{ApiError, BodyLimits, Problem, envelope_status};
use crate::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery};

/// Every plugin with its status, active version and last minute of numbers.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, body = PluginList), ApiErrors))]
pub async fn list(State(state): State<AppState>) -> Json<PluginList> {
    let live: HashMap<String, _> = state
        .registry
        .telemetry()
        .overview(std::time::SystemTime::now())
        .into_iter()
        .map(|s| (format!("{}\0{}", s.plugin, s.version), s))
        .collect();
    let plugins: Vec<PluginDto> = state
        .registry
        .plugins()
        .iter()
        .map(|entry| {
            let key = format!("{}\0{}", entry.record.name, entry.record.active_version.as_deref().unwrap_or(""));
            PluginDto::new(entry, live.get(&key))
        })
        .collect();
    Json(PluginList { plugins })
}

/// One plugin with all its versions.
#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins", params(("name" = String, Path)),
    responses((status = 200, body = PluginDetail), ApiErrors))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PluginDetail>, ApiError> {
    let entry = state.registry.plugin(&name)?;
    let versions = state.registry.versions(&name).await?;
    let live = state.registry.telemetry().overview(std::time::SystemTime::now());
    let live = live.iter().find(|s| s.plugin == name && Some(&s.version) == entry.record.active_version.as_ref());
    let active = entry.record.active_version.clone();
    let versions: Vec<VersionDto> =
        versions.iter().map(|v| VersionDto::new(v, Some(&v.version) == active.as_ref())).collect();
    let loaded = entry.active.as_ref().and_then(|a| a.loaded.plugin());
    Ok(Json(PluginDetail {
        plugin: PluginDto::new(&entry, live),
        versions,
        imports: loaded.map(|p| p.imports().to_vec()),
    }))
}

/// A plugin's versions, oldest first.
#[utoipa::path(get, path = "/api/v1/plugins/{name}/versions", tag = "plugins", params(("name" = String, Path)),
    responses((status = 200, body = VersionList), ApiErrors))]
pub async fn versions(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<VersionList>, ApiError> {
    let entry = state.registry.plugin(&name)?;
    let active = entry.record.active_version.clone();
    let versions = state.registry.versions(&name).await?;
    let versions: Vec<VersionDto> =
        versions.iter().map(|v| VersionDto::new(v, Some(&v.version) == active.as_ref())).collect();
    Ok(Json(VersionList { versions }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Make the new version active (default true; a plugin's first version always is).
    #[serde(default)]
    activate: Option<bool>,
}

/// Uploads a plugin version: `multipart/form-data` with a `manifest` part (JSON, see `ManifestDto`) and a
/// `component` part (the .wasm bytes). The component is scanned and compiled before anything is stored.
/// 201 for a new version, 200 when the same name, version and component were already stored.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Uploaded), (status = 200, body = Uploaded), ApiErrors))]
pub async fn upload(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|_| {
        Problem::UnsupportedMediaType(
            "expected a multipart/form-data body with the parts `manifest` and `component`".into(),
        )
    })?;
    let limits = BodyLimits::upload(&state);
    let read_error = |e: MultipartError| limits.read_error(&e, || format!("invalid multipart/form-data body: {e}"));
    let (mut manifest, mut component) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(read_error)? {
        match field.name() {
            Some("manifest") => {
                let text = field.bytes().await.map_err(read_error)?;
                let dto: ManifestDto = serde_json::from_slice(&text)
                    .map_err(|e| ApiError::bad_request(format!("invalid manifest: {e}")))?;
                manifest = Some(dto);
            }
            Some("component") => component = Some(field.bytes().await.map_err(read_error)?.to_vec()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part `{other}`: an upload has a `manifest` part and a `component` part"
                )));
            }
            None => return Err(ApiError::bad_request("a multipart part has no name")),
        }
    }
    let manifest = manifest.ok_or_else(|| ApiError::bad_request("the `manifest` part (JSON) is missing"))?;
    let component = component.ok_or_else(|| ApiError::bad_request("the `component` part (.wasm) is missing"))?;
    if component.is_empty() {
        return Err(ApiError::bad_request("the `component` part is empty"));
    }
    let uploaded = state.registry.upload(manifest.into_manifest()?, component, query.activate.unwrap_or(true)).await?;
    let status = if uploaded.created { StatusCode::CREATED } else { StatusCode::OK };
    let target = AuditTarget(format!("{}/{}", uploaded.plugin, uploaded.version));
    let body = Uploaded {
        plugin: uploaded.plugin,
        version: uploaded.version,
        sha256: uploaded.sha256,
        created: uploaded.created,
        active: uploaded.active,
    };
    Ok((status, Extension(target), Json(body)).into_response())
}

/// Enables a plugin: it runs again on its hooks and can be invoked.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/enable", tag = "plugins", params(("name" = String, Path)),
    responses((status = 204, description = "Enabled"), ApiErrors))]
pub async fn enable(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.registry.set_enabled(&name, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a plugin: its hooks skip it and invoking it is refused (409).
#[utoipa::path(post, path = "/api/v1/plugins/{name}/disable", tag = "plugins", params(("name" = String, Path)),
    responses((status = 204, description = "Disabled"), ApiErrors))]
pub async fn disable(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.registry.set_enabled(&name, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a version the active one; the one it replaces becomes the rollback target.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/versions/{version}/activate", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204, description = "Activated"), ApiErrors))]
pub async fn activate(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.registry.activate(&name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the previous version active again.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/rollback", tag = "plugins", params(("name" = String, Path)),
    responses((status = 200, body = RolledBack), ApiErrors))]
pub async fn rollback(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RolledBack>, ApiError> {
    let version = state.registry.rollback(&name).await?;
    Ok(Json(RolledBack { plugin: name, active_version: version }))
}

/// Deletes a plugin with its versions, telemetry and run log.
#[utoipa::path(delete, path = "/api/v1/plugins/{name}", tag = "plugins", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), ApiErrors))]
pub async fn delete(State(state): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<StatusCode, ApiError> {
    state.registry.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the plugin's active version once. Every outcome of a run is a 200 whose `outcome` says what
/// happened; an input over the limit is a 413 and an overloaded plugin a 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/invoke", tag = "invoke", params(("name" = String, Path)),
    request_body = InvokeRequest,
    responses((status = 200, body = InvocationDto), (status = 413, body = InvocationDto, description = "The input is over the plugin's limit"),
        (status = 429, body = InvocationDto, description = "Overloaded; see Retry-After"), ApiErrors))]
pub async fn invoke(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<InvokeRequest>,
) -> Result<Response, ApiError> {
    plugwatch_registry::validate_hook_name(&request.hook)?;
    let input = InputDto { input: request.input, input_base64: request.input_base64 };
    let (entry, record) = state.registry.invoke(&name, &request.hook, &input.bytes()?).await?;
    let version = entry.record.active_version.as_deref().unwrap_or_default();
    let (status, retry_after) = envelope_status(record.outcome);
    let mut response = (status, Json(InvocationDto::new(&name, version, &request.hook, &record))).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    Ok(response)
}

/// Runs the plugin once with the request body as its input and answers with its output as the body: no
/// JSON envelope, for host applications that only want the result. The measurement travels in headers
/// (`plugwatch-outcome`, `plugwatch-wall-us`, `plugwatch-cpu-us`, `plugwatch-instructions`,
/// `plugwatch-memory-peak-bytes`). An outcome other than `ok` is a 422 whose JSON error names it (`code`
/// is the outcome); an input over the limit is a 413, an overload a 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/invoke/{hook}", tag = "invoke",
    params(("name" = String, Path), ("hook" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The input bytes"),
    responses((status = 200, description = "The plugin's output", content(
        (Vec<u8> = "application/octet-stream"), (serde_json::Value = "application/json"))), ApiErrors))]
pub async fn invoke_raw(
    State(state): State<AppState>,
    ApiPath((name, hook)): ApiPath<(String, String)>,
    ApiBytes(input): ApiBytes,
) -> Result<Response, ApiError> {
    plugwatch_registry::validate_hook_name(&hook)?;
    let (entry, mut record) = state.registry.invoke(&name, &hook, &input).await?;
    let output = record.output.take();
    let measured = |mut response: Response| {
        let headers = response.headers_mut();
        let mut set = |key: &'static str, value: String| {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                headers.insert(key, value);
            }
        };
        set("plugwatch-outcome", record.outcome.as_str().to_owned());
        set("plugwatch-version", entry.record.active_version.clone().unwrap_or_default());
        set("plugwatch-wall-us", crate::dto::micros(record.wall).to_string());
        set("plugwatch-cpu-us", crate::dto::micros(record.cpu).to_string());
        set("plugwatch-memory-peak-bytes", record.memory_peak_bytes.to_string());
        if let Some(n) = record.instructions {
            set("plugwatch-instructions", n.to_string());
        }
        response
    };
    Ok(match (record.outcome, output) {
        (Outcome::Ok, Some(output)) => {
            let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&output).is_ok() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            measured(([(axum::http::header::CONTENT_TYPE, content_type)], output).into_response())
        }
        (outcome, _) => {
            let message = record.detail.clone().unwrap_or_else(|| outcome.as_str().to_owned());
            measured(ApiError::from(Problem::Outcome { outcome, message }).into_response())
        }
    })
}
