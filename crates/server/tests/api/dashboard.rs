//! The dashboard over real HTTP: who gets its pages, what they are served with, and the live stream.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn the_dashboard_needs_a_reader_and_sends_browsers_to_sign_in() {
    let server = TestServer::start().await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response =
        browser.get(server.url("/plugin-monitoring/plugins/x")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(response.status(), 303, "a browser without a session is sent to sign in");
    assert_eq!(response.headers()["location"], "/login?next=/plugin-monitoring/plugins/x");
    let response = browser.get(server.url("/plugin-monitoring/assets/app.js")).send().await.unwrap();
    assert_eq!(response.status(), 401, "the assets need a session too");

    let invoker = server.client_for(plugwatch_access::Role::Invoker).await;
    let response = invoker.get(server.url("/plugin-monitoring")).send().await.unwrap();
    assert_eq!(response.status(), 403, "an invoker gets no dashboard");

    let viewer = server.client_for(plugwatch_access::Role::Viewer).await;
    let home = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let home = home.default_headers(viewer_headers(&server).await).build().unwrap();
    let response = home.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/plugin-monitoring", "/ is the dashboard");
    for path in ["/plugin-monitoring", "/plugin-monitoring/alerts", "/plugin-monitoring/plugins/any"] {
        let response = viewer.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(response.text().await.unwrap().contains("/plugin-monitoring/assets/app.js"));
    }
    for asset in ["app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"] {
        let response = viewer.get(server.url(&format!("/plugin-monitoring/assets/{asset}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let response = viewer.get(server.url("/plugin-monitoring/assets/nothing.js")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

/// A viewer's bearer header, for clients built with other settings.
async fn viewer_headers(server: &TestServer) -> reqwest::header::HeaderMap {
    let token =
        token_for(&server.access, "viewer-user", "a long enough password", plugwatch_access::Role::Viewer).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers
}

#[tokio::test]
async fn the_live_stream_sends_the_rows_a_page_asks_for_at_once_and_every_five_seconds() {
    let server = TestServer::start().await;
    server.upload(manifest("shown", "1.0.0", &[]), echo()).await;
    server.upload(manifest("hidden", "1.0.0", &[]), echo()).await;
    server.invoke("shown", "order.created", serde_json::json!(1)).await;
    let response = server.client.get(server.url("/api/v1/live?plugins=shown,absent")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut stream = EventStream::new(response);
    let mut events: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while events.len() < 2 {
        let event = stream.next(deadline, "two events within 15 s").await.expect("the stream goes on");
        if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
            assert!(event.contains("event: update"), "{event}");
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    let first = &events[0];
    assert_eq!(first["plugins"]["shown"]["live"]["requests"], 1, "{first}");
    assert!(first["plugins"].get("hidden").is_none(), "only the rows asked for");
    assert!(first["plugins"].get("absent").is_none());
    assert!(events[1]["seq"].as_u64() > first["seq"].as_u64(), "a later frame");
    // Shutdown ends the stream at once rather than waiting out the drain timeout for it.
    let mut server = server;
    let started = std::time::Instant::now();
    let stopping = server.signal_stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stream.next(deadline, "the live stream did not end at shutdown").await.is_some() {}
    stopping.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "shutdown waited for the stream: {:?}", started.elapsed());
}
