//! The e-mail channel: a notification as a multipart/alternative message (plain text and HTML) sent over
//! SMTP.
//!
//! Settings: `host` (required), `port` (default 25 for `tls = none`, 587 for `starttls`, 465 for `tls`),
//! `tls` (`none`, `starttls` (the default: the connection must upgrade) or `tls`: TLS from the first byte),
//! `username` and `password` (secret; both or neither), `from` (an address, optionally with a name:
//! `plugwatch <alerts@example.com>`), `to` (addresses, comma-separated).
//!
//! The whole SMTP dialogue of one attempt is bounded by the send's timeout. A 5xx answer (permanent: a
//! recipient refused, bad credentials) is not retried; 4xx, timeouts and connection failures are. Everything
//! rule and plugin authors control is HTML-escaped in the HTML part.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use plugwatch_model::alerts::{AlertNotice, ChannelSpec, Notification, NotificationKind};
use plugwatch_store::SecretValue;

use super::{
    MAX_QUOTE, SendContext, SendError, SettingError, bounded, format, one_line, optional_plain, require_plain,
    require_secret,
};

/// The longest subject line sent (characters).
const MAX_SUBJECT: usize = 150;

/// How the SMTP connection is secured (the `tls` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    None,
    StartTls,
    Tls,
}

impl Security {
    fn default_port(self) -> u16 {
        match self {
            Security::None => 25,
            Security::StartTls => 587,
            Security::Tls => 465,
        }
    }
}

fn tls(settings: &BTreeMap<String, String>) -> Result<Security, SettingError> {
    match optional_plain(settings, "tls") {
        None | Some("starttls") => Ok(Security::StartTls),
        Some("none") => Ok(Security::None),
        Some("tls") => Ok(Security::Tls),
        Some(other) => Err(SettingError::plain(
            "tls",
            format!(
                "`{}` is not a TLS mode; use `starttls` (upgrade the connection, the default), `tls` (TLS from the start, usually port 465) or `none`",
                bounded(other, 32)
            ),
        )),
    }
}

fn port(settings: &BTreeMap<String, String>, tls: Security) -> Result<u16, SettingError> {
    match optional_plain(settings, "port") {
        None => Ok(tls.default_port()),
        Some(text) => match text.parse::<u16>() {
            Ok(0) | Err(_) => {
                Err(SettingError::plain("port", format!("`{}` is not a port number (1 to 65535)", bounded(text, 32))))
            }
            Ok(port) => Ok(port),
        },
    }
}

fn mailbox(name: &str, text: &str) -> Result<Mailbox, SettingError> {
    Mailbox::from_str(text.trim()).map_err(|_| {
        SettingError::plain(
            name,
            format!("`{}` is not an e-mail address (like alerts@example.com)", bounded(text.trim(), 100)),
        )
    })
}

fn recipients(settings: &BTreeMap<String, String>) -> Result<Vec<Mailbox>, SettingError> {
    let to = require_plain(settings, "to", "the addresses to send to, comma-separated")?;
    let mut out = Vec::new();
    for part in to.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(SettingError::plain(
                "to",
                "an empty address in the list; separate addresses with single commas",
            ));
        }
        out.push(mailbox("to", part)?);
    }
    if out.len() > 50 {
        return Err(SettingError::plain("to", "at most 50 addresses"));
    }
    Ok(out)
}

pub(super) fn check_settings(
    settings: &BTreeMap<String, String>,
    secrets_set: &BTreeSet<String>,
) -> Result<(), SettingError> {
    let host = require_plain(settings, "host", "the SMTP server's host name")?;
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') || host.contains("://") {
        return Err(SettingError::plain(
            "host",
            "a host name or IP address only, like smtp.example.com (no scheme, path or port)",
        ));
    }
    let tls = tls(settings)?;
    port(settings, tls)?;
    mailbox("from", require_plain(settings, "from", "the address messages come from")?)?;
    recipients(settings)?;
    match (optional_plain(settings, "username"), secrets_set.contains("password")) {
        (Some(_), false) => require_secret(secrets_set, "password", "the password that goes with `username`"),
        (None, true) => Err(SettingError::plain("username", "required when a password is set: the two go together")),
        _ => Ok(()),
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "[plugwatch] FIRING critical: error rate on promo-engine 1.2.0", on one line and bounded.
fn subject(channel: &ChannelSpec, notification: &Notification) -> String {
    let status = format::headline_status(notification);
    let subject = match notification.kind {
        NotificationKind::Alerts => match format::severity(notification) {
            Some(severity) => format!("[plugwatch] {status} {severity}: {}", format::about(notification)),
            None => format!("[plugwatch] {status}: {}", format::about(notification)),
        },
        NotificationKind::Test => format!("[plugwatch] TEST: a test message for channel {}", channel.name),
        NotificationKind::ChannelFailing => format!("[plugwatch] CHANNEL FAILING: {}", notification.group),
    };
    bounded(&one_line(&subject), MAX_SUBJECT)
}

fn alert_lines(alert: &AlertNotice, ctx: &SendContext<'_>) -> Vec<(&'static str, String, Option<String>)> {
    let mut rows = vec![
        ("State", format!("{} ({})", format::state_label(alert.state), alert.severity), None),
        ("On", format::series(alert), format::alert_url(ctx.dashboard_url, alert)),
        (
            "Value",
            format!(
                "{}: {} (threshold {} {})",
                format::metric_label(alert.metric),
                format::alert_value(alert),
                alert.comparison.as_str(),
                format::value(alert.metric, alert.threshold)
            ),
            None,
        ),
        ("Since", format::time(alert.since), None),
    ];
    if !alert.summary.trim().is_empty() {
        rows.push(("Summary", alert.summary.trim().to_owned(), None));
    }
    let runbook = alert.runbook.trim();
    if !runbook.is_empty() {
        rows.push(("Runbook", runbook.to_owned(), format::runbook_link(runbook).map(str::to_owned)));
    }
    if !alert.labels.is_empty() {
        let labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("Labels", labels.join(", "), None));
    }
    rows
}

