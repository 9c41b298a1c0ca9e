//! `cargo xtask load`: the restaurant mix (`tests/load/locustfile.py`, Locust) against a real
//! `plugwatch serve --demo`, the server's resources sampled once a second, and the performance report.
//!
//! ```text
//! cargo xtask load [--duration SECS] [--users N] [--spawn-rate R] [--release | --binary PATH] [--check] [--out DIR]
//! ```
//!
//! 1. The server: the debug build (built as the browser step builds it), `--release` the release build if
//!    there is one (it is never built here: that takes a quarter of an hour), or `--binary PATH` as it is.
//!    It runs `serve --demo` on a free loopback port with a fresh data directory in `target/load-run`.
//! 2. Credentials: an invoker service token for the host application and the storefront, and an operator
//!    user with a random password for the dashboard readers (cookie sign-in), handed to Locust in
//!    environment variables, never printed.
//! 3. `locust --headless` from `target/tools/venv` (pinned in `tests/requirements.txt`) for `--duration`
//!    seconds with `--users` users, while a thread samples `/proc/<pid>/stat` and `status` of the server
//!    (CPU seconds → cores used, RSS) and of Locust (cores: they share the machine), the data directory's
//!    disk usage and the SQLite database and WAL sizes into `resources.csv`.
//! 4. The report in `--out` (default `target/load`): `report.json`, `report.md` and the charts
//!    `requests_per_s.png` and `resources.png` (`tests/load/report.py`, matplotlib).
//!
//! `--check` (default 20 s, 8 users) then fails unless every request succeeded and each endpoint's p99 is
//! under its ceiling in `tests/load/thresholds.toml`; `cargo xtask test` runs it, and the deploy tool's
//! performance check is the same.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procfs;
use serde_json::{Value, json};

/// The operator the dashboard readers sign in as (created with a random password for each run).
const OPERATOR: &str = "load-operator";
/// Seconds sampled before Locust starts and after it ends, so the charts show the server idle on each side.
const MARGIN_SECS: u64 = 3;

#[derive(Debug)]
pub struct Options {
    pub duration_secs: u64,
    pub users: u32,
    pub spawn_rate: f64,
    pub profile: Profile,
    pub check: bool,
    pub out: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    Debug,
    Release,
    Binary(PathBuf),
}

impl Options {
    /// What `cargo xtask test` runs: the check, short, with few users, on the debug build.
    pub fn check(root: &Path) -> Self {
        Options {
            duration_secs: 20,
            users: 8,
            spawn_rate: 8.0,
            profile: Profile::Debug,
            check: true,
            out: root.join("target/load"),
        }
    }

    pub fn parse(root: &Path, args: &[String]) -> anyhow::Result<Self> {
        let check = args.iter().any(|a| a == "--check");
        let mut options = if check {
            Options::check(root)
        } else {
            Options { duration_secs: 60, users: 32, spawn_rate: 32.0, check: false, ..Options::check(root) }
        };
        let mut spawn_rate = None;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--check" => {}
                "--release" => options.profile = Profile::Release,
                "--binary" => options.profile = Profile::Binary(PathBuf::from(value("--binary")?)),
                "--duration" => options.duration_secs = value(arg)?.parse().context("--duration: whole seconds")?,
                "--users" => options.users = value(arg)?.parse().context("--users: a whole number")?,
                "--spawn-rate" => spawn_rate = Some(value(arg)?.parse().context("--spawn-rate: users per second")?),
                "--out" => options.out = root.join(value(arg)?),
                other => bail!(
                    "unknown argument `{other}`; usage: cargo xtask load [--duration SECS] [--users N] \
                     [--spawn-rate R] [--release | --binary PATH] [--check] [--out DIR]"
                ),
            }
        }
        if options.duration_secs == 0 || options.users == 0 {
            bail!("--duration and --users must be positive");
        }
        options.spawn_rate = spawn_rate.unwrap_or(options.users as f64);
        Ok(options)
    }
}

pub fn main(root: &Path, args: &[String]) -> anyhow::Result<()> {
    run(root, &Options::parse(root, args)?)
}

