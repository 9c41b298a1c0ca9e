//! Benchmarks of the invocation path: raw wasmtime against the runtime's full measured path on the same
//! engine, the cost of fuel metering and epoch interruption on compute-heavy code, and the example Python
//! and JavaScript plugins on the hot path under each way of resetting an instance's memory slot.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use plugwatch_runtime::{Limits, LoadOptions, Prewarm, Runtime, RuntimeConfig};
use tokio::runtime::Runtime as Tokio;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

/// The WAT fixture template the runtime's tests use.
const TEMPLATE: &str = include_str!("../tests/fixtures/plugin.wat.in");

/// A component that echoes its input, with the same imports a real plugin has.
fn echo() -> String {
    TEMPLATE.replace("{extra}", "").replace("{body}", "(call $ok (local.get $input) (local.get $input_len))")
}

/// A compute-heavy, branchy component: the total Collatz stopping time of 1..=`input_len * 1000`
/// (short basic blocks, the worst case for fuel metering).
fn compute() -> String {
    let body = r#"(local $x i32) (local $steps i32)
        (local.set $n (i32.mul (local.get $input_len) (i32.const 1000)))
        (block $done (loop $outer
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $x (local.get $n))
          (block $reached (loop $inner
            (br_if $reached (i32.le_u (local.get $x) (i32.const 1)))
            (if (i32.and (local.get $x) (i32.const 1))
              (then (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 3)) (i32.const 1))))
              (else (local.set $x (i32.shr_u (local.get $x) (i32.const 1)))))
            (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
            (br $inner)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $outer)))
        (i32.store (i32.const 200) (local.get $steps))
        (call $ok (i32.const 200) (i32.const 4))"#;
    TEMPLATE.replace("{extra}", "").replace("{body}", body)
}

