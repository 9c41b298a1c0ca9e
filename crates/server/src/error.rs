//! The one place errors become HTTP responses: a status, a stable `code` and a message the caller can act
//! on, as `{"error": {"code", "message"}}`. Handlers return typed errors (the registry's, access control's,
//! or a [`Problem`]); only this module chooses statuses and codes. Internal details are logged, never sent.
//!
//! Every message is bounded before it is sent: input it repeats (between backticks or double quotes) is cut
//! to [`MAX_ECHO`] characters by [`echo`], and `<`, `>` and `&` are sent as JSON escapes, so an error never
//! carries markup back raw. Errors produced below the handlers (axum's own 405, a body limit hit by another
//! extractor, a timeout) are put into the same shape by [`json_errors`].

use std::error::Error as StdError;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugwatch_registry::RegistryError;
use plugwatch_runtime::Outcome;
use serde_json::json;

use crate::AppState;

/// The most characters of a caller's input an error message repeats.
pub const MAX_ECHO: usize = 64;
/// The longest message sent, whatever it is made of.
const MAX_MESSAGE: usize = 1024;

/// What went wrong, in the server's own words. [`ApiError`] turns it into a status and a code.
#[derive(Debug)]
pub enum Problem {
    /// The request is malformed; the message says what is wrong.
    BadRequest(String),
    /// No valid credentials.
    Unauthorized(String),
    /// The caller may not do this.
    Forbidden(String),
    /// A cookie-authenticated change without its CSRF token.
    Csrf(String),
    /// No such thing.
    NotFound(String),
    /// The path exists, not with this method.
    MethodNotAllowed { method: Method, allowed: Option<HeaderValue> },
    /// The body did not arrive within `limit_secs` (`setting`).
    BodyTimeout { limit_secs: u64, setting: &'static str },
    /// The body is larger than `limit` bytes (`setting`).
    BodyTooLarge { limit: usize, setting: &'static str },
    /// The body is not of a type the operation accepts.
    UnsupportedMediaType(String),
    /// A plugin run that did not end `ok`, answered without the JSON envelope (raw invoke).
    Outcome { outcome: Outcome, message: String },
}

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds the caller should wait before retrying (`Retry-After`).
    retry_after: Option<u32>,
    /// Send `WWW-Authenticate: Bearer` (401s).
    www_authenticate: bool,
    /// `Allow` (405s).
    allow: Option<HeaderValue>,
    /// The input field that is wrong (422s from validation).
    field: Option<String>,
}

impl ApiError {
    /// The message the caller is given.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: false,
            allow: None,
            field: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Problem::BadRequest(message.into()).into()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Problem::NotFound(message.into()).into()
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        use StatusCode as S;
        match problem {
            Problem::BadRequest(m) => ApiError::new(S::BAD_REQUEST, "bad_request", m),
            Problem::Unauthorized(m) => {
                ApiError { www_authenticate: true, ..ApiError::new(S::UNAUTHORIZED, "unauthorized", m) }
            }
            Problem::Forbidden(m) => ApiError::new(S::FORBIDDEN, "forbidden", m),
            Problem::Csrf(m) => ApiError::new(S::FORBIDDEN, "csrf", m),
            Problem::NotFound(m) => ApiError::new(S::NOT_FOUND, "not_found", m),
            Problem::MethodNotAllowed { method, allowed } => {
                let also = allowed
                    .as_ref()
                    .and_then(|a| a.to_str().ok())
                    .filter(|a| !a.is_empty())
                    .map_or(String::new(), |a| format!(" (it allows {a})"));
                let message = format!("{method} is not allowed on this path{also}");
                ApiError { allow: allowed, ..ApiError::new(S::METHOD_NOT_ALLOWED, "method_not_allowed", message) }
            }
            Problem::BodyTimeout { limit_secs, setting } => ApiError::new(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within the limit of {limit_secs} s ({setting})"),
            ),
            Problem::BodyTooLarge { limit, setting } => ApiError::new(
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than the limit of {} ({setting})", size(limit)),
            ),
            Problem::UnsupportedMediaType(m) => ApiError::new(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m),
            Problem::Outcome { outcome, message } => {
                let (status, retry_after) = match outcome {
                    Outcome::Rejected => (S::TOO_MANY_REQUESTS, Some(1)),
                    Outcome::InputTooLarge => (S::PAYLOAD_TOO_LARGE, None),
                    _ => (S::UNPROCESSABLE_ENTITY, None),
                };
                ApiError { retry_after, ..ApiError::new(status, outcome.as_str(), message) }
            }
        }
    }
}