pub fn run(root: &Path, options: &Options) -> anyhow::Result<()> {
    println!("\nxtask: load");
    let started = Instant::now();
    let result = run_inner(root, options);
    println!("xtask: load: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn run_inner(root: &Path, options: &Options) -> anyhow::Result<()> {
    let thresholds = Thresholds::read(&root.join("tests/load/thresholds.toml"))?;
    let venv = root.join("target/tools/venv/bin");
    if !venv.join("locust").exists() {
        bail!(
            "{} is missing: run `cargo xtask tools` (it installs tests/requirements.txt)",
            venv.join("locust").display()
        );
    }
    let binary = binary(root, &options.profile)?;
    let work = root.join("target/load-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&options.out).with_context(|| format!("cannot create {}", options.out.display()))?;

    let log = work.join("server.log");
    let (mut server, addr) = crate::server::start_demo(root, &binary, &work, &log)?;
    let password = crate::server::DEMO_PASSWORD;
    let host_token = crate::server::service_token(&addr, password, &work, "load-host-app", "invoker")?;
    let admin = crate::server::admin_token(&addr, password, &work)?;
    let operator_password = random_hex(16)?;
    create_user(&addr, &admin, OPERATOR, "operator", &operator_password)?;

    let data_dir = work.join("data");
    let db_before = database_bytes(&data_dir);
    let locust_pid = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (server_pid, locust_pid, stop, data_dir) =
            (server.0.id(), locust_pid.clone(), stop.clone(), data_dir.clone());
        std::thread::spawn(move || sample(server_pid, &locust_pid, &stop, &data_dir))
    };
    std::thread::sleep(Duration::from_secs(MARGIN_SECS));

    println!(
        "xtask: locust: {} users (spawn rate {}/s) for {} s against {addr} ({})",
        options.users,
        options.spawn_rate,
        options.duration_secs,
        profile_name(&options.profile)
    );
    let locust_log = work.join("locust.log");
    let mut locust = Command::new(venv.join("locust"))
        .arg("-f")
        .arg(root.join("tests/load/locustfile.py"))
        .args(["--headless", "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"])
        .args(["--users", &options.users.to_string(), "--spawn-rate", &options.spawn_rate.to_string()])
        .args(["--run-time", &format!("{}s", options.duration_secs), "--host", &format!("http://{addr}")])
        .arg("--csv")
        .arg(work.join("locust"))
        .env("PLUGWATCH_LOAD_HOST_TOKEN", &host_token)
        .env("PLUGWATCH_LOAD_OPERATOR_USER", OPERATOR)
        .env("PLUGWATCH_LOAD_OPERATOR_PASSWORD", &operator_password)
        .env("PLUGWATCH_LOAD_OUT", &work)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&locust_log)?)
        .stderr(std::fs::File::create(work.join("locust.stderr.log"))?)
        .spawn()
        .context("cannot start locust")?;
    locust_pid.store(locust.id(), Ordering::SeqCst);
    let status = locust.wait()?;
    locust_pid.store(0, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(MARGIN_SECS));
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().map_err(|_| anyhow::anyhow!("the resource sampler panicked"))??;
    // A clean stop writes the open telemetry bucket and checkpoints the WAL into the database, so the sizes
    // after it are what the run left.
    stop_server(&mut server.0)?;
    let after = Sizes::of(&data_dir);
    let db_after = database_bytes(&data_dir);
    if !status.success() {
        bail!(
            "locust exited with {status}; its output: {} and {}",
            locust_log.display(),
            work.join("locust.stderr.log").display()
        );
    }
    write_resources(&work.join("resources.csv"), &samples)?;

    let latencies = std::fs::read_to_string(work.join("latencies.json"))
        .context("locust wrote no latencies.json (did any request run?)")?;
    let latencies: Value = serde_json::from_str(&latencies)?;
    let measured = Measured { samples: &samples, after, database: (db_before, db_after), log: server_log(root, &log)? };
    let mut report = report(root, options, &binary, &latencies, &measured)?;
    let problems = thresholds.problems(&report);
    report["check"] = json!({
        "thresholds": "tests/load/thresholds.toml",
        "max_failure_ratio": thresholds.max_failure_ratio,
        "min_requests_per_s": thresholds.min_requests_per_s,
        "passed": problems.is_empty(),
        "problems": problems,
    });

    crate::step(
        "load report charts",
        Command::new(venv.join("python"))
            .arg(root.join("tests/load/report.py"))
            .arg("--history")
            .arg(work.join("locust_stats_history.csv"))
            .arg("--resources")
            .arg(work.join("resources.csv"))
            .arg("--out")
            .arg(&options.out),
    )?;
    std::fs::write(options.out.join("report.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(options.out.join("report.md"), markdown(&report))?;
    print_summary(&report);
    println!("xtask: the report: {}", options.out.join("report.md").display());
    if options.check && !problems.is_empty() {
        bail!(
            "the performance check failed ({}):\n  {}\nthe server's log: {}",
            "tests/load/thresholds.toml",
            problems.join("\n  "),
            log.display()
        );
    }
    Ok(())
}

/// The server binary to load: see the module doc.
fn binary(root: &Path, profile: &Profile) -> anyhow::Result<PathBuf> {
    let path = match profile {
        Profile::Debug => {
            // The same selection as the test and browser steps, so their build is reused.
            crate::run(crate::cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
            root.join("target/debug/plugwatch")
        }
        Profile::Release => {
            let path = root.join("target/release/plugwatch");
            if !path.exists() {
                bail!(
                    "--release needs {}, which is not built (this command does not build it: a release build \
                     takes about 14 minutes on two cores); build it with `cargo build --release -p plugwatch \
                     --bin plugwatch`, or run without --release to load the debug build",
                    path.display()
                );
            }
            path
        }
        Profile::Binary(path) => root.join(path),
    };
    if !path.exists() {
        bail!("no server binary at {}", path.display());
    }
    Ok(path)
}

/// `debug` or `release` (for `--binary`, the name of the directory it is in), else `unknown`.
fn profile_label(profile: &Profile) -> &'static str {
    match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
        Profile::Binary(path) => match path.parent().and_then(Path::file_name).and_then(|d| d.to_str()) {
            Some("debug") => "debug",
            Some("release") => "release",
            _ => "unknown",
        },
    }
}

