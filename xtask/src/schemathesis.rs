//! `cargo xtask schemathesis`: property-based API testing with schemathesis against the served OpenAPI
//! document, as an admin: no 5xx, and every response's status, content type, headers and body conform to
//! the document. Bounded in time; reports go to `target/reports/schemathesis`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

const ADDR: &str = "127.0.0.1:18610";
const ADMIN_PASSWORD: &str = "schemathesis admin password";

/// The checks this run enforces. Not enforced: whether schema-valid data is accepted (a random byte string
/// is a schema-valid upload but never a valid component) and whether schema-violating data is rejected
/// (values schemathesis cannot put in a URL are dropped, so a correct 200 is reported as a failure).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

pub fn run(root: &Path) -> anyhow::Result<()> {
    let work = root.join("target/schemathesis");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // The same selection as the test step, so that its build is reused: `-p plugwatch` alone resolves the
    // dependencies' features differently and rebuilt wasmtime (about ten minutes of CI).
    crate::run(crate::cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    let _server = crate::server::Killed(
        Command::new(root.join("target/debug/plugwatch"))
            .args(["serve", "--listen", ADDR, "--data-dir"])
            .arg(work.join("data"))
            .env("PLUGWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PLUGWATCH_LOG", "warn")
            .stderr(std::fs::File::create(work.join("server.log"))?)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start plugwatch serve")?,
    );
    crate::server::wait_for(&format!("http://{ADDR}/healthz"), "GET")?;
    let token = crate::server::admin_token(ADDR, ADMIN_PASSWORD, &work)?;
    let reports = root.join("target/reports/schemathesis");
    std::fs::create_dir_all(&reports)?;
    crate::step(
        "schemathesis",
        Command::new(root.join("target/tools/venv/bin/schemathesis"))
            .arg("run")
            .arg(format!("http://{ADDR}/api/v1/openapi.json"))
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", CHECKS])
            // Revoking tokens is covered by the Rust tests; here it would revoke the run's own token.
            .args(["--exclude-path", "/api/v1/tokens/{id}"])
            // So is restoring: following the link from a backup it takes, a restore here restarts the server
            // under the run (and puts back an older state).
            .args(["--exclude-path", "/api/v1/backups/{id}/restore"])
            .args(["--max-examples", "20", "--seed", "1", "--max-time", "240", "--workers", "2"])
            .args(["--report", "junit", "--report-dir"])
            .arg(&reports)
            .env("NO_COLOR", "1"),
    )
}
