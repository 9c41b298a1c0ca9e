//! Access-control endpoints: sign-in and sign-out, the caller's profile, users (admins), API tokens, and the
//! audit log (admins).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plugwatch_access::{AuditQuery, AuditRecord, AuditResult, NewToken, Principal, Role, TokenInfo, User, UserUpdate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiErrors;
use crate::AppState;
use crate::auth::{self, Credentials};
use crate::dto::rfc3339;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// A role, as the API names it.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Operator,
    Viewer,
    Invoker,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Admin => Role::Admin,
            RoleName::Operator => Role::Operator,
            RoleName::Viewer => Role::Viewer,
            RoleName::Invoker => Role::Invoker,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").field("username", &self.username).finish_non_exhaustive()
    }
}

/// A new browser session: the cookie is set on the response; changes made with it must send `csrf_token`
/// in the `x-csrf-token` header.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub username: String,
    pub role: &'static str,
    pub csrf_token: String,
    pub expires_at: String,
}

/// Signs in with a username and password; sets the session cookie (`HttpOnly`, `SameSite=Strict`).
/// After 5 failures in 5 minutes for a user or an address, sign-in is refused for a while (429).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "access", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, headers(("set-cookie" = String, description = "The session cookie"))), ApiErrors))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let (principal, session) = state.access.login(&request.username, &request.password, &peer.ip().to_string()).await?;
    let max_age = session.expires_at.duration_since(SystemTime::now()).unwrap_or_default().as_secs();
    let cookie = auth::session_cookie_header(&session.secret, max_age, state.config.http.secure_cookies);
    let body = LoginResponse {
        username: principal.name.clone(),
        role: principal.role.as_str(),
        csrf_token: session.csrf.clone(),
        expires_at: rfc3339(session.expires_at),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the caller's session and clears its cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "access", responses((status = 204, description = "Signed out"), ApiErrors))]
pub async fn logout(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    if let Some(secret) = auth::session_cookie(&headers) {
        state.access.logout(&secret).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, auth::clear_cookie_header(state.config.http.secure_cookies))])
        .into_response())
}

/// The caller: who it is, its role, and (for a browser session) its CSRF token.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// `user` or `token`.
    pub kind: &'static str,
    pub name: String,
    pub role: &'static str,
    pub csrf_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "access", responses((status = 200, body = Me), ApiErrors))]
pub async fn me(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<Json<Me>, ApiError> {
    match auth::authenticate(&state, &headers).await? {
        Credentials::Session { principal, csrf } => {
            Ok(Json(Me { kind: "user", name: principal.name, role: principal.role.as_str(), csrf_token: Some(csrf) }))
        }
        Credentials::Token(principal) => {
            Ok(Json(Me { kind: "token", name: principal.name, role: principal.role.as_str(), csrf_token: None }))
        }
        Credentials::None => Err(auth::unauthorized("not signed in")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub username: String,
    pub role: &'static str,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        UserDto {
            username: u.username,
            role: u.role.as_str(),
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserDto>,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "access", responses((status = 200, body = UserList), ApiErrors))]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let users = state.access.users().await?.into_iter().map(UserDto::from).collect();
    Ok(Json(UserList { users }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub role: RoleName,
    #[schema(format = Password)]
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = CreateUser,
    responses((status = 201, body = UserDto), ApiErrors))]
pub async fn create_user(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    let user = state.access.create_user(&request.username, request.role.into(), &request.password).await?;
    let target = auth::AuditTarget(user.username.clone());
    let mut response = (StatusCode::CREATED, Json(UserDto::from(user))).into_response();
    response.extensions_mut().insert(target);
    Ok(response)
}

/// What to change about a user; omitted fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<RoleName>,
    pub disabled: Option<bool>,
    /// A new password (ends the user's sessions).
    #[schema(format = Password)]
    pub password: Option<String>,
}

/// Changes a user's role, enables or disables it, or resets its password — all the fields given, or (when
/// any is refused) none of them. The last enabled admin can be neither demoted nor disabled.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "access", params(("username" = String, Path)),
    request_body = UpdateUser, responses((status = 200, body = UserDto), ApiErrors))]
pub async fn update_user(
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateUser>,
) -> Result<Json<UserDto>, ApiError> {
    // One change, applied as a whole or not at all.
    let update = UserUpdate {
        role: request.role.map(Role::from),
        disabled: request.disabled,
        password: request.password.as_deref(),
    };
    Ok(Json(UserDto::from(state.access.update_user(&username, update).await?)))
}