fn tokio() -> Tokio {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Raw wasmtime: new Store + `InstancePre::instantiate_async` + call, with only what the engine demands
/// (a fuel budget and an epoch deadline) and no-op host functions.
struct Raw {
    engine: Engine,
    pre: wasmtime::component::InstancePre<()>,
    handle: wasmtime::component::ComponentExportIndex,
    fuel: bool,
    epoch: bool,
}

type Handle = wasmtime::component::TypedFunc<(String, Vec<u8>), (Result<Vec<u8>, String>,)>;

impl Raw {
    fn new(engine: &Engine, wat: &str, fuel: bool, epoch: bool) -> Raw {
        let component = Component::new(engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut linker: Linker<()> = Linker::new(engine);
        let mut host = linker.instance("plugwatch:plugin/host@0.1.0").unwrap();
        host.func_new("log", |_, _, _, _| Ok(())).unwrap();
        host.func_wrap("config", |_, (_key,): (String,)| Ok((None::<String>,))).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        let handle = component.get_export_index(None, "handle").unwrap();
        Raw { engine: engine.clone(), pre, handle, fuel, epoch }
    }

    async fn call(&self, input: &[u8]) -> Vec<u8> {
        let mut store = Store::new(&self.engine, ());
        if self.fuel {
            store.set_fuel(u64::MAX / 2).unwrap();
        }
        if self.epoch {
            store.set_epoch_deadline(1_000_000);
        }
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let handle: Handle = instance.get_typed_func(&mut store, self.handle).unwrap();
        let (result,) = handle.call_async(&mut store, ("bench".to_owned(), input.to_vec())).await.unwrap();
        result.unwrap()
    }
}

fn overhead(c: &mut Criterion) {
    let rt = tokio();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let raw = Raw::new(runtime.engine(), &echo(), true, true);
    let plugin = rt.block_on(runtime.load(wat::parse_str(echo()).unwrap(), LoadOptions::default())).unwrap();
    let input = br#"{"order_id":"ord-1001","items":[{"sku":"bulgogi-bowl","quantity":2,"unit_price":12500}]}"#;
    let mut group = c.benchmark_group("overhead");
    group.bench_function("raw_wasmtime", |b| b.to_async(&rt).iter(|| async { black_box(raw.call(input).await) }));
    group.bench_function("runtime_invoke", |b| {
        b.to_async(&rt).iter(|| async { black_box(plugin.invoke("bench", input).await) })
    });
    // The small plugin under the old default reset (64 KiB kept, all of it reset): what the scan costs it.
    let (_, keep, dirty) = RESETS[0];
    let config = RuntimeConfig { keep_resident_bytes: keep, reset_dirty_pages_only: dirty, ..RuntimeConfig::default() };
    let kept = Runtime::new(config).unwrap();
    let plugin = rt.block_on(kept.load(wat::parse_str(echo()).unwrap(), LoadOptions::default())).unwrap();
    group.bench_function("runtime_invoke_full_reset_64k", |b| {
        b.to_async(&rt).iter(|| async { black_box(plugin.invoke("bench", input).await) })
    });
    group.finish();
}

fn metering(c: &mut Criterion) {
    let rt = tokio();
    let mut group = c.benchmark_group("metering");
    group.measurement_time(Duration::from_secs(8));
    let input = [0u8; 10]; // Collatz of 1..=10_000: about 850,000 steps
    for (name, fuel, epoch) in
        [("none", false, false), ("fuel", true, false), ("epoch", false, true), ("fuel_and_epoch", true, true)]
    {
        let mut config = Config::new();
        config.consume_fuel(fuel).epoch_interruption(epoch);
        let engine = Engine::new(&config).unwrap();
        let raw = Raw::new(&engine, &compute(), fuel, epoch);
        group.bench_function(name, |b| b.to_async(&rt).iter(|| async { black_box(raw.call(&input).await) }));
    }
    for (name, meter) in [("runtime_metered", true), ("runtime_unmetered", false)] {
        let runtime = Runtime::new(RuntimeConfig { meter_instructions: meter, ..RuntimeConfig::default() }).unwrap();
        let plugin = rt.block_on(runtime.load(wat::parse_str(compute()).unwrap(), LoadOptions::default())).unwrap();
        group.bench_function(name, |b| b.to_async(&rt).iter(|| async { black_box(plugin.invoke("x", &input).await) }));
    }
    group.finish();
}

/// How a slot's memory is reset between instances: the first 64 KiB kept resident and all of it reset,
/// the rest given back (the default before 2026-12-02, and what a kernel without `PAGEMAP_SCAN` gets);
/// and the default, up to 64 MiB kept resident with only the written pages reset, so that the next
/// instance in the slot finds part of an interpreted guest's working set resident and private.
const RESETS: [(&str, usize, bool); 2] =
    [("full_reset_64k", 64 << 10, false), ("keep_resident_dirty_only", 64 << 20, true)];

/// The example Python and JavaScript plugins on the hot path (a fresh pre-instantiated instance per call),
/// under each way of resetting slots, side by side: criterion's figure, then p50 and p99 of 1,000 calls
/// (each after the pool refilled), a burst of calls above the pool, and the process's resident memory.
fn guests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-compile-cache");
    let order = br#"{"order_id":"ord-1001","customer_id":"cust-42","customer_tier":"gold","currency":"KRW","items":[{"sku":"bulgogi-bowl","name":"Bulgogi bowl","quantity":2,"unit_price":12500},{"sku":"kimchi","name":"Kimchi","quantity":1,"unit_price":3000}],"promo_code":"WELCOME10"}"#;
    let guests = [
        ("python_promo_discount", "promo-discount", "order.pricing"),
        ("js_loyalty_points", "loyalty-points", "order.completed"),
    ];
    let runtimes: Vec<(&str, Runtime)> = RESETS
        .iter()
        .map(|(name, keep, dirty)| {
            let config = RuntimeConfig {
                cache_dir: Some(cache_dir.clone()),
                keep_resident_bytes: *keep,
                reset_dirty_pages_only: *dirty,
                ..RuntimeConfig::default()
            };
            (*name, Runtime::new(config).unwrap())
        })
        .collect();
    for (group_name, example, hook) in guests {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/plugins/{example}/{example}.wasm"));
        let mut group = c.benchmark_group(group_name);
        group.measurement_time(Duration::from_secs(5));
        let mut variants = vec![("cold_instance_per_call", &runtimes[0].1, Prewarm::Off)];
        variants.extend(runtimes.iter().map(|(name, runtime)| (*name, runtime, Prewarm::Instances(2))));
        for (name, runtime, prewarm) in variants {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let config = [("points_per_1000".to_owned(), "20".to_owned())].into();
            let options = LoadOptions { prewarm, config, limits: Limits::default(), ..LoadOptions::default() };
            let plugin = rt.block_on(runtime.load(bytes, options)).unwrap();
            let record = rt.block_on(plugin.invoke(hook, order));
            assert!(record.outcome.is_ok(), "{record:?}");
            group.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let plugin = plugin.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += timed_call(&plugin, hook, order).await;
                        }
                        total
                    }
                })
            });
            // Once per variant, outside criterion's sampling: the distribution, a burst, the memory.
            let rss_before = rss_bytes();
            let mut calls: Vec<Duration> = (0..1000).map(|_| rt.block_on(timed_call(&plugin, hook, order))).collect();
            calls.sort();
            let burst: Vec<Duration> = rt.block_on(async {
                let mut times = Vec::new();
                for _ in 0..8 {
                    let start = Instant::now();
                    black_box(plugin.invoke(hook, order).await);
                    times.push(start.elapsed());
                }
                times
            });
            println!(
                "{group_name}/{name}: p50 {:.1} µs, p99 {:.1} µs of 1000 calls; burst of 8 above the pool: {:?} µs; \
                 RSS {:.1} MiB before the 1000, {:.1} MiB after; pool misses {}",
                calls[500].as_secs_f64() * 1e6,
                calls[990].as_secs_f64() * 1e6,
                burst.iter().map(|d| (d.as_secs_f64() * 1e6).round() as u64).collect::<Vec<_>>(),
                rss_before as f64 / (1 << 20) as f64,
                rss_bytes() as f64 / (1 << 20) as f64,
                plugin.pool().misses,
            );
        }
        group.finish();
    }
}

/// One invocation, once the pool (if any) has refilled: between requests of a real workload the
/// background refill has time to replace the instance just used.
async fn timed_call(plugin: &plugwatch_runtime::Plugin, hook: &str, input: &[u8]) -> Duration {
    while plugin.prewarm_target() > 0 && plugin.prewarmed() < plugin.prewarm_target() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let start = Instant::now();
    black_box(plugin.invoke(hook, input).await);
    start.elapsed()
}

/// This process's resident memory.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

criterion_group!(benches, overhead, metering, guests);
criterion_main!(benches);
