//! The notifier channels against real receivers on loopback: HTTP servers inside the test that record every
//! request (webhook, Slack, SMS) and a real SMTP server (aiosmtpd, from tests/requirements.txt).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use plugwatch_alerts::channels::{
    SendContext, SendError, SettingError, WEBHOOK_SCHEMA_VERSION, check_secret, check_settings, http_client,
    known_settings, secret_settings, send, verify_webhook, webhook_signature,
};
use plugwatch_model::alerts::{
    AlertNotice, ChannelKind, ChannelSpec, Comparison, Metric, Notification, NotificationKind, SeriesKey, Severity,
    State,
};
use plugwatch_store::SecretValue;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once before it fails.
const WAIT: Duration = Duration::from_secs(20);
const DASHBOARD: &str = "https://plugwatch.example.com";

// ---------------------------------------------------------------------------------------------------------
// A recording HTTP receiver.

#[derive(Debug)]
struct Recorded {
    method: Method,
    /// Path and query.
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("a header value is text"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The body as form fields.
    fn form(&self) -> BTreeMap<String, String> {
        let body = std::str::from_utf8(&self.body).expect("a form body is text");
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{body}")).expect("a form body parses");
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: Vec::new(), body: body.to_owned() }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Receiver {
    base: String,
    requests: mpsc::UnboundedReceiver<Recorded>,
}

impl Receiver {
    /// The next request it got, waiting at most [`WAIT`].
    async fn next(&mut self) -> Recorded {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("the receiver got a request in time")
            .expect("the receiver is running")
    }

    /// Nothing more arrived (everything a send does is done when it returns).
    fn assert_no_more(&mut self) {
        if let Ok(extra) = self.requests.try_recv() {
            panic!("an unexpected extra request: {} {}", extra.method, extra.path);
        }
    }
}

/// An HTTP server on 127.0.0.1 that records each request and answers with `respond`.
async fn receiver(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Receiver {
    let respond: Responder = Arc::new(respond);
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let respond = respond.clone();
        let tx = tx.clone();
        async move {
            let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let recorded = Recorded { method, path, headers, body: body.to_vec() };
            let answer = respond(&recorded);
            let _ = tx.send(recorded);
            let mut headers = HeaderMap::new();
            for (name, value) in answer.headers {
                headers.insert(name, value.parse().expect("a header value"));
            }
            (StatusCode::from_u16(answer.status).expect("a status"), headers, answer.body)
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("a local address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver serves") });
    Receiver { base, requests: rx }
}

/// A TCP server that accepts connections and never answers.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("a local address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    base
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
    listener.local_addr().expect("a local address").port()
}

// ---------------------------------------------------------------------------------------------------------
// Channels and notifications.

fn channel(kind: ChannelKind, settings: &[(&str, &str)]) -> ChannelSpec {
    ChannelSpec {
        name: format!("test-{kind}"),
        kind,
        enabled: true,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        min_severity: Severity::Info,
        rule_ids: Vec::new(),
        labels: BTreeMap::new(),
        group_wait_secs: 0,
        repeat_interval_secs: 0,
    }
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
    pairs.iter().map(|(k, v)| (k.to_string(), SecretValue::new(*v))).collect()
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

/// 2026-12-01T12:00:00Z.
const NOW: u64 = 1_796_126_400;

fn plugin_alert(plugin: &str) -> AlertNotice {
    AlertNotice {
        rule_id: 7,
        rule_name: "error rate".to_owned(),
        series: SeriesKey { plugin: Some(plugin.to_owned()), version: Some("1.2.0".to_owned()) },
        state: State::Firing,
        severity: Severity::Critical,
        metric: Metric::ErrorRate,
        comparison: Comparison::Above,
        threshold: 0.05,
        value: Some(0.12),
        since: at(NOW - 300),
        summary: format!("{plugin} fails 12% of its requests"),
        runbook: "https://runbooks.example.com/error-rate".to_owned(),
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
    }
}

fn host_alert() -> AlertNotice {
    AlertNotice {
        rule_id: 9,
        rule_name: "host cpu".to_owned(),
        series: SeriesKey::default(),
        state: State::NoData,
        severity: Severity::Warning,
        metric: Metric::HostCpu,
        comparison: Comparison::AtLeast,
        threshold: 0.9,
        value: None,
        since: at(NOW - 60),
        summary: "no host sample".to_owned(),
        runbook: String::new(),
        labels: BTreeMap::new(),
    }
}

fn firing(alerts: Vec<AlertNotice>) -> Notification {
    Notification {
        kind: NotificationKind::Alerts,
        group: "rule:7".to_owned(),
        alerts,
        text: None,
        created_at: at(NOW - 5),
    }
}

fn test_notification() -> Notification {
    Notification {
        kind: NotificationKind::Test,
        group: "test".to_owned(),
        alerts: Vec::new(),
        text: Some("This is a test from admin.".to_owned()),
        created_at: at(NOW),
    }
}

fn ctx<'a>(http: &'a reqwest::Client, timeout: Duration) -> SendContext<'a> {
    SendContext { http, timeout, dashboard_url: Some(DASHBOARD), delivery_id: 42, now: SystemTime::now() }
}

