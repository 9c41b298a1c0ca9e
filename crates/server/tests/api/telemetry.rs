//! Reading telemetry over HTTP: series, the run log, the overview and the host.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn series_count_every_invocation_with_latency_quantiles() {
    let server = TestServer::start().await;
    server.upload(manifest("echo", "1.0.0", &[]), echo()).await;
    server.upload(manifest("refuser", "1.0.0", &[]), refuser()).await;
    for i in 0..12 {
        server.invoke("echo", "h", json!(i)).await;
    }
    for _ in 0..3 {
        server.invoke("refuser", "h", json!(0)).await;
    }
    let (status, body) = server.get("/api/v1/plugins/echo/series?step=10").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resolution"], "10s");
    let points = body["points"].as_array().unwrap();
    let requests: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 12);
    let busy = points.iter().find(|p| p["requests"].as_u64().unwrap() > 0).unwrap();
    assert!(busy["p95_ms"].as_f64().unwrap() > 0.0, "{busy}");
    assert_eq!(busy["error_rate"], 0.0);

    let (_, body) = server.get("/api/v1/plugins/refuser/series").await;
    let failing =
        body["points"].as_array().unwrap().iter().find(|p| p["requests"].as_u64().unwrap() > 0).unwrap().clone();
    assert_eq!(failing["error_rate"], 1.0);
    assert_eq!(failing["outcomes"]["plugin_error"], 3);

    let (status, body) = server.get("/api/v1/plugins/echo/series?from=tomorrow").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("`from`"));
    let (status, _) = server.get("/api/v1/plugins/echo/series?step=0").await;
    assert_eq!(status, 400);
    assert_eq!(server.get("/api/v1/plugins/ghost/series").await.0, 404);
}

#[tokio::test]
async fn the_run_log_keeps_recent_invocations_with_their_logs() {
    let server = TestServer::start().await;
    let logger = component(
        "(call $log (i32.const 3) (i32.const 100) (i32.const 12)) (call $ok (local.get $input) (local.get $input_len))",
        r#"(data (i32.const 100) "low on stock")"#,
    );
    server.upload(manifest("logger", "1.0.0", &[]), logger).await;
    for i in 0..3 {
        server.invoke("logger", "order.created", json!(i)).await;
    }
    let (status, body) = server.get("/api/v1/plugins/logger/invocations?limit=2").await;
    assert_eq!(status, 200);
    let runs = body["invocations"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["hook"], "order.created");
    assert_eq!(runs[0]["logs"][0]["message"], "low on stock");
    assert_eq!(runs[0]["logs"][0]["level"], "warn");
    assert!(runs[0]["started_at"].as_str().unwrap() >= runs[1]["started_at"].as_str().unwrap(), "newest first");
    let (_, body) = server.get("/api/v1/plugins/logger/invocations?failures=true").await;
    assert_eq!(body["invocations"], json!([]));
}

#[tokio::test]
async fn the_overview_lists_every_plugin_with_live_numbers_and_the_host() {
    let server = TestServer::start().await;
    server.upload(manifest("echo", "1.0.0", &[]), echo()).await;
    server.upload(manifest("idle", "1.0.0", &[]), echo()).await;
    for i in 0..4 {
        server.invoke("echo", "h", json!(i)).await;
    }
    let (status, body) = server.get("/api/v1/overview").await;
    assert_eq!(status, 200);
    let plugins = body["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    let echo = plugins.iter().find(|p| p["name"] == "echo").unwrap();
    assert_eq!(echo["live"]["requests"], 4, "{echo}");
    assert!(echo["live"]["rps"].as_f64().unwrap() > 0.0);
    assert!(body["host"]["memory_total_bytes"].as_u64().unwrap() > 0, "the host is sampled at start: {body}");

    let (status, body) = server.get("/api/v1/host").await;
    assert_eq!(status, 200);
    assert!(body["latest"]["cpu_cores"].as_u64().unwrap() >= 1);
}
