//! `cargo xtask bench-http`: HTTP throughput and memory figures with a real load generator (`wrk`), all on
//! loopback, each run bounded in time.
//!
//! 1. A bare axum handler echoing a ~200-byte POST: the machine's HTTP ceiling.
//! 2. An axum handler around a raw wasmtime fresh-instance call of the same echo component on plugwatch's
//!    engine configuration (`crates/baselines/src/bin/raw_wasmtime.rs`): the ceiling for (3).
//! 3. `POST /api/v1/plugins/echo/invoke` with the same payload: a fresh sandboxed instance per request,
//!    authenticated, admitted, measured and recorded into telemetry. Its ratio to (2) is what plugwatch
//!    adds around wasmtime; to (1), what it costs over plain HTTP. The three servers run side by side and
//!    are loaded in alternating rounds, so that a change in what else the machine is doing hits all; each
//!    figure is the median of the rounds' ratios.
//! 3. RSS of `plugwatch serve` idle (no plugins) and after the load.
//! 4. `GET /api/v1/overview` with 1,000 plugins loaded, as an admin.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const BARE: &str = "127.0.0.1:18500";
const SERVE: &str = "127.0.0.1:18501";
const RAW: &str = "127.0.0.1:18502";
/// Alternating load rounds, and how long each server is loaded in one.
const ROUNDS: usize = 5;
const ROUND_SECS: u32 = 5;
const ADMIN_PASSWORD: &str = "bench-http admin password";
pub(crate) const PAYLOAD: &str = r#"{"hook":"order.created","input":{"order_id":"ord-1001","customer_id":"cust-42","items":[{"sku":"bulgogi-bowl","quantity":2,"unit_price":12500},{"sku":"kimchi","quantity":1,"unit_price":3000}],"promo_code":"WELCOME10"}}"#;

pub fn run(root: &Path) -> anyhow::Result<()> {
    which("wrk").context("wrk is needed (Debian: apt-get install wrk)")?;
    build_release()?;
    let target = root.join("target/release");
    let work = root.join("target/bench-http");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let script = work.join("post.lua");
    let write_script = |token: &str| {
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = [[{PAYLOAD}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
            ),
        )
    };
    write_script("none")?;

    let bare = crate::server::Killed(Command::new(target.join("bare_echo")).arg(BARE).stdout(Stdio::null()).spawn()?);
    crate::server::wait_for(&format!("http://{BARE}/echo"), "POST")?;
    let component = work.join("echo.wasm");
    std::fs::write(&component, echo_component(root)?)?;
    let raw = crate::server::Killed(
        Command::new(target.join("raw_wasmtime")).arg(RAW).arg(&component).stdout(Stdio::null()).spawn()?,
    );
    crate::server::wait_for(&format!("http://{RAW}/invoke"), "POST")?;

    let serve = crate::server::Killed(
        Command::new(target.join("plugwatch"))
            .args(["serve", "--listen", SERVE, "--data-dir"])
            .arg(work.join("data"))
            .env("PLUGWATCH_LOG", "warn")
            .env("PLUGWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stderr(Stdio::null())
            .spawn()?,
    );
    crate::server::wait_for(&format!("http://{SERVE}/healthz"), "GET")?;
    std::thread::sleep(Duration::from_secs(3));
    let idle_rss = rss_kib(serve.0.id())?;
    let token = crate::server::admin_token(SERVE, ADMIN_PASSWORD, &work)?;
    write_script(&token)?;
    upload(SERVE, &component, "echo", &token)?;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let bare_rps = wrk(&script, &format!("http://{BARE}/echo"))?;
        let raw_rps = wrk(&script, &format!("http://{RAW}/invoke"))?;
        let invoke_rps = wrk(&script, &format!("http://{SERVE}/api/v1/plugins/echo/invoke"))?;
        rounds.push((bare_rps, raw_rps, invoke_rps));
    }
    drop((bare, raw));
    let loaded_rss = rss_kib(serve.0.id())?;

    for i in 0..999 {
        upload(SERVE, &component, &format!("plugin-{i:03}"), &token)?;
    }
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("authorization: Bearer {token}")])
                .arg(format!("http://{SERVE}/api/v1/overview"))
                .output()?;
            let elapsed = start.elapsed();
            let code = String::from_utf8_lossy(&out.stdout);
            if code != "200" {
                bail!("the overview answered {code}");
            }
            Ok(elapsed)
        })
        .collect::<anyhow::Result<_>>()?;
    times.sort();
    drop(serve);

    println!("\nbench-http (wrk -t2 -c32 -d{ROUND_SECS}s per round, loopback, release build)");
    for (i, (bare_rps, raw_rps, invoke_rps)) in rounds.iter().enumerate() {
        println!(
            "  round {}: bare axum echo {bare_rps:>8.0} requests/s, raw wasmtime {raw_rps:>8.0} requests/s, plugwatch \
             invoke (echo) {invoke_rps:>8.0} requests/s: {:.2} of raw wasmtime, {:.2} of bare",
            i + 1,
            invoke_rps / raw_rps,
            invoke_rps / bare_rps
        );
    }
    let median = |ratio: fn(&(f64, f64, f64)) -> f64| {
        let mut ratios: Vec<f64> = rounds.iter().map(ratio).collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    println!("  invoke / raw wasmtime, median of {ROUNDS} rounds: {:>5.2}", median(|(_, raw, invoke)| invoke / raw));
    println!("  invoke / bare axum, median of {ROUNDS} rounds:    {:>5.2}", median(|(bare, _, invoke)| invoke / bare));
    println!("  raw wasmtime / bare axum, median:              {:>5.2}", median(|(bare, raw, _)| raw / bare));
    println!("  serve RSS idle:           {:>10.1} MiB", idle_rss as f64 / 1024.0);
    println!("  serve RSS after the load: {:>10.1} MiB", loaded_rss as f64 / 1024.0);
    println!(
        "  overview, 1000 plugins:   {:>10.2} ms median of 21 (curl, including HTTP)",
        times[10].as_secs_f64() * 1e3
    );
    Ok(())
}

