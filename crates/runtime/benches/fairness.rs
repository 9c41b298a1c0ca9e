//! Fairness under load, through the runtime on a two-worker tokio runtime like the server's:
//!
//! - a quick victim plugin's latency (p50, p99) idle and while sixteen callers keep a runaway plugin
//!   (an infinite loop, stopped by its 100 ms timeout) at full concurrency;
//! - how long a no-op task on the same tokio runtime waits for a worker, idle and under that attack
//!   (what an HTTP handler such as `/healthz` would wait);
//! - a burst: sixteen concurrent callers of a ~20 ms compute plugin, 48 calls: outcomes and queue wait.
//!
//! `cargo bench --bench fairness` measures; without `--bench` (as `cargo test --all-targets` runs it) it
//! makes a short run, so it cannot rot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugwatch_runtime::{Limits, LoadOptions, Outcome, Plugin, Runtime, RuntimeConfig};

#[path = "../tests/all/load.rs"]
mod load;
use load::{LOOP, SPIN, burst, spin_input_for};

/// The WAT fixture template the runtime's tests use.
const TEMPLATE: &str = include_str!("../tests/fixtures/plugin.wat.in");

fn component(body: &str) -> Vec<u8> {
    wat::parse_str(TEMPLATE.replace("{extra}", "").replace("{body}", body)).unwrap()
}

const ECHO: &str = "(call $ok (local.get $input) (local.get $input_len))";

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let samples = if full { 5000 } else { 200 };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    tokio.block_on(async move {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let load = |body: &str, limits: Limits| {
            runtime.load(component(body), LoadOptions { limits, ..LoadOptions::default() })
        };
        let victim = load(ECHO, Limits::default()).await.unwrap();
        let hostile = load(LOOP, Limits { fuel: None, ..Limits::default() }).await.unwrap();
        let compute = load(SPIN, Limits::default()).await.unwrap();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("fairness ({cores} cores, {samples} samples each)");

        let idle = victim_latencies(&victim, samples).await;
        let idle_ticks = worker_waits(samples).await;

        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = (0..16)
            .map(|_| {
                let (hostile, stop) = (hostile.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut calls = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let record = hostile.invoke("spin", b"").await;
                        assert_ne!(record.outcome, Outcome::Ok);
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        while hostile.in_flight() < 16 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let attacked = victim_latencies(&victim, samples).await;
        let attacked_ticks = worker_waits(samples).await;
        stop.store(true, Ordering::Relaxed);
        let mut hostile_calls = 0;
        for attacker in attackers {
            hostile_calls += attacker.await.unwrap();
        }

        report("victim echo, idle", &idle);
        report("victim echo, under attack", &attacked);
        report("tokio worker wait, idle", &idle_ticks);
        report("tokio worker wait, under attack", &attacked_ticks);
        println!("  ({hostile_calls} runaway invocations ran during the attack)");

        let input = spin_input_for(&compute, Duration::from_millis(20)).await;
        let burst = burst(&compute, &input).await;
        let count = |o: Outcome| burst.iter().filter(|r| r.outcome == o).count();
        let mut waits: Vec<_> = burst.iter().map(|r| r.queued).collect();
        let mut cpus: Vec<_> = burst.iter().map(|r| r.cpu).collect();
        let mut walls: Vec<_> = burst.iter().map(|r| r.wall).collect();
        println!(
            "burst of 48 (16 callers) of a {:?} compute plugin: {} ok, {} timeout, {} other; \
             cpu p50 {:?}, wall p50 {:?} max {:?}, queue wait p50 {:?} max {:?}",
            percentile(&mut cpus, 0.5),
            count(Outcome::Ok),
            count(Outcome::Timeout),
            burst.len() - count(Outcome::Ok) - count(Outcome::Timeout),
            percentile(&mut cpus, 0.5),
            percentile(&mut walls, 0.5),
            percentile(&mut walls, 1.0),
            percentile(&mut waits, 0.5),
            percentile(&mut waits, 1.0),
        );
    });
}

/// Sequential invocations of the victim, timed by the caller.
async fn victim_latencies(victim: &Plugin, n: usize) -> Vec<Duration> {
    let input = br#"{"order_id":"ord-1001"}"#;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let record = victim.invoke("echo", input).await;
        out.push(started.elapsed());
        assert!(record.outcome.is_ok(), "{record:?}");
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    out
}

/// How long a spawned no-op task waits before a tokio worker runs it.
async fn worker_waits(n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        tokio::spawn(async move { started.elapsed() }).await.map(|d| out.push(d)).unwrap();
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    out
}

fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    println!(
        "  {name}: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&mut sorted, 0.5),
        percentile(&mut sorted, 0.99),
        percentile(&mut sorted, 1.0)
    );
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}
