//! `cargo xtask bench-cluster`: one replica against three on one PostgreSQL, on this machine (release
//! build, loopback, `wrk`), and what the telemetry flushes write to PostgreSQL.
//!
//! Three replicas run throughout on a fresh database, each with the same 20 echo plugins. Rounds
//! alternate: `wrk -t2 -c32` at one replica, then three `wrk -t1 -c11`, one at each replica; the figure is
//! the median over rounds of the three-replica throughput over the one-replica throughput. Every request
//! goes to one of the 20 plugins in turn. Then the requests the load generators got answered are compared
//! with the sum the merged telemetry reports (every replica's series), and the rows and WAL bytes that
//! PostgreSQL took per replica per flush are read from its statistics.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::server::Killed;
use crate::services::psql;

const PORTS: [u16; 3] = [18601, 18602, 18603];
const PLUGINS: usize = 20;
const ROUNDS: usize = 3;
const ROUND_SECS: u32 = 10;
const FLUSH_SECS: u64 = 10;
const DATABASE: &str = "plugwatch_bench_cluster";
const ADMIN_PASSWORD: &str = "bench-cluster admin password";
const SECRET_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";

pub fn run(root: &Path) -> anyhow::Result<()> {
    crate::bench_http::which("wrk").context("wrk is needed (Debian: apt-get install wrk)")?;
    crate::services::ensure()?;
    crate::bench_http::build_release()?;
    let work = root.join("target/bench-cluster");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    psql("postgres", &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))?;
    psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
    let url = format!("{}/{DATABASE}", crate::services::postgres_url());

    let replicas: Vec<(Killed, String)> = PORTS
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let addr = format!("127.0.0.1:{port}");
            let server = Killed(
                Command::new(root.join("target/release/plugwatch"))
                    .args(["serve", "--listen", &addr, "--replica-id", &format!("r{}", i + 1), "--data-dir"])
                    .arg(work.join(format!("r{}", i + 1)))
                    .env("PLUGWATCH_DATABASE_URL", &url)
                    .env("PLUGWATCH_SECRET_KEY", SECRET_KEY)
                    .env("PLUGWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
                    .env("PLUGWATCH_TELEMETRY__FLUSH_INTERVAL_SECS", FLUSH_SECS.to_string())
                    .env("PLUGWATCH_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(work.join(format!("r{}.log", i + 1)))?)
                    .spawn()?,
            );
            crate::server::wait_until_ok(&format!("http://{addr}/readyz"), Duration::from_secs(60))?;
            Ok((server, addr))
        })
        .collect::<anyhow::Result<_>>()?;
    let token = crate::server::admin_token(&replicas[0].1, ADMIN_PASSWORD, &work)?;
    let component = work.join("echo.wasm");
    std::fs::write(&component, crate::bench_http::echo_component(root)?)?;
    for i in 0..PLUGINS {
        crate::bench_http::upload(&replicas[0].1, &component, &format!("echo-{i:02}"), &token)?;
    }
    let script = work.join("spread.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\nlocal i = 0\n\
             request = function()\n  i = i + 1\n  \
             return wrk.format(nil, string.format(\"/api/v1/plugins/echo-%02d/invoke\", i % {PLUGINS}))\nend\n",
            crate::bench_http::PAYLOAD
        ),
    )?;
    // Every replica has loaded the 20 plugins (announced, fetched from the database, compiled).
    for (_, addr) in &replicas {
        wait_for_plugins(addr, &token)?;
    }

    let (rows_before, wal_before) = write_load()?;
    let started = std::time::Instant::now();
    let mut rounds = Vec::new();
    let mut answered = 0u64;
    for _ in 0..ROUNDS {
        let (one, n) = wrk(&script, &[(&replicas[0].1, 2, 32)])?;
        answered += n;
        let targets: Vec<(&str, u32, u32)> = replicas.iter().map(|(_, a)| (a.as_str(), 1, 11)).collect();
        let (three, n) = wrk(&script, &targets)?;
        answered += n;
        rounds.push((one, three));
    }
    // Past the next flush of every replica: all they served is stored.
    std::thread::sleep(Duration::from_secs(FLUSH_SECS + 2));
    let elapsed = started.elapsed().as_secs_f64();
    let (rows_after, wal_after) = write_load()?;
    let merged: Vec<u64> = replicas.iter().map(|(_, a)| merged_requests(a, &token)).collect::<anyhow::Result<_>>()?;
    let cpu: Vec<f64> =
        replicas.iter().map(|(s, _)| crate::procfs::cpu_seconds(s.0.id())).collect::<anyhow::Result<_>>()?;
    drop(replicas);
    psql("postgres", &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))?;

    println!("\nbench-cluster (release build, loopback, 3 replicas on one PostgreSQL, {PLUGINS} echo plugins)");
    for (i, (one, three)) in rounds.iter().enumerate() {
        println!(
            "  round {}: one replica {one:>8.0} requests/s, three replicas {three:>8.0} requests/s, ratio {:.2}",
            i + 1,
            three / one
        );
    }
    let mut ratios: Vec<f64> = rounds.iter().map(|(one, three)| three / one).collect();
    ratios.sort_by(f64::total_cmp);
    println!("  three over one, median of {ROUNDS} rounds: {:.2}", ratios[ratios.len() / 2]);
    println!("  answered to wrk: {answered}; merged telemetry on each replica: {merged:?}");
    if merged.iter().any(|m| *m < answered) {
        bail!("a replica's merged telemetry counts fewer invocations ({merged:?}) than were answered ({answered})");
    }
    let flushes = 3.0 * elapsed / FLUSH_SECS as f64;
    println!(
        "  PostgreSQL writes: {:.0} rows and {:.0} KiB of WAL per replica per flush ({} series, {:.0} flushes in {:.0} s)",
        (rows_after - rows_before) as f64 / flushes,
        (wal_after - wal_before) as f64 / 1024.0 / flushes,
        PLUGINS,
        flushes,
        elapsed
    );
    println!("  replica CPU seconds over the run: {cpu:.1?}");
    Ok(())
}

