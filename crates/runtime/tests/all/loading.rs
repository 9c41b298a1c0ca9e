//! The load-time scan: what is accepted, what is refused and with which message, and the compile cache.

use plugwatch_runtime::{Limits, LoadError, LoadOptions, Outcome, Runtime, RuntimeConfig};

use crate::support::*;

async fn load_err(bytes: Vec<u8>, options: LoadOptions) -> LoadError {
    match runtime().load(bytes, options).await {
        Ok(_) => panic!("loaded a component that should be refused"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn a_non_wasm_upload_is_refused_with_a_clear_message() {
    let error = load_err(b"#!/bin/sh\nrm -rf /\n".to_vec(), LoadOptions::default()).await;
    assert!(matches!(error, LoadError::NotWasm));
    assert!(error.to_string().contains("not a WebAssembly binary"));
}

#[tokio::test]
async fn a_core_module_is_refused_and_told_to_become_a_component() {
    let core = wat::parse_str(r#"(module (func (export "handle")))"#).unwrap();
    let error = load_err(core, LoadOptions::default()).await;
    assert!(matches!(error, LoadError::CoreModule));
    assert!(error.to_string().contains("not a component"));
}

#[tokio::test]
async fn a_forbidden_import_is_refused_by_name() {
    let bytes = wat::parse_str(
        r#"(component
            (import "acme:net/raw-socket@1.0.0" (instance))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "handle") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let error = load_err(bytes, LoadOptions::default()).await;
    assert!(matches!(&error, LoadError::ForbiddenImport(name) if name == "acme:net/raw-socket@1.0.0"), "{error}");
    assert!(error.to_string().contains("`acme:net/raw-socket@1.0.0`"));
}

#[tokio::test]
async fn a_component_with_the_wrong_exports_is_refused() {
    let other = wat::parse_str(
        r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m))
            (func (export "run") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let error = load_err(other, LoadOptions::default()).await;
    assert!(matches!(error, LoadError::MissingExport), "{error}");
    assert!(error.to_string().contains("does not export `handle`"));

    let wrong_type = wat::parse_str(
        r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m))
            (func (export "handle") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let error = load_err(wrong_type, LoadOptions::default()).await;
    assert!(matches!(error, LoadError::WorldMismatch(_)), "{error}");
    assert!(error.to_string().contains("handle"), "{error}");
}

#[tokio::test]
async fn size_limit_and_pinned_hash_are_enforced() {
    let small = Runtime::new(RuntimeConfig { max_plugin_bytes: 256, ..RuntimeConfig::default() }).unwrap();
    let bytes = echo();
    let error = small.load(bytes.clone(), LoadOptions::default()).await.err().unwrap();
    assert!(matches!(error, LoadError::TooLarge { limit: 256, .. }), "{error}");

    let pinned = LoadOptions { expected_sha256: Some("00".repeat(32)), ..LoadOptions::default() };
    let error = load_err(bytes.clone(), pinned).await;
    assert!(matches!(error, LoadError::HashMismatch { .. }), "{error}");

    let plugin = runtime().load(bytes.clone(), LoadOptions::default()).await.unwrap();
    let sha = plugin.sha256().to_owned();
    assert_eq!(sha.len(), 64);
    let pinned = LoadOptions { expected_sha256: Some(sha.to_uppercase()), ..LoadOptions::default() };
    assert_eq!(runtime().load(bytes, pinned).await.unwrap().sha256(), sha);
}

#[tokio::test]
async fn invalid_limits_are_refused_with_the_field_named() {
    let limits = Limits { memory_bytes: 4 << 30, ..Limits::default() };
    let error = load_err(echo(), LoadOptions { limits, ..LoadOptions::default() }).await;
    assert!(error.to_string().contains("`memory`"), "{error}");
}

#[tokio::test]
async fn a_plugin_that_traps_while_starting_is_refused() {
    let error = load_err(
        component("(call $ok (i32.const 0) (i32.const 0))", "(func $boom unreachable) (start $boom)"),
        LoadOptions::default(),
    )
    .await;
    assert!(matches!(error, LoadError::Instantiation(_)), "{error}");
    assert!(error.to_string().contains("unreachable"), "{error}");
}

#[tokio::test]
async fn a_plugin_whose_initial_memory_is_over_its_cap_is_refused() {
    let limits = Limits { memory_bytes: 64 << 10, ..Limits::default() };
    let bytes = component(
        "(call $ok (i32.const 0) (i32.const 0))",
        "(func $grow (drop (memory.grow (i32.const 1)))) (start $grow)",
    );
    let error = load_err(bytes, LoadOptions { limits, ..LoadOptions::default() }).await;
    assert!(error.to_string().contains("over the cap of 65536 bytes"), "{error}");
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_and_a_bad_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(dir.path().to_owned()), ..RuntimeConfig::default() };
    let runtime = Runtime::new(config.clone()).unwrap();
    let plugin = runtime.load(echo(), LoadOptions::default()).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(plugin.sha256()) && name.ends_with(".cwasm"), "{name}");

    // A second runtime loads from the cache; a corrupt file is discarded and rewritten. (Replaced, not
    // truncated in place: the first runtime still maps the file, as plugwatch never rewrites one in place.)
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::write(&files[0], b"garbage").unwrap();
    let again = Runtime::new(config).unwrap().load(echo(), LoadOptions::default()).await.unwrap();
    assert_eq!(again.invoke("x", b"ok").await.outcome, Outcome::Ok);
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 100, "rewritten");
}

#[tokio::test]
async fn a_deleted_cache_directory_is_not_recreated_and_the_plugin_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("data").join("compiled");
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache.clone()), ..RuntimeConfig::default() }).unwrap();
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let plugin = runtime.load(echo(), LoadOptions::default()).await.unwrap();
    assert_eq!(plugin.invoke("x", b"ok").await.outcome, Outcome::Ok, "compiled in memory instead");
    assert!(!dir.path().join("data").exists(), "the cache write did not recreate the directory");
}
