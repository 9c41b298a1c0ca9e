//! The versioned JSON API under `/api/v1`, built with `utoipa-axum` so that the router and the OpenAPI
//! document come from the same declarations: a route cannot exist without being documented.

mod access;
mod alerts;
mod backups;
mod hooks;
mod plugins;
mod telemetry;

use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use alerts::AlertDto;
pub use telemetry::overview_rows;

use crate::AppState;
use crate::dto::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "plugwatch",
        description = "Run third-party plugins as sandboxed WebAssembly components and watch how each one performs.\n\n\
            Authenticate with `Authorization: Bearer <token>` or the session cookie from `POST /api/v1/auth/login` \
            (changes made with the cookie must send its `x-csrf-token`). Each operation's `x-required` says what it \
            needs: `public`, `authenticated`, or a permission — `read` (viewer, operator, admin), `invoke` (invoker, \
            operator, admin), `operate` (operator, admin), `manage_users`, `read_audit` and `manage_backups` (admin)."
    ),
    modifiers(&Security),
    tags(
        (name = "plugins", description = "The plugin registry"),
        (name = "invoke", description = "Running plugins and hooks"),
        (name = "telemetry", description = "Series, run logs, overview, host"),
        (name = "access", description = "Sign-in, users, API tokens, audit log"),
        (name = "alerts", description = "Alert rules, alerts now, history, silences, notification channels"),
        (name = "backups", description = "Backups: take, list, inspect, verify, download, delete, restore"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// Every error status an operation can answer with, each with the same body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ApiErrors {
    /// The request is malformed; the message says what is wrong.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No valid credentials.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// The caller's role may not do this, or a cookie-authenticated change lacks its CSRF token.
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// No such plugin, version, user or token.
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
    /// The path exists, but not with this method; `Allow` lists the methods it has.
    #[response(status = 405)]
    MethodNotAllowed(#[to_schema] ErrorBody),
    /// The request body did not arrive within `http.body_timeout_secs`.
    #[response(status = 408)]
    RequestTimeout(#[to_schema] ErrorBody),
    /// The change conflicts with the current state.
    #[response(status = 409)]
    Conflict(#[to_schema] ErrorBody),
    /// The body is over the size limit.
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// The body is not of a type this operation accepts.
    #[response(status = 415)]
    UnsupportedMediaType(#[to_schema] ErrorBody),
    /// The component was refused, the invocation failed (raw invoke), or a field is invalid (`field` names it).
    #[response(status = 422)]
    Unprocessable(#[to_schema] ErrorBody),
    /// Too many requests (overload, or sign-in lockout); see `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(#[to_schema] ErrorBody),
    /// Internal error; details are in the server log.
    #[response(status = 500)]
    Internal(#[to_schema] ErrorBody),
    /// The server is shutting down; see `Retry-After`.
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    }
}

/// The whole API (and the operations endpoints), with the OpenAPI document describing it.
pub fn router(max_upload_bytes: usize) -> OpenApiRouter<AppState> {
    let (schemas, paths, uploads) = routes!(plugins::list, plugins::upload);
    // Uploads get their own, larger body limit.
    let uploads = uploads.layer(DefaultBodyLimit::max(max_upload_bytes));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes((schemas, paths, uploads))
        .routes(routes!(plugins::get, plugins::delete))
        .routes(routes!(plugins::enable))
        .routes(routes!(plugins::disable))
        .routes(routes!(plugins::versions))
        .routes(routes!(plugins::activate))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::invoke))
        .routes(routes!(plugins::invoke_raw))
        .routes(routes!(telemetry::series))
        .routes(routes!(telemetry::invocations))
        .routes(routes!(telemetry::overview))
        .routes(routes!(telemetry::host))
        .routes(routes!(crate::live::live))
        .routes(routes!(alerts::headroom))
        .routes(routes!(alerts::alerts_now))
        .routes(routes!(alerts::list_rules, alerts::create_rule))
        .routes(routes!(alerts::get_rule, alerts::update_rule, alerts::delete_rule))
        .routes(routes!(alerts::history))
        .routes(routes!(alerts::list_silences, alerts::create_silence))
        .routes(routes!(alerts::get_silence, alerts::expire_silence))
        .routes(routes!(alerts::list_channels, alerts::create_channel))
        .routes(routes!(alerts::get_channel, alerts::update_channel, alerts::delete_channel))
        .routes(routes!(alerts::test_channel))
        .routes(routes!(alerts::deliveries))
        .routes(routes!(backups::list, backups::create))
        .routes(routes!(backups::get, backups::delete))
        .routes(routes!(backups::verify))
        .routes(routes!(backups::download))
        .routes(routes!(backups::restore))
        .routes(routes!(hooks::list))
        .routes(routes!(hooks::fire))
        .routes(routes!(access::login))
        .routes(routes!(access::logout))
        .routes(routes!(access::me))
        .routes(routes!(access::list_users, access::create_user))
        .routes(routes!(access::update_user, access::delete_user))
        .routes(routes!(access::list_tokens, access::create_token))
        .routes(routes!(access::revoke_token))
        .routes(routes!(access::audit))
        .routes(routes!(crate::ops::healthz))
        .routes(routes!(crate::ops::readyz))
        .routes(routes!(crate::ops::metrics))
        .routes(routes!(crate::ops::cluster))
        .routes(routes!(crate::ops::openapi_json))
}
