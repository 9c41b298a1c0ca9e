//! Benchmarks of the invocation path: raw wasmtime against the runtime's full measured path on the same
//! engine, the cost of fuel metering and epoch interruption on compute-heavy code, and the example Python
//! plugin on the hot path.

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

fn python(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/promo-discount/promo-discount.wasm");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-compile-cache");
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir), ..RuntimeConfig::default() }).unwrap();
    let order = br#"{"order_id":"ord-1001","customer_id":"cust-42","customer_tier":"gold","currency":"KRW","items":[{"sku":"bulgogi-bowl","name":"Bulgogi bowl","quantity":2,"unit_price":12500},{"sku":"kimchi","name":"Kimchi","quantity":1,"unit_price":3000}],"promo_code":"WELCOME10"}"#;
    let mut group = c.benchmark_group("python_promo_discount");
    group.measurement_time(Duration::from_secs(10));
    for (name, prewarm) in [("prewarmed", Prewarm::Instances(2)), ("cold_instance_per_call", Prewarm::Off)] {
        group.bench_function(name, |b| {
            // Loaded here, not above: criterion calls this closure only when the benchmark is selected.
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let options = LoadOptions { prewarm, limits: Limits::default(), ..LoadOptions::default() };
            let plugin = rt.block_on(runtime.load(bytes, options)).unwrap();
            let record = rt.block_on(plugin.invoke("order.pricing", order));
            assert!(record.outcome.is_ok(), "{record:?}");
            b.to_async(&rt).iter_custom(|iters| {
                let plugin = plugin.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // Time only the invocation: between requests of a real workload the background
                        // refill has time to replace the instance just used.
                        while plugin.prewarm_target() > 0 && plugin.prewarmed() < plugin.prewarm_target() {
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                        let start = Instant::now();
                        black_box(plugin.invoke("order.pricing", order).await);
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, overhead, metering, python);
criterion_main!(benches);
