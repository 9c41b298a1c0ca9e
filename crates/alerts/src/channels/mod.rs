//! Notifier channels: each kind's settings and their validation, and delivery of one notification through
//! one channel (webhook, Slack, e-mail over SMTP, SMS through a Twilio-compatible API).
//!
//! A channel's settings are plain (stored and returned as written) or secret (written only, stored sealed,
//! handed to [`send`] as [`SecretValue`]s). Which are which is [`secret_settings`] and [`known_settings`];
//! [`check_settings`] and [`check_secret`] validate them before they are stored, and [`send`] checks them
//! again, so a channel stored by an older version fails with a readable error rather than a strange one.
//!
//! Delivery is at least once: the outbox retries an attempt that failed with [`SendError::retryable`], so a
//! receiver may see a notification twice (webhooks carry the outbox row's id to drop duplicates with).
//! Nothing here logs or returns a secret: URLs in messages are reduced to `scheme://host[:port]`, and every
//! message and receiver answer is scrubbed of the channel's secret values besides.

mod email;
pub(crate) mod format;
mod slack;
mod sms;
mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use plugwatch_model::alerts::{ChannelKind, ChannelSpec, Notification};
use plugwatch_store::SecretValue;

pub use webhook::{WEBHOOK_SCHEMA_VERSION, verify_webhook, webhook_signature};

/// The most of a receiver's answer body that is read.
const MAX_BODY: usize = 64 * 1024;
/// The most characters of a receiver's answer, or of anything else quoted, that goes into a message.
const MAX_QUOTE: usize = 300;

const WEBHOOK_SECRETS: &[&str] = &["url", "signing_key"];
const WEBHOOK_KNOWN: &[&str] = &["url", "signing_key"];
const SLACK_SECRETS: &[&str] = &["url"];
const SLACK_KNOWN: &[&str] = &["url"];
const EMAIL_SECRETS: &[&str] = &["password"];
const EMAIL_KNOWN: &[&str] = &["host", "port", "tls", "username", "password", "from", "to"];
const SMS_SECRETS: &[&str] = &["auth_token"];
const SMS_KNOWN: &[&str] = &["base_url", "account_sid", "auth_token", "from", "to"];

/// Settings each channel kind reads. Secret settings are write-only: stored sealed, never returned.
pub fn secret_settings(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Webhook => WEBHOOK_SECRETS,
        ChannelKind::Slack => SLACK_SECRETS,
        ChannelKind::Email => EMAIL_SECRETS,
        ChannelKind::Sms => SMS_SECRETS,
    }
}

/// Every setting name a kind accepts (secret and plain), for validation messages.
pub fn known_settings(kind: ChannelKind) -> &'static [&'static str] {
    match kind {
        ChannelKind::Webhook => WEBHOOK_KNOWN,
        ChannelKind::Slack => SLACK_KNOWN,
        ChannelKind::Email => EMAIL_KNOWN,
        ChannelKind::Sms => SMS_KNOWN,
    }
}

/// A setting that is missing, unknown or malformed: `field` is the path the API reports, e.g.
/// "settings.to", "settings.url"; `reason` says what is wrong in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingError {
    pub field: String,
    pub reason: String,
}

impl SettingError {
    /// An error in the plain setting `name`.
    fn plain(name: &str, reason: impl Into<String>) -> SettingError {
        SettingError { field: format!("settings.{name}"), reason: reason.into() }
    }

    /// An error in the secret setting `name`. Secrets are reported under `settings.` too: the API takes a
    /// channel's settings as one object and keeps the secret ones apart by name.
    fn secret(name: &str, reason: impl Into<String>) -> SettingError {
        SettingError { field: format!("settings.{name}"), reason: reason.into() }
    }
}