fn profile_name(profile: &Profile) -> String {
    match profile {
        Profile::Debug => "debug build".to_owned(),
        Profile::Release => "release build".to_owned(),
        Profile::Binary(path) => format!("binary {}", path.display()),
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates a user with the admin token `admin`; the password goes to curl on its standard input, not its
/// command line.
fn create_user(addr: &str, admin: &str, username: &str, role: &str, password: &str) -> anyhow::Result<()> {
    let mut curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {admin}"), "--data-binary", "@-"])
        .arg(format!("http://{addr}/api/v1/users"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let body = json!({ "username": username, "role": role, "password": password }).to_string();
    curl.stdin.take().context("curl's stdin")?.write_all(body.as_bytes())?;
    let out = curl.wait_with_output()?;
    let code = String::from_utf8_lossy(&out.stdout);
    if code != "201" {
        bail!("creating the user {username} answered {code}");
    }
    Ok(())
}

/// SIGTERM, then waits for the drain and the final flush (SIGKILL after 60 s).
fn stop_server(server: &mut std::process::Child) -> anyhow::Result<()> {
    crate::run(Command::new("kill").args(["-TERM", &server.id().to_string()]))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if server.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the server did not stop within 60 s of SIGTERM")
}

/// One second's sample: seconds since the sampler started, whether Locust ran, and the resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    load: bool,
    server_cpu_cores: f64,
    locust_cpu_cores: f64,
    /// Every process's, from `/proc/stat`: what neither the server nor Locust used is other work.
    machine_cpu_cores: f64,
    server_rss_bytes: u64,
    sizes: Sizes,
}

/// The data directory's disk usage and the SQLite files' sizes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Everything under the data directory but `backups/`.
    data_dir_bytes: u64,
    /// `backups/`: the first scheduled backup runs 60 s after a start, so a run may hold one.
    backups_bytes: u64,
    db_bytes: u64,
    wal_bytes: u64,
}

impl Sizes {
    fn of(data_dir: &Path) -> Self {
        Sizes {
            data_dir_bytes: disk_usage(data_dir).saturating_sub(disk_usage(&data_dir.join("backups"))),
            backups_bytes: disk_usage(&data_dir.join("backups")),
            db_bytes: file_len(&data_dir.join("plugwatch.db")),
            wal_bytes: file_len(&data_dir.join("plugwatch.db-wal")),
        }
    }
}

/// Samples once a second until `stop` (see the module doc). The server's CPU is the difference of its
/// `utime + stime` between two samples over the wall time between them.
fn sample(server: u32, locust: &AtomicU32, stop: &AtomicBool, data_dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let ticks = procfs::clock_ticks()?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_server = (started, procfs::cpu_ticks(server)?);
    let mut last_locust: Option<(u32, Instant, u64)> = None;
    let mut last_machine = (started, procfs::machine_ticks()?);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        // The server exits at the end (a clean stop): the last samples are of its files only.
        let Ok(server_ticks) = procfs::cpu_ticks(server) else { break };
        let server_cpu =
            (server_ticks - last_server.1) as f64 / ticks / now.duration_since(last_server.0).as_secs_f64();
        last_server = (now, server_ticks);
        let pid = locust.load(Ordering::SeqCst);
        let mut locust_cpu = 0.0;
        match procfs::cpu_ticks(pid) {
            Ok(t) if pid != 0 => {
                if let Some((_, at, before)) = last_locust.filter(|(p, _, _)| *p == pid) {
                    locust_cpu = (t - before) as f64 / ticks / now.duration_since(at).as_secs_f64();
                }
                last_locust = Some((pid, now, t));
            }
            _ => last_locust = None,
        }
        let machine = procfs::machine_ticks()?;
        let machine_cpu = (machine - last_machine.1) as f64 / ticks / now.duration_since(last_machine.0).as_secs_f64();
        last_machine = (now, machine);
        let sizes = Sizes::of(data_dir);
        samples.push(Sample {
            t: now.duration_since(started).as_secs_f64(),
            load: pid != 0,
            server_cpu_cores: server_cpu,
            locust_cpu_cores: locust_cpu,
            machine_cpu_cores: machine_cpu,
            server_rss_bytes: procfs::rss_bytes(server).unwrap_or(0),
            sizes,
        });
    }
    if samples.is_empty() {
        bail!("no resource sample was taken (did the server exit at once?)");
    }
    Ok(samples)
}

/// The database's size as SQLite counts it (`page_count × page_size`, through the WAL), with the sqlite3
/// command-line shell, read-only; `None` without one.
fn database_bytes(data_dir: &Path) -> Option<u64> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(data_dir.join("plugwatch.db"))
        .arg("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size();")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes on disk under `dir` (allocated blocks, as `du`), following no symbolic link.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => m.blocks() * 512 + disk_usage(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn write_resources(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "t_s,load,server_cpu_cores,locust_cpu_cores,machine_cpu_cores,server_rss_bytes,data_dir_bytes,backups_bytes,db_bytes,wal_bytes\n",
    );
    for s in samples {
        csv.push_str(&format!(
            "{:.2},{},{:.3},{:.3},{:.3},{},{},{},{},{}\n",
            s.t,
            s.load as u8,
            s.server_cpu_cores,
            s.locust_cpu_cores,
            s.machine_cpu_cores,
            s.server_rss_bytes,
            s.sizes.data_dir_bytes,
            s.sizes.backups_bytes,
            s.sizes.db_bytes,
            s.sizes.wal_bytes
        ));
    }
    std::fs::write(path, csv)?;
    Ok(())
}

/// What the server logged at `warn` and above (the level the demo server runs at): counts and the
/// distinct messages, the timestamp cut off.
fn server_log(root: &Path, log: &Path) -> anyhow::Result<Value> {
    // Paths relative to the workspace, as everywhere in the report.
    let text = std::fs::read_to_string(log)?.replace(&format!("{}/", root.display()), "");
    let (mut warnings, mut errors) = (0, 0);
    let mut distinct: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        let level = if line.contains(" ERROR ") {
            errors += 1;
            "ERROR"
        } else if line.contains(" WARN ") {
            warnings += 1;
            "WARN"
        } else {
            continue;
        };
        let message = line.split_once(level).map_or(line, |(_, m)| m).trim();
        let message = format!("{level} {}", message.chars().take(400).collect::<String>());
        match distinct.iter_mut().find(|(m, _)| *m == message) {
            Some((_, n)) => *n += 1,
            None => distinct.push((message, 1)),
        }
    }
    distinct.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    distinct.truncate(20);
    let lines: Vec<Value> =
        distinct.into_iter().map(|(message, count)| json!({"message": message, "count": count})).collect();
    Ok(json!({ "warnings": warnings, "errors": errors, "distinct": lines }))
}

