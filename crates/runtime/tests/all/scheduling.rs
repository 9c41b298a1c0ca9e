//! Invocations share the cores fairly: a timeout counts a plugin's own execution, never its wait for a core,
//! and one plugin's load does not hold up another's invocations.

use plugwatch_runtime::{Limits, Outcome, RuntimeConfig};

use crate::support::*;

/// Two guest threads whatever the machine, so that sixteen concurrent invocations must wait for them.
/// At the default niceness, a neighbouring test busy on the same two cores (compiling a component, say)
/// takes nearly all of them from the guest threads (that is what the niceness is for: the HTTP workers first),
/// and the waiting calls meet the wall-clock backstop; these tests are about the queue, so they run at 0.
fn two_guest_threads() -> RuntimeConfig {
    RuntimeConfig { guest_threads: 2, guest_nice: 0, ..RuntimeConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_compute_calls_waits_for_the_cores_instead_of_timing_out() {
    let runtime = runtime_with(two_guest_threads());
    let plugin = load(&runtime, component(SPIN, ""), Limits::default()).await;
    // A fifth of the default 100 ms timeout each; sixteen at once need eight times that of two threads.
    let input = spin_input_for(&plugin, ms(20)).await;
    let records = crate::load::burst(&plugin, &input).await;
    assert_eq!(records.len(), 48);
    let failed: Vec<_> = records.iter().filter(|r| r.outcome != Outcome::Ok).collect();
    assert!(failed.is_empty(), "{} of 48 failed, the first: {:?}", failed.len(), failed.first());
    // Sixteen calls for two threads: someone waited longer than any one call executed, and it was recorded.
    let longest_wait = records.iter().map(|r| r.queued).max().unwrap();
    let longest_run = records.iter().map(|r| r.cpu).max().unwrap();
    assert!(longest_wait > longest_run, "queue wait {longest_wait:?} vs execution {longest_run:?}");
    // The wall time's parts never add up to more than it: a call that waited for a guest thread counts
    // that wait once, as `queued`, not again in its instantiation.
    for r in &records {
        assert!(r.queued + r.instantiate <= r.wall, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_finishes_while_sixteen_runaway_invocations_of_another_hold_the_guest_threads() {
    let runtime = runtime_with(two_guest_threads());
    let hostile_timeout = ms(200);
    let hostile =
        load(&runtime, component(LOOP, ""), Limits { timeout: hostile_timeout, fuel: None, ..Limits::default() }).await;
    let victim = load(&runtime, component(SPIN, ""), Limits::default()).await;
    // Several slices of work, so the victim too runs on the guest threads, behind the runaway ones.
    let input = spin_input_for(&victim, ms(20)).await;

    let attackers: Vec<_> = (0..16)
        .map(|_| {
            let hostile = hostile.clone();
            tokio::spawn(async move { hostile.invoke("spin", b"").await })
        })
        .collect();
    while hostile.in_flight() < 16 {
        tokio::time::sleep(ms(1)).await;
    }
    let record = victim.invoke("work", &input).await;
    let hostile_running = hostile.in_flight();
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert_eq!(hostile_running, 16, "the victim finished before any runaway invocation did");
    assert!(
        record.queued < hostile_timeout / 4,
        "the victim waited {:?} for a guest thread, against runaway calls of {hostile_timeout:?} each",
        record.queued
    );

    for record in futures_join(attackers).await {
        assert_ne!(record.outcome, Outcome::Ok, "{record:?}");
    }
}

#[tokio::test]
async fn a_guest_stopped_by_the_wall_clock_backstop_says_so() {
    // One guest thread and a backstop of twice the timeout: the third of three runaway calls waits two whole
    // timeouts for the thread, so the backstop stops it before it has executed for its own.
    let runtime = runtime_with(RuntimeConfig { guest_threads: 1, wall_backstop_factor: 2, ..RuntimeConfig::default() });
    let limits = Limits { timeout: ms(100), fuel: None, ..Limits::default() };
    let plugin = load(&runtime, component(LOOP, ""), limits).await;
    // The first call marks the plugin as slow, so both of the next go straight to the one guest thread.
    assert_eq!(plugin.invoke("x", b"").await.outcome, Outcome::Timeout);
    let (a, b, c) = tokio::join!(plugin.invoke("x", b""), plugin.invoke("x", b""), plugin.invoke("x", b""));
    let late = [a, b, c].into_iter().max_by_key(|r| r.queued).unwrap();
    assert_eq!(late.outcome, Outcome::Timeout, "{late:?}");
    assert!(late.detail.as_deref().unwrap().contains("wall-clock backstop"), "{late:?}");
    assert!(late.cpu < ms(100), "stopped before its execution limit: {late:?}");
}

async fn futures_join<T>(handles: impl IntoIterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("the task did not panic"));
    }
    out
}
