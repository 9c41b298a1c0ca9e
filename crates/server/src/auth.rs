//! Who is calling and what they may do: credentials (a bearer token or a session cookie) become a
//! `Principal`; every route has one access rule in [`RULES`], checked before its handler runs (a route
//! without a rule is refused, so a new route cannot slip through); cookie-authenticated changes must carry
//! the session's CSRF token; every change is written to the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plugwatch_access::{AuditEntry, AuditResult, Permission, Principal};

use crate::AppState;
use crate::error::{ApiError, Problem, internal};

/// The session cookie.
pub const SESSION_COOKIE: &str = "plugwatch_session";
/// The header a cookie-authenticated change must carry, holding the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a route demands of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone (health probes, and the login form, which checks credentials itself).
    Public,
    /// Any signed-in user or valid token (its own profile, its own tokens).
    Authenticated,
    /// A role that allows this permission.
    Allowed(Permission),
}

/// One route's access rule, and the audit action its calls are recorded under (`None`: not audited, for
/// reads and invocations).
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    pub requirement: Requirement,
    pub audit: Option<&'static str>,
}

const fn rule(method: Method, path: &'static str, requirement: Requirement, audit: Option<&'static str>) -> Rule {
    Rule { method, path, requirement, audit }
}

use Permission::*;
use Requirement::*;

/// Every route's access rule. The matrix test checks this table against the OpenAPI document, which the
/// router is built from.
pub static RULES: &[Rule] = &[
    rule(Method::GET, "/healthz", Public, None),
    rule(Method::GET, "/readyz", Public, None),
    rule(Method::GET, "/metrics", Allowed(Read), None),
    rule(Method::POST, "/api/v1/auth/login", Public, None),
    rule(Method::POST, "/api/v1/auth/logout", Authenticated, Some("logout")),
    rule(Method::GET, "/api/v1/auth/me", Authenticated, None),
    rule(Method::GET, "/api/v1/openapi.json", Authenticated, None),
    rule(Method::GET, "/api/v1/plugins", Allowed(Read), None),
    rule(Method::POST, "/api/v1/plugins", Allowed(Operate), Some("plugin.upload")),
    rule(Method::GET, "/api/v1/plugins/{name}", Allowed(Read), None),
    rule(Method::DELETE, "/api/v1/plugins/{name}", Allowed(Operate), Some("plugin.delete")),
    rule(Method::POST, "/api/v1/plugins/{name}/enable", Allowed(Operate), Some("plugin.enable")),
    rule(Method::POST, "/api/v1/plugins/{name}/disable", Allowed(Operate), Some("plugin.disable")),
    rule(Method::GET, "/api/v1/plugins/{name}/versions", Allowed(Read), None),
    rule(Method::POST, "/api/v1/plugins/{name}/versions/{version}/activate", Allowed(Operate), Some("plugin.activate")),
    rule(Method::POST, "/api/v1/plugins/{name}/rollback", Allowed(Operate), Some("plugin.rollback")),
    rule(Method::POST, "/api/v1/plugins/{name}/invoke", Allowed(Invoke), None),
    rule(Method::POST, "/api/v1/plugins/{name}/invoke/{hook}", Allowed(Invoke), None),
    rule(Method::GET, "/api/v1/plugins/{name}/series", Allowed(Read), None),
    rule(Method::GET, "/api/v1/plugins/{name}/invocations", Allowed(Read), None),
    rule(Method::GET, "/api/v1/hooks", Allowed(Read), None),
    rule(Method::POST, "/api/v1/hooks/{hook}", Allowed(Invoke), None),
    rule(Method::GET, "/api/v1/overview", Allowed(Read), None),
    rule(Method::GET, "/api/v1/host", Allowed(Read), None),
    rule(Method::GET, "/api/v1/cluster", Allowed(Read), None),
    rule(Method::GET, "/api/v1/live", Allowed(Read), None),
    rule(Method::GET, "/api/v1/users", Allowed(ManageUsers), None),
    rule(Method::POST, "/api/v1/users", Allowed(ManageUsers), Some("user.create")),
    rule(Method::PATCH, "/api/v1/users/{username}", Allowed(ManageUsers), Some("user.update")),
    rule(Method::DELETE, "/api/v1/users/{username}", Allowed(ManageUsers), Some("user.delete")),
    rule(Method::GET, "/api/v1/tokens", Authenticated, None),
    rule(Method::POST, "/api/v1/tokens", Authenticated, Some("token.create")),
    rule(Method::DELETE, "/api/v1/tokens/{id}", Authenticated, Some("token.revoke")),
    rule(Method::GET, "/api/v1/audit", Allowed(ReadAudit), None),
    rule(Method::GET, "/api/v1/plugins/{name}/headroom", Allowed(Read), None),
    rule(Method::GET, "/api/v1/alerts", Allowed(Read), None),
    rule(Method::GET, "/api/v1/alerts/rules", Allowed(Read), None),
    rule(Method::POST, "/api/v1/alerts/rules", Allowed(Operate), Some("alert.rule.create")),
    rule(Method::GET, "/api/v1/alerts/rules/{id}", Allowed(Read), None),
    rule(Method::PUT, "/api/v1/alerts/rules/{id}", Allowed(Operate), Some("alert.rule.update")),
    rule(Method::DELETE, "/api/v1/alerts/rules/{id}", Allowed(Operate), Some("alert.rule.delete")),
    rule(Method::GET, "/api/v1/alerts/history", Allowed(Read), None),
    rule(Method::GET, "/api/v1/alerts/silences", Allowed(Read), None),
    rule(Method::POST, "/api/v1/alerts/silences", Allowed(Operate), Some("alert.silence.create")),
    rule(Method::GET, "/api/v1/alerts/silences/{id}", Allowed(Read), None),
    rule(Method::DELETE, "/api/v1/alerts/silences/{id}", Allowed(Operate), Some("alert.silence.expire")),
    rule(Method::GET, "/api/v1/alerts/channels", Allowed(Read), None),
    rule(Method::POST, "/api/v1/alerts/channels", Allowed(Operate), Some("alert.channel.create")),
    rule(Method::GET, "/api/v1/alerts/channels/{id}", Allowed(Read), None),
    rule(Method::PUT, "/api/v1/alerts/channels/{id}", Allowed(Operate), Some("alert.channel.update")),
    rule(Method::DELETE, "/api/v1/alerts/channels/{id}", Allowed(Operate), Some("alert.channel.delete")),
    rule(Method::POST, "/api/v1/alerts/channels/{id}/test", Allowed(Operate), Some("alert.channel.test")),
    rule(Method::GET, "/api/v1/alerts/channels/{id}/deliveries", Allowed(Read), None),
    rule(Method::GET, "/api/v1/backups", Allowed(ManageBackups), None),
    rule(Method::POST, "/api/v1/backups", Allowed(ManageBackups), Some("backup.create")),
    rule(Method::GET, "/api/v1/backups/{id}", Allowed(ManageBackups), None),
    rule(Method::DELETE, "/api/v1/backups/{id}", Allowed(ManageBackups), Some("backup.delete")),
    rule(Method::POST, "/api/v1/backups/{id}/verify", Allowed(ManageBackups), Some("backup.verify")),
    rule(Method::GET, "/api/v1/backups/{id}/download", Allowed(ManageBackups), Some("backup.download")),
    // Audited by the handler, into the restored database (an entry in the replaced one would be lost).
    rule(Method::POST, "/api/v1/backups/{id}/restore", Allowed(ManageBackups), None),
];

