//! `cargo xtask bench-backup`: what a backup costs a serving plugwatch with a realistic history, all on
//! loopback, each load run bounded in time (release build).
//!
//! The data directory (`target/bench-backup/data`, generated once and reused) is what a server holds after
//! 30 days of 100 plugins at about 2 requests/s each within the default retention: the `history` example
//! of `plugwatch-backup`. Its compile cache is warmed once from a compile of each example component (the
//! components differ from them only by a custom section), as a long-running server's would be.
//!
//! 1. Invoke throughput and p99 latency (`wrk -t2 -c32 --latency`, the echo plugin of bench-http) in
//!    alternating rounds, each as long as a backup of the idle server takes, without and during a backup (`POST /api/v1/backups`, started again whenever one
//!    finishes before the round ends); medians per condition and their ratios (targets: throughput at
//!    least 0.9 of without, p99 at most 1.5×), with the server's CPU by thread during the backups.
//! 2. The archive: compressed size, the database's size in it, and backup time on the idle server (wall
//!    time of `POST /api/v1/backups`, median of 3); invocations recorded in the database.
//! 3. Restore: `plugwatch backup restore <archive> --data-dir <copy>` on a stopped copy (median of 3), and
//!    `POST /api/v1/backups/{id}/restore` on the running server until `/readyz` answers 200 again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench_http::{PAYLOAD, echo_component, upload, which};
use crate::server::{Killed, admin_token, json, wait_until_ok};

const SERVE: &str = "127.0.0.1:18502";
/// Rounds per condition (without, during), alternating, and how long each is loaded: as long as a backup
/// of the idle server takes (one under load takes longer, so a round rarely waits long for the backup it
/// ends in), within these bounds.
const ROUNDS: usize = 5;
const MIN_ROUND_SECS: u32 = 10;
const MAX_ROUND_SECS: u32 = 60;
const ADMIN_PASSWORD: &str = "bench-backup admin password";
/// The example components the generated plugins are made of (see the `history` example).
const BASES: &[&str] = &["promo-discount", "loyalty-points"];

