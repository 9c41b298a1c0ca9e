//! Load shared by the scheduling tests and the fairness benchmark (`benches/fairness.rs` includes this file).

use std::time::Duration;

use plugwatch_runtime::{Invocation, Plugin};

/// Spins `input_len * 1000` times, then returns `ok` with no output.
pub const SPIN: &str = r#"(local.set $n (i32.mul (local.get $input_len) (i32.const 1000)))
    (block $done (loop $spin
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $spin)))
    (call $ok (i32.const 0) (i32.const 0))"#;

/// Loops until stopped.
pub const LOOP: &str = "(loop $forever (br $forever)) unreachable";

/// Input for [`SPIN`] that makes one call execute for about `target` here, measured once.
pub async fn spin_input_for(plugin: &Plugin, target: Duration) -> Vec<u8> {
    let probe = plugin.invoke("calibrate", &[0; 1000]).await; // a million iterations
    assert!(probe.outcome.is_ok(), "{probe:?}");
    let per_kilo = probe.cpu.as_nanos().max(1) as f64 / 1000.0;
    vec![0; ((target.as_nanos() as f64 / per_kilo) as usize).max(1)]
}

/// Sixteen concurrent callers, three calls each, of `plugin` with `input`.
pub async fn burst(plugin: &Plugin, input: &[u8]) -> Vec<Invocation> {
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (plugin, input) = (plugin.clone(), input.to_vec());
            tokio::spawn(async move {
                let mut records = Vec::new();
                for _ in 0..3 {
                    records.push(plugin.invoke("burst", &input).await);
                }
                records
            })
        })
        .collect();
    let mut out = Vec::new();
    for caller in callers {
        out.extend(caller.await.expect("a caller did not panic"));
    }
    out
}