/// The rule for a route, by method and path template.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == *method && r.path == path)
}

/// The name a requirement is documented under (`x-required` in the OpenAPI document).
pub fn requirement_name(requirement: Requirement) -> &'static str {
    match requirement {
        Public => "public",
        Authenticated => "authenticated",
        Allowed(Read) => "read",
        Allowed(Invoke) => "invoke",
        Allowed(Operate) => "operate",
        Allowed(ManageUsers) => "manage_users",
        Allowed(ManageServiceTokens) => "manage_service_tokens",
        Allowed(ReadAudit) => "read_audit",
        Allowed(ManageBackups) => "manage_backups",
    }
}

/// How a request authenticated.
pub enum Credentials {
    None,
    Token(Principal),
    Session { principal: Principal, csrf: String },
}

/// Reads the caller's credentials. A bearer token that does not authenticate is an error, not anonymity.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Credentials, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(unauthorized("the Authorization header must be `Bearer <token>`"));
        };
        return match state.access.authenticate_token(token).await.map_err(|e| internal(&e))? {
            Some(principal) => Ok(Credentials::Token(principal)),
            None => Err(unauthorized("the token is invalid, expired or revoked")),
        };
    }
    if let Some(secret) = session_cookie(headers)
        && let Some((principal, csrf)) = state.access.session(&secret).await.map_err(|e| internal(&e))?
    {
        return Ok(Credentials::Session { principal, csrf });
    }
    Ok(Credentials::None)
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

pub fn unauthorized(message: &str) -> ApiError {
    Problem::Unauthorized(message.to_owned()).into()
}