pub fn run(root: &Path) -> anyhow::Result<()> {
    which("wrk").context("wrk is needed (Debian: apt-get install wrk)")?;
    which("sqlite3").context("sqlite3 is needed (Debian: apt-get install sqlite3)")?;
    crate::bench_http::build_release()?;
    crate::run(crate::cargo().args(["build", "--release", "-p", "plugwatch-backup", "--example", "history"]))?;
    let target = root.join("target/release");
    let plugwatch = target.join("plugwatch");
    let work = root.join("target/bench-backup");
    let data = work.join("data");
    std::fs::create_dir_all(&work)?;
    println!("\nxtask: machine load before: {}", loadavg());

    let generated = if data.join("plugwatch.db").exists() {
        println!("xtask: reusing {}", data.display());
        None
    } else {
        let partial = work.join("data.partial");
        let _ = std::fs::remove_dir_all(&partial);
        let started = Instant::now();
        crate::run(Command::new(target.join("examples/history")).arg(&partial))?;
        let took = started.elapsed();
        std::fs::rename(&partial, &data)?;
        Some(took)
    };
    if !data.join("compiled").exists() {
        warm_compile_cache(root, &plugwatch, &work, &data)?;
    }

    let started = Instant::now();
    let mut server = Some(serve(&plugwatch, &data)?);
    wait_until_ok(&format!("http://{SERVE}/readyz"), Duration::from_secs(600))?;
    let start_to_ready = started.elapsed();
    let token = admin_token(SERVE, ADMIN_PASSWORD, &work)?;
    if get_status("/api/v1/plugins/echo", &token)? != 200 {
        let component = work.join("echo.wasm");
        std::fs::write(&component, echo_component(root)?)?;
        upload(SERVE, &component, "echo", &token)?;
    }
    let script = work.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{PAYLOAD}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ),
    )?;
    // Old archives (an earlier run's) would only take disk space.
    for old in list_backups(&token)? {
        delete_backup(&old, &token)?;
    }
    let pid = server.as_ref().map(|s| s.0.id()).expect("started");
    wrk(&script, 3)?; // warm-up, not counted

    // Backup time on the idle server first: a round is made as long as a backup, so that the rounds during
    // backups see every phase of one (snapshot, hashing, compression, fsync).
    let mut idle = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        idle.push(create_backup(&token)?);
    }
    let kept = idle.last().expect("three backups").clone();
    for backup in &idle[..idle.len() - 1] {
        delete_backup(&backup.id, &token)?;
    }
    let archive = data.join("backups").join(&kept.id);
    anyhow::ensure!(archive.exists(), "{} is not where the backup should be", archive.display());
    let idle_secs = median(idle.iter().map(|b| b.took.as_secs_f64()).collect());
    let round_secs = (idle_secs.floor() as u32).clamp(MIN_ROUND_SECS, MAX_ROUND_SECS);

    let mut without = Vec::new();
    let mut during = Vec::new();
    let mut threads_cpu: BTreeMap<String, f64> = BTreeMap::new();
    let mut backups_in_rounds = Vec::new();
    let (mut cpu_without, mut cpu_during) = (Vec::new(), Vec::new());
    let mut total_during = 0.0;
    for _ in 0..ROUNDS {
        let cpu = crate::procfs::cpu_seconds(pid)?;
        let clock = Instant::now();
        without.push(wrk(&script, round_secs)?);
        cpu_without.push((crate::procfs::cpu_seconds(pid)? - cpu) / clock.elapsed().as_secs_f64());

        let stop = Arc::new(AtomicBool::new(false));
        let backups = {
            let (stop, token) = (stop.clone(), token.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Backup>> {
                let mut taken = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    taken.push(create_backup(&token)?);
                }
                Ok(taken)
            })
        };
        let threads = thread_cpu(pid)?;
        let cpu = crate::procfs::cpu_seconds(pid)?;
        let clock = Instant::now();
        let loaded = wrk(&script, round_secs);
        cpu_during.push((crate::procfs::cpu_seconds(pid)? - cpu) / clock.elapsed().as_secs_f64());
        total_during += clock.elapsed().as_secs_f64();
        for (name, secs) in thread_cpu(pid)? {
            *threads_cpu.entry(name.clone()).or_default() += secs - threads.get(&name).copied().unwrap_or(0.0);
        }
        stop.store(true, Ordering::SeqCst);
        let taken = backups.join().map_err(|_| anyhow::anyhow!("the backup thread panicked"))??;
        during.push(loaded?);
        for backup in &taken {
            delete_backup(&backup.id, &token)?;
        }
        backups_in_rounds.push(taken);
    }

    // The CLI restore, on a copy of the stopped data directory.
    stop_gracefully(server.take().expect("running"))?;
    let copy = work.join("restore-copy");
    let mut cli_restores = Vec::new();
    let mut invocations = 0;
    for i in 0..3 {
        let _ = std::fs::remove_dir_all(&copy);
        crate::run(Command::new("cp").arg("-a").arg(&data).arg(&copy))?;
        // The copy's own archive directory holds the archive too; its safety backups are not wanted.
        if i == 0 {
            invocations = sqlite_number(
                &copy.join("plugwatch.db"),
                "SELECT SUM(ok + plugin_error + trap + timeout + fuel_exhausted + memory_limit + output_too_large \
                 + input_too_large + rejected) FROM rollups WHERE resolution = 3600",
            )?;
        }
        let started = Instant::now();
        let out = Command::new(&plugwatch)
            .args(["backup", "restore"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(&copy)
            .env("PLUGWATCH_LOG", "warn")
            .output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!("plugwatch backup restore failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        cli_restores.push(took);
    }
    let _ = std::fs::remove_dir_all(&copy);

    // The in-place restore on the running server.
    let started = Instant::now();
    let server = serve(&plugwatch, &data)?;
    wait_until_ok(&format!("http://{SERVE}/readyz"), Duration::from_secs(600))?;
    let warm_start_to_ready = started.elapsed();
    let started = Instant::now();
    let answer = curl(&["-X", "POST"], &format!("/api/v1/backups/{}/restore", kept.id), &token)?;
    let answered = started.elapsed();
    if answer.1 != 202 {
        bail!("the restore answered {}: {}", answer.1, answer.0);
    }
    let restart = wait_for_restart(&format!("http://{SERVE}/readyz"))?;
    let in_place = started.elapsed();
    for old in list_backups(&token)? {
        delete_backup(&old, &token)?;
    }
    stop_gracefully(server)?;
    println!("xtask: machine load after: {}", loadavg());

    let rps = |rounds: &[Load]| median(rounds.iter().map(|r| r.rps).collect());
    let p99 = |rounds: &[Load]| median(rounds.iter().map(|r| r.p99_ms).collect());
    let secs = |d: &[Duration]| median(d.iter().map(Duration::as_secs_f64).collect());
    println!(
        "\nbench-backup (2 cores shared with other work, loopback, release build; wrk -t2 -c32 -d{round_secs}s per round, \
         {ROUNDS} rounds each, alternating)"
    );
    if let Some(took) = generated {
        println!(
            "  data generated:             {:>10.0} s (history example, 100 plugins, 30 days)",
            took.as_secs_f64()
        );
    }
    println!("  start to ready (first):     {:>10.1} s", start_to_ready.as_secs_f64());
    for (i, (w, d)) in without.iter().zip(&during).enumerate() {
        println!(
            "  round {}: without {:>7.0} req/s p99 {:>6.2} ms | during {:>7.0} req/s p99 {:>6.2} ms ({} backups) | \
             server CPU {:.2} / {:.2} cores",
            i + 1,
            w.rps,
            w.p99_ms,
            d.rps,
            d.p99_ms,
            backups_in_rounds[i].len(),
            cpu_without[i],
            cpu_during[i],
        );
    }
    let (rps_w, rps_d, p99_w, p99_d) = (rps(&without), rps(&during), p99(&without), p99(&during));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("  throughput without backup:  {rps_w:>10.0} req/s (median)");
    println!("  throughput during backup:   {rps_d:>10.0} req/s (median)");
    println!(
        "  throughput ratio:           {:>10.2} (target >= 0.90: {})",
        rps_d / rps_w,
        verdict(rps_d / rps_w >= 0.9)
    );
    println!("  p99 without backup:         {p99_w:>10.2} ms (median)");
    println!("  p99 during backup:          {p99_d:>10.2} ms (median)");
    println!(
        "  p99 ratio:                  {:>10.2} (target <= 1.50: {})",
        p99_d / p99_w,
        verdict(p99_d / p99_w <= 1.5)
    );
    let mut busiest: Vec<(String, f64)> = threads_cpu.into_iter().collect();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let shares: Vec<String> =
        busiest.iter().take(5).map(|(name, secs)| format!("{name} {:.2}", secs / total_during)).collect();
    println!("  server CPU by thread during backups (cores): {}", shares.join(", "));
    let round_backups: Vec<f64> = backups_in_rounds.iter().flatten().map(|b| b.took.as_secs_f64()).collect::<Vec<_>>();
    if !round_backups.is_empty() {
        println!(
            "  backup time under load:     {:>10.1} s (median of {})",
            median(round_backups.clone()),
            round_backups.len()
        );
    }
    println!(
        "  backup time, idle server:   {:>10.1} s (median of 3: {})",
        secs(&idle.iter().map(|b| b.took).collect::<Vec<_>>()),
        idle.iter().map(|b| format!("{:.1}", b.took.as_secs_f64())).collect::<Vec<_>>().join(", ")
    );
    println!("  archive:                    {:>10.1} MB compressed", kept.size_bytes as f64 / 1e6);
    println!("  database in the archive:    {:>10.1} MB uncompressed", kept.database_bytes as f64 / 1e6);
    println!("  components in the archive:  {:>10}", kept.artifacts);
    println!("  invocations in the db:      {:>10}", invocations);
    println!(
        "  restore, CLI (stopped copy): {:>9.1} s (median of 3: {})",
        secs(&cli_restores),
        cli_restores.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
    );
    println!("  start to ready (warm):      {:>10.1} s", warm_start_to_ready.as_secs_f64());
    println!(
        "  restore, in place:          {:>10.1} s from POST to /readyz 200 (POST answered 202 after {:.1} s, \
         restart {:.1} s)",
        in_place.as_secs_f64(),
        answered.as_secs_f64(),
        restart.as_secs_f64()
    );
    Ok(())
}

/// One wrk round.
struct Load {
    rps: f64,
    p99_ms: f64,
}

/// One `POST /api/v1/backups`.
#[derive(Clone)]
struct Backup {
    id: String,
    took: Duration,
    size_bytes: u64,
    database_bytes: u64,
    artifacts: u64,
}

fn serve(plugwatch: &Path, data: &Path) -> anyhow::Result<Killed> {
    Ok(Killed(
        Command::new(plugwatch)
            .args(["serve", "--listen", SERVE, "--data-dir"])
            .arg(data)
            .env("PLUGWATCH_LOG", "warn")
            .env("PLUGWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Only the backups this bench takes: no scheduled one landing in a round.
            .env("PLUGWATCH_BACKUP__ENABLED", "false")
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// SIGTERM, then waits for the server to exit (it checkpoints and releases the data directory).
fn stop_gracefully(mut server: Killed) -> anyhow::Result<()> {
    crate::run(Command::new("kill").args(["-TERM", &server.0.id().to_string()]))?;
    let started = Instant::now();
    while server.0.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The generated components differ from the example components only by a custom section, which changes
/// their hash but not their code. A server compiles each hash once into its cache (`compiled/`); a fresh
/// copy of this directory would spend many minutes compiling 100 copies of CPython and SpiderMonkey on
/// its first start. Instead each example component is compiled once by a scratch server, and each
/// generated component's cache entry is a hard link to its base's compiled code.
fn warm_compile_cache(root: &Path, plugwatch: &Path, work: &Path, data: &Path) -> anyhow::Result<()> {
    println!("xtask: warming the compile cache of {}", data.display());
    let scratch = work.join("compile-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let server = serve(plugwatch, &scratch)?;
    wait_until_ok(&format!("http://{SERVE}/readyz"), Duration::from_secs(120))?;
    let token = admin_token(SERVE, ADMIN_PASSWORD, work)?;
    let compiled = scratch.join("compiled");
    let mut bases = Vec::new();
    for name in BASES {
        let before = cwasm_files(&compiled)?;
        let component = root.join(format!("examples/plugins/{name}/{name}.wasm"));
        upload(SERVE, &component, name, &token)?;
        let new: Vec<PathBuf> = cwasm_files(&compiled)?.into_iter().filter(|f| !before.contains(f)).collect();
        let [cwasm] = &new[..] else { bail!("expected one new compiled file for {name}, found {new:?}") };
        bases.push((std::fs::read(&component)?, cwasm.clone()));
    }
    stop_gracefully(server)?;
    let target = data.join("compiled.partial");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target)?;
    let mut linked = 0;
    for shard in std::fs::read_dir(data.join("artifacts"))? {
        for entry in std::fs::read_dir(shard?.path())? {
            let path = entry?.path();
            let Some(sha) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            let bytes = std::fs::read(&path)?;
            let Some((_, cwasm)) = bases.iter().find(|(base, _)| bytes.starts_with(base)) else { continue };
            // `<sha256>-<engine key>.cwasm`: keep the engine key, use this component's hash.
            let name = cwasm.file_name().and_then(|n| n.to_str()).context("cache file name")?;
            let key = &name[name.find('-').context("cache file name")?..];
            std::fs::hard_link(cwasm, target.join(format!("{sha}{key}")))?;
            linked += 1;
        }
    }
    std::fs::rename(&target, data.join("compiled"))?;
    println!("xtask: {linked} cache entries linked to {} compiled components", bases.len());
    Ok(())
}

fn cwasm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            out.push(path);
        }
    }
    Ok(out)
}

/// `curl` against the server with the token: (body, status).
fn curl(args: &[&str], path: &str, token: &str) -> anyhow::Result<(String, u16)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "900", "-w", "\n%{http_code}", "-H", &format!("authorization: Bearer {token}")])
        .args(args)
        .arg(format!("http://{SERVE}{path}"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((body.to_owned(), code.trim().parse().unwrap_or(0)))
}

fn get_status(path: &str, token: &str) -> anyhow::Result<u16> {
    Ok(curl(&[], path, token)?.1)
}

fn create_backup(token: &str) -> anyhow::Result<Backup> {
    let started = Instant::now();
    let (body, code) = curl(&["-X", "POST"], "/api/v1/backups", token)?;
    let took = started.elapsed();
    if code != 201 {
        bail!("POST /api/v1/backups answered {code}: {body}");
    }
    let backup = json(&body)?;
    let number = |key: &str| backup[key].as_u64().with_context(|| format!("no {key} in the backup: {body}"));
    Ok(Backup {
        id: backup["id"].as_str().map(str::to_owned).with_context(|| format!("no id in the backup: {body}"))?,
        took,
        size_bytes: number("size_bytes")?,
        database_bytes: number("database_bytes")?,
        artifacts: number("artifacts")?,
    })
}

fn delete_backup(id: &str, token: &str) -> anyhow::Result<()> {
    let (body, code) = curl(&["-X", "DELETE"], &format!("/api/v1/backups/{id}"), token)?;
    if code != 204 {
        bail!("deleting backup {id} answered {code}: {body}");
    }
    Ok(())
}

fn list_backups(token: &str) -> anyhow::Result<Vec<String>> {
    let (body, code) = curl(&[], "/api/v1/backups", token)?;
    if code != 200 {
        bail!("GET /api/v1/backups answered {code}: {body}");
    }
    let mut ids = Vec::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find("\"id\":\"") {
        rest = &rest[at + 6..];
        let end = rest.find('"').context("unterminated id")?;
        ids.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    Ok(ids)
}

/// After a restore was accepted: waits for `/readyz` to stop answering 200 (the server going down to swap
/// the restored state in), then until it answers 200 again. Returns the time from the first to the second.
fn wait_for_restart(url: &str) -> anyhow::Result<Duration> {
    let ready = || -> anyhow::Result<bool> {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout) == "200")
    };
    let started = Instant::now();
    while ready()? {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not restart within 60 s of accepting the restore");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let down = Instant::now();
    while !ready()? {
        if down.elapsed() > Duration::from_secs(600) {
            bail!("the server was not ready again within 600 s of the restore");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(down.elapsed())
}

fn wrk(script: &Path, secs: u32) -> anyhow::Result<Load> {
    let url = format!("http://{SERVE}/api/v1/plugins/echo/invoke");
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(&url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = crate::wrk::parse(&text, &url)?;
    let p99_ms = summary.p99_ms.with_context(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(Load { rps: summary.rps, p99_ms })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// CPU seconds by thread name of a process (threads of one name summed).
fn thread_cpu(pid: u32) -> anyhow::Result<BTreeMap<String, f64>> {
    let per_second = crate::procfs::clock_ticks()?;
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else { continue };
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map_or("?", |(n, _)| n);
        // Numbered threads (`sqlx-sqlite-worker-3`) are one kind.
        let kind = name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-').to_owned();
        *out.entry(kind).or_default() += crate::procfs::stat_ticks(&stat)? as f64 / per_second;
    }
    Ok(out)
}

fn sqlite_number(db: &Path, sql: &str) -> anyhow::Result<u64> {
    let out = Command::new("sqlite3").arg("-readonly").arg(db).arg(sql).output()?;
    if !out.status.success() {
        bail!("sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().context("sqlite3 printed no number")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
