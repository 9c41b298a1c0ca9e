//! The dashboard at `/plugin-monitoring`: one page shell and its scripts, styles and the vendored chart
//! library, embedded in the binary (no build step, nothing from a CDN). Every page and asset needs a
//! session (or token) of a role that may read: without one a browser is sent to the sign-in page, and an
//! invoker (a host application's role) is told it has no dashboard. The shell carries no data; the
//! scripts read the JSON API and the live stream (`/api/v1/live`) with the session's cookie.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;
use crate::auth::{Credentials, anonymous, authenticate};

/// Where the dashboard lives.
pub const BASE: &str = "/plugin-monitoring";

/// The dashboard's Content-Security-Policy: only this server's own scripts, styles and connections; the
/// charts draw on canvases, so no inline style or script is needed.
pub const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/dashboard/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/dashboard/app.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/dashboard/vendor/uPlot.iife.min.js"),
    ),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("../assets/dashboard/vendor/uPlot.min.css")),
];

const SHELL: &str = include_str!("../assets/dashboard/index.html");

/// `/` (to the dashboard), the dashboard's pages and its assets.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to(BASE) }))
        .route(BASE, get(shell))
        .route(&format!("{BASE}/"), get(shell))
        .route(&format!("{BASE}/assets/{{file}}"), get(asset))
        .route(&format!("{BASE}/{{*page}}"), get(shell))
        .layer(axum::middleware::from_fn_with_state(state, require_reader))
}

async fn require_reader(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match authenticate(&state, request.headers()).await {
        Ok(Credentials::None) => anonymous(request.headers(), request.uri(), "sign in to see the dashboard"),
        Err(e) => e.into_response(),
        Ok(Credentials::Token(p) | Credentials::Session { principal: p, .. })
            if !p.role.allows(plugwatch_access::Permission::Read) =>
        {
            let body = "This account may invoke plugins but not read them: it has no dashboard. Sign in as a \
                        viewer, operator or admin.";
            (StatusCode::FORBIDDEN, with_csp("text/plain; charset=utf-8"), body).into_response()
        }
        Ok(_) => next.run(request).await,
    }
}

fn with_csp(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DASHBOARD_CSP)),
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
    ]
}

async fn shell() -> Response {
    (with_csp("text/html; charset=utf-8"), SHELL).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (with_csp(content_type), *body).into_response(),
        None => (StatusCode::NOT_FOUND, with_csp("text/plain; charset=utf-8"), "no such file").into_response(),
    }
}

/// Bytes of everything the dashboard loads (the shell and every asset), for the size budget.
#[cfg(test)]
pub fn total_bytes() -> usize {
    SHELL.len() + ASSETS.iter().map(|(_, _, body)| body.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    #[test]
    fn everything_the_dashboard_loads_fits_its_budget() {
        // The budget: 300 KB uncompressed, the chart library included.
        let bytes = super::total_bytes();
        assert!(bytes <= 300_000, "the dashboard loads {bytes} bytes");
    }
}
