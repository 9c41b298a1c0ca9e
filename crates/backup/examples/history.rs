//! `history <data dir> [--plugins 100] [--days 30]`: fills a data directory with what a plugwatch server
//! would hold after `--days` days of `--plugins` plugins at realistic traffic, kept to the default
//! retention, written through the store's own APIs, for backup and restore figures
//! (`cargo xtask bench-backup`).
//!
//! - Plugins: each has 1 to 3 versions, deployed at hour boundaries during the period (the newest one
//!   active). Their components are the committed example components (promo-discount in Python,
//!   loyalty-points in JavaScript), each made distinct by a custom section naming the plugin and version
//!   (a custom section keeps a component valid), stored with `Artifacts::put` and `Store::insert_version`.
//! - Traffic: per plugin a weight between 0.3 and 1.7 times 2 requests/s, following a daily curve (peak
//!   at 14:00 UTC, 0.4 of the mean at 02:00) and a weekly one (weekends quieter); Poisson counts per 10 s
//!   bucket; a failure share of 0.1 to 1 % per plugin (plugin errors, traps, timeouts, fuel); every
//!   invocation's wall time drawn from a log-normal distribution (median 1 to 6 ms by plugin, 1 % slow
//!   tail) into the rollups' latency sketches.
//! - What is written (`Store::write_flush`, `Rollup`s of the telemetry crate): 10 s rollups for the 10 s
//!   retention, minute rollups for the minute retention, hour rollups for the whole period; run-log entries
//!   as the server persists them (up to 10 successes and 50 failures per series and flush) for the recent
//!   past that retention keeps; host samples every 5 s for their retention (`Store::write_host_sample`).
//!   Then `Store::prune` with the default retention, as the server's hourly pass would.
//!
//! Users, tokens and alert rules are created by the server itself when it first starts on the directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plugwatch_model::{Level, Limits, LogLine, LogSource, Outcome};
use plugwatch_store::{Artifacts, FailurePolicy, NewVersion, Retention, Store, Subscription};
use plugwatch_telemetry::{Flush, HostSample, Resolution, Rollup, RunLogEntry};

const BASES: [(&str, &str); 2] = [
    ("promo-discount", "examples/plugins/promo-discount/promo-discount.wasm"),
    ("loyalty-points", "examples/plugins/loyalty-points/loyalty-points.wasm"),
];
const WORDS: [&str; 20] = [
    "tax-rules",
    "promo-codes",
    "loyalty-tiers",
    "fraud-score",
    "shipping-rates",
    "gift-wrap",
    "inventory-hold",
    "price-floor",
    "bundle-deals",
    "coupon-check",
    "address-check",
    "eta-estimate",
    "tip-suggest",
    "allergen-flags",
    "upsell",
    "basket-limit",
    "region-block",
    "vat-calc",
    "points-expiry",
    "refund-guard",
];
const HOOKS: [&str; 3] = ["order.created", "order.pricing", "order.completed"];
/// Mean requests per second per plugin.
const MEAN_RPS: f64 = 2.0;
/// What one server flush persists per series at most (`TelemetryConfig::default()`).
const SUCCESSES_PER_FLUSH: usize = 10;
const FAILURES_PER_FLUSH: usize = 50;
const HOST_INTERVAL: i64 = 5;

/// SplitMix64: small, fast, and good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-12);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let (limit, mut k, mut p) = ((-lambda).exp(), 0u64, 1.0);
        loop {
            p *= self.f64();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

/// One plugin's character: how much traffic, how fast, how often it fails.
struct Profile {
    name: String,
    hook: &'static str,
    /// (version, deployed at, component base index): the newest whose time has come is active.
    versions: Vec<(String, i64, usize)>,
    weight: f64,
    error_share: f64,
    /// Median wall time in seconds, and the log-normal sigma.
    median: f64,
    sigma: f64,
    cpu_share: f64,
    instructions_per_us: f64,
    input_bytes: f64,
    output_bytes: f64,
    memory_peak: u64,
    /// Failure and success runs are generated from these times on (what is older, retention would have
    /// dropped: it keeps the newest `runs_per_plugin` of each).
    failures_since: i64,
    successes_since: i64,
}

/// Traffic relative to the mean at unix time `t`: a daily and a weekly curve, each averaging 1.
fn curve(t: i64) -> f64 {
    let hour = (t.rem_euclid(86_400)) as f64 / 3600.0;
    let daily = 1.0 + 0.6 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
    // 1970-01-01 was a Thursday: day 2 and 3 of the week counted from it are Saturday and Sunday.
    let weekly = if matches!(t.div_euclid(86_400).rem_euclid(7), 2 | 3) { 0.75 } else { 1.1 };
    daily * weekly
}

/// The component with a custom section `plugwatch-history` appended: still a valid component, distinct bytes.
fn distinct(base: &[u8], tag: &str) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"plugwatch-history";
    let mut payload = Vec::new();
    leb(&mut payload, name.len());
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = base.to_vec();
    out.push(0);
    leb(&mut out, payload.len());
    out.extend_from_slice(&payload);
    out
}

