//! The SMS channel: a short text per recipient through a Twilio-compatible Messages API.
//!
//! Settings: `base_url` (default `https://api.twilio.com`, http or https), `account_sid` (required),
//! `auth_token` (secret, required), `from` (required: an E.164 number, or an alphanumeric sender ID of up to
//! 11 characters), `to` (required: E.164 numbers, `+` and 8 to 15 digits, comma-separated).
//!
//! Each recipient gets `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form-encoded `To`,
//! `From` and `Body` (at most 320 characters), with HTTP basic auth `account_sid:auth_token`. A 2xx answer
//! is a delivery (Twilio answers 201 with the message's `sid`). If some recipients fail, the error names
//! them and the send is retried (all recipients again: delivery is at least once) if any failure may pass.

use std::collections::{BTreeMap, BTreeSet};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use plugwatch_model::alerts::{ChannelSpec, Notification, NotificationKind};
use plugwatch_store::SecretValue;

use super::{
    MAX_QUOTE, SendContext, SendError, SettingError, bounded, check_http_url, format, one_line, optional_plain, post,
    redact_url, require_plain, require_secret,
};

const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Two SMS segments.
const MAX_BODY_CHARS: usize = 320;

fn is_e164(text: &str) -> bool {
    text.strip_prefix('+')
        .is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn is_sender_id(text: &str) -> bool {
    (1..=11).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && text.bytes().any(|b| b.is_ascii_alphabetic())
}

fn recipients(settings: &BTreeMap<String, String>) -> Result<Vec<&str>, SettingError> {
    let to = require_plain(settings, "to", "the phone numbers to text, E.164 (like +15551234567), comma-separated")?;
    let mut out = Vec::new();
    for part in to.split(',').map(str::trim) {
        if !is_e164(part) {
            return Err(SettingError::plain(
                "to",
                format!(
                    "`{}` is not a phone number in E.164 form: `+` and 8 to 15 digits, like +15551234567",
                    bounded(part, 32)
                ),
            ));
        }
        out.push(part);
    }
    if out.len() > 20 {
        return Err(SettingError::plain("to", "at most 20 numbers"));
    }
    Ok(out)
}

fn base_url(settings: &BTreeMap<String, String>) -> Result<reqwest::Url, SettingError> {
    let text = optional_plain(settings, "base_url").unwrap_or(DEFAULT_BASE_URL);
    let url = check_http_url(text).map_err(|reason| SettingError::plain("base_url", reason))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SettingError::plain("base_url", "must not have a query or fragment (the API path is added to it)"));
    }
    Ok(url)
}

fn account_sid(settings: &BTreeMap<String, String>) -> Result<&str, SettingError> {
    let sid = require_plain(settings, "account_sid", "the account SID (like AC0123…)")?;
    if sid.len() > 64 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SettingError::plain("account_sid", "must be letters and digits only (like AC0123…), at most 64"));
    }
    Ok(sid)
}

pub(super) fn check_settings(
    settings: &BTreeMap<String, String>,
    secrets_set: &BTreeSet<String>,
) -> Result<(), SettingError> {
    base_url(settings)?;
    account_sid(settings)?;
    require_secret(secrets_set, "auth_token", "the account's auth token")?;
    let from = require_plain(settings, "from", "the number (or sender ID) messages come from")?;
    if !is_e164(from) && !is_sender_id(from) {
        return Err(SettingError::plain(
            "from",
            format!(
                "`{}` is not a phone number in E.164 form (`+` and 8 to 15 digits) nor a sender ID (up to 11 letters and digits)",
                bounded(from, 32)
            ),
        ));
    }
    recipients(settings)?;
    Ok(())
}

/// The text: "[plugwatch] FIRING critical: error rate on promo-engine 1.2.0: 12% > 5%", at most 320 chars.
fn text(notification: &Notification) -> String {
    let status = format::headline_status(notification);
    let text = match notification.kind {
        NotificationKind::Alerts => {
            let severity = format::severity(notification).map(|s| format!(" {s}")).unwrap_or_default();
            let mut text = format!("[plugwatch] {status}{severity}: {}", format::about(notification));
            if let Some(first) = notification.alerts.first() {
                text.push_str(&format!(
                    ": {} {} {}",
                    format::alert_value(first),
                    first.comparison.as_str(),
                    format::value(first.metric, first.threshold)
                ));
            }
            text
        }
        NotificationKind::Test => {
            format!("[plugwatch] TEST: {}", notification.text.as_deref().unwrap_or("a test message from plugwatch"))
        }
        NotificationKind::ChannelFailing => {
            format!("[plugwatch] CHANNEL FAILING: {}", notification.text.as_deref().unwrap_or(&notification.group))
        }
    };
    bounded(&one_line(&text), MAX_BODY_CHARS)
}

/// The `sid` of Twilio's answer, if it has one.
fn sid(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let sid = value.get("sid")?.as_str()?;
    Some(bounded(sid, 64))
}

pub(super) async fn send(
    channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> Result<String, SendError> {
    let misconfigured = |e: SettingError| SendError::permanent(format!("sms channel: {e}"));
    let settings = &channel.settings;
    let base = base_url(settings).map_err(misconfigured)?;
    let account = account_sid(settings).map_err(misconfigured)?;
    let from = require_plain(settings, "from", "the sender").map_err(misconfigured)?;
    let to = recipients(settings).map_err(misconfigured)?;
    let token = secrets.get("auth_token").ok_or_else(|| SendError::permanent("sms channel has no `auth_token` set"))?;

    let endpoint = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        base.as_str().trim_end_matches('/'),
        utf8_percent_encode(account, NON_ALPHANUMERIC)
    );
    let endpoint = reqwest::Url::parse(&endpoint)
        .map_err(|_| SendError::permanent("sms channel: `base_url` makes no valid URL"))?;
    let target = format!("sms {}", redact_url(&endpoint));
    let body = text(notification);

    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for number in &to {
        let form = [("To", *number), ("From", from), ("Body", body.as_str())];
        let request = ctx.http.post(endpoint.clone()).basic_auth(account, Some(token.expose())).form(&form);
        match post(request, &target, ctx.timeout).await {
            Ok(answer) => {
                let sid = sid(&answer.body).unwrap_or_else(|| answer.summary());
                sent.push(format!("{number}: {sid}"));
            }
            Err(e) => failed.push((*number, e)),
        }
    }
    if failed.is_empty() {
        return Ok(bounded(&format!("sent to {}: {}", sent.len(), sent.join(", ")), MAX_QUOTE));
    }
    let retryable = failed.iter().any(|(_, e)| e.retryable);
    let response = failed.iter().find_map(|(_, e)| e.response.clone());
    let failures: Vec<String> = failed.iter().map(|(number, e)| format!("{number}: {}", e.message)).collect();
    let mut message = format!("sms to {} of {} recipients failed: {}", failed.len(), to.len(), failures.join("; "));
    if !sent.is_empty() {
        message.push_str(&format!("; sent to {}", sent.join(", ")));
    }
    Err(SendError { message: bounded(&message, 3 * MAX_QUOTE), retryable, response })
}
