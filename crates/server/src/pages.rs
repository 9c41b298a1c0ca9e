//! The sign-in page, served from the binary: the one page a browser may load before it has a session.
//!
//! It carries no data and no inline script (its Content-Security-Policy allows only this server's own
//! files); its script sends the credentials as JSON to the sign-in endpoint, so another site cannot post
//! the form for a victim.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

/// Where a browser without a session is sent.
pub const LOGIN_PATH: &str = "/login";

const HTML: &str = include_str!("../assets/login.html");
const SCRIPT: &str = include_str!("../assets/login.js");
const STYLE: &str = include_str!("../assets/login.css");

/// The sign-in page's Content-Security-Policy: only our own files may load, nothing may frame the page.
/// (The other security headers every response gets, see `security_headers` in `lib.rs`.)
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The Swagger UI's: its own scripts, and the inline styles and `data:` images it renders with.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (headers, body)
}

/// `GET /login` and its script and style. Public: outside the access layer, like the health probes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(LOGIN_PATH, get(|| async { page("text/html; charset=utf-8", HTML) }))
        .route("/login.js", get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/login.css", get(|| async { page("text/css; charset=utf-8", STYLE) }))
}

/// Whether a request comes from a browser navigating to a page (it prefers HTML), which is better sent to
/// the sign-in page than answered with a JSON 401.
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

/// A redirect to the sign-in page that comes back to `path_and_query` afterwards.
pub fn to_login(path_and_query: &str) -> axum::response::Response {
    let next = percent_encoding::utf8_percent_encode(path_and_query, RETURN_PATH);
    axum::response::Redirect::to(&format!("{LOGIN_PATH}?next={next}")).into_response()
}

/// What is escaped in the return path: everything but unreserved characters and `/`.
const RETURN_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_return_path_is_escaped() {
        let location = |r: axum::response::Response| r.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert_eq!(location(to_login("/api/v1/docs/")), "/login?next=/api/v1/docs/");
        assert_eq!(location(to_login("/x?a=1&b=<s>")), "/login?next=/x%3Fa%3D1%26b%3D%3Cs%3E");
    }
}
