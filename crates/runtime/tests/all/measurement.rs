//! What the record measures: instructions, memory, CPU, logs, configuration.

use plugwatch_runtime::{Level, Limits, LoadOptions, LogSource, Outcome};

use crate::support::*;

const WORK: &str = SPIN;

#[tokio::test]
async fn instructions_grow_with_work() {
    let runtime = runtime();
    let plugin = load(&runtime, component(WORK, ""), Limits::default()).await;
    let small = plugin.invoke("work", &[0; 10]).await;
    let large = plugin.invoke("work", &[0; 100]).await;
    let (small, large) = (small.instructions.unwrap(), large.instructions.unwrap());
    assert!(small >= 10_000, "{small}");
    assert!(large >= 10 * small - 1000 && large <= 11 * small, "10x the work, {small} vs {large}");
}

#[tokio::test]
async fn cpu_time_is_measured() {
    let runtime = runtime();
    let plugin =
        load(&runtime, component(WORK, ""), Limits { timeout: ms(10_000), fuel: None, ..Limits::default() }).await;
    let record = plugin.invoke("work", &[0; 60_000]).await;
    assert_eq!(record.outcome, Outcome::Ok, "{record:?}");
    assert!(record.cpu >= ms(5), "60M iterations took CPU time: {:?}", record.cpu);
    assert!(record.cpu <= record.wall + ms(5), "cpu {:?} vs wall {:?}", record.cpu, record.wall);
}

#[tokio::test]
async fn peak_memory_reflects_growth() {
    let still = run("(call $ok (i32.const 0) (i32.const 0))", "", Limits::default(), b"").await;
    let grown =
        run("(drop (memory.grow (i32.const 100))) (call $ok (i32.const 0) (i32.const 0))", "", Limits::default(), b"")
            .await;
    assert_eq!(still.memory_peak_bytes, 65536, "one page");
    assert_eq!(grown.memory_peak_bytes, 101 * 65536);
}

#[tokio::test]
async fn host_log_lines_keep_level_and_order() {
    let body = r#"(call $log (i32.const 3) (i32.const 100) (i32.const 5))
        (call $log (i32.const 0) (i32.const 105) (i32.const 5))
        (call $ok (i32.const 0) (i32.const 0))"#;
    let record = run(body, r#"(data (i32.const 100) "firstlater")"#, Limits::default(), b"").await;
    let lines: Vec<_> = record.logs.iter().map(|l| (l.level, l.source, l.message.as_str())).collect();
    assert_eq!(lines, [(Level::Warn, LogSource::Host, "first"), (Level::Trace, LogSource::Host, "later")]);
    assert!(record.logs[0].at <= record.logs[1].at);
}

#[tokio::test]
async fn config_values_reach_the_plugin_and_missing_ones_are_none() {
    // config("greeting") → ok(value) or err("unset").
    let body = r#"(call $config (i32.const 100) (i32.const 8) (i32.const 32))
        (if (result i32) (i32.load8_u (i32.const 32))
          (then (call $ok (i32.load (i32.const 36)) (i32.load (i32.const 40))))
          (else (call $err (i32.const 108) (i32.const 5))))"#;
    let extra = r#"(data (i32.const 100) "greetingunset")"#;
    let runtime = runtime();
    let options = LoadOptions {
        config: [("greeting".to_owned(), "안녕하세요".to_owned())].into(),
        ..LoadOptions::default()
    };
    let configured = runtime.load(component(body, extra), options).await.unwrap();
    let record = configured.invoke("x", b"").await;
    assert_eq!(String::from_utf8(record.output.unwrap()).unwrap(), "안녕하세요");
    let unconfigured = load(&runtime, component(body, extra), Limits::default()).await;
    assert_eq!(unconfigured.invoke("x", b"").await.detail.as_deref(), Some("unset"));
}