async fn send_ok(
    channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> String {
    match send(channel, secrets, notification, ctx).await {
        Ok(answer) => answer,
        Err(e) => panic!("the send failed: {e:?}"),
    }
}

async fn send_err(
    channel: &ChannelSpec,
    secrets: &BTreeMap<String, SecretValue>,
    notification: &Notification,
    ctx: &SendContext<'_>,
) -> SendError {
    match send(channel, secrets, notification, ctx).await {
        Ok(answer) => panic!("the send succeeded: {answer}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Webhook.

#[tokio::test]
async fn webhook_body_follows_the_schema_and_is_signed() {
    let mut rx = receiver(|_| reply(200, "ok")).await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let key = "whsec-test-signing-key";
    let url = format!("{}/hooks/abc", rx.base);
    let secrets = secrets(&[("url", &url), ("signing_key", key)]);
    let webhook = channel(ChannelKind::Webhook, &[]);
    let notification = firing(vec![plugin_alert("promo-engine"), host_alert()]);

    let answer = send_ok(&webhook, &secrets, &notification, &ctx).await;
    assert_eq!(answer, "HTTP 200 OK: ok");

    let request = rx.next().await;
    rx.assert_no_more();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/hooks/abc");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-plugwatch-delivery"), Some("42"));
    let user_agent = request.header("user-agent").expect("a user agent");
    assert!(user_agent.starts_with("plugwatch/"), "{user_agent}");
    let timestamp: i64 = request.header("x-plugwatch-timestamp").expect("a timestamp").parse().expect("unix seconds");
    let sent = ctx.now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(timestamp, sent);
    let signature = request.header("x-plugwatch-signature").expect("a signature");
    assert_eq!(signature, webhook_signature(key.as_bytes(), timestamp, &request.body));
    assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64, "{signature}");

    let window = Duration::from_secs(300);
    let now = SystemTime::now();
    assert!(verify_webhook(key.as_bytes(), timestamp, &request.body, signature, now, window));
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(!verify_webhook(key.as_bytes(), timestamp, &tampered, signature, now, window), "a tampered body");
    assert!(!verify_webhook(b"another key", timestamp, &request.body, signature, now, window), "another key");
    assert!(!verify_webhook(key.as_bytes(), timestamp + 1, &request.body, signature, now, window), "another time");
    let late = now + Duration::from_secs(301);
    assert!(!verify_webhook(key.as_bytes(), timestamp, &request.body, signature, late, window), "a replay");
    let early = now - Duration::from_secs(301);
    assert!(!verify_webhook(key.as_bytes(), timestamp, &request.body, signature, early, window), "from the future");
    assert!(!verify_webhook(key.as_bytes(), timestamp, &request.body, "sha256=zz", now, window), "not hex");
    assert!(!verify_webhook(key.as_bytes(), timestamp, &request.body, &signature[7..], now, window), "no prefix");

    let body = request.json();
    let sent_at = humantime::format_rfc3339_seconds(ctx.now).to_string();
    assert_eq!(body["version"], WEBHOOK_SCHEMA_VERSION);
    assert_eq!(body["kind"], "alerts");
    assert_eq!(body["group"], "rule:7");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["text"], Value::Null);
    assert_eq!(body["sent_at"], sent_at.as_str());
    let alerts = body["alerts"].as_array().expect("alerts is an array");
    assert_eq!(alerts.len(), 2);
    let expected_plugin = serde_json::json!({
        "rule_id": 7, "rule": "error rate", "state": "firing", "severity": "critical",
        "plugin": "promo-engine", "version": "1.2.0", "metric": "error_rate", "comparison": ">",
        "threshold": 0.05, "value": 0.12, "since": "2026-12-01T11:55:00Z",
        "summary": "promo-engine fails 12% of its requests", "runbook": "https://runbooks.example.com/error-rate",
        "labels": {"team": "payments"},
        "url": "https://plugwatch.example.com/plugin-monitoring/plugins/promo-engine",
    });
    assert_eq!(alerts[0], expected_plugin);
    let expected_host = serde_json::json!({
        "rule_id": 9, "rule": "host cpu", "state": "no_data", "severity": "warning",
        "plugin": null, "version": null, "metric": "host_cpu", "comparison": ">=",
        "threshold": 0.9, "value": null, "since": "2026-12-01T11:59:00Z",
        "summary": "no host sample", "runbook": "", "labels": {},
        "url": "https://plugwatch.example.com/plugin-monitoring/alerts",
    });
    assert_eq!(alerts[1], expected_host);
}