/// The run's `report.json` (see the module doc), from Locust's latencies, the samples and the log.
/// What the run measured beside Locust's latencies.
struct Measured<'a> {
    samples: &'a [Sample],
    /// The data directory's sizes after the clean stop.
    after: Sizes,
    /// The database's size before Locust and after the stop (`database_bytes`).
    database: (Option<u64>, Option<u64>),
    log: Value,
}

fn report(
    root: &Path,
    options: &Options,
    binary: &Path,
    latencies: &Value,
    measured: &Measured,
) -> anyhow::Result<Value> {
    let Measured { samples, after, database, log } = measured;
    let duration = latencies["ended_at"].as_f64().unwrap_or(0.0) - latencies["started_at"].as_f64().unwrap_or(0.0);
    let total = &latencies["total"];
    let count = total["count"].as_u64().unwrap_or(0);
    let failures = total["failures"].as_u64().unwrap_or(0);
    let loaded: Vec<&Sample> = samples.iter().filter(|s| s.load).collect();
    let mean = |f: fn(&Sample) -> f64| {
        if loaded.is_empty() { 0.0 } else { loaded.iter().map(|s| f(s)).sum::<f64>() / loaded.len() as f64 }
    };
    let max = |f: fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let first = samples[0].sizes;
    let binary_rel = binary.strip_prefix(root).unwrap_or(binary);
    Ok(json!({
        "scenario": "tests/load/locustfile.py (the restaurant mix)",
        "generated_at": command_text(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))?,
        "parameters": {
            "duration_secs": options.duration_secs,
            "users": options.users,
            "spawn_rate": options.spawn_rate,
            "check": options.check,
            "users_per_class": latencies["users"],
        },
        "binary": {
            "profile": profile_label(&options.profile),
            "path": binary_rel.display().to_string(),
            "version": command_text(Command::new(binary).arg("--version")).unwrap_or_default(),
        },
        "machine": machine()?,
        "git": {
            "commit": command_text(Command::new("git").args(["rev-parse", "HEAD"]))?,
            "dirty": !command_text(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]))?.is_empty(),
        },
        "requests": {
            "total": count,
            "failures": failures,
            "failure_ratio": if count == 0 { 0.0 } else { failures as f64 / count as f64 },
            "duration_secs": duration,
            "requests_per_s": if duration > 0.0 { count as f64 / duration } else { 0.0 },
            "p50_ms": total["p50_ms"], "p95_ms": total["p95_ms"], "p99_ms": total["p99_ms"], "max_ms": total["max_ms"],
        },
        "endpoints": latencies["endpoints"],
        "failures": latencies["failures"],
        "task_errors": latencies["task_errors"],
        "resources": {
            "samples": samples.len(),
            "interval_secs": 1,
            "server_cpu_cores_mean": mean(|s| s.server_cpu_cores),
            "server_cpu_cores_max": max(|s| s.server_cpu_cores),
            "locust_cpu_cores_mean": mean(|s| s.locust_cpu_cores),
            "other_cpu_cores_mean": mean(|s| (s.machine_cpu_cores - s.server_cpu_cores - s.locust_cpu_cores).max(0.0)),
            "server_rss_bytes_start": samples[0].server_rss_bytes,
            "server_rss_bytes_max": samples.iter().map(|s| s.server_rss_bytes).max().unwrap_or(0),
            // The database's pages (read through the WAL, which holds repeated images of a page), before
            // Locust and after the clean stop; the file and WAL sizes are in the series.
            "db_bytes_start": database.0,
            "db_bytes_end": database.1,
            "db_growth_bytes": database.0.zip(database.1).map(|(a, b)| b as i64 - a as i64),
            "db_file_bytes_end": after.db_bytes,
            "wal_bytes_max": samples.iter().map(|s| s.sizes.wal_bytes).max().unwrap_or(0),
            "data_dir_bytes_start": first.data_dir_bytes,
            "data_dir_bytes_end": after.data_dir_bytes,
            "data_dir_growth_bytes": after.data_dir_bytes as i64 - first.data_dir_bytes as i64,
            "backups_bytes_end": after.backups_bytes,
        },
        "server_log": log,
    }))
}