/// Rows inserted or updated in the database so far, and the WAL position in bytes.
fn write_load() -> anyhow::Result<(i64, i64)> {
    // The statistics of other backends reach the shared counters within about a second.
    std::thread::sleep(Duration::from_secs(2));
    let rows = psql(DATABASE, "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables")?;
    let wal = psql(DATABASE, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")?;
    Ok((rows.parse().context("rows")?, wal.parse().context("wal")?))
}

/// Runs one `wrk` per target (`addr`, threads, connections) at once for a round; their total
/// requests/s and requests answered.
fn wrk(script: &Path, targets: &[(&str, u32, u32)]) -> anyhow::Result<(f64, u64)> {
    let children: Vec<std::process::Child> = targets
        .iter()
        .map(|(addr, threads, connections)| {
            Command::new("wrk")
                .args([format!("-t{threads}"), format!("-c{connections}"), format!("-d{ROUND_SECS}s"), "-s".into()])
                .arg(script)
                .arg(format!("http://{addr}"))
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start wrk")
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut rps, mut answered) = (0.0, 0u64);
    for (child, (addr, _, _)) in children.into_iter().zip(targets) {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = crate::wrk::parse(&text, addr)?;
        if summary.socket_errors {
            bail!("wrk saw errors:\n{text}");
        }
        rps += summary.rps;
        answered += summary.requests;
    }
    Ok((rps, answered))
}

fn wait_for_plugins(addr: &str, token: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        let listed = curl_json(addr, token, "/api/v1/overview")?;
        let running = listed["plugins"].as_array().map_or(0, |p| p.iter().filter(|p| p["status"] == "running").count());
        if running == PLUGINS {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{addr} did not load the {PLUGINS} plugins")
}

/// Successful invocations of every plugin over the last hour, as this replica's series report them (the
/// rows of every replica merged).
fn merged_requests(addr: &str, token: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for i in 0..PLUGINS {
        let series = curl_json(addr, token, &format!("/api/v1/plugins/echo-{i:02}/series?step=3600"))?;
        total += series["points"]
            .as_array()
            .context("no points")?
            .iter()
            .map(|p| p["outcomes"]["ok"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    Ok(total)
}

fn curl_json(addr: &str, token: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("authorization: Bearer {token}")])
        .arg(format!("http://{addr}{path}"))
        .output()?;
    crate::server::json(&String::from_utf8_lossy(&out.stdout))
}
