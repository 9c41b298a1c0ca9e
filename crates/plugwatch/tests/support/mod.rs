//! What the tests of the `plugwatch` binary share: starting `plugwatch serve`, signing in, HTTP with
//! curl, and the echo plugin.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TEMPLATE: &str = include_str!("../../../runtime/tests/fixtures/plugin.wat.in");

pub struct Running {
    pub child: Child,
    pub addr: String,
    pub token: String,
    /// Every log line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

pub const ADMIN_PASSWORD: &str = "a test admin password";

/// Starts `plugwatch serve` on a free port and waits until it says where it listens.
pub fn serve(args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugwatch"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .envs(envs.iter().copied())
        .env("PLUGWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("PLUGWATCH_LOG")
        .env_remove("PLUGWATCH_CACHE_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if event["message"] == "plugwatch is listening." {
            let addr = event["address"].as_str().unwrap().to_owned();
            // Keep reading, so the server never blocks on (or fails writing to) a full or closed pipe.
            let logs = Arc::new(Mutex::new(Vec::new()));
            let collected = logs.clone();
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| collected.lock().unwrap().push(l)));
            let token = admin_token(&addr);
            return Running { child, addr, token, logs };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server exited before listening");
}

impl Drop for Running {
    /// A failing test never leaves a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Polls `/readyz` (a public route) until `until` holds for its status and body; returns the body.
    /// The deadline only keeps a broken server from hanging the test.
    pub fn wait_readyz(&self, what: &str, until: impl Fn(u16, &serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (status, body) = http("", "GET", &format!("{}/readyz", self.addr), None);
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if until(status, &body) {
                return body;
            }
            assert!(Instant::now() < deadline, "/readyz never showed {what}: {status} {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `/readyz` says the plugins are still loading and names `plugin` among them.
    pub fn wait_loading(&self, plugin: &str) -> serde_json::Value {
        self.wait_readyz(&format!("`{plugin}` loading"), |status, body| {
            status == 503 && body["loading"].as_array().is_some_and(|l| l.iter().any(|p| p == plugin))
        })
    }

    /// Waits until a log line contains one of `needles` (the deadline only keeps a broken server from
    /// hanging the test).
    pub fn wait_logged(&self, needles: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !needles.iter().any(|n| self.logged(n)) {
            assert!(Instant::now() < deadline, "never logged any of {needles:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns its status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        (status, started.elapsed())
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// The process's resident anonymous memory (heap, stacks, instance memory), in bytes.
    pub fn anon_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon in /proc/PID/status");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    /// Threads of the process whose name starts with `prefix`.
    pub fn threads_named(&self, prefix: &str) -> usize {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else { return 0 };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with(prefix))
            .count()
    }
}

/// Signs in as admin (cookie and CSRF token) and mints an admin API token.
pub fn admin_token(addr: &str) -> String {
    user_token(addr, "admin", ADMIN_PASSWORD, "admin")
}

/// Signs in as `username` (cookie and CSRF token) and mints a token of its own with `role`.
pub fn user_token(addr: &str, username: &str, password: &str, role: &str) -> String {
    let jar = tempfile::NamedTempFile::new().unwrap();
    let jar = jar.path().to_str().unwrap();
    let login = Command::new("curl")
        .args(["-s", "-c", jar, "-H", "content-type: application/json", "-d"])
        .arg(serde_json::json!({"username": username, "password": password}).to_string())
        .arg(format!("{addr}/api/v1/auth/login"))
        .output()
        .unwrap();
    let login: serde_json::Value = serde_json::from_slice(&login.stdout).unwrap();
    let csrf = login["csrf_token"].as_str().unwrap_or_else(|| panic!("sign-in failed: {login}"));
    let created = Command::new("curl")
        .args(["-s", "-b", jar, "-H", "content-type: application/json", "-H", &format!("x-csrf-token: {csrf}"), "-d"])
        .arg(serde_json::json!({"name": "tests", "role": role}).to_string())
        .arg(format!("{addr}/api/v1/tokens"))
        .output()
        .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    created["secret"].as_str().unwrap_or_else(|| panic!("no token: {created}")).to_owned()
}

pub fn http(token: &str, method: &str, url: &str, body: Option<(&str, Vec<u8>)>) -> (u16, String) {
    // A tiny blocking client via curl keeps this test free of an async runtime.
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if !token.is_empty() {
        cmd.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    // A file of this request's own (tests run in parallel), kept until curl is done.
    let file = tempfile::NamedTempFile::new().unwrap();
    if let Some((content_type, bytes)) = &body {
        std::fs::write(file.path(), bytes).unwrap();
        cmd.args(["-H", &format!("content-type: {content_type}"), "--data-binary"]);
        cmd.arg(format!("@{}", file.path().display()));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A component that answers its input.
pub fn echo_wasm() -> Vec<u8> {
    wat::parse_str(
        TEMPLATE.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))"),
    )
    .unwrap()
}

pub fn upload_echo(server: &Running) {
    upload(server, &serde_json::json!({"name": "echo", "version": "1.0.0"}), &echo_wasm());
}

/// Uploads a component with its manifest through the API; it must answer 201.
pub fn upload(server: &Running, manifest: &serde_json::Value, wasm: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("component.wasm");
    std::fs::write(&component, wasm).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H", &format!("authorization: Bearer {}", server.token)])
        .arg(format!("{}/api/v1/plugins", server.addr))
        .args(["-F", &format!("manifest={manifest};type=application/json")])
        .args(["-F", &format!("component=@{};type=application/wasm", component.display())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("201"), "{text}");
}

/// Invokes the echo plugin once with `i` as input; it must answer 200.
pub fn invoke_echo(server: &Running, i: u32) {
    let body = format!(r#"{{"hook":"h","input":{i}}}"#).into_bytes();
    let url = format!("{}/api/v1/plugins/echo/invoke", server.addr);
    let (status, text) = http(&server.token, "POST", &url, Some(("application/json", body)));
    assert_eq!(status, 200, "{text}");
}

pub fn series_requests(server: &Running) -> u64 {
    let (status, body) =
        http(&server.token, "GET", &format!("{}/api/v1/plugins/echo/series?step=60", server.addr), None);
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum()
}

/// Uploads a plugin (`vault`) that answers its `prefix` config (here a secret) followed by its input.
pub fn upload_prefixer(server: &Running, secret: &str) {
    let body = include_str!("../../../runtime/tests/fixtures/prefixer.body.wat");
    let wasm =
        wat::parse_str(TEMPLATE.replace("{extra}", r#"(data (i32.const 100) "prefix")"#).replace("{body}", body))
            .unwrap();
    let manifest = serde_json::json!({"name": "vault", "version": "1.0.0", "secrets": {"prefix": secret}});
    upload(server, &manifest, &wasm);
}

/// What the prefixer answers to the input `1`.
pub fn prefixer_output(server: &Running) -> String {
    let url = format!("{}/api/v1/plugins/vault/invoke/h", server.addr);
    let (status, text) = http(&server.token, "POST", &url, Some(("application/octet-stream", b"1".to_vec())));
    assert_eq!(status, 200, "{text}");
    text
}
