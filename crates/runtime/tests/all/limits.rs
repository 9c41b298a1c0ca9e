//! Every limit is enforced and reported with the right outcome; a misbehaving guest never hurts the host.

use std::time::Instant;

use plugwatch_runtime::{Limits, Outcome};

use crate::support::*;

#[tokio::test]
async fn a_normal_call_returns_the_plugins_output() {
    let record =
        run("(call $ok (local.get $input) (local.get $input_len))", "", Limits::default(), b"{\"order\":1}").await;
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(record.output.as_deref(), Some(&b"{\"order\":1}"[..]));
    assert_eq!(record.output_bytes, 11);
    assert_eq!(record.input_bytes, 11);
}

#[tokio::test]
async fn the_plugins_err_is_a_plugin_error_with_its_message() {
    let record = run(
        "(call $err (i32.const 100) (i32.const 21))",
        r#"(data (i32.const 100) "promo code is expired")"#,
        Limits::default(),
        b"{}",
    )
    .await;
    assert_eq!(record.outcome, Outcome::PluginError);
    assert_eq!(record.detail.as_deref(), Some("promo code is expired"));
    assert!(record.output.is_none());
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_once_it_executed_for_its_timeout() {
    let limits = Limits { timeout: ms(50), fuel: None, ..Limits::default() };
    let record = run(LOOP, "", limits, b"").await;
    assert_eq!(record.outcome, Outcome::Timeout, "{record:?}");
    assert!(record.cpu >= ms(50), "stopped before it executed for its limit: {:?}", record.cpu);
    assert!(record.cpu < ms(150), "not stopped promptly: {:?}", record.cpu);
    assert!(record.wall < ms(500), "stopped by the execution limit, not the 10x wall backstop: {:?}", record.wall);
    assert!(record.detail.as_deref().unwrap().contains("execution-time limit of 50ms"), "{:?}", record.detail);
}

#[tokio::test]
async fn a_timed_out_invocation_reports_the_instructions_it_executed() {
    let runtime = runtime();
    // The same loop stopped by a small budget tells how many instructions a millisecond of it executes here.
    let budget = 5_000_000;
    let limits = Limits { timeout: ms(10_000), fuel: Some(budget), ..Limits::default() };
    let metered = load(&runtime, component(LOOP, ""), limits).await.invoke("x", b"").await;
    assert_eq!(metered.outcome, Outcome::FuelExhausted, "{metered:?}");
    let per_cpu_ns = budget as f64 / metered.cpu.as_nanos() as f64;

    let limits = Limits { timeout: ms(50), fuel: None, ..Limits::default() };
    let record = load(&runtime, component(LOOP, ""), limits).await.invoke("x", b"").await;
    assert_eq!(record.outcome, Outcome::Timeout, "{record:?}");
    let counted = record.instructions.expect("a timeout reports the instructions executed up to the trap");
    let expected = per_cpu_ns * record.cpu.as_nanos() as f64;
    // Generous bounds (clock rates and CPU contention vary); a stale counter reports next to nothing.
    assert!(
        counted as f64 > expected / 4.0,
        "{counted} instructions in {:?}, expected about {expected:.0}",
        record.cpu
    );
    assert!(
        (counted as f64) < expected * 4.0,
        "{counted} instructions in {:?}, expected about {expected:.0}",
        record.cpu
    );
}

#[tokio::test]
async fn an_infinite_loop_with_a_budget_runs_out_of_fuel() {
    let limits = Limits { timeout: ms(10_000), fuel: Some(5_000_000), ..Limits::default() };
    let record = run(LOOP, "", limits, b"").await;
    assert_eq!(record.outcome, Outcome::FuelExhausted, "{record:?}");
    assert_eq!(record.instructions, Some(5_000_000));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_cap() {
    let limits = Limits { memory_bytes: 8 << 20, ..Limits::default() };
    let record = run("(loop $more (drop (memory.grow (i32.const 16))) (br $more)) unreachable", "", limits, b"").await;
    assert_eq!(record.outcome, Outcome::MemoryLimit, "{record:?}");
    assert!(record.memory_peak_bytes <= 8 << 20, "{}", record.memory_peak_bytes);
    assert!(record.memory_peak_bytes > 7 << 20, "peak reflects the growth: {}", record.memory_peak_bytes);
}

#[tokio::test]
async fn unbounded_recursion_traps_with_stack_overflow() {
    let record = run(
        "(drop (call $recurse (i32.const 0))) (call $ok (i32.const 0) (i32.const 0))",
        "(func $recurse (param i32) (result i32) (call $recurse (i32.add (local.get 0) (i32.const 1))))",
        Limits::default(),
        b"",
    )
    .await;
    assert_eq!(record.outcome, Outcome::Trap, "{record:?}");
    assert_eq!(record.trap_kind.as_deref(), Some("stack_overflow"));
}

#[tokio::test]
async fn unreachable_traps_with_its_kind() {
    let record = run("unreachable", "", Limits::default(), b"").await;
    assert_eq!(record.outcome, Outcome::Trap);
    assert_eq!(record.trap_kind.as_deref(), Some("unreachable_code_reached"));
    assert!(record.detail.unwrap().contains("unreachable"));
}

#[tokio::test]
async fn a_huge_output_is_refused_and_its_size_reported() {
    // Grow by 32 pages (2 MiB) and return all of it.
    let record = run(
        "(drop (memory.grow (i32.const 32))) (call $ok (i32.const 65536) (i32.const 2097152))",
        "",
        Limits::default(),
        b"",
    )
    .await;
    assert_eq!(record.outcome, Outcome::OutputTooLarge, "{record:?}");
    assert_eq!(record.output_bytes, 2 << 20);
    assert!(record.output.is_none());
}

#[tokio::test]
async fn an_oversized_input_is_refused_before_the_plugin_runs() {
    let limits = Limits { max_input_bytes: 16, ..Limits::default() };
    let record = run("unreachable", "", limits, &[b'x'; 17]).await;
    assert_eq!(record.outcome, Outcome::InputTooLarge);
    assert_eq!(record.input_bytes, 17);
    assert_eq!(record.instructions, None, "the plugin did not run");
}

#[tokio::test]
async fn a_log_flood_is_cut_at_the_log_budget() {
    let flood = r#"(local.set $n (i32.const 100000))
        (loop $again
          (call $log (i32.const 2) (i32.const 100) (i32.const 40))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $again (local.get $n)))
        (call $ok (i32.const 0) (i32.const 0))"#;
    // 100,000 host calls outlasted the default 100 ms limit once on a loaded CI machine; this test is about
    // the log budget, so the wall-clock limit is kept out of its way.
    let limits = Limits { max_log_bytes: 4096, timeout: ms(10_000), ..Limits::default() };
    let record = run(flood, r#"(data (i32.const 100) "flooding the log with forty bytes each..")"#, limits, b"").await;
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    let kept: usize = record.logs.iter().map(|l| l.message.len() + 1).sum();
    assert!(kept <= 4096, "{kept}");
    // 99 whole lines of 40 bytes (+1 each), then what fits of the 100th.
    assert_eq!(record.logs.len(), 100);
    assert_eq!(record.logs[99].message.len(), 4096 - 99 * 41 - 1);
    let kept_message_bytes = (kept - record.logs.len()) as u64;
    assert_eq!(record.logs_dropped_bytes, 100_000 * 40 - kept_message_bytes);
}

#[tokio::test]
async fn no_state_survives_from_one_invocation_to_the_next() {
    let counter = r#"(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (i32.store (i32.const 200) (global.get $calls))
        (call $ok (i32.const 200) (i32.const 4))"#;
    let runtime = runtime();
    let plugin = load(&runtime, component(counter, "(global $calls (mut i32) (i32.const 0))"), Limits::default()).await;
    for _ in 0..3 {
        let record = plugin.invoke("count", b"").await;
        assert_eq!(record.output.as_deref(), Some(&1u32.to_le_bytes()[..]), "a fresh instance every time");
    }
}

#[tokio::test]
async fn when_slots_and_queue_are_full_the_invocation_is_rejected_at_once() {
    let runtime = runtime();
    let limits = Limits { timeout: ms(300), fuel: None, max_concurrency: 1, max_queue: 0, ..Limits::default() };
    let plugin = load(&runtime, component(LOOP, ""), limits).await;
    let (first, second) = tokio::join!(plugin.invoke("slow", b""), plugin.invoke("slow", b""));
    assert_eq!(first.outcome, Outcome::Timeout);
    assert_eq!(second.outcome, Outcome::Rejected, "{second:?}");
    assert!(second.wall < first.wall, "rejected without waiting");
}

#[tokio::test]
async fn a_queued_invocation_runs_when_a_slot_frees() {
    let runtime = runtime();
    let body = r#"(local.set $n (i32.const 20000000))
        (loop $spin (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $spin (local.get $n)))
        (call $ok (i32.const 0) (i32.const 0))"#;
    let limits = Limits { timeout: ms(5000), max_concurrency: 1, max_queue: 4, ..Limits::default() };
    let plugin = load(&runtime, component(body, ""), limits).await;
    let (first, second) = tokio::join!(plugin.invoke("a", b""), plugin.invoke("b", b""));
    assert_eq!(first.outcome, Outcome::Ok, "{first:?}");
    assert_eq!(second.outcome, Outcome::Ok, "{second:?}");
    assert!(second.queued > first.queued, "the second waited for the first");
}

/// The runaway plugin's first slice runs on the caller's thread, then it moves to the guest executor, so
/// the caller's (single) thread stays free for the quick one.
#[tokio::test(flavor = "current_thread")]
async fn a_runaway_plugin_does_not_block_others_on_the_same_thread() {
    let runtime = runtime();
    let looping =
        load(&runtime, component(LOOP, ""), Limits { timeout: ms(400), fuel: None, ..Limits::default() }).await;
    let quick = load(&runtime, echo(), Limits::default()).await;
    let start = Instant::now();
    let (slow, fast) = tokio::join!(async { (looping.invoke("x", b"").await, start.elapsed()) }, async {
        tokio::time::sleep(ms(20)).await;
        (quick.invoke("x", b"hi").await, start.elapsed())
    });
    assert_eq!(slow.0.outcome, Outcome::Timeout);
    assert_eq!(fast.0.outcome, Outcome::Ok);
    assert!(fast.1 < slow.1, "the quick plugin finished while the runaway one was still running");
}