struct Args {
    dir: PathBuf,
    plugins: usize,
    days: i64,
}

fn args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let (mut plugins, mut days) = (100, 30);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage(&format!("{what} needs a number")))
        };
        match arg.as_str() {
            "--plugins" => plugins = number("--plugins") as usize,
            "--days" => days = number("--days") as i64,
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => usage(&format!("unexpected argument `{arg}`")),
        }
    }
    let dir = dir.unwrap_or_else(|| usage("the data directory is missing"));
    if plugins == 0 || days == 0 {
        usage("--plugins and --days must be positive");
    }
    Args { dir, plugins, days }
}

fn usage(problem: &str) -> ! {
    eprintln!("history: {problem}\nusage: history <data dir> [--plugins 100] [--days 30]");
    std::process::exit(2)
}

/// One 10 s bucket of one plugin: adds its `n` invocations to `into`, and leaves the outcome and wall time
/// of each in `samples`, for the run log.
fn fill_bucket(rng: &mut Rng, p: &Profile, n: u64, into: &mut Rollup, samples: &mut Vec<(Outcome, f64)>) {
    samples.clear();
    for _ in 0..n {
        let outcome = if rng.f64() < p.error_share {
            match rng.below(20) {
                0..=11 => Outcome::PluginError,
                12..=15 => Outcome::Trap,
                16..=18 => Outcome::Timeout,
                _ => Outcome::FuelExhausted,
            }
        } else {
            Outcome::Ok
        };
        let mut wall = p.median * (p.sigma * rng.normal()).exp();
        if rng.f64() < 0.01 {
            wall *= rng.range(3.0, 8.0);
        }
        match outcome {
            Outcome::Timeout => wall = 0.1 + rng.range(0.0, 0.002),
            Outcome::Trap => wall *= 0.5,
            _ => {}
        }
        let wall = wall.min(0.1 + 0.002);
        let wall_us = (wall * 1e6) as u64;
        let cpu_us = (wall_us as f64 * p.cpu_share) as u64;
        let instructions = (cpu_us as f64 * p.instructions_per_us) as u64;
        let output = if outcome == Outcome::Ok { (p.output_bytes * rng.range(0.7, 1.3)) as u64 } else { 0 };
        into.counts[outcome.index()] += 1;
        into.latency.add(wall);
        into.wall_sum_us += wall_us;
        into.cpu_sum_us += cpu_us;
        into.instructions += instructions;
        into.input_bytes += (p.input_bytes * rng.range(0.7, 1.3)) as u64;
        into.output_bytes += output;
        into.memory_peak_max = into.memory_peak_max.max(p.memory_peak + rng.below(1 << 20));
        into.instructions_max = into.instructions_max.max(instructions);
        into.output_bytes_max = into.output_bytes_max.max(output);
        samples.push((outcome, wall));
    }
    let concurrency = if n > 25 && rng.f64() < 0.3 { 2 } else { 1 };
    into.concurrency_max = into.concurrency_max.max(if n == 0 { 0 } else { concurrency });
}

