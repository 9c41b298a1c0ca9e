//! Access control over HTTP: every route × every role, sign-in and sessions, CSRF, lockout, tokens, the
//! last-admin guard, and the audit log.

use std::time::Duration;

use plugwatch_access::{NewToken, Permission, Role};
use serde_json::{Value, json};

use crate::support::*;

/// What an operation's `x-required` demands.
fn allows(required: &str, role: Role) -> bool {
    let permission = match required {
        "public" | "authenticated" => return true,
        "read" => Permission::Read,
        "invoke" => Permission::Invoke,
        "operate" => Permission::Operate,
        "manage_users" => Permission::ManageUsers,
        "manage_service_tokens" => Permission::ManageServiceTokens,
        "read_audit" => Permission::ReadAudit,
        "manage_backups" => Permission::ManageBackups,
        other => panic!("unknown requirement {other}"),
    };
    role.allows(permission)
}

fn concrete(path: &str) -> String {
    path.replace("{name}", "matrix")
        .replace("{version}", "1.0.0")
        .replace("{hook}", "order.created")
        .replace("{username}", "nobody")
        .replace("{id}", "999999")
}

async fn call(client: &reqwest::Client, method: &str, url: &str) -> u16 {
    let request = client.request(method.parse().unwrap(), url);
    let request = if method == "GET" || method == "DELETE" {
        request
    } else {
        request.header("content-type", "application/json").body("{}")
    };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_route_answers_each_kind_of_caller_as_its_rule_says() {
    let server = TestServer::start().await;
    server.upload(manifest("matrix", "1.0.0", &[("order.created", 1)]), echo()).await;
    let (status, doc) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));

    let mut clients = Vec::new();
    for role in Role::ALL {
        clients.push((role, server.client_for(role).await));
    }
    // An expired and a revoked admin token must be as good as none.
    let (admin, _) = server.access.login("admin", ADMIN_PASSWORD, "127.0.0.1").await.unwrap();
    let expiring = NewToken {
        name: "expiring".into(),
        role: Role::Admin,
        expires_in: Some(Duration::from_millis(1)),
        service: false,
    };
    let (_, expired) = server.access.create_token(&admin, expiring).await.unwrap();
    let revoking = NewToken { name: "revoked".into(), role: Role::Admin, expires_in: None, service: false };
    let (info, revoked) = server.access.create_token(&admin, revoking).await.unwrap();
    server.access.revoke_token(&admin, info.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (expired, revoked) = (client_with_token(&expired), client_with_token(&revoked));

    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let required =
                operation["x-required"].as_str().unwrap_or_else(|| panic!("{method} {path} has no x-required"));
            assert_ne!(required, "none", "{method} {path} has no access rule");
            let url = server.url(&concrete(path));
            let anonymous = call(&server.anonymous, &method, &url).await;
            if required == "public" {
                assert_ne!(anonymous, 401, "{method} {path} is public");
            } else {
                assert_eq!(anonymous, 401, "{method} {path} answered an anonymous caller");
                assert_eq!(call(&expired, &method, &url).await, 401, "{method} {path} with an expired token");
                assert_eq!(call(&revoked, &method, &url).await, 401, "{method} {path} with a revoked token");
            }
            for (role, client) in &clients {
                let status = call(client, &method, &url).await;
                if allows(required, *role) {
                    assert!(status != 401 && status != 403, "{method} {path} refused {} ({status})", role.as_str());
                } else {
                    assert_eq!(status, 403, "{method} {path} let {} through", role.as_str());
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations in the document");
    // No rule for a route that no longer exists.
    for rule in plugwatch_server::access_rules() {
        let documented = doc["paths"][rule.0].get(rule.1.to_lowercase()).is_some();
        assert!(documented, "rule for {} {} matches no route", rule.1, rule.0);
    }
    // Unknown paths reveal nothing to anonymous callers.
    assert_eq!(call(&server.anonymous, "GET", &server.url("/api/v1/nothing")).await, 401);
    assert_eq!(call(&server.client, "GET", &server.url("/api/v1/nothing")).await, 404);
}

fn cookie_client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

async fn login(
    server: &TestServer,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> (u16, Value, Option<String>) {
    let response = client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = status_json(response).await;
    (status, body, cookie)
}

#[tokio::test]
async fn a_browser_session_needs_its_csrf_token_for_changes_and_ends_on_logout() {
    let server = TestServer::start().await;
    server.upload(manifest("p", "1.0.0", &[]), echo()).await;
    let browser = cookie_client();
    let (status, body, cookie) = login(&server, &browser, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "not configured for TLS");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    assert_eq!(browser.get(server.url("/api/v1/plugins")).send().await.unwrap().status(), 200);
    let (status, body) = status_json(browser.post(server.url("/api/v1/plugins/p/disable")).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("csrf")), "a change without the CSRF token");
    let wrong =
        browser.post(server.url("/api/v1/plugins/p/disable")).header("x-csrf-token", "guess").send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let right =
        browser.post(server.url("/api/v1/plugins/p/disable")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(right.status(), 204);

    let (_, me) = status_json(browser.get(server.url("/api/v1/auth/me")).send().await.unwrap()).await;
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str(), me["csrf_token"].as_str()),
        (Some("admin"), Some("admin"), Some(csrf.as_str()))
    );
    let docs = browser.get(server.url("/api/v1/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "the vendored docs page");

    let out = browser.post(server.url("/api/v1/auth/logout")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(browser.get(server.url("/api/v1/plugins")).send().await.unwrap().status(), 401, "the session is over");
    assert_eq!(server.anonymous.get(server.url("/api/v1/docs/")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_account_out_and_are_audited() {
    let server = TestServer::start().await;
    let browser = cookie_client();
    for _ in 0..5 {
        let (status, body, _) = login(&server, &browser, "admin", "hunter2-not-it").await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    }
    let response = browser
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "locked out even with the right password");
    assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    let (_, body) = status_json(response).await;
    assert_eq!(body["error"]["code"], "locked_out");

    let (_, audit) = server.get("/api/v1/audit?action=login").await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().filter(|e| e["result"] == "failed").count() >= 5, "{audit}");
    assert!(entries.iter().any(|e| e["result"] == "denied"), "the locked-out attempt: {audit}");
    assert!(!audit.to_string().contains("hunter2-not-it") && !audit.to_string().contains(ADMIN_PASSWORD));
}

#[tokio::test]
async fn tokens_are_shown_once_limited_to_the_owners_role_and_revocable() {
    let server = TestServer::start().await;
    let (status, created) =
        server.post("/api/v1/tokens", json!({"name": "pos-terminal", "role": "invoker", "expires_in_days": 30})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40);
    let (_, listed) = server.get("/api/v1/tokens").await;
    assert!(!listed.to_string().contains(&secret), "never shown again");
    let token = listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "pos-terminal").unwrap().clone();
    assert_eq!(token["role"], "invoker");
    assert!(token["expires_at"].is_string());

    let pos = client_with_token(&secret);
    server.upload(manifest("p", "1.0.0", &[("order.created", 1)]), echo()).await;
    let fire = pos.post(server.url("/api/v1/hooks/order.created")).json(&json!({"input": 1})).send().await.unwrap();
    assert_eq!(fire.status(), 200, "an invoker token fires hooks");
    assert_eq!(pos.get(server.url("/api/v1/plugins")).send().await.unwrap().status(), 403, "but reads nothing");
    let (_, listed) = server.get("/api/v1/tokens").await;
    let used = listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "pos-terminal").unwrap().clone();
    assert!(used["last_used_at"].is_string(), "last use recorded: {used}");

    // A viewer cannot mint a token above its own role, nor a service token.
    let viewer = server.client_for(Role::Viewer).await;
    let up =
        viewer.post(server.url("/api/v1/tokens")).json(&json!({"name": "x", "role": "admin"})).send().await.unwrap();
    assert_eq!(up.status(), 403);
    let service = viewer
        .post(server.url("/api/v1/tokens"))
        .json(&json!({"name": "x", "role": "viewer", "service": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(service.status(), 403);
    let (status, _) = server.post("/api/v1/tokens", json!({"name": "ci", "role": "operator", "service": true})).await;
    assert_eq!(status, 201, "an admin mints service tokens");

    let id = token["id"].as_i64().unwrap();
    let (status, revoked) = server.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    let fire = pos.post(server.url("/api/v1/hooks/order.created")).json(&json!({"input": 1})).send().await.unwrap();
    assert_eq!(fire.status(), 401, "unusable after revocation");
}

#[tokio::test]
async fn users_are_managed_by_admins_and_the_last_admin_is_kept() {
    let server = TestServer::start().await;
    let (status, body) =
        server.post("/api/v1/users", json!({"username": "mina", "role": "operator", "password": "short"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("password"), "{body}");
    let (status, body) = server
        .post("/api/v1/users", json!({"username": "mina", "role": "operator", "password": "a long enough password"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(!body.to_string().contains("a long enough password") && body.get("password_hash").is_none());
    let (status, _) = server
        .post("/api/v1/users", json!({"username": "mina", "role": "viewer", "password": "another long password"}))
        .await;
    assert_eq!(status, 409);

    let operator = server.client_for(Role::Operator).await;
    let denied = operator
        .post(server.url("/api/v1/users"))
        .json(&json!({"username": "x", "role": "admin", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403, "operators do not manage users");

    let patch = |body: Value| server.client.patch(server.url("/api/v1/users/admin")).json(&body).send();
    let (status, body) = status_json(patch(json!({"role": "viewer"})).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("last_admin")));
    let (status, _) = status_json(patch(json!({"disabled": true})).await.unwrap()).await;
    assert_eq!(status, 409);
    let (status, body) = server.delete("/api/v1/users/admin").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("last_admin")));

    let (status, body) = status_json(
        server
            .client
            .patch(server.url("/api/v1/users/mina"))
            .json(&json!({"role": "admin", "disabled": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["role"].as_str(), body["disabled"].as_bool()), (200, Some("admin"), Some(true)));
    assert_eq!(server.delete("/api/v1/users/mina").await.0, 204);
    let (_, users) = server.get("/api/v1/users").await;
    assert!(users["users"].as_array().unwrap().iter().all(|u| u["username"] != "mina"));
}

#[tokio::test]
async fn every_kind_of_change_is_audited_without_secrets() {
    let server = TestServer::start().await;
    let browser = cookie_client();
    login(&server, &browser, "admin", ADMIN_PASSWORD).await;
    login(&server, &browser, "admin", "not the password").await;
    let secret_config = "sk_live_51Hsecretvalue";
    let m = json!({"name": "p", "version": "1.0.0", "secrets": {"courier_api_key": secret_config}});
    server.upload(m.clone(), echo()).await;
    let mut v2 = m;
    v2["version"] = json!("2.0.0");
    server.upload(v2, echo()).await;
    server.post_empty("/api/v1/plugins/p/rollback").await;
    server.post_empty("/api/v1/plugins/p/versions/2.0.0/activate").await;
    server.post_empty("/api/v1/plugins/p/disable").await;
    server.post_empty("/api/v1/plugins/p/enable").await;
    let (_, detail) = server.get("/api/v1/plugins/p").await;
    assert!(!detail.to_string().contains(secret_config), "secret config is never returned");
    assert_eq!(detail["versions"][0]["secret_keys"], json!(["courier_api_key"]));
    server.delete("/api/v1/plugins/p").await;
    server
        .post("/api/v1/users", json!({"username": "jun", "role": "viewer", "password": "a long enough password"}))
        .await;
    server
        .client
        .patch(server.url("/api/v1/users/jun"))
        .json(&json!({"password": "another long password"}))
        .send()
        .await
        .unwrap();
    server.delete("/api/v1/users/jun").await;
    let (_, token) = server.post("/api/v1/tokens", json!({"name": "t", "role": "viewer"})).await;
    let token_secret = token["secret"].as_str().unwrap().to_owned();
    server.delete(&format!("/api/v1/tokens/{}", token["token"]["id"])).await;
    let viewer = server.client_for(Role::Viewer).await;
    viewer.post(server.url("/api/v1/plugins/x/disable")).send().await.unwrap();

    let (status, audit) = server.get("/api/v1/audit?limit=500").await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, result: &str| entries.iter().any(|e| e["action"] == action && e["result"] == result);
    for action in [
        "plugin.upload",
        "plugin.rollback",
        "plugin.activate",
        "plugin.disable",
        "plugin.enable",
        "plugin.delete",
        "user.create",
        "user.update",
        "user.delete",
        "token.create",
        "token.revoke",
        "login",
    ] {
        assert!(has(action, "ok"), "no successful {action} in the audit log");
    }
    assert!(has("login", "failed"));
    assert!(has("plugin.disable", "denied"), "the viewer's attempt is recorded as denied");
    let upload = entries.iter().find(|e| e["action"] == "plugin.upload").unwrap();
    assert_eq!(
        (upload["actor"].as_str(), upload["role"].as_str(), upload["target"].as_str()),
        (Some("admin-tests"), Some("admin"), Some("p/2.0.0"))
    );
    assert_eq!(upload["source"], "127.0.0.1");
    let text = audit.to_string();
    for secret in [
        ADMIN_PASSWORD,
        "not the password",
        "a long enough password",
        "another long password",
        secret_config,
        token_secret.as_str(),
    ] {
        assert!(!text.contains(secret), "the audit log contains a secret");
    }
    // Filters.
    let (_, only) = server.get("/api/v1/audit?action=user.&result=ok").await;
    assert!(only["entries"].as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("user.")));
    let (status, _) = server.get("/api/v1/audit?result=maybe").await;
    assert_eq!(status, 400);
    // The API offers no way to change it.
    assert_eq!(server.delete("/api/v1/audit").await.0, 405);
}

#[tokio::test]
async fn only_health_probes_answer_without_credentials() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(server.anonymous.get(server.url(path)).send().await.unwrap().status(), 200);
    }
    for path in ["/metrics", "/api/v1/plugins", "/api/v1/openapi.json", "/api/v1/docs/", "/api/v1/overview"] {
        assert_eq!(server.anonymous.get(server.url(path)).send().await.unwrap().status(), 401, "{path}");
    }
    let bad = server
        .anonymous
        .get(server.url("/api/v1/plugins"))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn a_browser_without_a_session_is_sent_to_a_sign_in_page_that_holds_no_data() {
    let server = TestServer::start().await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers([(reqwest::header::ACCEPT, "text/html,*/*;q=0.8".parse().unwrap())].into_iter().collect())
        .build()
        .unwrap();
    for (path, next) in
        [("/api/v1/docs/", "/api/v1/docs/"), ("/", "/"), ("/somewhere?a=1&b=2", "/somewhere%3Fa%3D1%26b%3D2")]
    {
        let response = browser.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], format!("/login?next={next}").as_str(), "{path}");
    }
    // An API client (no HTML wanted) still gets the JSON 401.
    assert_eq!(server.anonymous.get(server.url("/api/v1/docs/")).send().await.unwrap().status(), 401);

    let page = browser.get(server.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<form id="sign-in""#) && html.contains(r#"type="password""#), "{html}");
    let inline_scripts = html.matches("<script").count() - html.matches("<script src=").count();
    assert_eq!(inline_scripts, 0, "no inline script: the policy would refuse it");
    for asset in ["/login.js", "/login.css"] {
        let response = browser.get(server.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let script = browser.get(server.url("/login.js")).send().await.unwrap().text().await.unwrap();
    assert!(script.contains("/api/v1/auth/login") && script.contains("application/json"), "signs in with JSON");

    // Signed in, the same browser reads the docs.
    let (status, _, _) = login(&server, &browser, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(browser.get(server.url("/api/v1/docs/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_refused_user_change_changes_nothing_at_all() {
    let server = TestServer::start().await;
    let browser = cookie_client();
    let (status, _, _) = login(&server, &browser, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    let (_, tokens_before) = server.get("/api/v1/tokens?all=true").await;
    let new_password = "a brand new admin password";

    // Each request also changes the password, and each is refused as a whole for leaving no admin.
    for body in [
        json!({"password": new_password, "role": "viewer"}),
        json!({"password": new_password, "disabled": true}),
        json!({"role": "operator", "disabled": true}),
        json!({"password": new_password, "role": "admin", "disabled": true}),
    ] {
        let response = server.client.patch(server.url("/api/v1/users/admin")).json(&body).send().await.unwrap();
        let (status, error) = status_json(response).await;
        assert_eq!((status, error["error"]["code"].as_str()), (409, Some("last_admin")), "{body}: {error}");
    }
    // A password the policy refuses is refused before the role is touched.
    server.access.create_user("mina", Role::Admin, "a long enough password").await.unwrap();
    let response = server
        .client
        .patch(server.url("/api/v1/users/mina"))
        .json(&json!({"role": "viewer", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let (_, users) = server.get("/api/v1/users").await;
    let user = |name: &str| users["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap().clone();
    assert_eq!((user("admin")["role"].as_str(), user("admin")["disabled"].as_bool()), (Some("admin"), Some(false)));
    assert_eq!(user("mina")["role"], "admin");
    let (status, me) = status_json(browser.get(server.url("/api/v1/auth/me")).send().await.unwrap()).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("admin")), "the admin's session goes on");
    let (_, tokens_after) = server.get("/api/v1/tokens?all=true").await;
    let revoked =
        |t: &Value| t["tokens"].as_array().unwrap().iter().map(|t| t["revoked_at"].clone()).collect::<Vec<_>>();
    assert_eq!(revoked(&tokens_before), revoked(&tokens_after), "no token revoked");
    let (status, _, _) = login(&server, &cookie_client(), "admin", new_password).await;
    assert_eq!(status, 401, "the new password was not set");
    let (status, _, _) = login(&server, &cookie_client(), "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "the old password still works");
}
