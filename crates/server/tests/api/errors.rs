//! Every error has the documented shape (`{"error": {"code", "message"}}`, JSON) with a message that names
//! the limit it hit and repeats input only in part and without markup; every response carries the
//! security headers.

use serde_json::{Value, json};

use crate::support::*;

const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// The security headers, and a Content-Security-Policy that forbids framing.
fn assert_security_headers(what: &str, response: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(response.headers().get(name).and_then(|v| v.to_str().ok()), Some(value), "{name} of {what}");
    }
    let csp = response.headers().get("content-security-policy").and_then(|v| v.to_str().ok());
    assert!(csp.is_some_and(|c| c.contains("frame-ancestors 'none'")), "CSP of {what}: {csp:?}");
}

/// Checks an error response's headers and shape; returns its status, code and message.
async fn error_of(what: &str, response: reqwest::Response) -> (u16, String, String) {
    assert_security_headers(what, &response);
    let status = response.status().as_u16();
    assert!(status >= 400, "{what}: {status}");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "{what}");
    let text = response.text().await.unwrap();
    assert!(!text.contains(['<', '>', '&']), "{what}: markup sent raw: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let (code, message) = (body["error"]["code"].as_str(), body["error"]["message"].as_str());
    assert!(body.as_object().unwrap().len() == 1 && body["error"].as_object().unwrap().len() == 2, "{what}: {body}");
    let (Some(code), Some(message)) = (code, message) else { panic!("{what}: {body}") };
    assert!(!code.is_empty() && !message.is_empty(), "{what}: {body}");
    (status, code.to_owned(), message.to_owned())
}

async fn small_limits() -> TestServer {
    TestServer::start_with(|c| {
        c.http.max_body_bytes = 64 << 10;
        c.http.max_upload_bytes = 128 << 10;
    })
    .await
}

