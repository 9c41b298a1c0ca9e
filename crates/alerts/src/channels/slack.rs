//! The Slack channel: a notification as a message to an incoming webhook, with a plain-text fallback and
//! Block Kit blocks a person reads at a glance.
//!
//! Settings: `url` (secret, required): the incoming webhook's URL. Slack answers `200 ok`.
//!
//! Everything a plugin author or a rule author controls (plugin names and versions, rule names, summaries,
//! runbooks, labels, a test's text) is escaped for Slack's mrkdwn (`&`, `<`, `>`), so it cannot make links or
//! mentions of its own.

use std::collections::BTreeMap;

use plugwatch_model::alerts::{AlertNotice, Notification, NotificationKind, State};
use plugwatch_store::SecretValue;
use serde_json::{Value, json};

use super::{SendContext, SendError, bounded, format, post, redact_url};

/// Slack takes at most 50 blocks; a header, the alerts, and a line saying how many more there are.
const MAX_ALERT_BLOCKS: usize = 20;
/// A section's text may be at most 3000 characters.
const MAX_SECTION: usize = 2900;

/// `&`, `<` and `>` as Slack's mrkdwn wants them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A link in mrkdwn: `<url|label>`. A URL with `|`, `<`, `>` or spaces in it is not made a link.
fn link(url: &str, label: &str) -> Option<String> {
    (!url.contains(['|', '<', '>', ' '])).then(|| format!("<{}|{}>", url.replace('&', "&amp;"), escape(label)))
}

fn emoji(state: State) -> &'static str {
    match state {
        State::Firing => "🔥",
        State::NoData => "❔",
        _ => "✅",
    }
}

/// The header line: "🔥 FIRING: error rate > 5% — 3 alerts", escaped.
fn header(notification: &Notification) -> String {
    match notification.kind {
        NotificationKind::Test => "🧪 TEST: a test notification from plugwatch".to_owned(),
        NotificationKind::ChannelFailing => {
            "⚠️ CHANNEL FAILING: a plugwatch notification channel keeps failing".to_owned()
        }
        NotificationKind::Alerts => {
            let (mark, status) = if format::firing(notification) { ("🔥", "FIRING") } else { ("✅", "RESOLVED") };
            let count = match notification.alerts.len() {
                1 => "1 alert".to_owned(),
                n => format!("{n} alerts"),
            };
            match notification.alerts.first() {
                // "error rate > 5%" when the rule is named after its metric, else "payments slow (latency …)".
                Some(first) if first.rule_name.trim() == format::metric_label(first.metric) => {
                    format!("{mark} {status}: {} — {count}", escape(&format::condition(first)))
                }
                Some(first) => format!(
                    "{mark} {status}: {} ({}) — {count}",
                    escape(&first.rule_name),
                    escape(&format::condition(first))
                ),
                None => format!("{mark} {status}: {}", escape(&notification.group)),
            }
        }
    }
}

/// One alert as a mrkdwn section text.
fn alert_text(alert: &AlertNotice, ctx: &SendContext<'_>) -> String {
    let on = match (&alert.series.plugin, &alert.series.version) {
        (Some(plugin), Some(version)) => format!("plugin *{}* version {}", escape(plugin), escape(version)),
        (Some(plugin), None) => format!("plugin *{}*", escape(plugin)),
        (None, _) => "the *host*".to_owned(),
    };
    let mut text = format!(
        "{} *{}* {} on {on} ({})\n{}: *{}* (threshold {} {}) since {}",
        emoji(alert.state),
        escape(&alert.rule_name),
        format::state_label(alert.state),
        alert.severity,
        format::metric_label(alert.metric),
        format::alert_value(alert),
        alert.comparison.as_str().replace('<', "&lt;").replace('>', "&gt;"),
        format::value(alert.metric, alert.threshold),
        format::time(alert.since),
    );
    if !alert.summary.trim().is_empty() {
        text.push('\n');
        text.push_str(&escape(alert.summary.trim()));
    }
    let mut links = Vec::new();
    let runbook = alert.runbook.trim();
    if let Some(url) = format::runbook_link(runbook) {
        links.extend(link(url, "Runbook"));
    } else if !runbook.is_empty() {
        links.push(format!("Runbook: {}", escape(runbook)));
    }
    if let Some(url) = format::alert_url(ctx.dashboard_url, alert) {
        let label = if alert.series.plugin.is_some() { "Plugin dashboard" } else { "Alerts" };
        links.extend(link(&url, label));
    }
    if !links.is_empty() {
        text.push('\n');
        text.push_str(&links.join(" · "));
    }
    if !alert.labels.is_empty() {
        let labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect();
        text.push_str(&format!("\nLabels: {}", labels.join(", ")));
    }
    bounded(&text, MAX_SECTION)
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The message: `text` (the fallback notifications show) and `blocks`.
pub(super) fn message(notification: &Notification, ctx: &SendContext<'_>) -> Value {
    let header = header(notification);
    let mut blocks = vec![section(format!("*{header}*"))];
    let mut fallback = header.clone();
    match notification.kind {
        NotificationKind::Alerts => {
            for alert in notification.alerts.iter().take(MAX_ALERT_BLOCKS) {
                blocks.push(section(alert_text(alert, ctx)));
            }
            let more = notification.alerts.len().saturating_sub(MAX_ALERT_BLOCKS);
            if more > 0 {
                let all = format::alerts_url(ctx.dashboard_url).and_then(|u| link(&u, "see them all"));
                let all = all.map(|l| format!(": {l}")).unwrap_or_default();
                blocks.push(section(format!("…and {more} more{all}")));
            }
            if let Some(first) = notification.alerts.first() {
                fallback.push_str(&format!(" — {}: {}", escape(&format::series(first)), format::alert_value(first)));
            }
        }
        NotificationKind::Test | NotificationKind::ChannelFailing => {
            let text = notification.text.as_deref().unwrap_or("").trim();
            if !text.is_empty() {
                blocks.push(section(bounded(&escape(text), MAX_SECTION)));
                fallback.push_str(&format!(": {}", escape(text)));
            }
            if let Some(l) = format::alerts_url(ctx.dashboard_url).and_then(|u| link(&u, "plugwatch alerts")) {
                blocks.push(section(l));
            }
        }
    }
    json!({"text": bounded(&fallback, 1000), "blocks": blocks})
}

pub(super) async fn send(
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> Result<String, SendError> {
    let url = secrets.get("url").ok_or_else(|| SendError::permanent("slack channel has no `url` set"))?;
    let url = reqwest::Url::parse(url.expose().trim())
        .map_err(|_| SendError::permanent("slack channel's `url` is not a valid URL"))?;
    let target = format!("slack {}", redact_url(&url));
    let body = serde_json::to_vec(&message(notification, ctx)).expect("a JSON value serializes");
    let request = ctx.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    Ok(post(request, &target, ctx.timeout).await?.summary())
}