fn command_text(command: &mut Command) -> anyhow::Result<String> {
    let out = command.stderr(Stdio::null()).output().with_context(|| format!("cannot run {command:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> anyhow::Result<Value> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok());
    Ok(json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "memory_bytes": memory.map(|kib| kib * 1024),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim(),
    }))
}

/// `tests/load/thresholds.toml`.
struct Thresholds {
    max_failure_ratio: f64,
    min_requests_per_s: f64,
    default_p99_ms: f64,
    p99_ms: Vec<(String, f64)>,
}

impl Thresholds {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let table: toml::Table = text.parse().with_context(|| format!("{} is not TOML", path.display()))?;
        let number = |value: Option<&toml::Value>, key: &str| -> anyhow::Result<f64> {
            match value {
                Some(toml::Value::Float(f)) => Ok(*f),
                Some(toml::Value::Integer(i)) => Ok(*i as f64),
                _ => bail!("{}: `{key}` must be a number", path.display()),
            }
        };
        let p99 = table.get("p99_ms").and_then(toml::Value::as_table).context("no [p99_ms] table")?;
        let mut p99_ms = Vec::new();
        for (key, value) in p99 {
            if key != "default" {
                p99_ms.push((key.clone(), number(Some(value), &format!("p99_ms.\"{key}\""))?));
            }
        }
        Ok(Thresholds {
            max_failure_ratio: number(table.get("max_failure_ratio"), "max_failure_ratio")?,
            min_requests_per_s: number(table.get("min_requests_per_s"), "min_requests_per_s")?,
            default_p99_ms: number(p99.get("default"), "p99_ms.default")?,
            p99_ms,
        })
    }

    fn ceiling(&self, endpoint: &str) -> f64 {
        self.p99_ms.iter().find(|(name, _)| name == endpoint).map_or(self.default_p99_ms, |(_, ms)| *ms)
    }

    /// Every threshold the report misses, in words.
    fn problems(&self, report: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let requests = &report["requests"];
        let ratio = requests["failure_ratio"].as_f64().unwrap_or(1.0);
        if ratio > self.max_failure_ratio {
            problems.push(format!(
                "{} of {} requests failed (ratio {ratio:.5}, at most {} allowed); the first: {}",
                requests["failures"],
                requests["total"],
                self.max_failure_ratio,
                report["failures"][0]["message"].as_str().unwrap_or("?")
            ));
        }
        for error in report["task_errors"].as_array().into_iter().flatten() {
            problems.push(format!(
                "the scenario itself raised {}× (a bug in tests/load/locustfile.py): {}",
                error["count"],
                error["message"].as_str().unwrap_or("?")
            ));
        }
        let rps = requests["requests_per_s"].as_f64().unwrap_or(0.0);
        if rps < self.min_requests_per_s {
            problems.push(format!("{rps:.1} requests/s, under the floor of {}", self.min_requests_per_s));
        }
        for endpoint in report["endpoints"].as_array().into_iter().flatten() {
            let name =
                format!("{} {}", endpoint["method"].as_str().unwrap_or("?"), endpoint["name"].as_str().unwrap_or("?"));
            let p99 = endpoint["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
            let ceiling = self.ceiling(&name);
            if p99 > ceiling {
                problems.push(format!("{name}: p99 {p99:.1} ms over its ceiling of {ceiling} ms"));
            }
        }
        problems
    }
}