/// Deletes a user (never the last enabled admin); its sessions end and its tokens are revoked.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "access", params(("username" = String, Path)),
    responses((status = 204, description = "Deleted"), ApiErrors))]
pub async fn delete_user(
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.access.delete_user(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An API token as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenDto {
    pub id: i64,
    pub name: String,
    pub role: &'static str,
    /// The user it belongs to; none for a service token.
    pub owner: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<TokenInfo> for TokenDto {
    fn from(t: TokenInfo) -> Self {
        TokenDto {
            id: t.id,
            name: t.name,
            role: t.role.as_str(),
            owner: t.owner,
            prefix: t.prefix,
            created_by: t.created_by,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenDto>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokensQuery {
    /// Every token, not only the caller's (admins).
    all: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", params(TokensQuery), responses((status = 200, body = TokenList), ApiErrors))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(q): ApiQuery<TokensQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let all = q.all.unwrap_or(false);
    if all && principal.role != Role::Admin {
        return Err(Problem::Forbidden("only admins may list every token".into()).into());
    }
    let tokens = state.access.tokens(if all { None } else { Some(&principal) }).await?;
    Ok(Json(TokenList { tokens: tokens.into_iter().map(TokenDto::from).collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// No higher than the caller's own role.
    pub role: RoleName,
    /// Days until it expires (at most ten years); none for no expiry.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// A service token, tied to no user (admins only).
    #[serde(default)]
    pub service: bool,
}

/// The new token. `secret` is shown this once and never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenDto,
    pub secret: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken").field("id", &self.token.id).finish_non_exhaustive()
    }
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), ApiErrors))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    if request.expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(ApiError::bad_request("`expires_in_days` must be between 1 and 3650"));
    }
    let spec = NewToken {
        name: request.name,
        role: request.role.into(),
        expires_in: request.expires_in_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
        service: request.service,
    };
    let (info, secret) = state.access.create_token(&principal, spec).await?;
    let target = auth::AuditTarget(format!("{}#{}", info.name, info.id));
    Ok((StatusCode::CREATED, Extension(target), Json(CreatedToken { token: TokenDto::from(info), secret }))
        .into_response())
}

/// Revokes a token: one's own, or any for an admin.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = i64, Path)),
    responses((status = 200, body = TokenDto), ApiErrors))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenDto>, ApiError> {
    Ok(Json(TokenDto::from(state.access.revoke_token(&principal, id).await?)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// The username or token name that acted.
    actor: Option<String>,
    /// An action or its prefix (`plugin.`, `login`, …).
    action: Option<String>,
    target: Option<String>,
    /// `ok`, `denied` or `failed`.
    result: Option<String>,
    /// Unix seconds.
    from: Option<u64>,
    /// Unix seconds.
    to: Option<u64>,
    /// Entries older than this id (paging).
    before: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditDto {
    pub id: i64,
    pub at: String,
    /// `user`, `token`, `system` or `anonymous`.
    pub actor_kind: &'static str,
    pub actor: String,
    pub role: Option<&'static str>,
    pub action: String,
    pub target: String,
    pub source: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub result: &'static str,
    pub detail: Option<String>,
    /// How many events the entry stands for: 1, or the sign-ins refused during one lockout (one entry per
    /// lockout, its count growing as attempts are refused).
    pub count: u64,
}

impl From<AuditRecord> for AuditDto {
    fn from(r: AuditRecord) -> Self {
        AuditDto {
            id: r.id,
            at: rfc3339(r.at),
            actor_kind: r.actor_kind.as_str(),
            actor: r.actor,
            role: r.role.map(Role::as_str),
            action: r.action,
            target: r.target,
            source: r.source,
            result: r.result.as_str(),
            detail: r.detail,
            count: r.count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditDto>,
}

/// The audit log, newest first: every change and every sign-in, with who, when, from where and the result.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditParams), responses((status = 200, body = AuditList), ApiErrors))]
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    let result = match q.result.as_deref() {
        None => None,
        Some(r) => Some(
            r.parse::<AuditResult>()
                .map_err(|_| ApiError::bad_request(format!("unknown result `{r}` (ok, denied, failed)")))?,
        ),
    };
    let query = AuditQuery {
        actor: q.actor,
        action: q.action,
        target: q.target,
        result,
        from: q.from.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        to: q.to.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        before_id: q.before,
        limit: match q.limit {
            None => 100,
            Some(n @ 1..=500) => n,
            Some(_) => return Err(ApiError::bad_request("`limit` must be between 1 and 500")),
        },
    };
    let entries = state.access.audit(&query).await?.into_iter().map(AuditDto::from).collect();
    Ok(Json(AuditList { entries }))
}
