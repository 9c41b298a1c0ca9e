//! `plugwatch run` as a plugin author uses it: the real binary on real components.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = include_str!("../../runtime/tests/fixtures/plugin.wat.in");

fn component(dir: &Path, name: &str, body: &str, extra: &str) -> PathBuf {
    let bytes = wat::parse_str(TEMPLATE.replace("{extra}", extra).replace("{body}", body)).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn plugwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugwatch")).args(args).arg("--no-cache").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_ok_invocation_prints_the_output_and_the_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let echo = component(dir.path(), "echo", "(call $ok (local.get $input) (local.get $input_len))", "");
    let input = dir.path().join("order.json");
    std::fs::write(&input, r#"{"order_id":"1"}"#).unwrap();
    let out =
        plugwatch(&["run", echo.to_str().unwrap(), "--hook", "order.created", "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), r#"{"order_id":"1"}"#);
    let report = text(&out.stderr);
    for field in ["outcome", "wall", "cpu", "instructions", "memory peak", "logs"] {
        assert!(report.contains(field), "missing {field}: {report}");
    }
    assert!(report.contains("ok"));
}

#[test]
fn json_output_names_the_outcome_and_carries_the_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let logs = component(
        dir.path(),
        "logs",
        "(call $log (i32.const 2) (i32.const 100) (i32.const 5)) (call $ok (i32.const 100) (i32.const 5))",
        r#"(data (i32.const 100) "hello")"#,
    );
    let out = plugwatch(&["run", logs.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["output"], "hello");
    assert_eq!(record["logs"][0]["message"], "hello");
    assert_eq!(record["logs"][0]["level"], "info");
    assert!(record["instructions"].as_u64().unwrap() > 0);
    assert_eq!(record["memory_peak_bytes"], 65536);
}

#[test]
fn a_failing_outcome_exits_1_and_says_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let refuse = component(
        dir.path(),
        "refuse",
        "(call $err (i32.const 100) (i32.const 12))",
        r#"(data (i32.const 100) "code expired")"#,
    );
    let out = plugwatch(&["run", refuse.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: plugin_error: code expired"), "{}", text(&out.stderr));

    let spin = component(dir.path(), "spin", "(loop $l (br $l)) unreachable", "");
    let out = plugwatch(&["run", spin.to_str().unwrap(), "--timeout", "20ms", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "timeout");

    let out = plugwatch(&["run", spin.to_str().unwrap(), "--fuel", "1000", "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "fuel_exhausted");
    assert_eq!(record["instructions"], 1000);

    let bomb = component(dir.path(), "bomb", "(loop $l (drop (memory.grow (i32.const 1))) (br $l)) unreachable", "");
    let out = plugwatch(&["run", bomb.to_str().unwrap(), "--memory", "1MiB", "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["outcome"], "memory_limit");
}

#[test]
fn config_values_reach_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"(call $config (i32.const 100) (i32.const 5) (i32.const 32))
        (if (result i32) (i32.load8_u (i32.const 32))
          (then (call $ok (i32.load (i32.const 36)) (i32.load (i32.const 40))))
          (else (call $err (i32.const 100) (i32.const 5))))"#;
    let plugin = component(dir.path(), "config", body, r#"(data (i32.const 100) "promo")"#);
    let out = plugwatch(&["run", plugin.to_str().unwrap(), "--config", "promo=WELCOME10"]);
    assert_eq!(text(&out.stdout), "WELCOME10");
}

#[test]
fn unloadable_plugins_and_bad_arguments_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, "print('hi')").unwrap();
    let out = plugwatch(&["run", not_wasm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a WebAssembly binary"), "{}", text(&out.stderr));

    let out = plugwatch(&["run", "/no/such/plugin.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /no/such/plugin.wasm"));

    let echo = component(dir.path(), "echo", "(call $ok (i32.const 0) (i32.const 0))", "");
    let out = plugwatch(&["run", echo.to_str().unwrap(), "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--timeout"), "{}", text(&out.stderr));

    let out = plugwatch(&["run", echo.to_str().unwrap(), "--config", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not KEY=VALUE"));

    let out = plugwatch(&["run", echo.to_str().unwrap(), "--timeout", "10min"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid limit `timeout`"), "{}", text(&out.stderr));
}