fn f(value: &Value, decimals: usize) -> String {
    value.as_f64().map_or("–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mib(value: &Value) -> String {
    value.as_f64().map_or("–".to_owned(), |v| format!("{:.1} MiB", v / 1048576.0))
}

/// `report.md`: what was measured, the tables of `report.json` and the charts.
fn markdown(r: &Value) -> String {
    let req = &r["requests"];
    let res = &r["resources"];
    let machine = &r["machine"];
    let profile = r["binary"]["profile"].as_str().unwrap_or("?");
    let mut md = String::new();
    md.push_str("# plugwatch performance report: the restaurant mix\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask load` at {} from commit `{}`{}.\n\n",
        r["generated_at"].as_str().unwrap_or("?"),
        r["git"]["commit"].as_str().unwrap_or("?"),
        if r["git"]["dirty"].as_bool() == Some(true) { " with uncommitted changes" } else { "" }
    ));
    md.push_str(&format!(
        "**What was measured.** `plugwatch serve --demo` ({profile} build, `{}`) on loopback, loaded by Locust \
         (`tests/load/locustfile.py`: one process, `FastHttpUser`) with {} users for {} s, on {} cores ({}) \
         that Locust and the server share, so every request's time includes the client's, and the server gets \
         what Locust leaves of the CPU. Kernel {}. The demo also sends its own synthetic traffic in-process \
         (about 20 orders a second through the pricing chain and an `order.completed` action for every third): \
         it is in the server's CPU, not in the request figures.{}\n\n",
        r["binary"]["path"].as_str().unwrap_or("?"),
        r["parameters"]["users"],
        r["parameters"]["duration_secs"],
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["kernel"].as_str().unwrap_or("?"),
        if profile == "debug" {
            " **This is the debug build** (dependencies at opt-level 2, plugwatch's own crates unoptimised): \
             not the figures of a release build."
        } else {
            ""
        }
    ));
    md.push_str(&format!(
        "While Locust ran, the server used {} cores on average, Locust {} and every other process on the machine \
         {}{}.\n\n",
        f(&res["server_cpu_cores_mean"], 2),
        f(&res["locust_cpu_cores_mean"], 2),
        f(&res["other_cpu_cores_mean"], 2),
        if res["other_cpu_cores_mean"].as_f64().unwrap_or(0.0) > 0.25 {
            " (the machine was not idle: the server had only what the other work left)"
        } else {
            ""
        }
    ));
    md.push_str(&format!(
        "Users per class: {}.\n\n",
        r["parameters"]["users_per_class"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    ));
    md.push_str("## Headline\n\n| requests | failures | requests/s | p50 | p95 | p99 | max |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&format!(
        "| {} | {} | {} | {} ms | {} ms | {} ms | {} ms |\n\n",
        req["total"],
        req["failures"],
        f(&req["requests_per_s"], 1),
        f(&req["p50_ms"], 1),
        f(&req["p95_ms"], 1),
        f(&req["p99_ms"], 1),
        f(&req["max_ms"], 1)
    ));
    md.push_str("## Per endpoint\n\nExact percentiles of every response time Locust measured (ms).\n\n");
    md.push_str("| endpoint | requests | failures | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for e in r["endpoints"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| `{} {}` | {} | {} | {} | {} | {} | {} |\n",
            e["method"].as_str().unwrap_or("?"),
            e["name"].as_str().unwrap_or("?"),
            e["count"],
            e["failures"],
            f(&e["p50_ms"], 2),
            f(&e["p95_ms"], 2),
            f(&e["p99_ms"], 2),
            f(&e["max_ms"], 1)
        ));
    }
    md.push_str("\n![Requests per second and latency over the run](requests_per_s.png)\n\n");
    md.push_str("## Failures\n\n");
    match r["failures"].as_array().filter(|f| !f.is_empty()) {
        None => md.push_str("None: every response was what the scenario expects.\n\n"),
        Some(failures) => {
            md.push_str("| endpoint | count | message |\n|---|---:|---|\n");
            for x in failures {
                md.push_str(&format!(
                    "| `{} {}` | {} | {} |\n",
                    x["method"].as_str().unwrap_or("?"),
                    x["name"].as_str().unwrap_or("?"),
                    x["count"],
                    x["message"].as_str().unwrap_or("").replace('|', "\\|").replace('\n', " ")
                ));
            }
            md.push('\n');
        }
    }
    md.push_str(
        "## Server resources\n\nSampled once a second from `/proc`; means are over the seconds Locust ran.\n\n",
    );
    md.push_str("| | |\n|---|---:|\n");
    md.push_str(&format!(
        "| server CPU, mean / max | {} / {} cores |\n",
        f(&res["server_cpu_cores_mean"], 2),
        f(&res["server_cpu_cores_max"], 2)
    ));
    md.push_str(&format!("| Locust CPU, mean | {} cores |\n", f(&res["locust_cpu_cores_mean"], 2)));
    md.push_str(&format!(
        "| every other process on the machine, mean | {} cores |\n",
        f(&res["other_cpu_cores_mean"], 2)
    ));
    md.push_str(&format!(
        "| server RSS, before / max | {} / {} |\n",
        mib(&res["server_rss_bytes_start"]),
        mib(&res["server_rss_bytes_max"])
    ));
    md.push_str(&format!(
        "| SQLite database (its pages), before → after a clean stop (growth) | {} → {} ({}) |\n",
        mib(&res["db_bytes_start"]),
        mib(&res["db_bytes_end"]),
        mib(&res["db_growth_bytes"])
    ));
    md.push_str(&format!("| its WAL, max | {} |\n", mib(&res["wal_bytes_max"])));
    md.push_str(&format!(
        "| data directory on disk but `backups/`, before → after (growth) | {} → {} ({}) |\n",
        mib(&res["data_dir_bytes_start"]),
        mib(&res["data_dir_bytes_end"]),
        mib(&res["data_dir_growth_bytes"])
    ));
    md.push_str(&format!(
        "| `backups/` at the end (the first scheduled backup runs 60 s after a start) | {} |\n\n",
        mib(&res["backups_bytes_end"])
    ));
    md.push_str("![Server CPU, RSS and database size over the run](resources.png)\n\n");
    let log = &r["server_log"];
    md.push_str(&format!(
        "## The server's log\n\n{} warnings and {} errors (`PLUGWATCH_LOG=warn`).\n\n",
        log["warnings"], log["errors"]
    ));
    for line in log["distinct"].as_array().into_iter().flatten() {
        md.push_str(&format!("- {}× `{}`\n", line["count"], line["message"].as_str().unwrap_or("").replace('`', "'")));
    }
    let check = &r["check"];
    md.push_str(&format!(
        "\n## Check\n\nAgainst `tests/load/thresholds.toml` (failure ratio at most {}, at least {} requests/s, a p99 \
         ceiling per endpoint): **{}**.\n",
        check["max_failure_ratio"],
        check["min_requests_per_s"],
        if check["passed"].as_bool() == Some(true) { "passed" } else { "missed" }
    ));
    for problem in check["problems"].as_array().into_iter().flatten() {
        md.push_str(&format!("- {}\n", problem.as_str().unwrap_or("")));
    }
    md
}

