//! The webhook channel: a signed JSON POST of each notification, in a versioned schema receivers can rely on.
//!
//! Settings: `url` (secret, required, http or https: webhook URLs often carry keys) and `signing_key`
//! (secret, optional).
//!
//! # The request
//!
//! `POST <url>` with `Content-Type: application/json` and these headers:
//! - `X-Plugwatch-Timestamp`: when it was sent, in Unix seconds.
//! - `X-Plugwatch-Delivery`: the outbox row's id. Delivery is at least once: a receiver drops a delivery id it
//!   has already seen.
//! - `X-Plugwatch-Signature` (only with a signing key): `sha256=<hex>`, the HMAC-SHA256 with the signing key
//!   of `"{timestamp}.{body}"` — the timestamp header's value, a dot, and the body's bytes as sent. Receivers
//!   check it with [`verify_webhook`] and refuse timestamps more than 5 minutes from their clock (replays).
//!
//! Any 2xx answer is a delivery; 3xx is an error (redirects are not followed); 408, 425, 429 and 5xx are
//! retried; other 4xx are not.
//!
//! # The body, schema version "1"
//!
//! ```json
//! {"version": "1", "kind": "alerts", "group": "rule:7", "status": "firing", "text": null,
//!  "sent_at": "2026-12-01T13:00:00Z", "alerts": [{"rule_id": 7, "rule": "error rate", "state": "firing",
//!  "severity": "critical", "plugin": "promo-engine", "version": "1.2.0", "metric": "error_rate",
//!  "comparison": ">", "threshold": 0.05, "value": 0.12, "since": "2026-12-01T12:55:00Z",
//!  "summary": "…", "runbook": "https://…", "labels": {"team": "payments"},
//!  "url": "https://plugwatch.example.com/plugin-monitoring/plugins/promo-engine"}]}
//! ```
//!
//! - `version`: the schema version, [`WEBHOOK_SCHEMA_VERSION`]. Fields may be added within a version; a
//!   field's meaning or type changes only with a new version.
//! - `kind`: `alerts` (alerts that fire, resolve, have no data or repeat), `test` (a test a user asked for:
//!   `text` says so, `alerts` is empty) or `channel_failing` (another channel keeps failing: `text` names it
//!   and its last error, `alerts` is empty).
//! - `group`: alerts of one rule share a group (for `channel_failing`, the failing channel's name).
//! - `status`: `firing` if any alert is `firing` or `no_data`, else `resolved` (so `resolved` for `test` and
//!   `channel_failing`, which carry no alerts).
//! - `text`: the message of a `test` or `channel_failing` notification; null for `alerts`.
//! - `sent_at`: when this request was made, RFC 3339 UTC to the second.
//! - `alerts`, each:
//!   - `rule_id` (integer) and `rule` (its name);
//!   - `state`: `firing`, `no_data` or `resolved`;
//!   - `severity`: `info`, `warning` or `critical`;
//!   - `plugin`, `version`: the plugin version the alert is about; both null for a host alert;
//!   - `metric`: what the rule measures (`error_rate`, `latency_p99`, `host_cpu`, …), in its unit: seconds,
//!     ratios (0 to 1), counts, per second, bytes or instructions;
//!   - `comparison`: `>`, `>=`, `<` or `<=`; `threshold`: a number in the metric's unit;
//!   - `value`: the value last evaluated, or null when there was no data;
//!   - `since`: when the alert entered its state, RFC 3339 UTC;
//!   - `summary`, `runbook`: the rule's texts (the summary with its placeholders filled in), as written;
//!   - `labels`: an object of string values, the rule's labels;
//!   - `url`: the plugin's dashboard page (`{dashboard}/plugin-monitoring/plugins/{plugin}`, the name
//!     percent-encoded) or, for a host alert, `{dashboard}/plugin-monitoring/alerts`; null when plugwatch
//!     knows no dashboard URL.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use plugwatch_model::alerts::{ChannelSpec, Notification, NotificationKind};
use plugwatch_store::SecretValue;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{SendContext, SendError, format, post, redact_url};

/// The webhook body schema version and signature helpers, public so receivers and tests can verify.
pub const WEBHOOK_SCHEMA_VERSION: &str = "1";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `sha256=<hex HMAC-SHA256(key, "{timestamp}.{body}")>`
pub fn webhook_signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(key, timestamp, body).finalize().into_bytes()))
}

/// Verifies a signature and that `timestamp` is within `window` of `now` (the replay window; receivers
/// should use 5 minutes). Constant-time comparison (the `hmac` crate's `verify_slice`).
pub fn verify_webhook(
    key: &[u8],
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: SystemTime,
    window: Duration,
) -> bool {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => -i128::from(e.duration().as_secs()),
    };
    if (now - i128::from(timestamp)).unsigned_abs() > u128::from(window.as_secs()) {
        return false;
    }
    let Some(hex_mac) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    mac(key, timestamp, body).verify_slice(&expected).is_ok()
}

/// The body of a notification, as documented in the module.
pub(super) fn body(notification: &Notification, ctx: &SendContext<'_>) -> Value {
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|a| {
            json!({
                "rule_id": a.rule_id,
                "rule": a.rule_name,
                "state": a.state.as_str(),
                "severity": a.severity.as_str(),
                "plugin": a.series.plugin,
                "version": a.series.version,
                "metric": a.metric.as_str(),
                "comparison": a.comparison.as_str(),
                "threshold": finite(a.threshold),
                "value": a.value.and_then(finite),
                "since": format::time(a.since),
                "summary": a.summary,
                "runbook": a.runbook,
                "labels": a.labels,
                "url": format::alert_url(ctx.dashboard_url, a),
            })
        })
        .collect();
    let text = match notification.kind {
        NotificationKind::Alerts => None,
        _ => notification.text.as_deref(),
    };
    json!({
        "version": WEBHOOK_SCHEMA_VERSION,
        "kind": notification.kind.as_str(),
        "group": notification.group,
        "status": format::status(notification),
        "text": text,
        "sent_at": format::time(ctx.now),
        "alerts": alerts,
    })
}

/// A number JSON can carry (NaN and infinities become null).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub(super) async fn send(
    _channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> Result<String, SendError> {
    let url = secrets.get("url").ok_or_else(|| SendError::permanent("webhook channel has no `url` set"))?;
    let url = reqwest::Url::parse(url.expose().trim())
        .map_err(|_| SendError::permanent("webhook channel's `url` is not a valid URL"))?;
    let target = format!("webhook {}", redact_url(&url));
    let body = serde_json::to_vec(&body(notification, ctx)).expect("a JSON value serializes");
    let timestamp = match ctx.now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    };
    let mut request = ctx
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Plugwatch-Timestamp", timestamp.to_string())
        .header("X-Plugwatch-Delivery", ctx.delivery_id.to_string());
    if let Some(key) = secrets.get("signing_key") {
        request = request.header("X-Plugwatch-Signature", webhook_signature(key.expose().as_bytes(), timestamp, &body));
    }
    let answer = post(request.body(body), &target, ctx.timeout).await?;
    Ok(answer.summary())
}
