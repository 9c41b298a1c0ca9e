//! Telemetry's cost on the real invocation path: invoking a plugin with and without recording each
//! invocation (target: throughput with telemetry ≥ 0.98 of without), and the overview query over
//! 1,000 plugins with traffic.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use plugwatch_runtime::{Invocation, LoadOptions, Outcome, Runtime, RuntimeConfig};
use plugwatch_telemetry::{Telemetry, TelemetryConfig};

const TEMPLATE: &str = include_str!("../../runtime/tests/fixtures/plugin.wat.in");

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut group = c.benchmark_group("pipeline");
    let input = br#"{"order_id":"ord-1001","items":[{"sku":"bulgogi-bowl","quantity":2,"unit_price":12500}]}"#;
    // A small WAT plugin (the harshest case: telemetry is compared with a ~4 µs invocation), and one that
    // does some work and logs a line, like a typical plugin.
    let echo = "(call $ok (local.get $input) (local.get $input_len))";
    let typical = r#"(local.set $n (i32.const 20000))
        (loop $spin (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $spin (local.get $n)))
        (call $log (i32.const 2) (i32.const 100) (i32.const 14))
        (call $ok (local.get $input) (local.get $input_len))"#;
    for (name, body) in [("echo", echo), ("typical", typical)] {
        let wasm = wat::parse_str(
            TEMPLATE.replace("{extra}", r#"(data (i32.const 100) "order accepted")"#).replace("{body}", body),
        )
        .unwrap();
        let plugin = rt.block_on(runtime.load(wasm, LoadOptions::default())).unwrap();
        let telemetry = Telemetry::new(TelemetryConfig::default());
        let series = telemetry.series(name, "1.0.0");
        group.bench_function(format!("{name}/telemetry_off"), |b| {
            b.to_async(&rt).iter(|| async { black_box(plugin.invoke("order.created", input).await) })
        });
        group.bench_function(format!("{name}/telemetry_on"), |b| {
            b.to_async(&rt).iter(|| async {
                let record = plugin.invoke("order.created", input).await;
                series.record("order.created", &record);
                black_box(record)
            })
        });
    }
    group.finish();
}

fn overview(c: &mut Criterion) {
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let now = SystemTime::now();
    // 1,000 plugins, each with a minute of traffic spread over its buckets.
    for p in 0..1000 {
        let series = telemetry.series(&format!("plugin-{p:04}"), "1.0.0");
        for i in 0..60u64 {
            let record = Invocation {
                outcome: if i % 20 == 0 { Outcome::PluginError } else { Outcome::Ok },
                trap_kind: None,
                detail: None,
                output: None,
                started_at: now - Duration::from_secs(i),
                wall: Duration::from_micros(300 + (i * 37 + p) % 900),
                queued: Duration::ZERO,
                instantiate: Duration::ZERO,
                cpu: Duration::from_micros(250),
                instructions: Some(100_000),
                memory_peak_bytes: 1 << 20,
                input_bytes: 300,
                output_bytes: 300,
                logs: Vec::new(),
                concurrency: 1,
                logs_dropped_bytes: 0,
            };
            series.record("order.created", &record);
        }
    }
    telemetry.flush(now - Duration::from_secs(5));
    c.bench_function("overview/1000_plugins", |b| b.iter(|| black_box(telemetry.overview(now))));
}

criterion_group!(benches, pipeline, overview);
criterion_main!(benches);