/// Checks a channel's plain settings and which secrets are (or will be) set. Unknown names, missing required
/// settings, a URL that is not http(s), an address that is not an e-mail address / phone number, a port
/// that is not a number, an unknown `tls` mode are errors. Secret values are checked by
/// `check_secret` (so the caller can validate a new secret without storing it).
pub fn check_settings(
    kind: ChannelKind,
    settings: &BTreeMap<String, String>,
    secrets_set: &BTreeSet<String>,
) -> Result<(), SettingError> {
    let secrets = secret_settings(kind);
    let known = known_settings(kind);
    for name in settings.keys() {
        if secrets.contains(&name.as_str()) {
            return Err(SettingError::plain(
                name,
                format!("`{name}` is a secret setting: set it as a secret, not as a plain setting"),
            ));
        }
        if !known.contains(&name.as_str()) {
            return Err(SettingError::plain(name, unknown_reason(kind, name)));
        }
    }
    for name in secrets_set {
        if !secrets.contains(&name.as_str()) {
            let reason = if known.contains(&name.as_str()) {
                format!("`{name}` is a plain setting, not a secret")
            } else {
                unknown_reason(kind, name)
            };
            return Err(SettingError::secret(name, reason));
        }
    }
    match kind {
        ChannelKind::Webhook | ChannelKind::Slack => {
            require_secret(secrets_set, "url", &format!("the {kind} URL to post to"))
        }
        ChannelKind::Email => email::check_settings(settings, secrets_set),
        ChannelKind::Sms => sms::check_settings(settings, secrets_set),
    }
}

/// Checks one secret setting's value. The reason never quotes the value.
pub fn check_secret(kind: ChannelKind, name: &str, value: &SecretValue) -> Result<(), SettingError> {
    if !secret_settings(kind).contains(&name) {
        let reason = if known_settings(kind).contains(&name) {
            format!("`{name}` is a plain setting, not a secret")
        } else {
            unknown_reason(kind, name)
        };
        return Err(SettingError::secret(name, reason));
    }
    let text = value.expose();
    if text.trim().is_empty() {
        return Err(SettingError::secret(name, "must not be empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(SettingError::secret(name, "must not contain control characters (line breaks, tabs)"));
    }
    if text.len() > 4096 {
        return Err(SettingError::secret(name, "must be at most 4096 bytes"));
    }
    match (kind, name) {
        (ChannelKind::Webhook | ChannelKind::Slack, "url") => {
            check_http_url(text).map(drop).map_err(|reason| SettingError::secret(name, reason))
        }
        (ChannelKind::Sms, "auth_token") if text.contains(char::is_whitespace) => {
            Err(SettingError::secret(name, "must not contain spaces"))
        }
        _ => Ok(()),
    }
}

fn unknown_reason(kind: ChannelKind, name: &str) -> String {
    format!("unknown setting `{}`; {kind} channels accept: {}", bounded(name, 64), known_settings(kind).join(", "))
}

fn require_secret(secrets_set: &BTreeSet<String>, name: &str, what: &str) -> Result<(), SettingError> {
    if secrets_set.contains(name) {
        Ok(())
    } else {
        Err(SettingError::secret(name, format!("required: {what} (a secret setting)")))
    }
}

/// A required plain setting's value, trimmed and not empty.
fn require_plain<'s>(settings: &'s BTreeMap<String, String>, name: &str, what: &str) -> Result<&'s str, SettingError> {
    match settings.get(name).map(|v| v.trim()) {
        None => Err(SettingError::plain(name, format!("required: {what}"))),
        Some("") => Err(SettingError::plain(name, format!("must not be empty: {what}"))),
        Some(value) => Ok(value),
    }
}

/// An optional plain setting's value, trimmed; empty counts as not set.
fn optional_plain<'s>(settings: &'s BTreeMap<String, String>, name: &str) -> Option<&'s str> {
    settings.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Why `text` is not an http(s) URL with a host, in words that do not quote it (it may be a secret).
fn check_http_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("must be an http:// or https:// URL, not {}://", bounded(url.scheme(), 16)));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(url)
}

