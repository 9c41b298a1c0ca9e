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
    let jar = work.join("cookies");
    let login = Command::new("curl")
        .args(["-s", "-c"])
        .arg(&jar)
        .args(["-H", "content-type: application/json", "-d"])
        .arg(format!(r#"{{"username":"admin","password":"{password}"}}"#))
        .arg(format!("http://{addr}/api/v1/auth/login"))
        .output()?;
    let login = String::from_utf8_lossy(&login.stdout).into_owned();
    let csrf = json_field(&login, "csrf_token").with_context(|| format!("sign-in failed: {login}"))?;
    let created = Command::new("curl")
        .args(["-s", "-b"])
        .arg(&jar)
        .args(["-H", "content-type: application/json", "-H", &format!("x-csrf-token: {csrf}"), "-d"])
        .arg(r#"{"name":"xtask","role":"admin","service":true}"#)
        .arg(format!("http://{addr}/api/v1/tokens"))
        .output()?;
    let created = String::from_utf8_lossy(&created.stdout).into_owned();
    json_field(&created, "secret").with_context(|| format!("no token: {created}"))
}

/// The string value of `"key":"…"` in a small JSON document (xtask carries no JSON parser).
pub fn json_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = json[start..].find('"')?;
    Some(json[start..start + end].to_owned())
}

/// The unsigned integer value of `"key":123` in a small JSON document.
pub fn json_number(json: &str, key: &str) -> Option<u64> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