#[tokio::test]
async fn webhook_without_key_or_dashboard_and_other_kinds() {
    let mut rx = receiver(|_| reply(204, "")).await;
    let http = http_client();
    let mut ctx = ctx(&http, Duration::from_secs(10));
    ctx.dashboard_url = None;
    ctx.delivery_id = 7;
    let secrets = secrets(&[("url", &format!("{}/hook?key=abc", rx.base))]);
    let webhook = channel(ChannelKind::Webhook, &[]);

    let mut resolved = plugin_alert("weird name/ü");
    resolved.state = State::Resolved;
    let answer = send_ok(&webhook, &secrets, &firing(vec![resolved]), &ctx).await;
    assert_eq!(answer, "HTTP 204 No Content");
    let request = rx.next().await;
    assert_eq!(request.path, "/hook?key=abc");
    assert_eq!(request.header("x-plugwatch-signature"), None, "no signing key, no signature");
    assert_eq!(request.header("x-plugwatch-delivery"), Some("7"));
    assert!(request.header("x-plugwatch-timestamp").is_some());
    let body = request.json();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["url"], Value::Null, "no dashboard, no links");

    // With a dashboard, names are percent-encoded in links.
    ctx.dashboard_url = Some("https://plugwatch.example.com/");
    let mut odd = plugin_alert("weird name/ü");
    odd.state = State::Resolved;
    send_ok(&webhook, &secrets, &firing(vec![odd]), &ctx).await;
    let body = rx.next().await.json();
    assert_eq!(
        body["alerts"][0]["url"],
        "https://plugwatch.example.com/plugin-monitoring/plugins/weird%20name%2F%C3%BC"
    );

    send_ok(&webhook, &secrets, &test_notification(), &ctx).await;
    let body = rx.next().await.json();
    assert_eq!(body["kind"], "test");
    assert_eq!(body["text"], "This is a test from admin.");
    assert_eq!(body["alerts"], serde_json::json!([]));
    assert_eq!(body["version"], "1");

    let failing = Notification {
        kind: NotificationKind::ChannelFailing,
        group: "pager".to_owned(),
        alerts: Vec::new(),
        text: Some("channel `pager` keeps failing: HTTP 500".to_owned()),
        created_at: at(NOW),
    };
    send_ok(&webhook, &secrets, &failing, &ctx).await;
    let body = rx.next().await.json();
    assert_eq!(body["kind"], "channel_failing");
    assert_eq!(body["group"], "pager");
    assert_eq!(body["text"], "channel `pager` keeps failing: HTTP 500");
    rx.assert_no_more();
}

#[tokio::test]
async fn webhook_failures_say_whether_to_retry() {
    let rx = receiver(|request| {
        let status: u16 = request.path.trim_start_matches('/').parse().unwrap_or(500);
        let mut answer = reply(status, &format!("status {status}\nfrom the receiver"));
        if status == 302 {
            answer.headers.push(("location", "https://elsewhere.example.com/new/path?token=t".to_owned()));
        }
        answer
    })
    .await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let webhook = channel(ChannelKind::Webhook, &[]);
    let notification = firing(vec![plugin_alert("promo-engine")]);

    for (status, retryable) in
        [(500, true), (503, true), (429, true), (400, false), (401, false), (404, false), (410, false)]
    {
        let secrets = secrets(&[("url", &format!("{}/{status}", rx.base))]);
        let e = send_err(&webhook, &secrets, &notification, &ctx).await;
        assert_eq!(e.retryable, retryable, "HTTP {status}: {e:?}");
        assert!(e.message.contains(&status.to_string()), "the message names the status: {e:?}");
        let response = e.response.as_deref().expect("the receiver's answer");
        assert!(response.starts_with(&format!("HTTP {status} ")), "{response}");
        assert!(response.ends_with(&format!("status {status} from the receiver")), "{response}");
        assert!(response.chars().count() <= 300);
    }

    let secrets = secrets(&[("url", &format!("{}/302", rx.base))]);
    let e = send_err(&webhook, &secrets, &notification, &ctx).await;
    assert!(e.message.contains("302"), "{e:?}");
    assert!(e.message.contains("redirect"), "{e:?}");
    assert!(e.message.contains("https://elsewhere.example.com"), "{e:?}");
    assert!(!e.message.contains("token=t") && !e.message.contains("/new/path"), "the location is redacted: {e:?}");
    assert!(!e.retryable);
}

#[tokio::test]
async fn webhook_long_answers_are_bounded() {
    let long = "x".repeat(200_000);
    let rx = receiver(move |_| reply(500, &long)).await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let secrets = secrets(&[("url", &rx.base)]);
    let e = send_err(&channel(ChannelKind::Webhook, &[]), &secrets, &firing(vec![host_alert()]), &ctx).await;
    assert!(e.retryable);
    assert!(e.response.as_deref().unwrap().chars().count() <= 300, "{e:?}");
    assert!(e.message.chars().count() <= 600, "{}", e.message.len());
}

