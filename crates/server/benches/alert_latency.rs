//! How long after a plugin starts failing its alert reaches a webhook receiver, beyond the rule's `for`.
//! A real server (default alerting settings: evaluation every 5 s) on loopback, a real HTTP receiver, a
//! plugin that answers `ok` until told to fail, traffic at about 50 requests/s; the default error-rate
//! rule (window 60 s, `for` 60 s) routed to a webhook channel with `group_wait_secs` 0.
//!
//! `cargo bench --bench alert_latency` (`RUNS=N` in the environment) prints each run's delay beyond `for`. In test mode
//! (`cargo test --all-targets`) it runs once with a 2 s `for` and a 1 s interval, so that it cannot rot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugwatch_server::{ServeConfig, Server};
use serde_json::json;

const TEMPLATE: &str = include_str!("../../runtime/tests/fixtures/plugin.wat.in");
const PASSWORD: &str = "alert latency bench password";

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if bench { 3 } else { 1 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut delays = Vec::new();
    for run in 0..runs {
        let delay = rt.block_on(once(bench));
        println!("run {run}: the webhook got the alert {:.2} s after the `for` ran out", delay.as_secs_f64());
        delays.push(delay);
    }
    delays.sort();
    println!(
        "delay beyond `for`: median {:.2} s, max {:.2} s over {runs} runs (evaluation interval {} s)",
        delays[delays.len() / 2].as_secs_f64(),
        delays.last().unwrap().as_secs_f64(),
        if bench { 5 } else { 1 }
    );
}

async fn once(bench: bool) -> Duration {
    let for_secs: u64 = if bench { 60 } else { 2 };
    let received: Arc<Mutex<Option<Instant>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().fallback(move || {
            let received = received.clone();
            async move {
                received.lock().unwrap().get_or_insert_with(Instant::now);
                "ok"
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/alert", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        admin_password: Some(plugwatch_server::config::Secret(PASSWORD.to_owned())),
        ..ServeConfig::default()
    };
    if !bench {
        config.alerts.interval_secs = 1;
    }
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let state = server.state().clone();
    let (admin, _) = state.access.login("admin", PASSWORD, "127.0.0.1").await.unwrap();
    let spec = plugwatch_access::NewToken {
        name: "bench".into(),
        role: plugwatch_access::Role::Admin,
        expires_in: None,
        service: true,
    };
    let token = state.access.create_token(&admin, spec).await.unwrap().1;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let auth = format!("Bearer {token}");

    // Fails when its input is `1`, else echoes.
    let body = r#"(if (result i32) (i32.eq (i32.load8_u (local.get $input)) (i32.const 49))
        (then (call $err (i32.const 100) (i32.const 4)))
        (else (call $ok (local.get $input) (local.get $input_len))))"#;
    let wasm = wat::parse_str(TEMPLATE.replace("{extra}", r#"(data (i32.const 100) "nope")"#).replace("{body}", body))
        .unwrap();
    let manifest = json!({"name": "flaky", "version": "1.0.0", "hooks": []});
    let form = reqwest::multipart::Form::new()
        .part("manifest", reqwest::multipart::Part::text(manifest.to_string()))
        .part("component", reqwest::multipart::Part::bytes(wasm));
    let r = client.post(url("/api/v1/plugins")).header("authorization", &auth).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let rules: serde_json::Value = client
        .get(url("/api/v1/alerts/rules"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rule = rules["rules"].as_array().unwrap().iter().find(|r| r["name"] == "Error rate above 5 %").unwrap().clone();
    if !bench {
        let quick = json!({"name": rule["name"], "metric": "error_rate", "threshold": 0.05, "window_secs": 10,
            "for_secs": for_secs, "keep_firing_for_secs": 0, "no_data": "ok", "severity": "critical"});
        let r = client
            .put(url(&format!("/api/v1/alerts/rules/{}", rule["id"])))
            .header("authorization", &auth)
            .json(&quick)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    } else {
        assert_eq!(rule["for_secs"], for_secs);
    }
    let channel = json!({"name": "bench", "kind": "webhook", "group_wait_secs": 0, "secrets": {"url": receiver}});
    let r =
        client.post(url("/api/v1/alerts/channels")).header("authorization", &auth).json(&channel).send().await.unwrap();
    assert_eq!(r.status(), 201);

    // A healthy minute (10 s in test mode), then failing until the receiver hears of it.
    let invoke = |input: &'static str| {
        let (client, url, auth) = (client.clone(), url("/api/v1/plugins/flaky/invoke"), auth.clone());
        async move {
            let body = json!({"hook": "order.created", "input": input.parse::<serde_json::Value>().unwrap()});
            client.post(url).header("authorization", auth).json(&body).send().await.unwrap();
        }
    };
    let healthy = Instant::now() + if bench { Duration::from_secs(60) } else { Duration::from_secs(3) };
    while Instant::now() < healthy {
        invoke("0").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failing = Instant::now();
    while received.lock().unwrap().is_none() {
        assert!(failing.elapsed() < Duration::from_secs(for_secs + 60), "no alert within for + 60 s");
        invoke("1").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().unwrap().unwrap();
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    (got - failing).saturating_sub(Duration::from_secs(for_secs))
}
