//! `cargo xtask browser`: the real-browser tests in `tests/browser` (headless Chromium from Debian driven
//! by playwright-core, axe-core accessibility checks) against a `plugwatch serve --demo` on a free loopback
//! port with a fresh data directory. Screenshots go to `target/browser`; the server's log to
//! `target/browser-run/server.log`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// Installs what the browser tests need: their npm packages (pinned in `tests/browser/package-lock.json`)
/// unless already installed from the same lock, and Debian's Chromium if there is none.
pub fn tools(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tests/browser");
    let lock = std::fs::read(dir.join("package-lock.json"))?;
    let stamp = dir.join("node_modules/.installed-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        crate::step(
            "browser test tools",
            Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir),
        )?;
        std::fs::write(&stamp, &lock)?;
    }
    if chromium().is_none() {
        crate::step(
            "chromium",
            Command::new("sh")
                .args(["-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()),
        )
        .context(
            "the browser tests need Chromium: install Debian's (`apt-get install chromium`, as root) or set CHROMIUM \
             to a Chromium binary",
        )?;
        if chromium().is_none() {
            bail!("`chromium` is still not on PATH after installing it");
        }
    }
    Ok(())
}

/// The Chromium the tests use: `$CHROMIUM`, else `chromium` on PATH.
fn chromium() -> Option<String> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(path.to_string_lossy().into_owned());
    }
    let found = Command::new("which").arg("chromium").stderr(Stdio::null()).output().ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    (found.status.success() && !path.is_empty()).then_some(path)
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    println!("\nxtask: browser");
    let started = Instant::now();
    let result = run_inner(root);
    println!("xtask: browser: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn run_inner(root: &Path) -> anyhow::Result<()> {
    tools(root)?;
    // The same selection as the test step, so its build is reused (`--bin plugwatch` alone resolves the
    // dependencies' features differently and rebuilds wasmtime).
    crate::run(crate::cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    let work = root.join("target/browser-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let log = work.join("server.log");
    let (_server, addr) = crate::server::start_demo(root, &root.join("target/debug/plugwatch"), &work, &log)?;
    let fixtures = root.join("target/browser-run/fixtures");
    write_fixtures(root, &fixtures)?;
    crate::step(
        "browser tests",
        Command::new("node")
            .arg(root.join("tests/browser/run.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("PLUGWATCH_URL", format!("http://{addr}"))
            .env("PLUGWATCH_USERNAME", "admin")
            .env("PLUGWATCH_PASSWORD", crate::server::DEMO_PASSWORD)
            .env("NO_COLOR", "1")
            .env("PLUGWATCH_FIXTURES", &fixtures)
            .env("PLUGWATCH_BIN", root.join("target/debug/plugwatch"))
            .env("PLUGWATCH_SCRATCH", work.join("scratch"))
            .stdin(Stdio::null()),
    )
    .with_context(|| format!("the server's log: {}", log.display()))
}

/// `cargo xtask bench-dashboard`: the dashboard's figures (`tests/browser/bench.mjs`) on a server of its own
/// with 1,000 plugins.
pub fn bench(root: &Path) -> anyhow::Result<()> {
    tools(root)?;
    crate::run(crate::cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    let work = root.join("target/browser-bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let fixtures = work.join("fixtures");
    write_fixtures(root, &fixtures)?;
    crate::step(
        "dashboard figures",
        Command::new("node")
            .arg(root.join("tests/browser/bench.mjs"))
            .current_dir(root.join("tests/browser"))
            .env("PLUGWATCH_FIXTURES", &fixtures)
            .env("PLUGWATCH_BIN", root.join("target/debug/plugwatch"))
            .env("PLUGWATCH_SCRATCH", &work)
            .stdin(Stdio::null()),
    )
}

/// The components the dashboard tests upload: `hostile.wasm`, whose log line and error message are markup
/// (they must show as text), and `not-a-component.wasm`, which the runtime refuses with a reason.
fn write_fixtures(root: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let template = std::fs::read_to_string(root.join("crates/runtime/tests/fixtures/plugin.wat.in"))?;
    let image = "<img src=x onerror=alert(1)>";
    let script = "<script>alert(2)</script>";
    let extra = format!(r#"(data (i32.const 100) "{image}") (data (i32.const 200) "{script}")"#);
    let body = format!(
        "(call $log (i32.const 2) (i32.const 100) (i32.const {})) (call $err (i32.const 200) (i32.const {}))",
        image.len(),
        script.len()
    );
    let wasm = wat::parse_str(template.replace("{extra}", &extra).replace("{body}", &body))
        .context("the hostile fixture assembles")?;
    std::fs::write(dir.join("hostile.wasm"), wasm)?;
    std::fs::write(dir.join("not-a-component.wasm"), b"this is not WebAssembly")?;
    let echo =
        template.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))");
    std::fs::write(dir.join("echo.wasm"), wat::parse_str(echo).context("the echo fixture assembles")?)?;
    Ok(())
}