/// What a send needs besides the channel.
pub struct SendContext<'a> {
    pub http: &'a reqwest::Client,
    /// Bound on one attempt (connect + request + response, or the whole SMTP dialogue).
    pub timeout: Duration,
    /// Base URL of plugwatch's dashboard (e.g. "https://plugwatch.example.com"), for links; None: no links.
    pub dashboard_url: Option<&'a str>,
    /// The outbox row's id: sent as `X-Plugwatch-Delivery` (webhook) so receivers can drop duplicates
    /// (delivery is at least once).
    pub delivery_id: i64,
    pub now: SystemTime,
}

/// Why a send failed; `retryable` false for answers that retrying cannot change (e.g. HTTP 400, 401, 403,
/// 404, 410; SMTP 5xx permanent rejection of the recipient), true for timeouts, connection errors, 429, 5xx.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
    /// What the receiver answered, bounded to 300 chars.
    pub response: Option<String>,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), retryable: false, response: None }
    }
}

/// Delivers one notification through one channel; Ok is what the receiver answered, e.g. "HTTP 200 OK: ok"
/// or "250 2.0.0 Ok: queued as 1234" (bounded to 300 chars). Never logs or returns a secret value.
pub async fn send(
    channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> Result<String, SendError> {
    let kind = channel.kind;
    let set: BTreeSet<String> = secrets.keys().cloned().collect();
    let checked = check_settings(kind, &channel.settings, &set)
        .and_then(|()| secrets.iter().try_for_each(|(name, value)| check_secret(kind, name, value)));
    if let Err(e) = checked {
        return Err(SendError::permanent(format!("channel `{}` is misconfigured: {e}", bounded(&channel.name, 100))));
    }
    tracing::debug!(channel = %channel.name, %kind, delivery = ctx.delivery_id, "sending a notification");
    let result = match kind {
        ChannelKind::Webhook => webhook::send(channel, secrets, notification, ctx).await,
        ChannelKind::Slack => slack::send(secrets, notification, ctx).await,
        ChannelKind::Email => email::send(channel, secrets, notification, ctx).await,
        ChannelKind::Sms => sms::send(channel, secrets, notification, ctx).await,
    };
    // Belt and braces: whatever a library or a receiver put in a message, no secret value leaves here.
    let secrets = &secret_texts(channel, secrets);
    match result {
        Ok(answer) => Ok(bounded(&scrub(&answer, secrets), MAX_QUOTE)),
        Err(e) => {
            let error = SendError {
                message: scrub(&e.message, secrets),
                retryable: e.retryable,
                response: e.response.map(|r| bounded(&scrub(&r, secrets), MAX_QUOTE)),
            };
            tracing::debug!(channel = %channel.name, %kind, delivery = ctx.delivery_id, retryable = error.retryable,
                error = %error.message, "a notification was not delivered");
            Err(error)
        }
    }
}

/// The client `send` expects: rustls, no proxy from the environment, no redirects followed (a redirect is an
/// error naming the status), a user agent `plugwatch/<version>`.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("plugwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with rustls and no proxy builds")
}

/// What must never appear in a message: each secret value and, for URLs, their path, query and the parts of
/// them that look like keys (receivers like to echo the path they could not route); for SMS, the basic-auth
/// encoding of the account and its token.
fn secret_texts(channel: &ChannelSpec, secrets: &BTreeMap<String, SecretValue>) -> Vec<String> {
    let mut out = Vec::new();
    for value in secrets.values() {
        let value = value.expose().trim();
        out.push(value.to_owned());
        if let Ok(url) = reqwest::Url::parse(value) {
            if url.path().len() > 1 {
                out.push(url.path().to_owned());
            }
            out.extend(url.query().map(str::to_owned));
            out.extend(url.password().map(str::to_owned));
            let segments = url.path_segments().into_iter().flatten().map(str::to_owned);
            let query_values = url.query_pairs().map(|(_, v)| v.into_owned());
            out.extend(segments.chain(query_values).filter(|part| {
                part.len() >= 6 && !part.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'.')
            }));
        }
    }
    if let (ChannelKind::Sms, Some(sid), Some(token)) =
        (channel.kind, channel.settings.get("account_sid"), secrets.get("auth_token"))
    {
        use base64::Engine as _;
        let pair = format!("{}:{}", sid.trim(), token.expose());
        out.push(base64::engine::general_purpose::STANDARD.encode(pair));
    }
    out.retain(|s| s.len() >= 4);
    // Longest first, so that a part never leaves a piece of a longer secret behind.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every one of `secrets` replaced by `[redacted]`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    out
}

