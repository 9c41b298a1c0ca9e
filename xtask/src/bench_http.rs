//! `cargo xtask bench-http`: HTTP throughput and memory figures with a real load generator (`wrk`), all on
//! loopback, each run bounded in time.
//!
//! 1. A bare axum handler echoing a ~200-byte POST: the machine's HTTP ceiling.
//! 2. `POST /api/v1/plugins/echo/invoke` with the same payload: a fresh sandboxed instance per request,
//!    measured and recorded into telemetry. The ratio to (1) is plugwatch's overhead. Both servers run
//!    side by side and are loaded in alternating rounds, so that a change in what else the machine is
//!    doing hits both; the figure is the median of the rounds' ratios.
//! 3. RSS of `plugwatch serve` idle (no plugins) and after the load.
//! 4. `GET /api/v1/overview` with 1,000 plugins loaded, as an admin.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const BARE: &str = "127.0.0.1:18500";
const SERVE: &str = "127.0.0.1:18501";
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

    let bare =
        crate::server::Killed(Command::new(target.join("examples/bare_echo")).arg(BARE).stdout(Stdio::null()).spawn()?);
    crate::server::wait_for(&format!("http://{BARE}/echo"), "POST")?;

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
    let component = work.join("echo.wasm");
    std::fs::write(&component, echo_component(root)?)?;
    upload(SERVE, &component, "echo", &token)?;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let bare_rps = wrk(&script, &format!("http://{BARE}/echo"))?;
        let invoke_rps = wrk(&script, &format!("http://{SERVE}/api/v1/plugins/echo/invoke"))?;
        rounds.push((bare_rps, invoke_rps));
    }
    drop(bare);
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
    for (i, (bare_rps, invoke_rps)) in rounds.iter().enumerate() {
        println!(
            "  round {}: bare axum echo {bare_rps:>8.0} requests/s, plugwatch invoke (echo) {invoke_rps:>8.0} requests/s, \
             ratio {:.2}",
            i + 1,
            invoke_rps / bare_rps
        );
    }
    let mut ratios: Vec<f64> = rounds.iter().map(|(bare, invoke)| invoke / bare).collect();
    ratios.sort_by(f64::total_cmp);
    println!("  ratio, median of {ROUNDS} rounds: {:>7.2}", ratios[ratios.len() / 2]);
    println!("  serve RSS idle:           {:>10.1} MiB", idle_rss as f64 / 1024.0);
    println!("  serve RSS after the load: {:>10.1} MiB", loaded_rss as f64 / 1024.0);
    println!(
        "  overview, 1000 plugins:   {:>10.2} ms median of 21 (curl, including HTTP)",
        times[10].as_secs_f64() * 1e3
    );
    Ok(())
}

/// The echo plugin the loads invoke: the runtime's test fixture answering with its input.
/// The release build the load benches run (`plugwatch` and the bare axum echo), one selection for all of
/// them so that one build serves each.
pub(crate) fn build_release() -> anyhow::Result<()> {
    crate::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "plugwatch",
        "--bin",
        "plugwatch",
        "-p",
        "plugwatch-server",
        "--example",
        "bare_echo",
    ]))
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