/// The answer to a request without credentials outside the API: a browser navigating to a page is sent to
/// the sign-in page (and back to `uri` afterwards); anything else gets a 401 saying `message`.
pub fn anonymous(headers: &HeaderMap, uri: &axum::http::Uri, message: &str) -> Response {
    if crate::pages::wants_html(headers) {
        crate::pages::to_login(uri.path_and_query().map_or("/", |p| p.as_str()))
    } else {
        unauthorized(message).into_response()
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    Problem::Forbidden(message.into()).into()
}

/// The target an audited change acted on, when it is not in the path (an upload names its plugin in the
/// manifest): handlers put it in the response's extensions.
#[derive(Clone)]
pub struct AuditTarget(pub String);

/// The access check in front of every routed request.
pub async fn authorize(
    State(state): State<AppState>,
    matched: MatchedPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let Some(rule) = rule_for(&method, matched.as_str()) else {
        let allowed: Vec<&str> =
            RULES.iter().filter(|r| r.path == matched.as_str()).map(|r| r.method.as_str()).collect();
        if !allowed.is_empty() {
            let allowed = HeaderValue::from_str(&allowed.join(", ")).ok();
            return ApiError::from(Problem::MethodNotAllowed { method, allowed }).into_response();
        }
        tracing::error!(message = "Route without an access rule refused.", %method, path = matched.as_str());
        return forbidden("this route has no access rule").into_response();
    };
    if rule.requirement == Public {
        return next.run(request).await;
    }
    let credentials = match authenticate(&state, request.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (principal, csrf) = match credentials {
        Credentials::None => return unauthorized("sign in or send `Authorization: Bearer <token>`").into_response(),
        Credentials::Token(p) => (p, None),
        Credentials::Session { principal, csrf } => (principal, Some(csrf)),
    };
    // What an audit entry needs is only worked out for routes that are audited (not invocations).
    let audit = |result: AuditResult, detail: Option<String>, target: String| {
        let entry = rule.audit.map(|action| AuditEntry {
            actor: Some(principal.clone()),
            action: action.to_owned(),
            target,
            source: Some(peer.ip().to_string()),
            result,
            detail,
        });
        let access = state.access.clone();
        async move {
            if let Some(entry) = entry
                && let Err(error) = access.record(entry).await
            {
                tracing::error!(message = "Cannot write to the audit log.", %error);
            }
        }
    };
    if let Requirement::Allowed(permission) = rule.requirement
        && !principal.role.allows(permission)
    {
        audit(
            AuditResult::Denied,
            Some(format!("role {} lacks {}", principal.role.as_str(), requirement_name(rule.requirement))),
            path_target(&mut request).await,
        )
        .await;
        return forbidden(format!(
            "role `{}` may not do this (it needs the `{}` permission)",
            principal.role.as_str(),
            requirement_name(rule.requirement)
        ))
        .into_response();
    }
    // A browser's cookie is sent on cross-site requests too: a change made with one must prove it comes
    // from our own page.
    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(csrf) = csrf
        && !safe
    {
        let sent = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), csrf.as_bytes())) {
            audit(AuditResult::Denied, Some("missing or wrong CSRF token".into()), path_target(&mut request).await)
                .await;
            let message = format!("a change made with a session cookie needs the `{CSRF_HEADER}` header from sign-in");
            return ApiError::from(Problem::Csrf(message)).into_response();
        }
    }
    if rule.audit.is_none() {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    }
    let target = path_target(&mut request).await;
    request.extensions_mut().insert(principal.clone());
    let response = next.run(request).await;
    let status = response.status();
    let result = if status.is_success() {
        AuditResult::Ok
    } else if status == StatusCode::FORBIDDEN {
        AuditResult::Denied
    } else {
        AuditResult::Failed
    };
    let target = response.extensions().get::<AuditTarget>().map_or(target, |t| t.0.clone());
    let detail = (!status.is_success()).then(|| format!("HTTP {}", status.as_u16()));
    audit(result, detail, target).await;
    response
}

/// What an audited change acted on, from its path: the path's parameters joined by `/`.
async fn path_target(request: &mut Request) -> String {
    use axum::RequestExt;
    match request.extract_parts::<RawPathParams>().await {
        Ok(params) => params.iter().map(|(_, value)| value).collect::<Vec<_>>().join("/"),
        Err(_) => String::new(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `Set-Cookie` for a new session.
pub fn session_cookie_header(secret: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("a cookie of base64url characters is a valid header")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie_header(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .expect("a valid header")
}

/// Lets any authenticated caller through (the API docs page); sends a browser to the sign-in page, and
/// answers 401 otherwise.
pub async fn require_authenticated(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match authenticate(&state, request.headers()).await {
        Ok(Credentials::None) => anonymous(request.headers(), request.uri(), "sign in to read the API documentation"),
        Err(e) => e.into_response(),
        Ok(_) => next.run(request).await,
    }
}