/// The echo plugin the loads invoke: the runtime's test fixture answering with its input.
/// The release build the load benches run (`plugwatch` and the baselines), one selection for all of them.
/// The baselines have no dev-dependencies and only dependencies `plugwatch` has, with the same features,
/// so this reuses the build `cargo build --release -p plugwatch` made (before, the bare echo was an
/// example of the server crate, whose dev-dependencies changed features and rebuilt wasmtime).
pub(crate) fn build_release() -> anyhow::Result<()> {
    crate::run(crate::cargo().args(["build", "--release", "-p", "plugwatch", "-p", "plugwatch-baselines"]))
}

pub(crate) fn echo_component(root: &Path) -> anyhow::Result<Vec<u8>> {
    let echo = root.join("crates/runtime/tests/fixtures/plugin.wat.in");
    let wat = std::fs::read_to_string(echo)?
        .replace("{extra}", "")
        .replace("{body}", "(call $ok (local.get $input) (local.get $input_len))");
    wat::parse_str(&wat).context("assembling the echo component")
}

pub(crate) fn which(tool: &str) -> anyhow::Result<()> {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status()?;
    if !found.success() {
        bail!("`{tool}` not found");
    }
    Ok(())
}

pub(crate) fn upload(addr: &str, component: &Path, name: &str, token: &str) -> anyhow::Result<()> {
    let out = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "-o", "/dev/null", "-H", &format!("authorization: Bearer {token}")])
        .args([
            "-F",
            &format!(r#"manifest={{"name":"{name}","version":"1.0.0","hooks":[{{"hook":"order.created"}}]}}"#),
        ])
        .args(["-F", &format!("component=@{}", component.display())])
        .arg(format!("http://{addr}/api/v1/plugins"))
        .output()?;
    let code = String::from_utf8_lossy(&out.stdout);
    if code != "201" {
        bail!("uploading {name} answered {code}");
    }
    Ok(())
}

fn wrk(script: &Path, url: &str) -> anyhow::Result<f64> {
    let out =
        Command::new("wrk").args(["-t2", "-c32", &format!("-d{ROUND_SECS}s"), "-s"]).arg(script).arg(url).output()?;
    Ok(crate::wrk::parse(&String::from_utf8_lossy(&out.stdout), url)?.rps)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    Ok(crate::procfs::rss_bytes(pid)? / 1024)
}