fn print_summary(r: &Value) {
    let req = &r["requests"];
    println!(
        "\nload: {} requests, {} failed, {} requests/s; p50 {} ms, p95 {} ms, p99 {} ms",
        req["total"],
        req["failures"],
        f(&req["requests_per_s"], 1),
        f(&req["p50_ms"], 2),
        f(&req["p95_ms"], 2),
        f(&req["p99_ms"], 2)
    );
    for e in r["endpoints"].as_array().into_iter().flatten() {
        println!(
            "  {:<62} {:>7} {:>5} fail  p50 {:>8} p95 {:>8} p99 {:>8} ms",
            format!("{} {}", e["method"].as_str().unwrap_or("?"), e["name"].as_str().unwrap_or("?")),
            e["count"],
            e["failures"],
            f(&e["p50_ms"], 2),
            f(&e["p95_ms"], 2),
            f(&e["p99_ms"], 2)
        );
    }
    let res = &r["resources"];
    println!(
        "  server CPU {} cores mean, {} max; Locust {} cores; RSS max {}; database grew {}",
        f(&res["server_cpu_cores_mean"], 2),
        f(&res["server_cpu_cores_max"], 2),
        f(&res["locust_cpu_cores_mean"], 2),
        mib(&res["server_rss_bytes_max"]),
        mib(&res["db_growth_bytes"])
    );
    let log = &r["server_log"];
    println!("  server log: {} warnings, {} errors", log["warnings"], log["errors"]);
}