/// A store error that reached a handler through any crate: what the configured database cannot do is 501
/// `not_supported`, with the reason; anything else is an internal error.
impl From<plugwatch_store::StoreError> for ApiError {
    fn from(e: plugwatch_store::StoreError) -> Self {
        match e {
            plugwatch_store::StoreError::Unsupported(_) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", e.to_string())
            }
            error => internal(&error),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            RegistryError::UnknownPlugin(_) => ApiError::new(S::NOT_FOUND, "unknown_plugin", message),
            RegistryError::UnknownVersion { .. } => ApiError::new(S::NOT_FOUND, "unknown_version", message),
            RegistryError::Disabled(_) => ApiError::new(S::CONFLICT, "plugin_disabled", message),
            RegistryError::NotLoaded { .. } => ApiError::new(S::CONFLICT, "plugin_not_loaded", message),
            RegistryError::Loading(_) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "plugin_loading", message).retry_after(2)
            }
            RegistryError::InvalidManifest(_) => ApiError::new(S::BAD_REQUEST, "invalid_manifest", message),
            RegistryError::InvalidHook(_) => ApiError::new(S::BAD_REQUEST, "invalid_hook", message),
            RegistryError::Rejected(_) => ApiError::new(S::UNPROCESSABLE_ENTITY, "component_rejected", message),
            RegistryError::VersionConflict { .. } => ApiError::new(S::CONFLICT, "version_conflict", message),
            RegistryError::NoPreviousVersion(_) => ApiError::new(S::CONFLICT, "no_previous_version", message),
            RegistryError::Draining => ApiError::new(S::SERVICE_UNAVAILABLE, "draining", message).retry_after(5),
            RegistryError::Store(error) => error.into(),
        }
    }
}

impl From<plugwatch_alerts::FieldError> for ApiError {
    fn from(e: plugwatch_alerts::FieldError) -> Self {
        let message = e.to_string();
        ApiError { field: Some(e.field), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message) }
    }
}

impl From<plugwatch_alerts::AlertsError> for ApiError {
    fn from(e: plugwatch_alerts::AlertsError) -> Self {
        use plugwatch_alerts::AlertsError as E;
        use plugwatch_store::StoreError as S;
        match e {
            E::Invalid(field) => field.into(),
            E::Store(S::NotFound { kind, id }) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {kind} with id {id}"))
            }
            E::Store(S::Conflict(message)) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            E::Store(error) => error.into(),
        }
    }
}

impl From<plugwatch_backup::BackupError> for ApiError {
    fn from(e: plugwatch_backup::BackupError) -> Self {
        use StatusCode as S;
        use plugwatch_backup::BackupError as E;
        let message = e.to_string();
        match e {
            E::NotFound(_) => ApiError::new(S::NOT_FOUND, "unknown_backup", message),
            // A backup that cannot be trusted or used: refused with the reason, nothing changed.
            E::NotABackup { .. } | E::Member { .. } | E::Integrity { .. } => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "backup_invalid", message)
            }
            E::Newer { .. } => ApiError::new(S::UNPROCESSABLE_ENTITY, "backup_too_new", message),
            E::NoKey { .. } | E::Secret(_) | E::Store(plugwatch_store::StoreError::Secret(_)) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "backup_key", message)
            }
            E::RestorePending(_) | E::Locked(_) => ApiError::new(S::CONFLICT, "restore_pending", message),
            E::Store(error) => error.into(),
            E::Io(_) | E::Destination { .. } | E::S3(_) => internal(&message),
        }
    }
}

impl From<plugwatch_access::AccessError> for ApiError {
    fn from(e: plugwatch_access::AccessError) -> Self {
        use StatusCode as S;
        use plugwatch_access::AccessError as E;
        let message = e.to_string();
        match e {
            E::InvalidCredentials => ApiError::new(S::UNAUTHORIZED, "invalid_credentials", message),
            E::LockedOut { retry_after } => ApiError::new(S::TOO_MANY_REQUESTS, "locked_out", message)
                .retry_after(retry_after.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
            E::UserDisabled => ApiError::new(S::FORBIDDEN, "user_disabled", message),
            E::UnknownUser(_) => ApiError::new(S::NOT_FOUND, "unknown_user", message),
            E::UserExists(_) => ApiError::new(S::CONFLICT, "user_exists", message),
            E::UnknownToken(_) => ApiError::new(S::NOT_FOUND, "unknown_token", message),
            E::LastAdmin => ApiError::new(S::CONFLICT, "last_admin", message),
            E::Forbidden(_) => ApiError::new(S::FORBIDDEN, "forbidden", message),
            E::InvalidInput(_) => ApiError::new(S::BAD_REQUEST, "invalid_input", message),
            E::Store(error) => error.into(),
        }
    }
}

/// Logs the detail and returns a generic 500.
pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(message = "Internal error.", %error);
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
}

/// The status of an invocation answered in the JSON envelope: every outcome of a run is a 200 whose
/// `outcome` says what happened, except an input over the limit (413) and an overload (429, with the
/// `Retry-After` seconds returned).
pub fn envelope_status(outcome: Outcome) -> (StatusCode, Option<u32>) {
    match outcome {
        Outcome::Rejected => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
        Outcome::InputTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
        _ => (StatusCode::OK, None),
    }
}