fn run_entry(rng: &mut Rng, p: &Profile, version: &str, at: i64, outcome: Outcome, wall: f64) -> RunLogEntry {
    let wall_us = (wall * 1e6) as u64;
    let cpu_us = (wall_us as f64 * p.cpu_share) as u64;
    let order = 1000 + rng.below(900_000);
    let (trap_kind, detail, logs) = match outcome {
        Outcome::Ok => {
            let logs = if rng.f64() < 0.3 {
                vec![LogLine {
                    at: Duration::from_micros(wall_us / 2),
                    level: Level::Info,
                    source: LogSource::Stdout,
                    message: format!("order ord-{order}: applied {}% off", 5 * (1 + rng.below(4))),
                }]
            } else {
                Vec::new()
            };
            (None, None, logs)
        }
        Outcome::PluginError => (
            None,
            Some(format!("invalid promo code for order ord-{order}")),
            vec![LogLine {
                at: Duration::from_micros(wall_us / 2),
                level: Level::Warn,
                source: LogSource::Stderr,
                message: format!("rejecting ord-{order}: code expired"),
            }],
        ),
        Outcome::Trap => (
            Some("unreachable".to_owned()),
            Some("wasm trap: wasm `unreachable` instruction executed".to_owned()),
            vec![LogLine {
                at: Duration::from_micros(wall_us / 2),
                level: Level::Error,
                source: LogSource::Stderr,
                message: "Traceback (most recent call last):\n  File \"app.py\", line 42, in handle\nKeyError: 'items'"
                    .to_owned(),
            }],
        ),
        Outcome::Timeout => (None, Some("the invocation ran past its 100 ms limit".to_owned()), Vec::new()),
        _ => (None, Some("the instruction budget ran out".to_owned()), Vec::new()),
    };
    RunLogEntry {
        plugin: p.name.clone(),
        version: version.to_owned(),
        hook: p.hook.to_owned(),
        started_at: UNIX_EPOCH + Duration::from_micros((at * 1_000_000) as u64 + rng.below(10_000_000)),
        outcome,
        trap_kind,
        detail,
        wall_us,
        queued_us: rng.below(50),
        instantiate_us: 40 + rng.below(80),
        cpu_us,
        instructions: Some((cpu_us as f64 * p.instructions_per_us) as u64),
        memory_peak_bytes: p.memory_peak,
        input_bytes: (p.input_bytes * rng.range(0.7, 1.3)) as u64,
        output_bytes: if outcome == Outcome::Ok { p.output_bytes as u64 } else { 0 },
        logs,
        logs_dropped_bytes: 0,
    }
}

/// Generates the telemetry hour by hour, sending one `Flush` per hour (all plugins).
fn generate(profiles: &[Profile], start: i64, end: i64, retention: &Retention, tx: &tokio::sync::mpsc::Sender<Flush>) {
    let ten_from = end - retention.ten_seconds.as_secs() as i64;
    let minute_from = end - retention.minute.as_secs() as i64;
    let mut rng = Rng(0x005e_ed0f_b4c4);
    let mut samples = Vec::new();
    let mut hour = start;
    while hour < end {
        let mut flush = Flush::default();
        for p in profiles {
            let Some((version, _, _)) = p.versions.iter().rev().find(|(_, at, _)| *at <= hour) else { continue };
            let mut hourly = Rollup::new(&p.name, version, Resolution::Hour, hour);
            let mut minute_start = hour;
            while minute_start < (hour + 3600).min(end) {
                let mut minute = Rollup::new(&p.name, version, Resolution::Minute, minute_start);
                for bucket in (minute_start..minute_start + 60).step_by(10).take_while(|b| b + 10 <= end) {
                    let n = rng.poisson(10.0 * MEAN_RPS * p.weight * curve(bucket));
                    if n == 0 {
                        continue;
                    }
                    if bucket >= ten_from {
                        let mut ten = Rollup::new(&p.name, version, Resolution::TenSeconds, bucket);
                        fill_bucket(&mut rng, p, n, &mut ten, &mut samples);
                        minute.merge(&ten);
                        flush.closed.push(ten);
                    } else {
                        fill_bucket(&mut rng, p, n, &mut minute, &mut samples);
                    }
                    let mut ok = 0;
                    let mut failed = 0;
                    for &(outcome, wall) in samples.iter().rev() {
                        if outcome == Outcome::Ok {
                            if bucket >= p.successes_since && ok < SUCCESSES_PER_FLUSH {
                                ok += 1;
                                flush.runs.push(run_entry(&mut rng, p, version, bucket, outcome, wall));
                            }
                        } else if bucket >= p.failures_since && failed < FAILURES_PER_FLUSH {
                            failed += 1;
                            flush.runs.push(run_entry(&mut rng, p, version, bucket, outcome, wall));
                        }
                    }
                }
                if minute.total() > 0 {
                    hourly.merge(&minute);
                    if minute_start >= minute_from {
                        flush.rollups.push(minute);
                    }
                }
                minute_start += 60;
            }
            if hourly.total() > 0 {
                flush.rollups.push(hourly);
            }
        }
        if tx.blocking_send(flush).is_err() {
            return;
        }
        hour += 3600;
    }
}