/// `text` cut to at most `max` characters, with `…` marking a cut.
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text[at..].chars().nth(1).is_some() => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

/// A URL reduced to `scheme://host[:port]`: paths and queries of webhook URLs often carry keys.
fn redact_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// POSTs one request and turns the answer into `Ok("HTTP 200 OK: <body>")` or a [`SendError`]. `target` is
/// what the message names (a redacted URL); the whole attempt, body included, is bounded by `timeout`.
async fn post(request: reqwest::RequestBuilder, target: &str, timeout: Duration) -> Result<HttpAnswer, SendError> {
    let attempt = async {
        let mut response = request.timeout(timeout).send().await.map_err(|e| http_error(e, target))?;
        let status = response.status();
        let location =
            response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while body.len() < MAX_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]),
                Ok(None) => break,
                Err(e) => return Err(http_error(e, target)),
            }
        }
        Ok(HttpAnswer { status, location, body })
    };
    let answer = match tokio::time::timeout(timeout, attempt).await {
        Ok(answer) => answer?,
        Err(_) => return Err(timed_out(target, timeout)),
    };
    if answer.status.is_success() {
        return Ok(answer);
    }
    let summary = answer.summary();
    let (message, retryable) = if answer.status.is_redirection() {
        let to = answer
            .location
            .as_deref()
            .and_then(|l| reqwest::Url::parse(l).ok())
            .map(|u| format!(" to {}", redact_url(&u)))
            .unwrap_or_default();
        (
            format!(
                "{target} answered HTTP {}: a redirect{to}, which is not followed; set the channel's URL to where it points",
                answer.status_text()
            ),
            false,
        )
    } else {
        let code = answer.status.as_u16();
        let retryable = answer.status.is_server_error() || matches!(code, 408 | 425 | 429);
        (format!("{target} answered {summary}"), retryable)
    };
    Err(SendError { message: bounded(&message, 2 * MAX_QUOTE), retryable, response: Some(summary) })
}

/// A receiver's answer: its status and (the start of) its body.
struct HttpAnswer {
    status: reqwest::StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn status_text(&self) -> String {
        match self.status.canonical_reason() {
            Some(reason) => format!("{} {reason}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }

    /// `HTTP 200 OK: ok`: status and body on one line, bounded.
    fn summary(&self) -> String {
        let body = one_line(&String::from_utf8_lossy(&self.body));
        if body.is_empty() {
            format!("HTTP {}", self.status_text())
        } else {
            bounded(&format!("HTTP {}: {body}", self.status_text()), MAX_QUOTE)
        }
    }
}

/// Whitespace runs (line breaks included) collapsed to single spaces, control characters dropped.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_QUOTE * 4));
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
        if out.len() > MAX_QUOTE * 4 {
            break;
        }
    }
    out
}

fn timed_out(target: &str, timeout: Duration) -> SendError {
    SendError {
        message: format!("{target} did not answer within {}", humantime::format_duration(timeout)),
        retryable: true,
        response: None,
    }
}

/// A request that got no answer, in words that name neither the URL's path nor its query.
fn http_error(error: reqwest::Error, target: &str) -> SendError {
    if error.is_timeout() {
        return SendError { message: format!("{target} did not answer in time"), retryable: true, response: None };
    }
    let what = if error.is_connect() { "could not connect to" } else { "request failed to" };
    let error = error.without_url();
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    let detail = if causes.is_empty() { error.to_string() } else { causes.join(": ") };
    SendError {
        message: bounded(&format!("{what} {target}: {detail}"), 2 * MAX_QUOTE),
        retryable: true,
        response: None,
    }
}