/// The status of a fired hook: 200, 502 when a `fail_closed` plugin failed, 503 (with `Retry-After`) when
/// that failure was an overload.
pub fn dispatch_status(failed: bool, overloaded: bool) -> (StatusCode, Option<u32>) {
    match (failed, overloaded) {
        (false, _) => (StatusCode::OK, None),
        (true, false) => (StatusCode::BAD_GATEWAY, None),
        (true, true) => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            None => json!({ "error": { "code": self.code, "message": bounded(&self.message) } }),
            Some(field) => {
                json!({ "error": { "code": self.code, "message": bounded(&self.message), "field": echo(field) } })
            }
        };
        // `<`, `>` and `&` can only occur inside JSON strings, where their `\u` escapes mean the same.
        let mut text = String::with_capacity(128);
        for c in body.to_string().chars() {
            match c {
                '<' => text.push_str("\\u003c"),
                '>' => text.push_str("\\u003e"),
                '&' => text.push_str("\\u0026"),
                c => text.push(c),
            }
        }
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], text).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

/// A caller's input as an error message repeats it: at most [`MAX_ECHO`] characters, then `…`.
pub fn echo(input: &str) -> std::borrow::Cow<'_, str> {
    match input.char_indices().nth(MAX_ECHO) {
        None => input.into(),
        Some((at, _)) => format!("{}…", &input[..at]).into(),
    }
}

/// `message` with every quoted part (between backticks or double quotes: what messages repeat of the
/// input) cut by [`echo`], and at most [`MAX_MESSAGE`] characters in all.
fn bounded(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE));
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().expect("found");
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let close = after.find(quote).unwrap_or(after.len());
        out.push_str(&echo(&after[..close]));
        rest = &after[close..];
        if let Some(stripped) = rest.strip_prefix(quote) {
            out.push(quote);
            rest = stripped;
        }
    }
    out.push_str(rest);
    match out.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &out[..at]),
        None => out,
    }
}

/// A size as a person reads it: `4 MiB`, `64 KiB` or `1000 bytes`.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The limits a request body is read under, to name them when one is hit.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub setting: &'static str,
    pub timeout_secs: u64,
}

impl BodyLimits {
    /// The limits of a JSON or raw body.
    pub fn body(state: &AppState) -> Self {
        let http = &state.config.http;
        BodyLimits {
            max_bytes: http.max_body_bytes,
            setting: "http.max_body_bytes",
            timeout_secs: http.body_timeout_secs,
        }
    }

    /// The limits of a plugin upload.
    pub fn upload(state: &AppState) -> Self {
        BodyLimits {
            max_bytes: state.config.http.max_upload_bytes,
            setting: "http.max_upload_bytes",
            ..Self::body(state)
        }
    }

    /// The body is over the size limit.
    pub fn too_large(&self) -> ApiError {
        Problem::BodyTooLarge { limit: self.max_bytes, setting: self.setting }.into()
    }

    /// Why reading the body failed: over the size limit, past the time limit, or malformed (`fallback`).
    pub fn read_error(&self, error: &(dyn StdError + 'static), fallback: impl FnOnce() -> String) -> ApiError {
        if caused_by::<crate::frame::BodyTimeout>(error) {
            Problem::BodyTimeout { limit_secs: self.timeout_secs, setting: "http.body_timeout_secs" }.into()
        } else if caused_by::<http_body_util::LengthLimitError>(error)
            || caused_by::<axum::extract::rejection::LengthLimitError>(error)
            || is_multipart_limit(error)
        {
            self.too_large()
        } else {
            ApiError::bad_request(fallback())
        }
    }
}

/// Whether `T` is somewhere in `error`'s chain of causes.
fn caused_by<T: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<T>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether a multipart error is a size limit (multer counts some of them itself).
fn is_multipart_limit(error: &(dyn StdError + 'static)) -> bool {
    error
        .downcast_ref::<axum::extract::multipart::MultipartError>()
        .is_some_and(|e| e.status() == StatusCode::PAYLOAD_TOO_LARGE)
}

/// Puts every error response into the API's shape: the ones produced below the handlers (axum's 405 and
/// 404s, a body limit hit by an extractor of someone else's, a timeout) come without a JSON body. Runs
/// around everything, so it also sees the pages' and the Swagger UI's responses.
/// `upload` says whether the request was a plugin upload (whose body limit is its own).
pub fn json_errors(state: &AppState, method: Method, upload: bool, response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let limits = if upload { BodyLimits::upload(state) } else { BodyLimits::body(state) };
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            Problem::MethodNotAllowed { method, allowed: response.headers().get(header::ALLOW).cloned() }.into()
        }
        StatusCode::NOT_FOUND => ApiError::not_found("no such route"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::BodyTooLarge { limit: limits.max_bytes, setting: limits.setting }.into()
        }
        StatusCode::REQUEST_TIMEOUT => {
            Problem::BodyTimeout { limit_secs: limits.timeout_secs, setting: "http.body_timeout_secs" }.into()
        }
        StatusCode::UNAUTHORIZED => {
            Problem::Unauthorized("sign in or send `Authorization: Bearer <token>`".into()).into()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::UnsupportedMediaType("unsupported content type".into()).into(),
        s if s.is_client_error() => ApiError::bad_request(format!("the request was refused ({s})")),
        s => internal(&format_args!("{s} without a JSON body")),
    };
    let mut fresh = ApiError { status, ..error }.into_response();
    // Keep what the original said beyond its body (`Retry-After`, `Allow`, …).
    let (parts, _) = response.into_parts();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    fresh
}
