//! What alerting costs: one evaluation cycle of the default rules over 1,000 plugins (real SQLite store,
//! real telemetry holding five minutes of traffic per plugin), and the invocation throughput of a real
//! plugin while evaluation runs at its interval against the same without it, in alternating rounds.
//!
//! `cargo bench --bench evaluate` (`ROUNDS=N ROUND_SECS=S` in the environment change the throughput runs). Run
//! in test mode (`cargo test --all-targets`), it does one short pass of each so that it cannot rot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use plugwatch_alerts::{Alerts, AlertsConfig, Inventory, PluginTarget};
use plugwatch_model::{Invocation, Limits, Outcome};
use plugwatch_runtime::{LoadOptions, Runtime, RuntimeConfig};
use plugwatch_store::Store;
use plugwatch_telemetry::{Telemetry, TelemetryConfig};

/// A test double of the registry: a fixed list of plugins.
struct FixedInventory(Vec<PluginTarget>);

impl Inventory for FixedInventory {
    fn targets(&self) -> Vec<PluginTarget> {
        self.0.clone()
    }
}

const PLUGINS: usize = 1000;

fn invocation(at: SystemTime, i: u64) -> Invocation {
    let mut record = Invocation::new(at, 120);
    record.outcome = if i.is_multiple_of(97) { Outcome::PluginError } else { Outcome::Ok };
    record.wall = Duration::from_micros(300 + (i * 37) % 900);
    record.cpu = Duration::from_micros(250 + (i * 13) % 700);
    record.instructions = Some(100_000 + (i * 7919) % 50_000);
    record.memory_peak_bytes = 1 << 20;
    record.concurrency = 1 + (i % 3) as u32;
    record.output_bytes = 40;
    record
}

/// Telemetry with `PLUGINS` series, each invoked every 2 s over the last five minutes.
fn telemetry(now: SystemTime) -> (Arc<Telemetry>, Vec<PluginTarget>) {
    let telemetry = Arc::new(Telemetry::new(TelemetryConfig { bucket: Duration::from_secs(10), ..Default::default() }));
    let mut targets = Vec::new();
    for p in 0..PLUGINS {
        let (plugin, version) = (format!("plugin-{p:04}"), "1.0.0".to_owned());
        let series = telemetry.series(&plugin, &version);
        for i in 0..150u64 {
            let at = now - Duration::from_secs(300) + Duration::from_secs(i * 2);
            series.record("order.pricing", &invocation(at, i + p as u64));
        }
        targets.push(PluginTarget { plugin, version, limits: Limits::default() });
    }
    // Closes the buckets that ended, as the flush every 10 s does.
    let _ = telemetry.flush(now);
    (telemetry, targets)
}

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (telemetry, targets) = telemetry(now);
    let alerts = rt.block_on(async {
        let store = Store::open(dir.path()).await.unwrap();
        Alerts::open(store, telemetry.clone(), Arc::new(FixedInventory(targets)), AlertsConfig::default())
            .await
            .unwrap()
    });
    // The first cycle stores the transitions of the plugins that fail; later ones are the steady state.
    let first = rt.block_on(alerts.evaluate(now)).unwrap();
    println!("first cycle: {first:?}");

    let mut criterion = Criterion::default().configure_from_args();
    if !bench {
        criterion = criterion
            .sample_size(10)
            .warm_up_time(Duration::from_millis(10))
            .measurement_time(Duration::from_millis(50));
    }
    criterion.bench_function("telemetry windows of 60 s and 300 s over 1000 plugins", |b| {
        b.iter(|| {
            (
                telemetry.window(now, Duration::from_secs(60)).len(),
                telemetry.window(now, Duration::from_secs(300)).len(),
            )
        })
    });
    criterion.bench_function("evaluate the default rules over 1000 plugins", |b| {
        b.to_async(&rt).iter(|| alerts.evaluate(now))
    });
    let report = rt.block_on(alerts.evaluate(now)).unwrap();
    println!(
        "steady cycle: {} rules, {} series, {} transitions, {:?}",
        report.rules, report.series, report.transitions, report.elapsed
    );

    throughput(&rt, &alerts, &telemetry, bench);
    criterion.final_summary();
}

/// Invocations per second of a real WAT plugin on two callers, with evaluation running every interval
/// (against the live telemetry it reads) and without, in alternating rounds.
fn throughput(rt: &tokio::runtime::Runtime, alerts: &Alerts, telemetry: &Telemetry, bench: bool) {
    let rounds = setting("ROUNDS").unwrap_or(if bench { 6 } else { 2 });
    let round = Duration::from_secs(setting("ROUND_SECS").unwrap_or(if bench { 10 } else { 1 }));
    let interval = if bench { Duration::from_secs(5) } else { Duration::from_millis(200) };
    let template = include_str!("../../runtime/tests/fixtures/plugin.wat.in");
    let echo =
        template.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))");
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let plugin = rt.block_on(runtime.load(wat::parse_str(echo).unwrap(), LoadOptions::default())).unwrap();
    let mut with = Vec::new();
    let mut without = Vec::new();
    for r in 0..rounds * 2 {
        let evaluating = r % 2 == 0;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let evaluator = evaluating.then(|| {
            let (alerts, stop) = (alerts.clone(), stop.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = alerts.evaluate(SystemTime::now()).await;
                    tokio::time::sleep(interval).await;
                }
            })
        });
        let started = Instant::now();
        // Two callers on threads of their own (as HTTP workers are), keeping both cores busy.
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (plugin, stop, count) = (plugin.clone(), stop.clone(), count.clone());
                // One of the evaluated plugins' series, so evaluation reads what the callers write.
                let series = telemetry.series("plugin-0000", "1.0.0");
                std::thread::spawn(move || {
                    let local = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    local.block_on(async {
                        while !stop.load(Ordering::Relaxed) {
                            let record = plugin.invoke("order.pricing", b"{\"order\":1}").await;
                            series.record("order.pricing", &record);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
            })
            .collect();
        std::thread::sleep(round);
        stop.store(true, Ordering::Relaxed);
        for c in callers {
            c.join().unwrap();
        }
        let elapsed = started.elapsed();
        if let Some(e) = evaluator {
            e.abort();
            let _ = rt.block_on(e);
        }
        let rate = count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
        println!("round {r}: {} evaluation, {rate:.0} invocations/s", if evaluating { "with" } else { "without" });
        if evaluating { with.push(rate) } else { without.push(rate) }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    println!(
        "invocations/s with evaluation every {interval:?}: {w:.0}; without: {wo:.0}; ratio {:.3} ({rounds} alternating rounds of {round:?}; {})",
        w / wo,
        UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs())
    );
}
