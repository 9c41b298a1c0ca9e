//! The one place errors become HTTP responses: a status, a stable `code` and a message the caller can act
//! on. Internal details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugwatch_registry::RegistryError;
use serde_json::json;

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds the caller should wait before retrying (`Retry-After`).
    pub retry_after: Option<u32>,
    /// Send `WWW-Authenticate: Bearer` (401s).
    pub www_authenticate: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, www_authenticate: false }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::UnknownPlugin(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_plugin", message),
            RegistryError::UnknownVersion { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown_version", message),
            RegistryError::Disabled(_) => ApiError::new(StatusCode::CONFLICT, "plugin_disabled", message),
            RegistryError::NotLoaded { .. } => ApiError::new(StatusCode::CONFLICT, "plugin_not_loaded", message),
            RegistryError::Loading(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_loading", message).retry_after(2)
            }
            RegistryError::InvalidManifest(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", message),
            RegistryError::InvalidHook(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_hook", message),
            RegistryError::Rejected(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "component_rejected", message)
            }
            RegistryError::VersionConflict { .. } => ApiError::new(StatusCode::CONFLICT, "version_conflict", message),
            RegistryError::NoPreviousVersion(_) => ApiError::new(StatusCode::CONFLICT, "no_previous_version", message),
            RegistryError::Draining => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message).retry_after(5)
            }
            RegistryError::Store(error) => internal(&error),
        }
    }
}

impl From<plugwatch_access::AccessError> for ApiError {
    fn from(e: plugwatch_access::AccessError) -> Self {
        use plugwatch_access::AccessError as E;
        let message = e.to_string();
        match e {
            E::InvalidCredentials => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message),
            E::LockedOut { retry_after } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked_out", message)
                .retry_after(retry_after.as_secs().max(1).min(u64::from(u32::MAX)) as u32),
            E::UserDisabled => ApiError::new(StatusCode::FORBIDDEN, "user_disabled", message),
            E::UnknownUser(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_user", message),
            E::UserExists(_) => ApiError::new(StatusCode::CONFLICT, "user_exists", message),
            E::UnknownToken(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_token", message),
            E::LastAdmin => ApiError::new(StatusCode::CONFLICT, "last_admin", message),
            E::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            E::InvalidInput(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message),
            E::Store(error) => internal(&error),
        }
    }
}

/// Logs the detail and returns a generic 500.
pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(message = "Internal error.", %error);
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Turns axum's own rejections (bad JSON, wrong content type, body too large…) into the same shape.
pub fn from_rejection(rejection: impl std::fmt::Display + IntoResponse) -> ApiError {
    let message = rejection.to_string();
    let status = rejection.into_response().status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "bad_request",
        _ => "bad_request",
    };
    ApiError::new(status, code, message)
}
