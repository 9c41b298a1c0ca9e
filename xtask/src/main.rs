//! `cargo xtask`: plugwatch's development automation, in Rust rather than a pile of shell scripts.
//!
//! - `cargo xtask test`: the one command that installs what the tests need and runs them all (CI runs it).
//! - `cargo xtask plugins [--bless]`: build the example plugins and test guests into `target/plugins`;
//!   `--bless` also replaces the committed example components with the fresh build.
//! - `cargo xtask tools`: install the guest toolchains (componentize-py into a venv, componentize-js via npm)
//!   and the browser tests' (playwright-core and axe-core via npm, Chromium from Debian).
//! - `cargo xtask bench`: run the criterion benchmarks.
//! - `cargo xtask postgres-tests`: the store and API suites once more on PostgreSQL, and the cluster tests
//!   (part of `test`; CI's integration job).
//! - `cargo xtask schemathesis`: property-based tests of the served OpenAPI document (part of `test`).
//! - `cargo xtask browser`: the pages in headless Chromium with axe-core checks, against a demo server
//!   (part of `test`); screenshots in `target/browser`.
//! - `cargo xtask manifests [--rendered FILE]`: static checks of the Kubernetes manifests, the CI workflow
//!   and every YAML file (part of `test`; there is no cluster here); `--rendered` checks one rendered file
//!   (kubernetes-validate and checkov: the deploy tool's pre-check).
//! - `cargo xtask deploy --environment staging|production [--image-tag T] [--dry-run] [--config FILE]`:
//!   the release checklist (pre-checks, backup, build, push, apply, rollout, health, smoke test, rollback
//!   on failure) with a JSON and Markdown report in `target/deploy`; `cargo xtask deploy-smoke`: its
//!   after-deploy stage against a real demo server (part of `test`).
//! - `cargo xtask prometheus`: a real Prometheus and Alertmanager with the committed configuration and
//!   rules against a demo server; every query of the Grafana dashboard returns data (part of `test`).
//! - `cargo xtask image`: hadolint and compose checks, then the image built `FROM scratch` around the
//!   local binary and run read-only under podman (part of `test`).
//! - `cargo xtask bench-http`: HTTP load with `wrk`: plugwatch's invoke endpoint against a bare axum echo,
//!   idle and loaded RSS, and the overview endpoint with 1,000 plugins (release build, loopback only).
//! - `cargo xtask bench-backup`: what a backup costs a server with 30 days of 100 plugins' history: invoke
//!   throughput and p99 with and without a backup running, archive size, backup time, CLI and in-place
//!   restore times (release build, loopback only).
//! - `cargo xtask bench-cluster`: one replica against three on one PostgreSQL (throughput in alternating
//!   rounds, the merged telemetry against what was answered, PostgreSQL rows and WAL per flush; release
//!   build, loopback only).
//! - `cargo xtask load [--duration SECS] [--users N] [--release] [--check] …`: the restaurant mix in Locust
//!   against a demo server, and the performance report in `target/load` (`--check`, short, is part of `test`).
//! - `cargo xtask bench-dashboard`: the dashboard's figures on a server with 1,000 plugins (overview API,
//!   Chromium's time to the table drawn, bytes loaded, server CPU with 0, 1 and 10 live pages).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod bench_backup;
mod bench_cluster;
mod bench_http;
mod browser;
mod deploy;
mod image;
mod load;
mod manifests;
mod procfs;
mod prometheus;
mod schemathesis;
mod server;
mod services;
mod tidy;
mod wrk;

/// The example plugins whose built components are committed (the demo loads them).
const EXAMPLES: &[&str] = &["promo-discount", "loyalty-points"];