#[tokio::test]
async fn webhook_that_never_answers_times_out() {
    let base = silent_server().await;
    let http = http_client();
    let timeout = Duration::from_millis(300);
    let ctx = ctx(&http, timeout);
    let secrets = secrets(&[("url", &format!("{base}/hooks/KEY-IN-PATH-123"))]);
    let started = Instant::now();
    let e = send_err(&channel(ChannelKind::Webhook, &[]), &secrets, &firing(vec![host_alert()]), &ctx).await;
    let took = started.elapsed();
    assert!(took >= timeout, "it gave up after {took:?}, before the timeout");
    assert!(took < Duration::from_secs(5), "it took {took:?}");
    assert!(e.retryable, "{e:?}");
    assert!(e.message.contains(base.trim_start_matches("http://")), "it names the receiver: {e:?}");
    assert!(!format!("{e:?}").contains("KEY-IN-PATH-123"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Secrets stay out of errors.

#[tokio::test]
async fn no_secret_appears_in_an_error() {
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let webhook = channel(ChannelKind::Webhook, &[]);
    let notification = firing(vec![plugin_alert("promo-engine")]);

    // A refused connection: the error names scheme, host and port only.
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hooks/T000/B000/SUPERSECRETPATH?token=QUERYSECRET");
    let secrets_ = secrets(&[("url", &url), ("signing_key", "SIGNINGSECRET")]);
    let e = send_err(&webhook, &secrets_, &notification, &ctx).await;
    assert!(e.retryable, "{e:?}");
    assert!(e.message.contains(&format!("http://127.0.0.1:{port}")), "{e:?}");
    for secret in ["SUPERSECRETPATH", "QUERYSECRET", "SIGNINGSECRET", "T000"] {
        assert!(!format!("{e:?}").contains(secret), "{secret} in {e:?}");
    }

    // A receiver that echoes the secret URL back: the answer is scrubbed.
    let rx = receiver(|request| reply(403, &format!("forbidden: {}", request.path))).await;
    let url = format!("{}/services/SLACKSECRETKEY", rx.base);
    for kind in [ChannelKind::Webhook, ChannelKind::Slack] {
        let e = send_err(&channel(kind, &[]), &secrets(&[("url", &url)]), &notification, &ctx).await;
        assert!(!e.retryable, "{e:?}");
        assert!(e.response.as_deref().unwrap().starts_with("HTTP 403 Forbidden: forbidden: "), "{e:?}");
        assert!(!format!("{e:?}").contains("SLACKSECRETKEY"), "{e:?}");
    }

    // SMS: the auth token never shows, even when the receiver repeats the Authorization header.
    let rx = receiver(|request| reply(401, request.header("authorization").unwrap_or(""))).await;
    let sms = channel(
        ChannelKind::Sms,
        &[("base_url", &rx.base), ("account_sid", "AC123"), ("from", "+15550001111"), ("to", "+15550002222")],
    );
    let e = send_err(&sms, &secrets(&[("auth_token", "TWILIOTOKEN")]), &notification, &ctx).await;
    let encoded = base64::engine::general_purpose::STANDARD.encode("AC123:TWILIOTOKEN");
    assert!(!format!("{e:?}").contains("TWILIOTOKEN"), "{e:?}");
    assert!(!format!("{e:?}").contains(&encoded), "{e:?}");
    assert!(e.response.as_deref().unwrap().starts_with("HTTP 401 Unauthorized: Basic [redacted]"), "{e:?}");

    // A misconfigured secret is reported without its value.
    let e = send_err(&webhook, &secrets(&[("url", "ftp://files.example.com/SECRETFTP")]), &notification, &ctx).await;
    assert!(!e.retryable);
    assert!(e.message.contains("settings.url"), "{e:?}");
    assert!(!e.message.contains("SECRETFTP"), "{e:?}");
    assert_eq!(format!("{:?}", SecretValue::new("VISIBLE?")), "[redacted]");
}

// ---------------------------------------------------------------------------------------------------------
// Slack.

#[tokio::test]
async fn slack_message_is_readable_and_escaped() {
    let mut rx = receiver(|_| reply(200, "ok")).await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let secrets = secrets(&[("url", &format!("{}/services/T1/B1/x", rx.base))]);
    let slack = channel(ChannelKind::Slack, &[]);

    let notification = firing(vec![plugin_alert("promo-engine"), plugin_alert("<script>&"), host_alert()]);
    let answer = send_ok(&slack, &secrets, &notification, &ctx).await;
    assert_eq!(answer, "HTTP 200 OK: ok");
    let request = rx.next().await;
    assert_eq!(request.path, "/services/T1/B1/x");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    let text = body["text"].as_str().expect("a fallback text");
    assert!(text.starts_with("🔥 FIRING: error rate &gt; 5% — 3 alerts"), "{text}");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 4, "a header and one block per alert: {blocks:#?}");
    let texts: Vec<&str> = blocks.iter().map(|b| b["text"]["text"].as_str().expect("a section's text")).collect();
    assert!(texts[0].contains("FIRING") && texts[0].contains("3 alerts"), "{}", texts[0]);

    let first = texts[1];
    assert!(first.contains("*promo-engine* version 1.2.0"), "{first}");
    assert!(first.contains("*12%*") && first.contains("threshold &gt; 5%"), "value vs threshold: {first}");
    assert!(first.contains("since 2026-12-01T11:55:00Z"), "{first}");
    assert!(first.contains("promo-engine fails 12% of its requests"), "{first}");
    assert!(first.contains("<https://runbooks.example.com/error-rate|Runbook>"), "{first}");
    assert!(first.contains("<https://plugwatch.example.com/plugin-monitoring/plugins/promo-engine|Plugin dashboard>"));

    let hostile = texts[2];
    assert!(hostile.contains("*&lt;script&gt;&amp;* version 1.2.0"), "{hostile}");
    assert!(hostile.contains("plugins/%3Cscript%3E%26|"), "the link's name is percent-encoded: {hostile}");
    let everything = serde_json::to_string(&body).unwrap();
    assert!(!everything.contains("<script>"), "{everything}");

    let host = texts[3];
    assert!(host.contains("the *host*") && host.contains("no data") && host.contains("threshold &gt;= 90%"), "{host}");
    assert!(host.contains("plugin-monitoring/alerts|Alerts>"), "{host}");

    send_ok(&slack, &secrets, &test_notification(), &ctx).await;
    let body = rx.next().await.json();
    assert!(body["text"].as_str().unwrap().contains("TEST"), "{body}");
    assert!(serde_json::to_string(&body).unwrap().contains("This is a test from admin."));
    rx.assert_no_more();
}

#[tokio::test]
async fn slack_units_in_values() {
    let mut rx = receiver(|_| reply(200, "ok")).await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let secrets = secrets(&[("url", &rx.base)]);
    let mut latency = plugin_alert("promo-engine");
    latency.metric = Metric::LatencyP99;
    latency.threshold = 0.25;
    latency.value = Some(1.5);
    let mut memory = plugin_alert("promo-engine");
    memory.metric = Metric::MemoryPeak;
    memory.threshold = 64.0 * 1024.0 * 1024.0;
    memory.value = Some(96.5 * 1024.0 * 1024.0);
    send_ok(&channel(ChannelKind::Slack, &[]), &secrets, &firing(vec![latency, memory]), &ctx).await;
    let body = serde_json::to_string(&rx.next().await.json()).unwrap();
    assert!(body.contains("*1.5 s* (threshold &gt; 250 ms)"), "{body}");
    assert!(body.contains("*96.5 MiB* (threshold &gt; 64 MiB)"), "{body}");
}

// ---------------------------------------------------------------------------------------------------------
// SMS.

#[tokio::test]
async fn sms_posts_one_message_per_recipient() {
    let mut rx = receiver(|request| {
        let to = request.form().get("To").cloned().unwrap_or_default();
        reply(201, &format!(r#"{{"sid": "SM{}", "status": "queued"}}"#, &to[to.len() - 4..]))
    })
    .await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let sms = channel(
        ChannelKind::Sms,
        &[
            ("base_url", &format!("{}/", rx.base)),
            ("account_sid", "AC0123abcd"),
            ("from", "+15550001111"),
            ("to", "+15550002222, +15550003333"),
        ],
    );
    let secrets = secrets(&[("auth_token", "tok-secret-123")]);
    let answer = send_ok(&sms, &secrets, &firing(vec![plugin_alert("promo-engine"), host_alert()]), &ctx).await;
    assert_eq!(answer, "sent to 2: +15550002222: SM2222, +15550003333: SM3333");

    let expected_auth =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC0123abcd:tok-secret-123"));
    for to in ["+15550002222", "+15550003333"] {
        let request = rx.next().await;
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/2010-04-01/Accounts/AC0123abcd/Messages.json");
        assert_eq!(request.header("authorization"), Some(expected_auth.as_str()));
        let encoded = request.header("authorization").unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(decoded, b"AC0123abcd:tok-secret-123");
        assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
        let form = request.form();
        assert_eq!(form.keys().collect::<Vec<_>>(), ["Body", "From", "To"]);
        assert_eq!(form["To"], to);
        assert_eq!(form["From"], "+15550001111");
        let body = &form["Body"];
        assert_eq!(body, "[plugwatch] FIRING critical: error rate on promo-engine 1.2.0 and 1 more: 12% > 5%");
        assert!(body.chars().count() <= 320);
    }
    rx.assert_no_more();

    // A long summary does not make a long text.
    let mut long = plugin_alert(&"p".repeat(400));
    long.rule_name = "r".repeat(400);
    send_ok(&sms, &secrets, &firing(vec![long]), &ctx).await;
    for _ in 0..2 {
        let body = rx.next().await.form()["Body"].clone();
        assert!(body.chars().count() <= 320, "{}", body.chars().count());
    }

    send_ok(&sms, &secrets, &test_notification(), &ctx).await;
    for _ in 0..2 {
        assert_eq!(rx.next().await.form()["Body"], "[plugwatch] TEST: This is a test from admin.");
    }
}

#[tokio::test]
async fn values_carry_their_units() {
    let mut rx = receiver(|_| reply(201, r#"{"sid": "SM1"}"#)).await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let sms = channel(
        ChannelKind::Sms,
        &[("base_url", &rx.base), ("account_sid", "AC1"), ("from", "+15550001111"), ("to", "+15550002222")],
    );
    let secrets = secrets(&[("auth_token", "tok")]);
    let cases = [
        (Metric::ErrorRate, 0.0734, 0.05, "7.34% > 5%"),
        (Metric::HostDisk, 0.951, 0.9, "95.1% > 90%"),
        (Metric::LatencyP99, 0.25, 0.0015, "250 ms > 1.5 ms"),
        (Metric::LatencyP95, 2.5, 1.0, "2.5 s > 1 s"),
        (Metric::Idle, 600.0, 300.0, "10 min > 5 min"),
        (Metric::MemoryPeak, 1536.0, 512.0, "1.5 KiB > 512 B"),
        (Metric::MemoryPeak, 3.0 * 1024.0 * 1024.0 * 1024.0, 64.0 * 1024.0 * 1024.0, "3 GiB > 64 MiB"),
        (Metric::Timeouts, 3.0, 0.0, "3 > 0"),
        (Metric::Throughput, 12.5, 100.0, "12.5/s > 100/s"),
        (Metric::Instructions, 1_200_000.0, 1e9, "1.2M > 1G"),
    ];
    for (metric, value, threshold, expected) in cases {
        let mut alert = plugin_alert("promo-engine");
        (alert.metric, alert.value, alert.threshold) = (metric, Some(value), threshold);
        send_ok(&sms, &secrets, &firing(vec![alert]), &ctx).await;
        let body = rx.next().await.form()["Body"].clone();
        assert!(body.ends_with(&format!(": {expected}")), "{metric}: {body}");
    }
}

#[tokio::test]
async fn sms_failures_name_the_recipients() {
    let rx = receiver(|request| {
        let to = request.form().get("To").cloned().unwrap_or_default();
        match to.as_str() {
            "+15550000401" => reply(401, r#"{"code": 20003, "message": "Authenticate"}"#),
            "+15550000500" => reply(500, "internal error"),
            _ => reply(201, r#"{"sid": "SMok"}"#),
        }
    })
    .await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let secrets = secrets(&[("auth_token", "tok")]);
    let notification = firing(vec![plugin_alert("promo-engine")]);
    let sms = |to: &str| {
        channel(
            ChannelKind::Sms,
            &[("base_url", &rx.base), ("account_sid", "AC1"), ("from", "+15550001111"), ("to", to)],
        )
    };

    let e = send_err(&sms("+15550000401"), &secrets, &notification, &ctx).await;
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("401") && e.message.contains("+15550000401"), "{e:?}");
    assert!(e.response.as_deref().unwrap().contains("Authenticate"), "{e:?}");

    let e = send_err(&sms("+15550000500"), &secrets, &notification, &ctx).await;
    assert!(e.retryable, "{e:?}");
    assert!(e.message.contains("500"), "{e:?}");

    let e = send_err(&sms("+15550009999,+15550000401"), &secrets, &notification, &ctx).await;
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("1 of 2 recipients failed: +15550000401"), "{e:?}");
    assert!(e.message.contains("sent to +15550009999: SMok"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------------------
// E-mail, through a real SMTP server.

const SMTP_SERVER: &str = r#"
import asyncio, email, json, sys
from email import policy
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        parts = [{"type": p.get_content_type(), "body": p.get_content()}
                 for p in message.walk() if not p.is_multipart()]
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        print(json.dumps({
            "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "login": login,
            "from": str(message["From"]), "to": str(message["To"]), "subject": str(message["Subject"]),
            "content_type": message.get_content_type(), "parts": parts,
        }), flush=True)
        return "250 2.0.0 Ok: queued as 1234"

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alice" and auth_data.password == b"s3cret-pass"
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), authenticator=authenticate, auth_require_tls=False), "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

struct SmtpSink {
    port: u16,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join("target/tools/venv/bin/python");
        assert!(python.exists(), "{} is missing: run `cargo xtask tools` (tests/requirements.txt)", python.display());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, SMTP_SERVER).expect("writes the SMTP server script");
        let mut child = tokio::process::Command::new(&python)
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starts the SMTP server");
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let first = next_line(&mut lines, "the SMTP server's port (is aiosmtpd installed? `cargo xtask tools`)").await;
        let port = first["port"].as_u64().expect("a port") as u16;
        SmtpSink { port, lines, _child: child, _dir: dir }
    }

    async fn next_message(&mut self) -> Value {
        next_line(&mut self.lines, "a message at the SMTP server").await
    }
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, what: &str) -> Value {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("waited {WAIT:?} for {what}"))
        .expect("reads the SMTP server's output")
        .unwrap_or_else(|| panic!("the SMTP server exited before {what}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: `{line}` is not JSON: {e}"))
}

#[tokio::test]
async fn email_arrives_as_text_and_html() {
    let mut sink = SmtpSink::start().await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let port = sink.port.to_string();
    let settings = [
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("tls", "none"),
        ("from", "plugwatch <alerts@example.com>"),
        ("to", "ops@example.com, oncall@example.com"),
    ];
    let email = channel(ChannelKind::Email, &settings);
    let hostile = "<b>evil</b>&co";
    let notification = firing(vec![plugin_alert(hostile), host_alert()]);

    let answer = send_ok(&email, &BTreeMap::new(), &notification, &ctx).await;
    assert_eq!(answer, "250 2.0.0 Ok: queued as 1234");
    let message = sink.next_message().await;
    assert_eq!(message["mail_from"], "alerts@example.com");
    assert_eq!(message["rcpt_tos"], serde_json::json!(["ops@example.com", "oncall@example.com"]));
    assert_eq!(message["login"], Value::Null);
    assert!(message["from"].as_str().unwrap().contains("alerts@example.com"), "{message}");
    let to = message["to"].as_str().unwrap();
    assert!(to.contains("ops@example.com") && to.contains("oncall@example.com"), "{to}");
    assert_eq!(message["subject"], "[plugwatch] FIRING critical: error rate on <b>evil</b>&co 1.2.0 and 1 more");
    assert_eq!(message["content_type"], "multipart/alternative");
    let parts = message["parts"].as_array().unwrap();
    let part = |kind: &str| {
        parts.iter().find(|p| p["type"] == kind).and_then(|p| p["body"].as_str()).unwrap_or_else(|| panic!("{kind}"))
    };
    let (text, html) = (part("text/plain"), part("text/html"));
    assert_eq!(parts.len(), 2);
    assert!(text.contains("On: <b>evil</b>&co 1.2.0"), "{text}");
    assert!(text.contains("Value: error rate: 12% (threshold > 5%)"), "{text}");
    assert!(text.contains("Value: host CPU: no data (threshold >= 90%)"), "{text}");
    assert!(text.contains("https://plugwatch.example.com/plugin-monitoring/plugins/%3Cb%3Eevil%3C%2Fb%3E%26co"));
    assert!(html.contains("&lt;b&gt;evil&lt;/b&gt;&amp;co"), "{html}");
    assert!(!html.contains("<b>evil"), "{html}");
    assert!(html.contains("threshold &gt; 5%"), "{html}");
    assert!(html.contains("href=\"https://runbooks.example.com/error-rate\""), "{html}");

    // A test message.
    send_ok(&email, &BTreeMap::new(), &test_notification(), &ctx).await;
    let message = sink.next_message().await;
    assert_eq!(message["subject"], "[plugwatch] TEST: a test message for channel test-email");
    assert!(message["parts"][0]["body"].as_str().unwrap().contains("This is a test from admin."), "{message}");

    // A refused recipient is a permanent failure.
    let mut refused = email.clone();
    refused.settings.insert("to".into(), "reject@example.com".into());
    let e = send_err(&refused, &BTreeMap::new(), &notification, &ctx).await;
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("550"), "{e:?}");
    assert_eq!(e.response.as_deref(), Some("550 5.1.1 No such user here"));
}

#[tokio::test]
async fn email_logs_in_and_refuses_a_wrong_password() {
    let mut sink = SmtpSink::start().await;
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let port = sink.port.to_string();
    let email = channel(
        ChannelKind::Email,
        &[
            ("host", "127.0.0.1"),
            ("port", port.as_str()),
            ("tls", "none"),
            ("username", "alice"),
            ("from", "alerts@example.com"),
            ("to", "ops@example.com"),
        ],
    );
    let notification = firing(vec![plugin_alert("promo-engine")]);

    let answer = send_ok(&email, &secrets(&[("password", "s3cret-pass")]), &notification, &ctx).await;
    assert_eq!(answer, "250 2.0.0 Ok: queued as 1234");
    let message = sink.next_message().await;
    assert_eq!(message["login"], "alice");
    assert_eq!(message["subject"], "[plugwatch] FIRING critical: error rate on promo-engine 1.2.0");

    let e = send_err(&email, &secrets(&[("password", "wrong-password")]), &notification, &ctx).await;
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("535"), "{e:?}");
    assert_eq!(e.response.as_deref(), Some("535 5.7.8 Authentication credentials invalid"));
    assert!(!format!("{e:?}").contains("wrong-password"), "{e:?}");

    // A server that accepts and never greets: the attempt ends at the timeout, to be retried.
    let silent = silent_server().await;
    let mut mute = email.clone();
    mute.settings.insert("port".into(), silent.rsplit(':').next().unwrap().to_owned());
    let timeout = Duration::from_millis(300);
    let short = SendContext { timeout, ..ctx };
    let started = Instant::now();
    let e = send_err(&mute, &secrets(&[("password", "s3cret-pass")]), &notification, &short).await;
    let took = started.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(5), "it took {took:?}");
    assert!(e.retryable, "{e:?}");

    // Nothing listening: a connection error, retried.
    let mut nowhere = email.clone();
    nowhere.settings.insert("port".into(), closed_port().to_string());
    let e = send_err(&nowhere, &secrets(&[("password", "s3cret-pass")]), &notification, &ctx).await;
    assert!(e.retryable, "{e:?}");
    assert!(!format!("{e:?}").contains("s3cret-pass"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------------------
// Settings.

fn plain(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[track_caller]
fn refused(result: Result<(), SettingError>, field: &str, reason: &str) {
    match result {
        Ok(()) => panic!("accepted; expected {field}: …{reason}…"),
        Err(e) => {
            assert_eq!(e.field, field, "{e}");
            assert!(e.reason.contains(reason), "`{}` does not say `{reason}`", e.reason);
            assert_eq!(e.to_string(), format!("{}: {}", e.field, e.reason));
        }
    }
}

#[test]
fn settings_name_the_field_at_fault() {
    use ChannelKind::*;
    assert_eq!(secret_settings(Webhook), ["url", "signing_key"]);
    assert_eq!(secret_settings(Slack), ["url"]);
    assert_eq!(secret_settings(Email), ["password"]);
    assert_eq!(secret_settings(Sms), ["auth_token"]);
    for kind in ChannelKind::ALL {
        for secret in secret_settings(*kind) {
            assert!(known_settings(*kind).contains(secret));
        }
    }

    // Webhook and Slack.
    let none = BTreeMap::new();
    assert_eq!(check_settings(Webhook, &none, &set(&["url"])), Ok(()));
    assert_eq!(check_settings(Webhook, &none, &set(&["url", "signing_key"])), Ok(()));
    assert_eq!(check_settings(Slack, &none, &set(&["url"])), Ok(()));
    refused(check_settings(Webhook, &none, &set(&[])), "settings.url", "required");
    refused(check_settings(Slack, &none, &set(&["signing_key"])), "settings.signing_key", "unknown setting");
    refused(
        check_settings(Webhook, &plain(&[("url", "https://x.example.com")]), &set(&[])),
        "settings.url",
        "`url` is a secret setting: ",
    );
    refused(
        check_settings(Webhook, &plain(&[("method", "PUT")]), &set(&["url"])),
        "settings.method",
        "unknown setting `method`; webhook channels accept: url, signing_key",
    );
    assert_eq!(check_secret(Webhook, "url", &SecretValue::new("https://hooks.example.com/a?b=c")), Ok(()));
    assert_eq!(check_secret(Slack, "url", &SecretValue::new("http://127.0.0.1:9/x")), Ok(()));
    refused(
        check_secret(Webhook, "url", &SecretValue::new("ftp://x.example.com")),
        "settings.url",
        "http:// or https://",
    );
    refused(check_secret(Webhook, "url", &SecretValue::new("not a url")), "settings.url", "not a valid URL");
    refused(check_secret(Slack, "url", &SecretValue::new("")), "settings.url", "must not be empty");
    refused(check_secret(Webhook, "signing_key", &SecretValue::new("a\nb")), "settings.signing_key", "control");
    refused(check_secret(Webhook, "token", &SecretValue::new("x")), "settings.token", "unknown setting");
    refused(check_secret(Email, "host", &SecretValue::new("x")), "settings.host", "is a plain setting");
    let e = check_secret(Webhook, "url", &SecretValue::new("gopher://hidden-KEY@x")).unwrap_err();
    assert!(!e.to_string().contains("hidden-KEY"), "{e}");

    // E-mail.
    let email = [("host", "smtp.example.com"), ("from", "alerts@example.com"), ("to", "a@example.com, b@example.com")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut settings = plain(&email);
        settings.extend(plain(extra));
        settings
    };
    assert_eq!(check_settings(Email, &with(&[]), &set(&[])), Ok(()));
    for tls in ["none", "starttls", "tls"] {
        assert_eq!(check_settings(Email, &with(&[("tls", tls), ("port", "2525")]), &set(&[])), Ok(()));
    }
    assert_eq!(check_settings(Email, &with(&[("username", "alice")]), &set(&["password"])), Ok(()));
    assert_eq!(check_settings(Email, &with(&[("from", "plugwatch <alerts@example.com>")]), &set(&[])), Ok(()));
    refused(check_settings(Email, &with(&[("tls", "ssl")]), &set(&[])), "settings.tls", "`ssl` is not a TLS mode");
    refused(check_settings(Email, &with(&[("port", "smtp")]), &set(&[])), "settings.port", "not a port number");
    refused(check_settings(Email, &with(&[("port", "70000")]), &set(&[])), "settings.port", "not a port number");
    refused(check_settings(Email, &with(&[("to", "ops")]), &set(&[])), "settings.to", "not an e-mail address");
    refused(check_settings(Email, &with(&[("to", "a@example.com,,b@example.com")]), &set(&[])), "settings.to", "empty");
    refused(check_settings(Email, &with(&[("from", "nobody")]), &set(&[])), "settings.from", "not an e-mail address");
    refused(
        check_settings(Email, &with(&[("host", "smtp://smtp.example.com")]), &set(&[])),
        "settings.host",
        "host name",
    );
    refused(check_settings(Email, &with(&[("username", "alice")]), &set(&[])), "settings.password", "required");
    refused(check_settings(Email, &with(&[]), &set(&["password"])), "settings.username", "required when a password");
    refused(
        check_settings(Email, &with(&[("password", "hunter2")]), &set(&[])),
        "settings.password",
        "`password` is a secret setting",
    );
    for missing in ["host", "from", "to"] {
        let mut settings = with(&[]);
        settings.remove(missing);
        refused(check_settings(Email, &settings, &set(&[])), &format!("settings.{missing}"), "required");
    }
    assert_eq!(check_secret(Email, "password", &SecretValue::new("s3cret")), Ok(()));

    // SMS.
    let sms = [("account_sid", "AC0123"), ("from", "+15550001111"), ("to", "+15550002222,+447700900123")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut settings = plain(&sms);
        settings.extend(plain(extra));
        settings
    };
    let token = set(&["auth_token"]);
    assert_eq!(check_settings(Sms, &with(&[]), &token), Ok(()));
    assert_eq!(check_settings(Sms, &with(&[("base_url", "http://127.0.0.1:8080")]), &token), Ok(()));
    assert_eq!(check_settings(Sms, &with(&[("from", "Plugwatch")]), &token), Ok(()));
    refused(check_settings(Sms, &with(&[]), &set(&[])), "settings.auth_token", "required");
    refused(check_settings(Sms, &with(&[("to", "5550002222")]), &token), "settings.to", "E.164");
    refused(check_settings(Sms, &with(&[("to", "+1555")]), &token), "settings.to", "8 to 15 digits");
    refused(check_settings(Sms, &with(&[("to", "+1555000222x")]), &token), "settings.to", "not a phone number");
    refused(check_settings(Sms, &with(&[("from", "not a number!")]), &token), "settings.from", "not a phone number");
    refused(check_settings(Sms, &with(&[("base_url", "api.twilio.com")]), &token), "settings.base_url", "URL");
    refused(check_settings(Sms, &with(&[("base_url", "ftp://x")]), &token), "settings.base_url", "http");
    refused(check_settings(Sms, &with(&[("account_sid", "AC/../x")]), &token), "settings.account_sid", "letters");
    refused(check_settings(Sms, &with(&[("auth_token", "t")]), &token), "settings.auth_token", "secret setting");
    refused(check_settings(Sms, &with(&[("url", "x")]), &token), "settings.url", "sms channels accept: base_url");
    refused(check_secret(Sms, "auth_token", &SecretValue::new("a b")), "settings.auth_token", "spaces");
}

#[tokio::test]
async fn send_refuses_a_misconfigured_channel_without_retrying() {
    let http = http_client();
    let ctx = ctx(&http, Duration::from_secs(10));
    let email = channel(ChannelKind::Email, &[("host", "127.0.0.1"), ("from", "a@example.com"), ("tls", "ssl")]);
    let e = send_err(&email, &BTreeMap::new(), &test_notification(), &ctx).await;
    assert!(!e.retryable);
    assert!(e.message.contains("settings.to") || e.message.contains("settings.tls"), "{e:?}");
    let e = send_err(&channel(ChannelKind::Webhook, &[]), &BTreeMap::new(), &test_notification(), &ctx).await;
    assert!(!e.retryable);
    assert!(e.message.contains("settings.url: required"), "{e:?}");
}
