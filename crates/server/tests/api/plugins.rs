//! The registry over HTTP: upload, validation errors, versions, enable/disable, delete, invoke.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn upload_list_get_and_invoke() {
    let server = TestServer::start().await;
    let (status, body) = server.upload(manifest("echo", "1.0.0", &[("order.created", 10)]), echo()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["sha256"].as_str().unwrap().len(), 64);

    let (status, body) = server.get("/api/v1/plugins").await;
    assert_eq!(status, 200);
    assert_eq!(body["plugins"][0]["name"], "echo");
    assert_eq!(body["plugins"][0]["status"], "running");

    let (status, body) = server.invoke("echo", "order.created", json!({"order_id": "ord-1"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "ok");
    assert_eq!(body["output"], json!({"order_id": "ord-1"}));
    assert!(body["wall_us"].as_u64().is_some() && body["instructions"].as_u64().unwrap() > 0);

    let (status, body) = server.get("/api/v1/plugins/echo").await;
    assert_eq!(status, 200);
    assert_eq!(body["versions"][0]["version"], "1.0.0");
    assert_eq!(body["versions"][0]["active"], true);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_reason() {
    let server = TestServer::start().await;
    let (status, body) = server.upload(json!({"name": "Bad Name", "version": "1.0.0"}), echo()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_manifest");
    assert!(body["error"]["message"].as_str().unwrap().contains("`name`"), "{body}");

    let (status, body) = server.upload(json!({"name": "x", "version": "1.0.0", "colour": "red"}), echo()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");

    let (status, body) = server.upload(manifest("x", "1.0.0", &[]), b"MZ\x90\x00 not wasm".to_vec()).await;
    assert_eq!(status, 422);
    assert!(body["error"]["message"].as_str().unwrap().contains("not a WebAssembly binary"), "{body}");

    let core = wat::parse_str("(module)").unwrap();
    let (status, body) = server.upload(manifest("x", "1.0.0", &[]), core).await;
    assert_eq!(status, 422);
    assert!(body["error"]["message"].as_str().unwrap().contains("not a component"), "{body}");

    let limits = json!({"name": "x", "version": "1.0.0", "limits": {"max_concurrency": 0}});
    let (status, body) = server.upload(limits, echo()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("max_concurrency"), "{body}");

    let form = reqwest::multipart::Form::new().part("manifest", reqwest::multipart::Part::text("{}"));
    let response = server.client.post(server.url("/api/v1/plugins")).multipart(form).send().await.unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 400, "{body}");

    // Nothing was stored by any of that.
    let (_, body) = server.get("/api/v1/plugins").await;
    assert_eq!(body["plugins"], json!([]));
}

#[tokio::test]
async fn same_version_with_another_component_is_a_conflict() {
    let server = TestServer::start().await;
    assert_eq!(server.upload(manifest("p", "1.0.0", &[]), echo()).await.0, 201);
    let (status, body) = server.upload(manifest("p", "1.0.0", &[]), echo()).await;
    assert_eq!((status, &body["created"]), (200, &json!(false)), "the same upload again is a no-op");
    let (status, body) = server.upload(manifest("p", "1.0.0", &[]), refuser()).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "version_conflict");
}

#[tokio::test]
async fn versions_activate_and_roll_back() {
    let server = TestServer::start().await;
    // The prefixer puts its `prefix` config before the input: "1" + "0" is the JSON number 10.
    let v = |version: &str, prefix: &str| json!({"name": "p", "version": version, "config": {"prefix": prefix}});
    server.upload(v("1.0.0", "1"), prefixer()).await;
    let (status, body) = server.upload(v("2.0.0", "2"), prefixer()).await;
    assert_eq!((status, &body["active"]), (201, &json!(true)), "a new upload becomes active");
    let output = |body: serde_json::Value| (body["version"].clone(), body["output"].clone());
    assert_eq!(output(server.invoke("p", "h", json!(0)).await.1), (json!("2.0.0"), json!(20)));

    let (status, body) = server.post_empty("/api/v1/plugins/p/rollback").await;
    assert_eq!(status, 200);
    assert_eq!(body["active_version"], "1.0.0");
    assert_eq!(output(server.invoke("p", "h", json!(0)).await.1), (json!("1.0.0"), json!(10)));

    assert_eq!(server.post_empty("/api/v1/plugins/p/versions/2.0.0/activate").await.0, 204);
    assert_eq!(output(server.invoke("p", "h", json!(0)).await.1), (json!("2.0.0"), json!(20)));
    let (status, body) = server.post_empty("/api/v1/plugins/p/versions/9.9.9/activate").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_version")));

    let staged = json!({"name": "p", "version": "3.0.0", "config": {"prefix": "3"}});
    let form = reqwest::multipart::Form::new()
        .part("manifest", reqwest::multipart::Part::text(staged.to_string()))
        .part("component", reqwest::multipart::Part::bytes(prefixer()));
    let response =
        server.client.post(server.url("/api/v1/plugins?activate=false")).multipart(form).send().await.unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!((status, &body["active"]), (201, &json!(false)), "{body}");
    assert_eq!(output(server.invoke("p", "h", json!(0)).await.1), (json!("2.0.0"), json!(20)));
}

#[tokio::test]
async fn unknown_disabled_and_deleted_plugins() {
    let server = TestServer::start().await;
    let (status, body) = server.invoke("ghost", "h", json!(null)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_plugin")));

    server.upload(manifest("p", "1.0.0", &[("h", 1)]), echo()).await;
    assert_eq!(server.post_empty("/api/v1/plugins/p/disable").await.0, 204);
    let (status, body) = server.invoke("p", "h", json!(null)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("plugin_disabled")));
    assert_eq!(server.get("/api/v1/plugins/p").await.1["plugin"]["status"], "disabled");
    assert_eq!(server.post_empty("/api/v1/plugins/p/enable").await.0, 204);
    assert_eq!(server.invoke("p", "h", json!(null)).await.0, 200);

    assert_eq!(server.delete("/api/v1/plugins/p").await.0, 204);
    assert_eq!(server.get("/api/v1/plugins/p").await.0, 404);
    assert_eq!(server.delete("/api/v1/plugins/p").await.0, 404);
}

#[tokio::test]
async fn oversized_input_and_overload_get_their_own_statuses() {
    let server = TestServer::start().await;
    let m = json!({"name": "small", "version": "1.0.0", "limits": {"max_input_bytes": 8}});
    server.upload(m, echo()).await;
    let (status, body) = server.invoke("small", "h", json!("more than eight bytes")).await;
    assert_eq!((status, body["outcome"].as_str()), (413, Some("input_too_large")));

    let m = json!({"name": "busy", "version": "1.0.0", "limits": {"max_concurrency": 1, "max_queue": 0, "timeout_ms": 1500}});
    server.upload(m, spinner()).await;
    let first = server.invoke("busy", "h", json!(null));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let response = server
            .client
            .post(server.url("/api/v1/plugins/busy/invoke"))
            .json(&json!({"hook": "h"}))
            .send()
            .await
            .unwrap();
        (response.headers().get("retry-after").cloned(), status_json(response).await)
    };
    let ((status, body), (retry, (status2, body2))) = tokio::join!(first, second);
    assert_eq!((status, body["outcome"].as_str()), (200, Some("timeout")));
    assert_eq!((status2, body2["outcome"].as_str()), (429, Some("rejected")));
    assert_eq!(retry.unwrap(), "1");
}

#[tokio::test]
async fn malformed_requests_are_told_what_is_wrong() {
    let server = TestServer::start().await;
    server.upload(manifest("p", "1.0.0", &[]), echo()).await;
    let response = server
        .client
        .post(server.url("/api/v1/plugins/p/invoke"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().to_lowercase().contains("json"), "{body}");

    let (status, body) = server.post("/api/v1/plugins/p/invoke", json!({"hook": "h", "input_base64": "%%%"})).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("input_base64"));

    let (status, body) = server.post("/api/v1/plugins/p/invoke", json!({"hook": "Bad Hook"})).await;
    assert_eq!(status, 400, "{body}");

    let big = "x".repeat(5 << 20);
    let (status, body) = server.post("/api/v1/plugins/p/invoke", json!({"hook": "h", "input": big})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");

    let (status, _) = server.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_raw_endpoint_returns_the_output_verbatim_with_the_measurement_in_headers() {
    let server = TestServer::start().await;
    server.upload(manifest("echo", "1.0.0", &[]), echo()).await;
    server.upload(manifest("refuser", "1.0.0", &[]), refuser()).await;
    // Key order and spacing survive: the plugin's bytes are passed through, not re-encoded.
    let body = r#"{"z": 1, "a": [2, 3]}"#;
    let response =
        server.client.post(server.url("/api/v1/plugins/echo/invoke/order.created")).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["plugwatch-outcome"], "ok");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers()["plugwatch-wall-us"].to_str().unwrap().parse::<u64>().is_ok());
    assert!(response.headers()["plugwatch-instructions"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(response.text().await.unwrap(), body);

    let response =
        server.client.post(server.url("/api/v1/plugins/echo/invoke/h")).body(&b"\xff\x00"[..]).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"\xff\x00");

    let response = server.client.post(server.url("/api/v1/plugins/refuser/invoke/h")).body("x").send().await.unwrap();
    assert_eq!(response.headers()["plugwatch-outcome"], "plugin_error");
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["message"].as_str()),
        (422, Some("plugin_error"), Some("nope"))
    );

    // The JSON endpoint keeps the plugin's JSON text as it is, too.
    let response = server
        .client
        .post(server.url("/api/v1/plugins/echo/invoke"))
        .header("content-type", "application/json")
        .body(r#"{"hook": "h", "input": {"z": 1, "a": 2}}"#)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains(r#""output":{"z": 1, "a": 2}"#), "{text}");
}