fn profiles(rng: &mut Rng, count: usize, start: i64, end: i64, retention: &Retention) -> Vec<Profile> {
    let hours = (end - start) / 3600;
    (0..count)
        .map(|i| {
            let name = format!("{}-{:02}", WORDS[i % WORDS.len()], i / WORDS.len() + 1);
            let base = i % BASES.len();
            let n_versions = 1 + rng.below(3) as usize;
            // The first version predates the period; later ones are deployed at hours within it, in order.
            let mut deployed: Vec<i64> =
                (1..n_versions).map(|_| start + 3600 * (1 + rng.below(hours as u64 - 1)) as i64).collect();
            deployed.sort_unstable();
            deployed.insert(0, start);
            let versions =
                deployed.into_iter().enumerate().map(|(v, at)| (format!("1.{v}.{}", rng.below(3)), at, base)).collect();
            let weight = rng.range(0.3, 1.7);
            let error_share = rng.range(0.001, 0.01);
            // Failures a day, and how far back the newest `runs_per_plugin` of them reach (with a margin).
            let failures_a_day = MEAN_RPS * weight * 86_400.0 * error_share;
            let keep = retention.runs_per_plugin as f64 * 1.5 / failures_a_day * 86_400.0;
            let failures_since = end - (keep as i64).min(retention.failed_runs.as_secs() as i64);
            // Successes: a flush persists at most 10 of a series' runs, so at most 1 a second.
            let recent_rps = (MEAN_RPS * weight * curve(end)).min(1.0);
            let keep = retention.runs_per_plugin as f64 * 1.5 / recent_rps;
            let successes_since = end - (keep as i64).min(retention.runs.as_secs() as i64);
            let python = base == 0;
            Profile {
                name,
                hook: HOOKS[rng.below(HOOKS.len() as u64) as usize],
                versions,
                weight,
                error_share,
                median: if python { rng.range(0.002, 0.006) } else { rng.range(0.001, 0.003) },
                sigma: rng.range(0.25, 0.5),
                cpu_share: rng.range(0.7, 0.95),
                instructions_per_us: rng.range(1200.0, 2500.0),
                input_bytes: rng.range(150.0, 2000.0),
                output_bytes: rng.range(60.0, 800.0),
                memory_peak: (if python { 24 << 20 } else { 12 << 20 }) + rng.below(8 << 20),
                failures_since,
                successes_since,
            }
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { dir, plugins, days } = args();
    if dir.join("plugwatch.db").exists() {
        usage(&format!("{} already holds a database", dir.display()));
    }
    let started = Instant::now();
    let retention = Retention::default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let end = Resolution::TenSeconds.align(now);
    let start = Resolution::Hour.align(now - days * 86_400) + 3600;
    let mut rng = Rng(0x00c0_ffee);
    let profiles = profiles(&mut rng, plugins, start, end, &retention);

    let store = Store::open(&dir).await?;
    let artifacts = Artifacts::new(&dir)?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bases: Vec<Vec<u8>> = BASES.iter().map(|(_, path)| std::fs::read(root.join(path))).collect::<Result<_, _>>()?;
    let mut artifact_bytes = 0u64;
    for p in &profiles {
        for (version, _, base) in &p.versions {
            let bytes = distinct(&bases[*base], &format!("{} {version}", p.name));
            let sha256 = artifacts.put(&bytes)?;
            artifact_bytes += bytes.len() as u64;
            let new = NewVersion {
                plugin: p.name.clone(),
                version: version.clone(),
                sha256,
                size: bytes.len() as u64,
                description: Some(format!("{} ({})", p.name, BASES[*base].0)),
                failure_policy: if rng.f64() < 0.3 { FailurePolicy::FailClosed } else { FailurePolicy::FailOpen },
                limits: Limits::default(),
                hooks: vec![Subscription { hook: p.hook.to_owned(), priority: 10 * (1 + rng.below(5) as i32) }],
                config: BTreeMap::new(),
                secrets: BTreeMap::new(),
            };
            store.insert_version(&new, true).await?;
        }
    }
    let versions: usize = profiles.iter().map(|p| p.versions.len()).sum();
    println!("history: {plugins} plugins, {versions} versions, {:.0} MB of components", artifact_bytes as f64 / 1e6);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Flush>(2);
    let generator = {
        let retention = retention.clone();
        std::thread::spawn(move || generate(&profiles, start, end, &retention, &tx))
    };
    let mut hours = 0;
    while let Some(flush) = rx.recv().await {
        store.write_flush(&flush).await?;
        hours += 1;
        if hours % 72 == 0 {
            println!("history: {} of {days} days written ({:.0} s)", hours / 24, started.elapsed().as_secs_f64());
        }
    }
    generator.join().map_err(|_| "the generator panicked")?;

    let host_from = end - retention.host_samples.as_secs() as i64;
    let mut at = host_from - host_from.rem_euclid(HOST_INTERVAL);
    let mut rng = Rng(0x4057);
    while at < end {
        let load = curve(at) / 2.2;
        store
            .write_host_sample(&HostSample {
                at: UNIX_EPOCH + Duration::from_secs(at as u64),
                cpu_usage: (0.08 + 0.35 * load + rng.range(-0.03, 0.03)).clamp(0.0, 1.0),
                cpu_cores: 4,
                memory_used_bytes: (5.0e9 + 1.5e9 * load + rng.range(-1e8, 1e8)) as u64,
                memory_total_bytes: 16 << 30,
                disk_used_bytes: 42_000_000_000 + (at - host_from) as u64 * 2000,
                disk_total_bytes: 100_000_000_000,
                process_rss_bytes: (700e6 + 150e6 * load + rng.range(-2e7, 2e7)) as u64,
                process_cpu_seconds: (at - host_from) as f64 * 0.2,
                process_cpu_usage: (0.05 + 0.3 * load + rng.range(-0.02, 0.02)).max(0.0),
            })
            .await?;
        at += HOST_INTERVAL;
    }

    let pruned = store.prune(&retention, UNIX_EPOCH + Duration::from_secs(end as u64)).await?;
    let used = store.size_bytes().await?;
    let counts = store.counts().await?;
    store.close().await;

    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("plugwatch.db")).read_only(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await?;
    println!("history: written in {:.0} s into {}", started.elapsed().as_secs_f64(), dir.display());
    for (what, sql) in [
        ("10 s rollups", "SELECT COUNT(*) FROM rollups WHERE resolution = 10"),
        ("minute rollups", "SELECT COUNT(*) FROM rollups WHERE resolution = 60"),
        ("hour rollups", "SELECT COUNT(*) FROM rollups WHERE resolution = 3600"),
        ("10 s sketches", "SELECT COUNT(*) FROM ten_second_sketches"),
        ("runs (successes)", "SELECT COUNT(*) FROM runs WHERE failed = 0"),
        ("runs (failures)", "SELECT COUNT(*) FROM runs WHERE failed = 1"),
        ("host samples", "SELECT COUNT(*) FROM host_samples"),
        ("series", "SELECT COUNT(*) FROM series"),
        (
            "invocations",
            "SELECT COALESCE(SUM(ok + plugin_error + trap + timeout + fuel_exhausted + memory_limit + output_too_large + input_too_large + rejected), 0) FROM rollups WHERE resolution = 3600",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
        println!("  {what:<18} {n:>12}");
    }
    for kind in ["plugins", "plugin_versions"] {
        println!("  {kind:<18} {:>12}", counts.get(kind).copied().unwrap_or(0));
    }
    println!("  pruned after writing: {} rollups, {} runs", pruned.rollups, pruned.runs);
    <sqlx::SqliteConnection as sqlx::Connection>::close(conn).await?;
    let file = std::fs::metadata(dir.join("plugwatch.db"))?.len();
    println!("  database: {:.1} MB file, {:.1} MB in use", file as f64 / 1e6, used as f64 / 1e6);
    println!("  components: {:.1} MB in {versions} artifacts", artifact_bytes as f64 / 1e6);
    Ok(())
}