#[tokio::test]
async fn bodies_over_their_limit_are_refused_naming_the_limit() {
    let server = small_limits().await;
    assert_eq!(server.upload(manifest("p", "1.0.0", &[]), echo()).await.0, 201);

    let big = vec![b'x'; 100 << 10];
    let raw = server.client.post(server.url("/api/v1/plugins/p/invoke/order.created")).body(big.clone());
    let (status, code, message) = error_of("raw invoke", raw.send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    assert_eq!(message, "the request body is larger than the limit of 64 KiB (http.max_body_bytes)");

    let json_body = format!("{{\"hook\": \"h\", \"input\": \"{}\"}}", "x".repeat(100 << 10));
    let request = server
        .client
        .post(server.url("/api/v1/plugins/p/invoke"))
        .header("content-type", "application/json")
        .body(json_body);
    let (status, _, message) = error_of("JSON invoke", request.send().await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(message.contains("64 KiB (http.max_body_bytes)"), "{message}");

    let hook = server.client.post(server.url("/api/v1/hooks/order.created")).body(big);
    assert_eq!(error_of("hook", hook.send().await.unwrap()).await.0, 413);

    let form = reqwest::multipart::Form::new()
        .part("manifest", reqwest::multipart::Part::text(manifest("p", "2.0.0", &[]).to_string()))
        .part("component", reqwest::multipart::Part::bytes(vec![0u8; 200 << 10]));
    let upload = server.client.post(server.url("/api/v1/plugins")).multipart(form);
    let (status, code, message) = error_of("upload", upload.send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    assert_eq!(message, "the request body is larger than the limit of 128 KiB (http.max_upload_bytes)");
}

#[tokio::test]
async fn an_upload_that_is_not_multipart_is_told_what_to_send() {
    let server = TestServer::start().await;
    let request = server.client.post(server.url("/api/v1/plugins")).json(&json!({"name": "p"}));
    let (status, code, message) = error_of("JSON upload", request.send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    assert_eq!(message, "expected a multipart/form-data body with the parts `manifest` and `component`");
}

#[tokio::test]
async fn echoed_input_is_cut_short_and_markup_is_never_sent_raw() {
    let server = TestServer::start().await;
    let long = "a".repeat(10_000);
    let response = server.client.get(server.url(&format!("/api/v1/plugins/{long}"))).send().await.unwrap();
    let (status, code, message) = error_of("long name", response).await;
    assert_eq!((status, code.as_str()), (404, "unknown_plugin"));
    assert!(message.contains(&format!("{}…", "a".repeat(64))), "{message}");
    assert!(!message.contains(&"a".repeat(65)) && message.chars().count() < 120, "{message}");

    let response = server.client.get(server.url("/api/v1/plugins/%3Cscript%3Ealert(1)%3C%2Fscript%3E")).send().await;
    let (status, _, message) = error_of("markup in a name", response.unwrap()).await;
    assert_eq!(status, 404);
    assert!(message.contains("<script>alert(1)</script>"), "escaped in JSON, the same text: {message}");

    let request = server
        .client
        .post(server.url("/api/v1/hooks/order.created"))
        .header("content-type", "application/json")
        .body(format!("{{\"mode\": \"{}<img src=x onerror=alert(1)>\"}}", "m".repeat(500)));
    let (status, _, message) = error_of("markup in a body", request.send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(message.contains("…") && !message.contains(&"m".repeat(65)), "{message}");
}

#[tokio::test]
async fn methods_a_path_does_not_have_are_refused_in_json_with_allow() {
    let server = TestServer::start().await;
    for (method, path, allow) in
        [("PUT", "/api/v1/plugins", "GET, POST"), ("DELETE", "/healthz", "GET"), ("POST", "/login", "GET,HEAD")]
    {
        let response = server.client.request(method.parse().unwrap(), server.url(path)).send().await.unwrap();
        let allowed = response.headers().get("allow").map(|v| v.to_str().unwrap().replace(' ', ""));
        assert_eq!(allowed.as_deref(), Some(allow.replace(' ', "").as_str()), "{method} {path}");
        let (status, code, message) = error_of(&format!("{method} {path}"), response).await;
        assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
        assert!(message.starts_with(&format!("{method} is not allowed")), "{message}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_pages_keep_their_own_policy() {
    let server = TestServer::start().await;
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let sign_in = browser
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_security_headers("sign-in", &sign_in);
    for (who, client, path, status) in [
        ("admin", &server.client, "/api/v1/plugins", 200),
        ("admin", &server.client, "/metrics", 200),
        ("anonymous", &server.anonymous, "/healthz", 200),
        ("anonymous", &server.anonymous, "/readyz", 200),
        ("anonymous", &server.anonymous, "/api/v1/plugins", 401),
        ("anonymous", &server.anonymous, "/nothing/here", 401),
        ("admin", &server.client, "/nothing/here", 404),
        ("anonymous", &server.anonymous, "/login", 200),
        ("anonymous", &server.anonymous, "/login.js", 200),
        ("browser", &browser, "/api/v1/docs/", 200),
        ("browser", &browser, "/api/v1/docs/swagger-ui.css", 200),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{who} GET {path}");
        assert_security_headers(&format!("{who} GET {path}"), &response);
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        if path == "/login" || path == "/login.js" || path.starts_with("/api/v1/docs") {
            assert!(csp.contains("script-src 'self'"), "{path} keeps its own policy: {csp}");
        } else {
            assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{path}");
        }
        if status >= 400 {
            error_of(&format!("{who} GET {path}"), response).await;
        }
    }
}

/// A path from the document with every parameter made malformed: markup and far too long.
fn malformed(path: &str) -> String {
    let bad = format!("%3Cb%3E{}", "x".repeat(300));
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str(&bad);
        rest = &rest[close + 1..];
    }
    out + rest
}

#[tokio::test]
async fn every_route_in_the_document_answers_malformed_requests_in_the_error_shape() {
    let server = TestServer::start().await;
    let (_, doc) = server.get("/api/v1/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<String> = item.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        // A method the path does not have.
        let absent = ["PUT", "PATCH", "DELETE", "POST"].into_iter().find(|m| !methods.iter().any(|h| h == m));
        let absent = absent.unwrap_or_else(|| panic!("{path} has every method"));
        let response = server.client.request(absent.parse().unwrap(), server.url(path)).send().await.unwrap();
        let (status, _, _) = error_of(&format!("{absent} {path}"), response).await;
        assert_eq!(status, 405, "{absent} {path}");
        for (method, operation) in item.as_object().unwrap() {
            let what = format!("{} {path}", method.to_uppercase());
            let public = operation["x-required"] == "public";
            // Credentials that are not of the documented form.
            let request = server.anonymous.request(method.to_uppercase().parse().unwrap(), server.url(path));
            let response = request.header("authorization", "Basic <admin>").send().await.unwrap();
            if public {
                assert_security_headers(&what, &response);
            } else {
                assert_eq!(error_of(&format!("{what} with Basic"), response).await.0, 401, "{what}");
            }
            // Malformed parameters, query and body, as an admin.
            let has_params = path.contains('{');
            let has_query = operation["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            let has_body = operation.get("requestBody").is_some();
            if !(has_params || has_query || has_body) {
                continue;
            }
            let url = server.url(&malformed(path)) + if has_query { "?bogus=%3Cb%3E" } else { "" };
            let mut request = server.client.request(method.to_uppercase().parse().unwrap(), url);
            if has_body {
                request = request.header("content-type", "application/json").body("{\"<b>\": ");
            }
            let (status, _, message) = error_of(&format!("malformed {what}"), request.send().await.unwrap()).await;
            assert!((400..500).contains(&status), "malformed {what}: {status}");
            assert!(message.chars().count() < 300, "malformed {what}: {message}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} operations with parameters or a body checked");
}
