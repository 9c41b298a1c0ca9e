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