/// The plain-text and the HTML body.
fn bodies(channel: &ChannelSpec, notification: &Notification, ctx: &SendContext<'_>) -> (String, String) {
    let title = match notification.kind {
        NotificationKind::Alerts => {
            format!("{}: {}", format::headline_status(notification), format::about(notification))
        }
        NotificationKind::Test => format!("TEST: a test message for plugwatch channel {}", channel.name),
        NotificationKind::ChannelFailing => format!("CHANNEL FAILING: {}", notification.group),
    };
    let mut text = format!("{title}\n\n");
    let mut html =
        format!("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n<h2>{}</h2>\n", escape_html(&title));
    if let Some(body) = notification.text.as_deref().filter(|t| !t.trim().is_empty()) {
        text.push_str(body.trim());
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>\n", escape_html(body.trim())));
    }
    for alert in &notification.alerts {
        text.push_str(&format!("{}\n", alert.rule_name));
        html.push_str(&format!("<h3>{}</h3>\n<table>\n", escape_html(&alert.rule_name)));
        for (label, value, link) in alert_lines(alert, ctx) {
            text.push_str(&format!("  {label}: {value}\n"));
            if let Some(url) = &link {
                text.push_str(&format!("  {:width$}  {url}\n", "", width = label.len()));
            }
            let cell = match link {
                Some(url) => format!("<a href=\"{}\">{}</a>", escape_html(&url), escape_html(&value)),
                None => escape_html(&value),
            };
            html.push_str(&format!("<tr><th align=\"left\">{label}</th><td>{cell}</td></tr>\n"));
        }
        text.push('\n');
        html.push_str("</table>\n");
    }
    if let Some(url) = format::alerts_url(ctx.dashboard_url) {
        text.push_str(&format!("All alerts: {url}\n"));
        html.push_str(&format!("<p><a href=\"{0}\">All alerts</a></p>\n", escape_html(&url)));
    }
    text.push_str(&format!("-- \nSent by plugwatch, channel {}, at {}.\n", channel.name, format::time(ctx.now)));
    html.push_str(&format!(
        "<p style=\"color: #666\">Sent by plugwatch, channel {}, at {}.</p>\n</body></html>\n",
        escape_html(&channel.name),
        format::time(ctx.now)
    ));
    (text, html)
}

fn smtp_error(error: lettre::transport::smtp::Error, target: &str) -> SendError {
    let text = one_line(&error.to_string());
    let mut detail = text.clone();
    let mut reply = None;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = one_line(&cause.to_string());
        if !detail.contains(&cause_text) {
            detail.push_str(": ");
            detail.push_str(&cause_text);
        }
        reply.get_or_insert(cause_text);
        source = cause.source();
    }
    let retryable = !(error.is_permanent() || error.is_client());
    // The server's reply, as it said it: "535 5.7.8 Authentication credentials invalid".
    let response =
        error.status().map(|code| bounded(&format!("{code} {}", reply.as_deref().unwrap_or(&text)), MAX_QUOTE));
    SendError { message: bounded(&format!("{target}: {detail}"), 2 * MAX_QUOTE), retryable, response }
}

pub(super) async fn send(
    channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> Result<String, SendError> {
    let misconfigured = |e: SettingError| SendError::permanent(format!("email channel: {e}"));
    let settings = &channel.settings;
    let host = require_plain(settings, "host", "the SMTP server").map_err(misconfigured)?;
    let tls = tls(settings).map_err(misconfigured)?;
    let port = port(settings, tls).map_err(misconfigured)?;
    let from = mailbox("from", require_plain(settings, "from", "the sender").map_err(misconfigured)?)
        .map_err(misconfigured)?;
    let to = recipients(settings).map_err(misconfigured)?;
    let target = format!("smtp {host}:{port}");

    let (text, html) = bodies(channel, notification, ctx);
    let message = to
        .into_iter()
        .fold(Message::builder().from(from), |builder, mailbox| builder.to(mailbox))
        .subject(subject(channel, notification))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| SendError::permanent(format!("email channel: the message could not be built: {e}")))?;

    let builder = match tls {
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        Security::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| smtp_error(e, &target))?
        }
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| smtp_error(e, &target))?,
    };
    let mut builder = builder.port(port).timeout(Some(ctx.timeout));
    if let (Some(username), Some(password)) = (optional_plain(settings, "username"), secrets.get("password")) {
        builder = builder.credentials(Credentials::new(username.to_owned(), password.expose().to_owned()));
    }
    let transport = builder.build();
    let response = match tokio::time::timeout(ctx.timeout, transport.send(message)).await {
        Err(_) => return Err(super::timed_out(&target, ctx.timeout)),
        Ok(result) => result.map_err(|e| smtp_error(e, &target))?,
    };
    let lines: Vec<&str> = response.message().collect();
    Ok(bounded(&one_line(&format!("{} {}", response.code(), lines.join(" "))), MAX_QUOTE))
}