fn main() -> std::process::ExitCode {
    match dispatch() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nxtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("plugins") => plugins(&root, args.iter().any(|a| a == "--bless")),
        Some("tools") => tools(&root),
        Some("bench") => run(cargo().args(["bench", "--workspace"]).args(&args[1..])),
        Some("bench-http") => bench_http::run(&root),
        Some("bench-backup") => bench_backup::run(&root),
        Some("bench-cluster") => bench_cluster::run(&root),
        Some("bench-dashboard") => browser::bench(&root),
        Some("schemathesis") => schemathesis::run(&root),
        Some("browser") => browser::run(&root),
        Some("image") => image::run(&root),
        Some("prometheus") => prometheus::run(&root),
        Some("manifests") if args.get(1).is_some_and(|a| a == "--rendered") => {
            manifests::check_rendered(&root, Path::new(args.get(2).context("--rendered FILE")?))
        }
        Some("manifests") => manifests::run(&root),
        Some("load") => load::main(&root, &args[1..]),
        Some("deploy") => deploy::run(&root, &args[1..]),
        Some("deploy-smoke") => deploy::smoke_check(&root),
        Some("postgres-tests") => postgres_tests(),
        _ => {
            eprintln!(
                "usage: cargo xtask <test | plugins [--bless] | tools | bench [criterion args] | bench-http | bench-backup | bench-cluster | bench-dashboard | schemathesis | browser | image | prometheus | manifests [--rendered FILE] | postgres-tests | load [--duration SECS] [--users N] [--spawn-rate R] [--release | --binary PATH] [--check] [--out DIR] | deploy --environment staging|production [--image-tag T] [--dry-run] [--config FILE] [--repository R] [--url U] [--token-file F] | deploy-smoke>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// Everything CI checks, in order from cheapest to dearest.
fn test(root: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    step("formatting", cargo().args(["fmt", "--all", "--", "--check"]))?;
    tools(root)?;
    manifests::run(root)?;
    step(
        "cargo deny (licenses, bans, sources)",
        Command::new(root.join("target/tools/bin/cargo-deny")).args([
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ]),
    )?;
    plugins(root, false)?;
    step("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    services::ensure()?;
    // `--all-targets` also runs each benchmark once, in test mode, so they cannot rot.
    step(
        "tests",
        // The cluster tests need PostgreSQL: `postgres_tests` runs them. This pass is SQLite's even where
        // `PLUGWATCH_TEST_POSTGRES` names the server for that one.
        cargo()
            .args(["test", "--workspace", "--all-targets", "--locked"])
            .env("PLUGWATCH_TEST_CLUSTER", "later")
            .env_remove(services::TEST_POSTGRES),
    )?;
    postgres_tests()?;
    step("doc tests", cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
    schemathesis::run(root)?;
    browser::run(root)?;
    load::run(root, &load::Options::check(root))?;
    prometheus::run(root)?;
    deploy::smoke_check(root)?;
    image::run(root)?;
    let stamp = passed_stamp(root)?;
    println!("\nxtask: all checks passed in {:.0} s ({} written)", started.elapsed().as_secs_f64(), stamp.display());
    Ok(())
}

/// Writes `target/ci/passed/<commit>`, the deploy tool's proof that the tests passed for this commit.
fn passed_stamp(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(root).output()?;
    if !out.status.success() {
        bail!("git rev-parse HEAD failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let dir = root.join("target/ci/passed");
    std::fs::create_dir_all(&dir)?;
    let stamp = dir.join(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::write(&stamp, "cargo xtask test passed\n")?;
    Ok(stamp)
}

/// The test suites written for both databases (the store's and the API's) once more, on PostgreSQL, and
/// the cluster tests (several replicas on one PostgreSQL): the binaries the tests step built, run with
/// `PLUGWATCH_TEST_POSTGRES` set (nothing is rebuilt).
fn postgres_tests() -> anyhow::Result<()> {
    // (the crate's directory, the test target)
    const SUITES: &[(&str, &str)] = &[
        ("crates/store", "store"),
        ("crates/store", "alerts"),
        ("crates/server", "api"),
        ("crates/plugwatch", "cluster"),
    ];
    // Tests of what only SQLite has: its files (a secret is in none of them, WAL in use) and the backups
    // that archive them (which a server on PostgreSQL refuses, see the README).
    const SQLITE_ONLY: &[&str] =
        &["backups::", "secrets::a_secret_reaches_the_plugin_but_never_the_api_or_the_database_files"];
    services::drop_test_databases()?;
    let built = cargo()
        .args(["test", "--workspace", "--all-targets", "--locked", "--no-run", "--message-format=json"])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !built.status.success() {
        bail!("cargo test --no-run failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&built.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(manifest), Some(target), Some(executable)) =
            (message["manifest_path"].as_str(), message["target"]["name"].as_str(), message["executable"].as_str())
        else {
            continue;
        };
        let is_test = message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        if is_test && SUITES.iter().any(|(dir, t)| *t == target && manifest.ends_with(&format!("{dir}/Cargo.toml"))) {
            found.push((target.to_owned(), executable.to_owned()));
        }
    }
    if found.len() != SUITES.len() {
        bail!("expected the test binaries {SUITES:?}, found {found:?}");
    }
    for (name, executable) in found {
        step(
            &format!("tests on PostgreSQL: {name}"),
            Command::new(executable)
                .args(SQLITE_ONLY.iter().flat_map(|test| ["--skip", test]))
                .env(services::TEST_POSTGRES, services::postgres_url()),
        )?;
    }
    services::drop_test_databases()
}

/// Installs componentize-py (pinned in requirements.txt) into target/tools/venv and componentize-js
/// (pinned in package-lock.json) into examples/plugins/node_modules, unless already installed from the
/// same pins; and the browser tests' tools (see `browser::tools`).
fn tools(root: &Path) -> anyhow::Result<()> {
    let plugins = root.join("examples/plugins");
    let venv = root.join("target/tools/venv");
    let requirements = std::fs::read(plugins.join("requirements.txt"))?;
    let stamp = venv.join(".installed-requirements");
    if std::fs::read(&stamp).ok().as_deref() != Some(&requirements[..]) {
        step("python venv", Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        step(
            "componentize-py",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(plugins.join("requirements.txt")),
        )?;
        std::fs::write(&stamp, &requirements)?;
    }
    let test_tools = std::fs::read(root.join("tests/requirements.txt"))?;
    let stamp = venv.join(".installed-test-requirements");
    if std::fs::read(&stamp).ok().as_deref() != Some(&test_tools[..]) {
        step(
            "test tools",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(root.join("tests/requirements.txt")),
        )?;
        std::fs::write(&stamp, &test_tools)?;
    }
    let lock = std::fs::read(plugins.join("package-lock.json"))?;
    let stamp = plugins.join("node_modules/.installed-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        step("componentize-js", Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&plugins))?;
        std::fs::write(&stamp, &lock)?;
    }
    cargo_deny(root)?;
    prometheus::tools(root)?;
    image::tools(root)?;
    browser::tools(root)
}

/// The cargo-deny release `cargo xtask test` and the deploy tool's pre-check run.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Installs cargo-deny (its own lock file, `--locked`) into target/tools/bin unless that version is there.
/// Built from source: about 4 minutes on two cores.
fn cargo_deny(root: &Path) -> anyhow::Result<()> {
    let tools = root.join("target/tools");
    let stamp = tools.join(".installed-cargo-deny");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(CARGO_DENY_VERSION)
        && tools.join("bin/cargo-deny").exists()
    {
        return Ok(());
    }
    step(
        "cargo-deny",
        cargo()
            .args(["install", "--locked", "--quiet", "--version", CARGO_DENY_VERSION, "cargo-deny", "--root"])
            .arg(&tools)
            // Its own build directory: the workspace's target holds plugwatch's build.
            .env("CARGO_TARGET_DIR", tools.join("cargo-deny-build")),
    )?;
    let _ = std::fs::remove_dir_all(tools.join("cargo-deny-build"));
    std::fs::write(&stamp, CARGO_DENY_VERSION)?;
    Ok(())
}

/// Builds every guest into target/plugins; with `bless`, copies the examples over their committed copies.
/// (The test `the_committed_example_plugins_match_a_fresh_build` fails while a committed copy is stale.)
fn plugins(root: &Path, bless: bool) -> anyhow::Result<()> {
    tools(root)?;
    let out = root.join("target/plugins");
    step("guest plugins", Command::new(root.join("examples/plugins/build-all.sh")).arg(&out))?;
    if bless {
        for name in EXAMPLES {
            let committed = root.join(format!("examples/plugins/{name}/{name}.wasm"));
            std::fs::copy(out.join(format!("{name}.wasm")), &committed)
                .with_context(|| format!("cannot update {}", committed.display()))?;
            println!("xtask: updated {}", committed.display());
        }
    }
    Ok(())
}

/// Runs one named step and says how long it took (CI's log shows where the time goes).
pub(crate) fn step(name: &str, command: &mut Command) -> anyhow::Result<()> {
    println!("\nxtask: {name}");
    let started = std::time::Instant::now();
    let result = run(command).with_context(|| format!("step `{name}` failed"));
    println!("xtask: {name}: {:.1} s", started.elapsed().as_secs_f64());
    result
}

/// `cargo`, without the variables `cargo run` set for this process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`
/// and the like). Build scripts watch some of them (ring reruns when `CARGO_MANIFEST_DIR` changes), so
/// a build started from here with them would not be the build a plain `cargo build` made: it rebuilt
/// ring and everything above it, wasmtime's dependants included, in release.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(name, "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH" | "CARGO_CRATE_NAME" | "CARGO_BIN_NAME");
        if set_by_cargo_run {
            command.env_remove(name);
        }
    }
    command
}

pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}
