//! Starting a `plugwatch serve` for tools that speak HTTP to it (load tests, schemathesis), and signing in.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, bail};

/// A child process killed when dropped, so a failing step never leaves a server behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for(url: &str, method: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let ok = Command::new("curl").args(["-s", "-o", "/dev/null", "-X", method, url]).status()?.success();
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not come up")
}

/// Signs in as admin (cookie and CSRF token) on the server at `addr` and mints an admin service token.
pub fn admin_token(addr: &str, password: &str, work: &Path) -> anyhow::Result<String> {
    service_token(addr, password, work, "xtask", "admin")
}

/// Signs in as admin on the server at `addr` and mints a service token named `name` with the role `role`.
pub fn service_token(addr: &str, password: &str, work: &Path, name: &str, role: &str) -> anyhow::Result<String> {
    let jar = work.join("cookies");
    let login = Command::new("curl")
        .args(["-s", "-c"])
        .arg(&jar)
        .args(["-H", "content-type: application/json", "-d"])
        .arg(format!(r#"{{"username":"admin","password":"{password}"}}"#))
        .arg(format!("http://{addr}/api/v1/auth/login"))
        .output()?;
    let login = String::from_utf8_lossy(&login.stdout).into_owned();
    let csrf =
        json(&login)?["csrf_token"].as_str().map(str::to_owned).with_context(|| format!("sign-in failed: {login}"))?;
    let created = Command::new("curl")
        .args(["-s", "-b"])
        .arg(&jar)
        .args(["-H", "content-type: application/json", "-H", &format!("x-csrf-token: {csrf}"), "-d"])
        .arg(format!(r#"{{"name":"{name}","role":"{role}","service":true}}"#))
        .arg(format!("http://{addr}/api/v1/tokens"))
        .output()?;
    let created = String::from_utf8_lossy(&created.stdout).into_owned();
    json(&created)?["secret"].as_str().map(str::to_owned).with_context(|| format!("no token: {created}"))
}

/// A JSON document an HTTP call answered, or what it answered instead.
pub fn json(body: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))
}

/// Waits until `url` answers 2xx (a readiness probe), polling for at most `timeout`.
pub fn wait_until_ok(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        let ok = Command::new("curl").args(["-sf", "-o", "/dev/null", "--max-time", "5", url]).status()?.success();
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{url} did not answer 2xx within {} s", timeout.as_secs())
}

/// A free port on loopback, for a server a step starts.
pub fn free_loopback_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.to_string())
}

/// The demo's documented admin password (`DEMO_ADMIN_PASSWORD` in `crates/plugwatch`).
pub const DEMO_PASSWORD: &str = "plugwatch-demo";

/// How long a demo server may take to get ready (its first start compiles the Python and JavaScript plugins
/// unless `target/browser-cache` holds them).
const DEMO_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts `plugwatch serve --demo` (the binary `plugwatch`) on a free loopback port with its data in
/// `work/data` and its log in `log`, and waits until it is ready; the documented demo password, the shared
/// compile cache. Returns the server (killed when dropped) and its address.
pub fn start_demo(root: &Path, plugwatch: &Path, work: &Path, log: &Path) -> anyhow::Result<(Killed, String)> {
    let addr = free_loopback_addr()?;
    let server = Killed(
        Command::new(plugwatch)
            .args(["serve", "--demo", "--listen", &addr, "--data-dir"])
            .arg(work.join("data"))
            // The documented demo password, not one from the caller's environment.
            .env_remove("PLUGWATCH_ADMIN_PASSWORD")
            .env("PLUGWATCH_CACHE_DIR", root.join("target/browser-cache"))
            .env("PLUGWATCH_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("cannot start plugwatch serve --demo")?,
    );
    let waited = std::time::Instant::now();
    wait_until_ok(&format!("http://{addr}/readyz"), DEMO_READY_TIMEOUT)
        .with_context(|| format!("the demo server did not get ready; its log: {}", log.display()))?;
    println!("xtask: demo server ready on {addr} in {:.1} s", waited.elapsed().as_secs_f64());
    Ok((server, addr))
}
