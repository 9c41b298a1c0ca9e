//! Hooks: filter chains in priority order, actions, and both failure policies.

use serde_json::json;

use crate::support::*;

async fn prefix_plugin(server: &TestServer, name: &str, prefix: &str, priority: i32, policy: &str) {
    let m = json!({
        "name": name, "version": "1.0.0", "config": {"prefix": prefix},
        "hooks": [{"hook": "order.pricing", "priority": priority}], "failure_policy": policy,
    });
    assert_eq!(server.upload(m, prefixer()).await.0, 201);
}

#[tokio::test]
async fn a_filter_chain_runs_in_priority_order_and_passes_the_payload_on() {
    let server = TestServer::start().await;
    // Uploaded out of order: priority decides. Each puts a digit in front: 0 → 30 → 230 → 1230.
    prefix_plugin(&server, "second", "2", 20, "fail_open").await;
    prefix_plugin(&server, "first", "3", 10, "fail_open").await;
    prefix_plugin(&server, "third", "1", 30, "fail_open").await;
    let (status, body) = server.post("/api/v1/hooks/order.pricing", json!({"input": 0})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!(1230));
    let order: Vec<_> = body["plugins"].as_array().unwrap().iter().map(|r| r["plugin"].as_str().unwrap()).collect();
    assert_eq!(order, ["first", "second", "third"]);
    assert!(body["plugins"].as_array().unwrap().iter().all(|r| r["outcome"] == "ok" && r["wall_us"].is_u64()));

    let (_, body) = server.get("/api/v1/hooks").await;
    assert_eq!(body["hooks"], json!([{"hook": "order.pricing", "subscribers": 3}]));
}

#[tokio::test]
async fn fail_open_skips_a_failing_plugin_and_fail_closed_stops_the_chain() {
    let server = TestServer::start().await;
    prefix_plugin(&server, "first", "3", 10, "fail_open").await;
    let refuse = |policy: &str| json!({"name": "refuser", "version": "1.0.0", "hooks": [{"hook": "order.pricing", "priority": 20}], "failure_policy": policy});
    server.upload(refuse("fail_open"), refuser()).await;
    prefix_plugin(&server, "last", "1", 30, "fail_open").await;

    let (status, body) = server.post("/api/v1/hooks/order.pricing", json!({"input": 0})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!(130), "the refuser was skipped");
    assert_eq!(body["plugins"][1]["outcome"], "plugin_error");
    assert_eq!(body["plugins"][1]["skipped"], true);

    // The same plugin under fail_closed: a new version with that policy.
    let mut closed = refuse("fail_closed");
    closed["version"] = json!("2.0.0");
    server.upload(closed, refuser()).await;
    let (status, body) = server.post("/api/v1/hooks/order.pricing", json!({"input": 0})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["failed"], "refuser");
    assert!(body["error"].as_str().unwrap().contains("plugin `refuser` failed"), "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"));
    assert_eq!(body["plugins"].as_array().unwrap().len(), 2, "the last plugin did not run");
}

#[tokio::test]
async fn actions_all_run_on_the_same_input_and_their_results_are_collected() {
    let server = TestServer::start().await;
    for (name, prefix) in [("a", "1"), ("b", "2")] {
        let m = json!({"name": name, "version": "1.0.0", "config": {"prefix": prefix}, "hooks": [{"hook": "order.completed"}]});
        server.upload(m, prefixer()).await;
    }
    server.upload(json!({"name": "c", "version": "1.0.0", "hooks": [{"hook": "order.completed"}]}), refuser()).await;
    let (status, body) = server.post("/api/v1/hooks/order.completed", json!({"input": 5, "mode": "actions"})).await;
    assert_eq!(status, 200, "{body}");
    let runs = body["plugins"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["output"], json!(15));
    assert_eq!(runs[1]["output"], json!(25));
    assert_eq!((runs[2]["outcome"].as_str(), &runs[2]["skipped"]), (Some("plugin_error"), &json!(true)));
}

#[tokio::test]
async fn a_hook_without_subscribers_returns_its_input_and_bad_modes_are_refused() {
    let server = TestServer::start().await;
    let (status, body) = server.post("/api/v1/hooks/nobody.listens", json!({"input": {"a": 1}})).await;
    assert_eq!((status, &body["output"]), (200, &json!({"a": 1})));
    let (status, body) = server.post("/api/v1/hooks/x", json!({"mode": "broadcast"})).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("broadcast"));
}

#[tokio::test]
async fn a_fail_closed_filter_whose_plugin_is_overloaded_answers_503_with_retry_after() {
    let server = TestServer::start().await;
    let m = json!({
        "name": "pricing", "version": "1.0.0", "hooks": [{"hook": "order.pricing", "priority": 10}],
        "failure_policy": "fail_closed", "limits": {"max_concurrency": 1, "max_queue": 0, "timeout_ms": 1500},
    });
    assert_eq!(server.upload(m, spinner()).await.0, 201);
    let busy = server.post("/api/v1/hooks/order.pricing", json!({"input": 0}));
    let turned_away = async {
        // The spinner holds the plugin's one slot for its whole timeout.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let response = server
            .client
            .post(server.url("/api/v1/hooks/order.pricing"))
            .json(&json!({"input": 0}))
            .send()
            .await
            .unwrap();
        (response.headers().get("retry-after").cloned(), status_json(response).await)
    };
    let ((status, body), (retry, (status2, body2))) = tokio::join!(busy, turned_away);
    assert_eq!(status, 502, "the spinner itself timed out: {body}");
    assert_eq!(body["plugins"][0]["outcome"], "timeout");
    assert_eq!(status2, 503, "{body2}");
    assert_eq!(body2["plugins"][0]["outcome"], "rejected");
    assert_eq!(retry.expect("Retry-After"), "1");
}

#[tokio::test]
async fn concurrent_hook_calls_of_a_compute_plugin_wait_for_the_cores_instead_of_failing() {
    let server = TestServer::start().await;
    let m = json!({
        "name": "pricing", "version": "1.0.0", "hooks": [{"hook": "order.pricing", "priority": 10}],
        "failure_policy": "fail_closed",
    });
    assert_eq!(server.upload(m, worker()).await.0, 201);
    // Each call spins 2.5×10⁷ times (about 15 ms here), well within the default 100 ms timeout alone;
    // sixteen at once need more wall time than that from two cores.
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (server.client.clone(), server.url("/api/v1/hooks/order.pricing"));
            tokio::spawn(async move {
                status_json(client.post(url).json(&json!({"input": "x".repeat(23)})).send().await.unwrap()).await
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["plugins"][0]["outcome"], "ok");
    }
    // The wait is measured and exposed.
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("plugwatch_plugin_queue_seconds_total{plugin=\"pricing\""))
        .unwrap_or_else(|| panic!("no queue wait for the plugin:\n{metrics}"));
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{line}");
}
