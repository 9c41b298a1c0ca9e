//! Test helpers: components written in WAT around a one-function body, and a runtime to load them into.

use std::time::Duration;

/// The WAT text of a plugin component with `{body}` and `{extra}` holes.
const TEMPLATE: &str = include_str!("../fixtures/plugin.wat.in");

use plugwatch_runtime::{Invocation, Limits, LoadOptions, Plugin, Runtime, RuntimeConfig};

/// A runtime with the default configuration, sharing one compile cache across tests and runs (compiling
/// the Python and JavaScript guests takes seconds each).
pub fn runtime() -> Runtime {
    runtime_with(RuntimeConfig::default())
}

/// A runtime with `config`, sharing the tests' compile cache.
pub fn runtime_with(config: RuntimeConfig) -> Runtime {
    let cache_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-compile-cache");
    Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir), ..config }).expect("runtime starts")
}

pub use crate::load::{LOOP, SPIN, spin_input_for};

/// A component implementing the plugwatch world whose core `handle` function runs `body`.
///
/// Inside `body`: `$hook`/`$hook_len` and `$input`/`$input_len` are the parameters; `(call $ok ptr len)` and
/// `(call $err ptr len)` build the return value; `$n` is a scratch i32 local; `$log` and `$config` are the
/// lowered host functions; `extra` is spliced into the core module (for data segments and helpers).
/// The bump allocator's heap starts at 4096, so addresses below that are free for data.
pub fn component(body: &str, extra: &str) -> Vec<u8> {
    let text = TEMPLATE.replace("{extra}", extra).replace("{body}", body);
    wat::parse_str(&text).unwrap_or_else(|e| panic!("fixture does not assemble: {e}\n{text}"))
}

/// Echoes its input.
pub fn echo() -> Vec<u8> {
    component("(call $ok (local.get $input) (local.get $input_len))", "")
}

pub async fn load(runtime: &Runtime, bytes: Vec<u8>, limits: Limits) -> Plugin {
    runtime.load(bytes, LoadOptions { limits, ..LoadOptions::default() }).await.expect("fixture loads")
}

pub async fn run(body: &str, extra: &str, limits: Limits, input: &[u8]) -> Invocation {
    let runtime = runtime();
    let plugin = load(&runtime, component(body, extra), limits).await;
    plugin.invoke("test", input).await
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Where the test command puts the built example plugins and guest fixtures.
pub fn built_plugin(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("PLUGWATCH_PLUGIN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): build the guest plugins with `cargo xtask plugins`", path.display())
    })
}
