//! What every channel says the same way: a metric's name and values with units, an alert's series, a
//! notification's status and headline, dashboard links, times.

use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use plugwatch_model::alerts::{AlertNotice, Metric, Notification, NotificationKind, Severity, State};

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A metric's name in words, e.g. "error rate".
pub fn metric_label(metric: Metric) -> &'static str {
    match metric {
        Metric::LatencyP50 => "latency p50",
        Metric::LatencyP95 => "latency p95",
        Metric::LatencyP99 => "latency p99",
        Metric::ErrorRate => "error rate",
        Metric::Timeouts => "timeouts",
        Metric::Rejected => "rejected invocations",
        Metric::Throughput => "throughput",
        Metric::CpuTime => "CPU time per invocation",
        Metric::Instructions => "instructions per invocation",
        Metric::MemoryPeak => "peak memory",
        Metric::Headroom => "headroom used",
        Metric::Idle => "idle time",
        Metric::HostCpu => "host CPU",
        Metric::HostMemory => "host memory",
        Metric::HostDisk => "data disk",
        Metric::BackupFailures => "failed scheduled backups",
    }
}

/// A value of `metric` with its unit: ratios as percent, seconds as ms below 1 s, bytes in KiB/MiB/GiB.
pub fn value(metric: Metric, v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    match metric.unit() {
        "ratio" => format!("{}%", number(v * 100.0, 2)),
        "seconds" => seconds(v),
        "bytes" => bytes(v),
        "per_second" => format!("{}/s", number(v, 2)),
        "instructions" => si(v),
        _ => number(v, 2),
    }
}

/// The value of an alert, or "no data".
pub fn alert_value(alert: &AlertNotice) -> String {
    alert.value.map_or_else(|| "no data".to_owned(), |v| value(alert.metric, v))
}

/// The rule's condition, e.g. "error rate > 5%".
pub fn condition(alert: &AlertNotice) -> String {
    format!("{} {} {}", metric_label(alert.metric), alert.comparison.as_str(), value(alert.metric, alert.threshold))
}

fn seconds(v: f64) -> String {
    let a = v.abs();
    if a < 1.0 {
        format!("{} ms", number(v * 1000.0, 2))
    } else if a < 120.0 {
        format!("{} s", number(v, 2))
    } else if a < 7200.0 {
        format!("{} min", number(v / 60.0, 1))
    } else {
        format!("{} h", number(v / 3600.0, 1))
    }
}

fn bytes(v: f64) -> String {
    const KIB: f64 = 1024.0;
    let a = v.abs();
    if a < KIB {
        format!("{} B", number(v, 0))
    } else if a < KIB * KIB {
        format!("{} KiB", number(v / KIB, 1))
    } else if a < KIB * KIB * KIB {
        format!("{} MiB", number(v / (KIB * KIB), 1))
    } else {
        format!("{} GiB", number(v / (KIB * KIB * KIB), 2))
    }
}

fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{}G", number(v / 1e9, 2))
    } else if a >= 1e6 {
        format!("{}M", number(v / 1e6, 2))
    } else if a >= 1e3 {
        format!("{}k", number(v / 1e3, 2))
    } else {
        number(v, 0)
    }
}

/// `v` with at most `decimals` decimals, trailing zeros dropped.
fn number(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// "promo-engine 1.2.0", "promo-engine" or "host".
pub fn series(alert: &AlertNotice) -> String {
    match (&alert.series.plugin, &alert.series.version) {
        (Some(plugin), Some(version)) => format!("{plugin} {version}"),
        (Some(plugin), None) => plugin.clone(),
        (None, _) => "host".to_owned(),
    }
}

/// Whether a notification says something is wrong: any alert firing or without data.
pub fn firing(notification: &Notification) -> bool {
    notification.alerts.iter().any(|a| matches!(a.state, State::Firing | State::NoData))
}

/// "firing" or "resolved".
pub fn status(notification: &Notification) -> &'static str {
    if firing(notification) { "firing" } else { "resolved" }
}

/// An alert's state in words.
pub fn state_label(state: State) -> &'static str {
    match state {
        State::NoData => "no data",
        other => other.as_str(),
    }
}

/// The highest severity among the alerts that are firing (or among all of them if none is).
pub fn severity(notification: &Notification) -> Option<Severity> {
    let firing = notification.alerts.iter().filter(|a| matches!(a.state, State::Firing | State::NoData));
    firing.map(|a| a.severity).max().or_else(|| notification.alerts.iter().map(|a| a.severity).max())
}

/// What the notification is about in one line, without the status: "error rate on promo-engine 1.2.0 and 2
/// more". For test and channel-failing notifications, the text or the group.
pub fn about(notification: &Notification) -> String {
    match notification.alerts.first() {
        None => notification.text.clone().unwrap_or_else(|| notification.group.clone()),
        Some(first) => {
            let more = notification.alerts.len() - 1;
            let on = series(first);
            if more == 0 {
                format!("{} on {on}", first.rule_name)
            } else {
                format!("{} on {on} and {more} more", first.rule_name)
            }
        }
    }
}

/// "FIRING", "RESOLVED", "TEST" or "CHANNEL FAILING".
pub fn headline_status(notification: &Notification) -> &'static str {
    match notification.kind {
        NotificationKind::Alerts if firing(notification) => "FIRING",
        NotificationKind::Alerts => "RESOLVED",
        NotificationKind::Test => "TEST",
        NotificationKind::ChannelFailing => "CHANNEL FAILING",
    }
}

/// The dashboard page of an alert's plugin (or the alerts page for host alerts); None without a dashboard.
pub fn alert_url(dashboard: Option<&str>, alert: &AlertNotice) -> Option<String> {
    let base = dashboard?.trim().trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    Some(match &alert.series.plugin {
        Some(plugin) => format!("{base}/plugin-monitoring/plugins/{}", utf8_percent_encode(plugin, SEGMENT)),
        None => format!("{base}/plugin-monitoring/alerts"),
    })
}

/// The dashboard's alerts page; None without a dashboard.
pub fn alerts_url(dashboard: Option<&str>) -> Option<String> {
    let base = dashboard?.trim().trim_end_matches('/');
    (!base.is_empty()).then(|| format!("{base}/plugin-monitoring/alerts"))
}

/// RFC 3339 in UTC, to the second.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A runbook that is a link (http or https), for channels that make links.
pub fn runbook_link(runbook: &str) -> Option<&str> {
    let r = runbook.trim();
    (r.starts_with("https://") || r.starts_with("http://")).then_some(r).filter(|r| !r.contains(char::is_whitespace))
}
