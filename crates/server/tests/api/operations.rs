//! Health, readiness, Prometheus metrics, graceful drain and restarts.

use std::time::Duration;

use prom_text_format_parser::{Scrape, ValueType};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body) = server.get("/readyz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_invocations() {
    let server = TestServer::start().await;
    server.upload(manifest("echo", "1.0.0", &[]), echo()).await;
    server.upload(manifest("refuser", "1.0.0", &[]), refuser()).await;
    for _ in 0..5 {
        server.invoke("echo", "h", json!(1)).await;
    }
    for _ in 0..2 {
        server.invoke("refuser", "h", json!(1)).await;
    }
    let response = server.client.get(server.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let sample = |name: &str, kind: ValueType, labels: &[(&str, &str)]| -> f64 {
        let family = scrape.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}\n{text}"));
        family
            .samples
            .iter()
            .find(|s| {
                s.value.value_type == kind
                    && labels.iter().all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
            .value
            .value
            .as_f64()
    };
    let echo = [("plugin", "echo"), ("version", "1.0.0")];
    assert_eq!(
        sample("plugwatch_plugin_invocations_total", ValueType::Sample, &[echo[0], echo[1], ("outcome", "ok")]),
        5.0
    );
    assert_eq!(
        sample(
            "plugwatch_plugin_invocations_total",
            ValueType::Sample,
            &[("plugin", "refuser"), ("outcome", "plugin_error")]
        ),
        2.0
    );
    assert_eq!(sample("plugwatch_plugin_duration_seconds", ValueType::Count, &echo), 5.0);
    assert!(sample("plugwatch_plugin_instructions_total", ValueType::Sample, &echo) > 0.0);
    assert!(sample("plugwatch_plugin_memory_peak_bytes", ValueType::Sample, &echo) >= 65536.0);
    assert!(sample("process_resident_memory_bytes", ValueType::Sample, &[]) > 0.0);
    assert!(sample("plugwatch_host_memory_total_bytes", ValueType::Sample, &[]) > 0.0);
    // A quick plugin keeps no pool: it instantiates on each call's path, which is no miss.
    assert_eq!(sample("plugwatch_plugin_pool_max_instances", ValueType::Sample, &echo), 0.0);
    assert_eq!(sample("plugwatch_plugin_pool_target_instances", ValueType::Sample, &echo), 0.0);
    assert_eq!(sample("plugwatch_plugin_pool_ready_instances", ValueType::Sample, &echo), 0.0);
    assert_eq!(sample("plugwatch_plugin_pool_misses_total", ValueType::Sample, &echo), 0.0);
    assert_eq!(sample("plugwatch_plugin_pool_memory_bytes", ValueType::Sample, &echo), 0.0);
    // The process's pools against their budget: the configured one, and nothing held by the quick plugins.
    let budget = plugwatch_runtime::RuntimeConfig::default().pool_memory_budget_bytes as f64;
    assert_eq!(sample("plugwatch_runtime_pool_memory_budget_bytes", ValueType::Sample, &[]), budget);
    assert_eq!(sample("plugwatch_runtime_pool_memory_bytes", ValueType::Sample, &[]), 0.0);
    // What the engine's idle slots keep resident depends on what ran before: it is written, whatever it is.
    sample("plugwatch_runtime_idle_slot_resident_bytes", ValueType::Sample, &[]);
}

#[tokio::test]
async fn shutdown_drains_in_flight_invocations_then_refuses_connections() {
    let mut server = TestServer::start().await;
    server.upload(json!({"name": "slow", "version": "1.0.0", "limits": {"timeout_ms": 10000}}), worker()).await;
    // A few hundred milliseconds of work: the request is in flight when shutdown begins.
    let input = "x".repeat(150);
    let (client, url) = (server.client.clone(), server.url("/api/v1/plugins/slow/invoke"));
    let request = async move {
        status_json(client.post(url).json(&json!({"hook": "h", "input": input})).send().await.unwrap()).await
    };
    let stop = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Wait for the whole shutdown: it cannot finish before the in-flight request does.
        server.signal_stop().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(request, stop);
    assert_eq!((status, body["outcome"].as_str()), (200, Some("ok")), "the in-flight request completed");
    assert!(server.client.get(server.url("/healthz")).send().await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn plugins_and_telemetry_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_owned(), |_| {}).await;
    server.upload(manifest("echo", "1.0.0", &[("order.created", 1)]), echo()).await;
    server.upload(manifest("refuser", "1.0.0", &[]), refuser()).await;
    server.post_empty("/api/v1/plugins/refuser/disable").await;
    for i in 0..7 {
        server.invoke("echo", "order.created", json!(i)).await;
    }
    server.stop().await;

    let server = TestServer::start_in(dir.path().to_owned(), |_| {}).await;
    let (_, body) = server.get("/api/v1/plugins").await;
    let statuses: Vec<_> =
        body["plugins"].as_array().unwrap().iter().map(|p| (p["name"].clone(), p["status"].clone())).collect();
    assert_eq!(statuses, [(json!("echo"), json!("running")), (json!("refuser"), json!("disabled"))]);
    assert_eq!(server.invoke("echo", "order.created", json!(1)).await.1["outcome"], "ok");
    let (_, body) = server.get("/api/v1/plugins/echo/series?step=60").await;
    let requests: u64 = body["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert!(requests >= 7, "the 7 invocations before the restart are in the series: {body}");
    let (_, body) = server.get("/api/v1/plugins/echo/invocations?limit=20").await;
    assert!(body["invocations"].as_array().unwrap().len() >= 7, "{body}");
    server.stop().await;
}
