//! A test server, plugin fixtures in WAT, and an HTTP client.

use std::net::SocketAddr;
use std::path::PathBuf;

use plugwatch_server::{ServeConfig, Server};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TEMPLATE: &str = include_str!("../../../runtime/tests/fixtures/plugin.wat.in");

/// A component from the runtime's WAT template.
pub fn component(body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(TEMPLATE.replace("{extra}", extra).replace("{body}", body)).expect("fixture assembles")
}

/// Echoes its input.
pub fn echo() -> Vec<u8> {
    component("(call $ok (local.get $input) (local.get $input_len))", "")
}

/// Returns config value `prefix` followed by its input.
pub fn prefixer() -> Vec<u8> {
    component(include_str!("../../../runtime/tests/fixtures/prefixer.body.wat"), r#"(data (i32.const 100) "prefix")"#)
}

/// Always refuses with `err("nope")`.
pub fn refuser() -> Vec<u8> {
    component("(call $err (i32.const 100) (i32.const 4))", r#"(data (i32.const 100) "nope")"#)
}

/// Spins forever (stopped by its timeout).
pub fn spinner() -> Vec<u8> {
    component("(loop $l (br $l)) unreachable", "")
}

/// Spins `input_len * 1_000_000` times, then echoes.
pub fn worker() -> Vec<u8> {
    component(
        r#"(local.set $n (i32.mul (local.get $input_len) (i32.const 1000000)))
        (block $done (loop $spin (br_if $done (i32.eqz (local.get $n)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $spin)))
        (call $ok (local.get $input) (local.get $input_len))"#,
        "",
    )
}

/// The first admin's password in every test server.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub struct TestServer {
    pub addr: SocketAddr,
    /// Sends an admin token with every request.
    pub client: reqwest::Client,
    /// Sends no credentials.
    pub anonymous: reqwest::Client,
    pub access: plugwatch_access::Access,

    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server in a fresh data directory, with `configure` applied to its configuration.
    pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TestServer::start_in(dir.path().to_owned(), configure).await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_in(data_dir: PathBuf, configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let mut config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.clone(),
            drain_timeout_secs: 10,
            admin_password: Some(plugwatch_server::config::Secret(ADMIN_PASSWORD.into())),
            ..ServeConfig::default()
        };
        // The API tests run once on SQLite and once on PostgreSQL (see `plugwatch_store::testing`).
        if let Some(server) = plugwatch_store::testing::postgres_server() {
            let url = plugwatch_store::testing::postgres_database(&server, &data_dir).await.expect("a test database");
            config.database_url = Some(plugwatch_server::config::Secret(url));
        }
        configure(&mut config);
        let server = Server::bind(config).await.expect("server starts");
        let addr = server.local_addr();
        let access = server.state().access.clone();
        let admin_token = token_for(&access, "admin", ADMIN_PASSWORD, plugwatch_access::Role::Admin).await;
        let client = client_with_token(&admin_token);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        let server = TestServer {
            addr,
            client,
            anonymous: reqwest::Client::new(),
            access,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until `/readyz` answers 200: the stored plugins are loaded in the background after start. Each
    /// probe closes its connection, so that none stays open (tests count the server's connections).
    pub async fn wait_ready(&self) {
        loop {
            let response = self.anonymous.get(self.url("/readyz")).header("connection", "close").send().await.unwrap();
            if response.status() == 200 {
                return;
            }
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["problems"], json!(["loading plugins"]), "only loading keeps it from being ready");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits until the server has drained and flushed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    pub fn signal_stop(&mut self) -> JoinHandle<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap()
    }

    pub async fn upload(&self, manifest: Value, component: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .part("manifest", reqwest::multipart::Part::text(manifest.to_string()))
            .part("component", reqwest::multipart::Part::bytes(component));
        let response = self.client.post(self.url("/api/v1/plugins")).multipart(form).send().await.unwrap();
        status_json(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        status_json(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        status_json(self.client.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        status_json(self.client.post(self.url(path)).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        status_json(self.client.delete(self.url(path)).send().await.unwrap()).await
    }

    pub async fn invoke(&self, plugin: &str, hook: &str, input: Value) -> (u16, Value) {
        self.post(&format!("/api/v1/plugins/{plugin}/invoke"), json!({ "hook": hook, "input": input })).await
    }
}

pub async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}

pub fn manifest(name: &str, version: &str, hooks: &[(&str, i32)]) -> Value {
    json!({
        "name": name,
        "version": version,
        "hooks": hooks.iter().map(|(h, p)| json!({ "hook": h, "priority": p })).collect::<Vec<_>>(),
    })
}

/// Signs in as `username` and mints a token with `role` for it.
pub async fn token_for(
    access: &plugwatch_access::Access,
    username: &str,
    password: &str,
    role: plugwatch_access::Role,
) -> String {
    let (principal, _) = access.login(username, password, "127.0.0.1").await.expect("sign-in");
    let spec = plugwatch_access::NewToken { name: format!("{username}-tests"), role, expires_in: None, service: false };
    access.create_token(&principal, spec).await.expect("token").1
}

pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

impl TestServer {
    /// A user with this role and a client carrying a token of it.
    pub async fn client_for(&self, role: plugwatch_access::Role) -> reqwest::Client {
        let username = format!("{}-user", role.as_str());
        let password = "a long enough password";
        if self.access.users().await.unwrap().iter().all(|u| u.username != username) {
            self.access.create_user(&username, role, password).await.unwrap();
        }
        client_with_token(&token_for(&self.access, &username, password, role).await)
    }
}

/// A server-sent-events response read one event at a time.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    text: String,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> EventStream {
        EventStream { body: Box::pin(response.bytes_stream()), text: String::new() }
    }

    /// The next event (its lines, with the blank line that ends it) before `deadline`; `None` when the
    /// stream ended. Panics, saying `what`, when the deadline passes first.
    pub async fn next(&mut self, deadline: tokio::time::Instant, what: &str) -> Option<String> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.text.find("\n\n") {
                return Some(self.text.drain(..end + 2).collect());
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await.unwrap_or_else(|_| panic!("{what}")) {
                Some(Ok(chunk)) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(_)) | None => return None,
            }
        }
    }
}
