//! Test helpers: components written in WAT around a one-function body, and a runtime to load them into.

use std::time::Duration;

use plugwatch_runtime::{Invocation, Limits, LoadOptions, Plugin, Runtime, RuntimeConfig};

/// A runtime with the default configuration and no cache.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime starts")
}

/// A component implementing the plugwatch world whose core `handle` function runs `body`.
///
/// Inside `body`: `$hook`/`$hook_len` and `$input`/`$input_len` are the parameters; `(call $ok ptr len)` and
/// `(call $err ptr len)` build the return value; `$n` is a scratch i32 local; `$log` and `$config` are the
/// lowered host functions; `extra` is spliced into the core module (for data segments and helpers).
/// The bump allocator's heap starts at 4096, so addresses below that are free for data.
pub fn component(body: &str, extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(component
  (type $host-t (instance
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level-e (eq $level)))
    (type $log-t (func (param "level" $level-e) (param "message" string)))
    (export "log" (func (type $log-t)))
    (type $opt (option string))
    (type $config-t (func (param "key" string) (result $opt)))
    (export "config" (func (type $config-t)))
  ))
  (import "plugwatch:plugin/host@0.1.0" (instance $host (type $host-t)))
  (alias export $host "log" (func $log))
  (alias export $host "config" (func $config))
  (core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $ret i32) (local $end i32) (local $have i32)
      (local.set $ret (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ret) (local.get $size)))
      (local.set $have (i32.mul (memory.size) (i32.const 65536)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
                          (i32.const -1))
                (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $ret)))
  (core instance $libc (instantiate $libc))
  (core func $log-lowered (canon lower (func $log) (memory (core memory $libc "memory"))))
  (core func $config-lowered (canon lower (func $config) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "host" "config" (func $config (param i32 i32 i32)))
    (func $ok (param i32 i32) (result i32)
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 12) (local.get 0))
      (i32.store (i32.const 16) (local.get 1))
      (i32.const 8))
    (func $err (param i32 i32) (result i32)
      (i32.store8 (i32.const 8) (i32.const 1))
      (i32.store (i32.const 12) (local.get 0))
      (i32.store (i32.const 16) (local.get 1))
      (i32.const 8))
    {extra}
    (func (export "handle") (param $hook i32) (param $hook_len i32) (param $input i32) (param $input_len i32) (result i32)
      (local $n i32)
      {body}))
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $log-lowered)) (export "config" (func $config-lowered))))))
  (func (export "handle") (param "hook" string) (param "input" (list u8)) (result (result (list u8) (error string)))
    (canon lift (core func $main "handle") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc")))))"#
    );
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
