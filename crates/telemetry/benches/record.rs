//! Benchmarks of the telemetry hot path, `Series::record`: one thread, two threads on the same series, and a
//! failing invocation (which copies its text), plus the sketch's own `add`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use plugwatch_model::{Invocation, Outcome};
use plugwatch_telemetry::{LatencySketch, Telemetry, TelemetryConfig};

/// A successful invocation without logs, the common case.
fn invocation(outcome: Outcome) -> Invocation {
    Invocation {
        outcome,
        trap_kind: None,
        detail: (!outcome.is_ok()).then(|| "the plugin said no".to_owned()),
        output: None,
        started_at: SystemTime::now(),
        wall: Duration::from_micros(850),
        queued: Duration::ZERO,
        instantiate: Duration::ZERO,
        cpu: Duration::from_micros(700),
        instructions: Some(120_000),
        memory_peak_bytes: 1 << 20,
        input_bytes: 512,
        output_bytes: 128,
        logs: Vec::new(),
        concurrency: 1,
        logs_dropped_bytes: 0,
    }
}

fn record(c: &mut Criterion) {
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let series = telemetry.series("tax-calculator", "1.2.0");
    let ok = invocation(Outcome::Ok);
    let failed = invocation(Outcome::PluginError);

    let mut group = c.benchmark_group("record");
    group.bench_function("ok, 1 thread", |b| b.iter(|| series.record(black_box("order.created"), black_box(&ok))));
    group.bench_function("plugin_error, 1 thread", |b| {
        b.iter(|| series.record(black_box("order.created"), black_box(&failed)))
    });
    // Two threads record into the same series at once; the figure is the time per record seen by each thread
    // (throughput is twice its inverse).
    group.bench_function("ok, 2 threads, one series", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            let elapsed: Vec<Duration> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let start = Instant::now();
                            for _ in 0..iters {
                                series.record(black_box("order.created"), black_box(&ok));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            elapsed.into_iter().max().unwrap()
        })
    });
    group.finish();

    c.bench_function("sketch add", |b| {
        let mut sketch = LatencySketch::new();
        let mut v = 0.000_85;
        b.iter(|| {
            v = if v > 0.0017 { 0.000_85 } else { v * 1.001 };
            sketch.add(black_box(v));
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
