//! `cargo xtask manifests`: static checks of the delivery files, without a cluster. Renders each Kubernetes
//! overlay with `kubectl kustomize`, validates the objects with `kubernetes-validate` (built-in kinds) and
//! with checks of its own (the CRDs, which it has no schema for), runs `checkov` on them, lints every
//! committed YAML file with `yamllint`, validates the CI workflow against GitHub's schema with
//! `check-jsonschema`, and asserts plugwatch's own invariants: the TOML in the ConfigMap holds only real
//! settings, the grace period outlasts the drain, the probes hit routes that exist and need no credentials,
//! SQLite runs one pod, PostgreSQL several with a disruption budget, and no Secret value is committed.
//!
//! Every check runs; then every problem is reported, each naming the file or object and what is wrong.
//! `--rendered FILE` runs only kubernetes-validate and checkov on one rendered file (the deploy tool's
//! pre-check, `deploy.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where every object goes.
const NAMESPACE: &str = "restaurant-system";
const OVERLAYS: &[&str] = &["staging", "production"];
/// The oldest Kubernetes the manifests need (the preStop `sleep` action is on by default from 1.30) and the
/// newest that kubernetes-validate bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.30", "1.37"];
/// Custom resources: kubernetes-validate has no schema for them, so `check_external_secret` and
/// `check_service_monitor` check their required fields here. Any other kind without a schema fails.
const CRD_KINDS: &[&str] = &["ExternalSecret", "ServiceMonitor"];
/// `PLUGWATCH_*` variables that are not `serve` settings.
const OTHER_VARIABLES: &[&str] = &["PLUGWATCH_LOG"];
/// Settings that hold secrets: never in a ConfigMap, never a literal `value`.
const SECRET_SETTINGS: &[&str] = &["admin_password", "secret_key", "database_url"];
/// The smallest startup budget (failureThreshold × periodSeconds): a first start compiles Python and
/// JavaScript plugins, which takes minutes.
const MIN_STARTUP_SECS: i64 = 300;

pub fn run(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let tools = Tools::find(root)?;
    let out = root.join("target/manifests");
    std::fs::create_dir_all(&out)?;
    let source = Source::read(root)?;
    let mut problems = Vec::new();

    lint_yaml(root, &tools, &mut problems)?;
    check_workflow(root, &tools, &mut problems)?;
    for overlay in OVERLAYS {
        let dir = root.join("deploy/kubernetes/overlays").join(overlay);
        let rendered = out.join(format!("{overlay}.yaml"));
        let output =
            timed(&format!("kubectl kustomize {overlay}"), Command::new("kubectl").arg("kustomize").arg(&dir))?;
        if !output.status.success() {
            problems.push(format!("{overlay}: `kubectl kustomize` failed:\n{}", output.stderr));
            continue;
        }
        std::fs::write(&rendered, &output.stdout)?;
        let objects = tools.yaml_documents(&rendered)?;
        let before = problems.len();
        validate_rendered(overlay, &rendered, &tools, &mut problems)?;
        Overlay { name: overlay, dir: &dir, objects: &objects, source: &source, problems: &mut problems }.check();
        println!(
            "xtask: manifests: {overlay}: {} objects ({}), {} problem(s); rendered to {}",
            objects.len(),
            objects.iter().map(kind).collect::<Vec<_>>().join(", "),
            problems.len() - before,
            rendered.display()
        );
    }
    println!("xtask: manifests: {:.1} s", started.elapsed().as_secs_f64());
    if !problems.is_empty() {
        bail!("{} problem(s) in the delivery files:\n  - {}", problems.len(), problems.join("\n  - "));
    }
    println!("xtask: manifests: every check passed");
    Ok(())
}

/// `cargo xtask manifests --rendered FILE`: kubernetes-validate and checkov on one rendered file, as for
/// each overlay above (the deploy tool's pre-check on what it is about to apply).
pub fn check_rendered(root: &Path, rendered: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let tools = Tools::find(root)?;
    let mut problems = Vec::new();
    let label = rendered.display().to_string();
    validate_rendered(&label, rendered, &tools, &mut problems)?;
    println!("xtask: manifests: {label}: {:.1} s", started.elapsed().as_secs_f64());
    if !problems.is_empty() {
        bail!("{} problem(s) in {label}:\n  - {}", problems.len(), problems.join("\n  - "));
    }
    println!("xtask: manifests: {label}: kubernetes-validate and checkov passed");
    Ok(())
}

/// The schema checks (every kind without a schema must be one checked here) and checkov.
fn validate_rendered(label: &str, rendered: &Path, tools: &Tools, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let unchecked = validate_schemas(label, rendered, tools, problems)?;
    for kind in unchecked {
        if !CRD_KINDS.contains(&kind.as_str()) {
            problems.push(format!(
                "{label}: kubernetes-validate has no schema for kind {kind}, and manifests.rs has no check for it"
            ));
        }
    }
    run_checkov(label, rendered, tools, problems)
}

/// The checkers: kubectl from PATH, the Python ones from the tools venv (pins in tests/requirements.txt).
struct Tools {
    venv: PathBuf,
}

impl Tools {
    fn find(root: &Path) -> anyhow::Result<Tools> {
        let venv = root.join("target/tools/venv/bin");
        for tool in ["python", "kubernetes-validate", "checkov", "yamllint", "check-jsonschema"] {
            if !venv.join(tool).exists() {
                bail!(
                    "{} is missing: run `cargo xtask tools` (it installs tests/requirements.txt into target/tools/venv)",
                    venv.join(tool).display()
                );
            }
        }
        if Command::new("kubectl").args(["version", "--client"]).output().is_err() {
            bail!("`kubectl` is not on PATH: the overlays are rendered with `kubectl kustomize`");
        }
        Ok(Tools { venv })
    }

    fn command(&self, tool: &str) -> Command {
        Command::new(self.venv.join(tool))
    }

    /// The documents of a YAML file as JSON values (PyYAML, which yamllint and checkov bring, parses them).
    fn yaml_documents(&self, path: &Path) -> anyhow::Result<Vec<Value>> {
        let output = self
            .command("python")
            .args([
                "-c",
                "import json, sys, yaml\n\
                 docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                 json.dump(docs, sys.stdout)",
            ])
            .arg(path)
            .output()?;
        if !output.status.success() {
            bail!("cannot parse {} as YAML: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        }
        match serde_json::from_slice(&output.stdout)? {
            Value::Array(docs) => Ok(docs),
            _ => bail!("{}: expected a list of documents", path.display()),
        }
    }
}

struct Captured {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion, capturing its output, and says how long it took.
fn timed(name: &str, command: &mut Command) -> anyhow::Result<Captured> {
    let started = Instant::now();
    let output = command.output().with_context(|| format!("cannot start {command:?}"))?;
    println!("xtask: manifests: {name}: {:.1} s", started.elapsed().as_secs_f64());
    Ok(Captured {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// yamllint --strict (warnings fail too) on every YAML file git tracks or would track, with `.yamllint`.
fn lint_yaml(root: &Path, tools: &Tools, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let listed = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "--", "*.yml", "*.yaml", ".yamllint"])
        .current_dir(root)
        .output()?;
    if !listed.status.success() {
        bail!("`git ls-files` failed: {}", String::from_utf8_lossy(&listed.stderr));
    }
    let files: Vec<String> =
        String::from_utf8(listed.stdout)?.lines().filter(|f| root.join(f).exists()).map(str::to_owned).collect();
    if files.is_empty() {
        problems.push("yamllint: no YAML file found to lint".into());
        return Ok(());
    }
    let output = timed(
        &format!("yamllint ({} files)", files.len()),
        tools
            .command("yamllint")
            .args(["--strict", "--format", "parsable", "-c"])
            .arg(root.join(".yamllint"))
            .args(&files),
    )?;
    if !output.status.success() {
        problems.push(format!("yamllint:\n{}{}", output.stdout, output.stderr));
    }
    Ok(())
}

/// kubernetes-validate --strict (unknown fields fail) against each version; returns the kinds it had no
/// schema for.
fn validate_schemas(
    overlay: &str,
    rendered: &Path,
    tools: &Tools,
    problems: &mut Vec<String>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut unchecked = BTreeSet::new();
    for version in KUBERNETES_VERSIONS {
        let output = timed(
            &format!("kubernetes-validate {overlay} (Kubernetes {version})"),
            tools.command("kubernetes-validate").args(["--strict", "--quiet", "-k", version]).arg(rendered),
        )?;
        let text = format!("{}{}", output.stdout, output.stderr);
        for line in text.lines() {
            if let Some(rest) = line.split("Couldn't find schema for kind ").nth(1) {
                unchecked.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        if !output.status.success() {
            problems.push(format!("{overlay}: kubernetes-validate (Kubernetes {version}) failed:\n{text}"));
        }
    }
    if !unchecked.is_empty() {
        let kinds = unchecked.iter().cloned().collect::<Vec<_>>().join(", ");
        println!("xtask: manifests: {overlay}: kubernetes-validate has no schema for {kinds}: checked here instead");
    }
    Ok(unchecked)
}

/// checkov on the rendered objects: no failed check, and every skip (a `checkov.io/skipN` annotation) with
/// a reason.
fn run_checkov(overlay: &str, rendered: &Path, tools: &Tools, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let output = timed(
        &format!("checkov {overlay}"),
        tools
            .command("checkov")
            .args(["--skip-download", "--framework", "kubernetes", "--output", "json", "--file"])
            .arg(rendered),
    )?;
    let report: Value = match serde_json::from_str(&output.stdout) {
        Ok(report) => report,
        Err(error) => {
            problems.push(format!("{overlay}: checkov printed no JSON report ({error}):\n{}", output.stderr));
            return Ok(());
        }
    };
    // One framework gives one report; a list would mean more than was asked for.
    let reports = match &report {
        Value::Array(reports) => reports.clone(),
        other => vec![other.clone()],
    };
    let before = problems.len();
    let mut passed = 0;
    for report in &reports {
        let results = &report["results"];
        passed += results["passed_checks"].as_array().map_or(0, Vec::len);
        for failed in results["failed_checks"].as_array().into_iter().flatten() {
            problems.push(format!(
                "{overlay}: checkov {} failed for {}: {} (rendered lines {} of {})",
                str_at(failed, "check_id"),
                str_at(failed, "resource"),
                str_at(failed, "check_name"),
                failed["file_line_range"],
                rendered.display(),
            ));
        }
        for skipped in results["skipped_checks"].as_array().into_iter().flatten() {
            let reason = skipped["check_result"]["suppress_comment"].as_str().unwrap_or("").trim();
            if reason.len() < 20 {
                problems.push(format!(
                    "{overlay}: checkov {} is skipped for {} without a reason (`checkov.io/skipN: ID=why`)",
                    str_at(skipped, "check_id"),
                    str_at(skipped, "resource")
                ));
            } else {
                println!("xtask: manifests: {overlay}: checkov {} skipped: {reason}", str_at(skipped, "check_id"));
            }
        }
    }
    if passed == 0 {
        problems.push(format!("{overlay}: checkov passed no check at all: did it scan anything?\n{}", output.stderr));
    }
    if !output.status.success() && problems.len() == before {
        problems.push(format!("{overlay}: checkov exited with {}:\n{}", output.status, output.stderr));
    }
    Ok(())
}

/// The CI workflow: GitHub's schema (check-jsonschema bundles it), then what this project needs of it.
fn check_workflow(root: &Path, tools: &Tools, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let path = root.join(".github/workflows/ci.yml");
    let output = timed(
        "check-jsonschema ci.yml",
        tools.command("check-jsonschema").args(["--builtin-schema", "vendor.github-workflows"]).arg(&path),
    )?;
    if !output.status.success() {
        problems.push(format!("ci.yml does not match GitHub's workflow schema:\n{}{}", output.stdout, output.stderr));
    }
    let workflow = tools.yaml_documents(&path)?.into_iter().next().unwrap_or(Value::Null);
    let mut problem = |message: String| problems.push(format!("ci.yml: {message}"));
    // YAML 1.1 (PyYAML) reads the key `on` as the boolean true.
    let on = if workflow.get("on").is_some() { &workflow["on"] } else { &workflow["true"] };
    for event in ["push", "pull_request"] {
        if on.get(event).is_none() && on.as_array().is_none_or(|events| !events.iter().any(|e| e == event)) {
            problem(format!("does not run on `{event}`"));
        }
    }
    let jobs: Vec<(&String, &Value)> = workflow["jobs"].as_object().map(|j| j.iter().collect()).unwrap_or_default();
    let runs = |job: &Value, needle: &str| {
        job["steps"].as_array().into_iter().flatten().any(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
    };
    match jobs.iter().find(|(_, job)| runs(job, ".ci/run")) {
        None => problem("no job runs `.ci/run`".into()),
        Some((name, job)) => {
            match job["timeout-minutes"].as_i64() {
                Some(minutes) if minutes <= 90 => {}
                other => {
                    problem(format!("job `{name}` needs `timeout-minutes` of at most 90 (CI's limit), not {other:?}"))
                }
            }
            for (service, image) in [("postgres", "postgres"), ("redis", "redis")] {
                if !job["services"][service]["image"].as_str().is_some_and(|i| i.starts_with(image)) {
                    problem(format!("job `{name}` has no `{service}` service container (image {image}:…)"));
                }
            }
            let cached: Vec<&str> = job["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache@")))
                .filter_map(|s| s["with"]["path"].as_str())
                .flat_map(str::lines)
                .map(str::trim)
                .collect();
            for path in ["~/.cargo/registry", "target/"] {
                if !cached.contains(&path) {
                    problem(format!("job `{name}` does not cache `{path}` with actions/cache"));
                }
            }
        }
    }
    if !jobs.iter().any(|(_, job)| runs(job, "cargo xtask manifests")) {
        problem("no job runs `cargo xtask manifests` (the static delivery checks)".into());
    }
    Ok(())
}

/// What the manifests are checked against, read from the server's source.
struct Source {
    /// Every struct of the configuration: name → (field → type).
    structs: BTreeMap<String, BTreeMap<String, String>>,
    /// `ENV_KEYS` in serve.rs: the top-level settings `PLUGWATCH_*` variables may set (matched as prefixes).
    env_keys: Vec<String>,
    /// `drain_timeout_secs` in `ServeConfig::default()`.
    default_drain_secs: i64,
    /// GET routes in auth.rs's rule table: path → answers without credentials.
    routes: BTreeMap<String, bool>,
    /// The metric families in crates/telemetry/METRICS.md.
    metrics: String,
}

const CONFIG_RS: &str = "crates/server/src/config.rs";

impl Source {
    fn read(root: &Path) -> anyhow::Result<Source> {
        let read = |path: &str| std::fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"));
        let config = read(CONFIG_RS)?;
        let mut structs = parse_structs(&config);
        for path in ["crates/backup/src/backups.rs", "crates/backup/src/s3.rs"] {
            structs.extend(parse_structs(&read(path)?));
        }
        for name in ["ServeConfig", "BackupConfig", "S3Config"] {
            if !structs.contains_key(name) {
                bail!("cannot find `pub struct {name}` in the configuration's source: update xtask/src/manifests.rs");
            }
        }
        let serve = read("crates/plugwatch/src/commands/serve.rs")?;
        let env_keys = serve
            .split("const ENV_KEYS: &[&str] = &[")
            .nth(1)
            .and_then(|rest| rest.split("];").next())
            .context("cannot find ENV_KEYS in serve.rs")?
            .split(',')
            .map(|k| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        let default_drain_secs = config
            .split("drain_timeout_secs: ")
            .filter_map(|rest| rest.split(',').next()?.trim().parse().ok())
            .next()
            .context("cannot find the default `drain_timeout_secs: N,` in config.rs")?;
        let auth = read("crates/server/src/auth.rs")?;
        let routes = auth
            .lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("rule(Method::GET, \"")?;
                let (path, rest) = rest.split_once('"')?;
                Some((path.to_owned(), rest.trim_start_matches(',').trim().starts_with("Public")))
            })
            .collect();
        Ok(Source { structs, env_keys, default_drain_secs, routes, metrics: read("crates/telemetry/METRICS.md")? })
    }

    /// The struct a setting's type names, if it is one of the configuration's (a TOML table).
    fn table_type(&self, ty: &str) -> Option<&BTreeMap<String, String>> {
        let ty = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')).unwrap_or(ty);
        self.structs.get(ty.rsplit("::").next().unwrap_or(ty))
    }

    /// Checks a TOML table against a struct's fields (names and value types), recursively.
    fn check_toml(&self, table: &toml::Table, fields: &BTreeMap<String, String>, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            let Some(ty) = fields.get(key) else {
                out.push(format!(
                    "`{path}` is not a setting (the settings here: {})",
                    fields.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            match (value, self.table_type(ty)) {
                (toml::Value::Table(inner), Some(nested)) => self.check_toml(inner, nested, &format!("{path}."), out),
                (toml::Value::Table(_), None) => out.push(format!("`{path}` is a {ty}, not a table")),
                (_, Some(_)) => out.push(format!("`{path}` is a table of settings, not a value")),
                (value, None) => {
                    if let Some(problem) = value_problem(ty, value) {
                        out.push(format!("`{path}` ({ty}): {problem}"));
                    }
                }
            }
        }
    }

    /// The setting a `PLUGWATCH_*` variable sets, as `serve` reads it: None when it sets none.
    fn env_setting(&self, variable: &str) -> Result<String, String> {
        let key = variable.trim_start_matches("PLUGWATCH_").to_ascii_lowercase();
        if !self.env_keys.iter().any(|k| key.starts_with(k.as_str())) {
            return Err(format!("serve.rs's ENV_KEYS filters `{variable}` out: it would be ignored"));
        }
        let mut fields = &self.structs["ServeConfig"];
        let parts: Vec<&str> = key.split("__").collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(ty) = fields.get(*part) else {
                return Err(format!("`{variable}` names `{}`, which is not a setting", parts[..=i].join(".")));
            };
            match self.table_type(ty) {
                Some(nested) if i + 1 < parts.len() => fields = nested,
                Some(_) => return Err(format!("`{variable}` names a table of settings, not a value")),
                None if i + 1 < parts.len() => return Err(format!("`{variable}`: `{part}` is a {ty}, not a table")),
                None => {}
            }
        }
        Ok(parts.join("."))
    }
}

/// `pub struct Name { pub field: Type, … }` in a Rust source: name → (field → type).
fn parse_structs(source: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut structs = BTreeMap::new();
    let mut current: Option<(String, BTreeMap<String, String>)> = None;
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ").and_then(|r| r.strip_suffix(" {")) {
            current = Some((rest.trim().to_owned(), BTreeMap::new()));
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                structs.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut()
            && let Some((field, ty)) = line.strip_prefix("pub ").and_then(|r| r.split_once(": "))
        {
            fields.insert(field.trim().to_owned(), ty.trim().trim_end_matches(',').to_owned());
        }
    }
    structs
}

/// Whether a TOML value can deserialize as the Rust type (as far as the type's name says).
fn value_problem(ty: &str, value: &toml::Value) -> Option<String> {
    let ty = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')).unwrap_or(ty);
    let ok = match ty {
        "bool" => value.is_bool(),
        "u64" | "u32" | "usize" => value.as_integer().is_some_and(|v| v >= 0),
        "i32" | "i64" => value.is_integer(),
        "String" | "PathBuf" | "Secret" => value.is_str(),
        "SocketAddr" => value.as_str().is_some_and(|v| v.parse::<std::net::SocketAddr>().is_ok()),
        "LogFormat" => matches!(value.as_str(), Some("text" | "json")),
        _ => return None,
    };
    (!ok).then(|| format!("`{}` is not a valid {ty}", scalar(value)))
}

/// A TOML value as text, as an environment variable would spell it.
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn kind(object: &Value) -> String {
    object["kind"].as_str().unwrap_or("?").to_owned()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("?")
}

/// Whether every `matchLabels` pair is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// One rendered overlay and the checks of its objects.
struct Overlay<'a> {
    name: &'a str,
    dir: &'a Path,
    objects: &'a [Value],
    source: &'a Source,
    problems: &'a mut Vec<String>,
}

impl<'a> Overlay<'a> {
    fn problem(&mut self, message: impl std::fmt::Display) {
        self.problems.push(format!("{}: {message}", self.name));
    }

    fn of_kind(&self, wanted: &str) -> Vec<&'a Value> {
        self.objects.iter().filter(|o| o["kind"] == wanted).collect()
    }

    fn check(mut self) {
        for object in self.objects {
            let (kind, name) = (kind(object), name(object));
            if kind == "Namespace" {
                if name != NAMESPACE {
                    self.problem(format!("Namespace {name}: expected only {NAMESPACE}"));
                }
            } else if object["metadata"]["namespace"] != NAMESPACE {
                self.problem(format!(
                    "{kind} {name} is not in namespace {NAMESPACE} (set `namespace:` in the overlay)"
                ));
            }
            if kind == "Secret" && (object.get("data").is_some() || object.get("stringData").is_some()) {
                self.problem(format!(
                    "Secret {name} carries data: commit references only (ExternalSecret, SealedSecret)"
                ));
            }
        }
        let deployments = self.of_kind("Deployment");
        let [deployment] = deployments[..] else {
            return self.problem(format!("expected one Deployment, found {}", deployments.len()));
        };
        self.check_deployment(deployment);
        for secret in self.of_kind("ExternalSecret") {
            self.check_external_secret(secret);
        }
        for monitor in self.of_kind("ServiceMonitor") {
            self.check_service_monitor(monitor);
        }
    }

    fn check_deployment(&mut self, deployment: &Value) {
        let pod = &deployment["spec"]["template"]["spec"];
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let Some(container) = pod["containers"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "plugwatch"))
        else {
            return self.problem("the Deployment has no container named plugwatch");
        };

        // The image: a tag or digest set by the overlay.
        let image = container["image"].as_str().unwrap_or("");
        let tagged = image.contains('@') || image.rsplit('/').next().is_some_and(|last| last.contains(':'));
        if !tagged || image.ends_with(":latest") {
            self.problem(format!("image `{image}` needs a tag or digest (`images:` in the overlay), not latest/none"));
        }

        // The configuration file: --config PATH, mounted from a ConfigMap of this overlay.
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(container["command"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let config_path = args.iter().position(|a| *a == "--config").and_then(|i| args.get(i + 1)).copied();
        let Some(config_path) = config_path else {
            return self.problem("the container's args have no `--config FILE`");
        };
        let Some(toml_text) = self.mounted_config(pod, container, config_path) else {
            return;
        };
        let table = match toml_text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(error) => return self.problem(format!("{config_path} is not valid TOML: {error}")),
        };
        let mut found = Vec::new();
        self.source.check_toml(&table, &self.source.structs["ServeConfig"], "", &mut found);
        for problem in found {
            self.problem(format!("{config_path} (checked against {CONFIG_RS}): {problem}"));
        }
        for secret in SECRET_SETTINGS {
            if table.contains_key(*secret) {
                self.problem(format!("{config_path} sets the secret `{secret}`: it belongs in a Secret"));
            }
        }

        // The environment: every PLUGWATCH_* variable a real setting, secrets from Secrets.
        let env: Vec<&Value> = container["env"].as_array().map(|e| e.iter().collect()).unwrap_or_default();
        let mut env_settings = BTreeMap::new();
        for var in &env {
            let variable = var["name"].as_str().unwrap_or("");
            if !variable.starts_with("PLUGWATCH_") || OTHER_VARIABLES.contains(&variable) {
                continue;
            }
            let key = variable.trim_start_matches("PLUGWATCH_").to_ascii_lowercase();
            let top = key.split("__").next().unwrap_or("").to_owned();
            let setting = match self.source.env_setting(variable) {
                Ok(setting) => setting,
                Err(problem) => {
                    self.problem(format!("container env: {problem}"));
                    continue;
                }
            };
            if SECRET_SETTINGS.contains(&top.as_str()) && var["valueFrom"]["secretKeyRef"].is_null() {
                self.problem(format!("`{variable}` is a secret: take it from a Secret (valueFrom.secretKeyRef)"));
            }
            env_settings.insert(setting, var["value"].as_str().map(str::to_owned));
        }
        // A setting's effective value, as `serve` sees it: the environment over the file.
        let literal = |setting: &str| -> Option<String> {
            match env_settings.get(setting) {
                Some(value) => value.clone(),
                None => table.get(setting).map(scalar),
            }
        };
        let postgres = env_settings.contains_key("database_url");

        // Listening where the Service and the probes look.
        let ports: Vec<&Value> = container["ports"].as_array().map(|p| p.iter().collect()).unwrap_or_default();
        let listen = literal("listen").unwrap_or_else(|| "127.0.0.1:8080".into());
        match listen.parse::<std::net::SocketAddr>() {
            Err(_) => self.problem(format!("`listen` = `{listen}` is not an address")),
            Ok(addr) if addr.ip().is_loopback() => {
                self.problem(format!("`listen` = `{listen}` is loopback: neither probes nor the Service reach it"))
            }
            Ok(addr) => {
                if !ports.iter().any(|p| p["containerPort"].as_u64() == Some(u64::from(addr.port()))) {
                    self.problem(format!("`listen` port {} is not a containerPort", addr.port()));
                }
            }
        }
        let port_named = |port: &Value| -> bool {
            ports
                .iter()
                .any(|p| (port.is_string() && p["name"] == *port) || (port.is_number() && p["containerPort"] == *port))
        };

        // Probes: the routes exist and answer without credentials (the kubelet sends none).
        for (probe, wanted) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "")] {
            let http = &container[probe]["httpGet"];
            let Some(path) = http["path"].as_str() else {
                self.problem(format!("the container has no {probe} with httpGet"));
                continue;
            };
            if !wanted.is_empty() && path != wanted {
                self.problem(format!("{probe} checks {path}, expected {wanted}"));
            }
            match self.source.routes.get(path) {
                None => {
                    self.problem(format!("{probe} checks {path}, which is no GET route in crates/server/src/auth.rs"))
                }
                Some(false) => {
                    self.problem(format!("{probe} checks {path}, which needs credentials the kubelet lacks"))
                }
                Some(true) => {}
            }
            if !port_named(&http["port"]) {
                self.problem(format!("{probe} uses port {}, which the container does not declare", http["port"]));
            }
        }
        let startup = &container["startupProbe"];
        let budget =
            startup["failureThreshold"].as_i64().unwrap_or(3) * startup["periodSeconds"].as_i64().unwrap_or(10);
        if budget < MIN_STARTUP_SECS {
            self.problem(format!(
                "the startupProbe allows {budget} s; a first start compiles plugins: allow at least {MIN_STARTUP_SECS} s"
            ));
        }

        // Shutdown: the grace period outlasts the preStop pause plus the server's drain.
        let drain = match literal("drain_timeout_secs") {
            None => {
                self.problem(format!(
                    "`drain_timeout_secs` is not set explicitly (default {}): set it, since the grace period derives from it",
                    self.source.default_drain_secs
                ));
                self.source.default_drain_secs
            }
            Some(value) => value.parse().unwrap_or_else(|_| {
                self.problem(format!("`drain_timeout_secs` = `{value}` is not a number"));
                0
            }),
        };
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap_or(0);
        let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
        if grace <= pre_stop + drain {
            self.problem(format!(
                "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s + drain_timeout_secs {drain}: \
                 the kubelet would SIGKILL requests still draining"
            ));
        } else {
            println!("xtask: manifests: {}: grace {grace} s > preStop {pre_stop} s + drain {drain} s", self.name);
        }

        // Security context (checkov checks these too; here they are the brief's, spelled out).
        let sc = &container["securityContext"];
        let psc = &pod["securityContext"];
        let either = |key: &str| if sc[key].is_null() { &psc[key] } else { &sc[key] };
        if either("runAsNonRoot") != true {
            self.problem("securityContext: runAsNonRoot must be true");
        }
        if either("runAsUser").as_i64().is_none_or(|uid| uid <= 0) {
            self.problem(
                "securityContext: runAsUser must be a numeric non-root UID (runAsNonRoot cannot check a name)",
            );
        }
        if sc["readOnlyRootFilesystem"] != true {
            self.problem("securityContext: readOnlyRootFilesystem must be true");
        }
        if sc["allowPrivilegeEscalation"] != false {
            self.problem("securityContext: allowPrivilegeEscalation must be false");
        }
        if !sc["capabilities"]["drop"].as_array().is_some_and(|d| d.iter().any(|c| c == "ALL")) {
            self.problem("securityContext: capabilities must drop ALL");
        }
        if either("seccompProfile")["type"] != "RuntimeDefault" {
            self.problem("securityContext: seccompProfile must be RuntimeDefault");
        }
        for (kind, resource) in [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")] {
            if container["resources"][kind][resource].is_null() {
                self.problem(format!("resources.{kind}.{resource} is not set"));
            }
        }

        // Writable places on a read-only root: the data directory must be a writable volume.
        let mounts: Vec<&Value> = container["volumeMounts"].as_array().map(|m| m.iter().collect()).unwrap_or_default();
        let volume = |mount: &Value| -> Option<&Value> {
            pod["volumes"].as_array()?.iter().find(|v| v["name"] == mount["name"])
        };
        let data_dir = literal("data_dir").unwrap_or_else(|| "plugwatch-data".into());
        let data_mount = mounts.iter().find(|m| {
            m["readOnly"] != true && m["mountPath"].as_str().is_some_and(|p| Path::new(&data_dir).starts_with(p))
        });
        let data_volume = data_mount.and_then(|m| volume(m));
        if data_volume.is_none() {
            self.problem(format!("data_dir `{data_dir}` is on no writable volume (the root filesystem is read-only)"));
        }

        // Secrets: the key file is mounted from a Secret; every key referenced is one the overlay provides
        // (but a reference marked `optional`, e.g. Redis's URL, which an operator adds when they want it).
        let mut secret_keys: BTreeSet<(String, String)> = BTreeSet::new();
        for var in &env {
            let r = &var["valueFrom"]["secretKeyRef"];
            if r["optional"] == true {
                continue;
            }
            if let (Some(n), Some(k)) = (r["name"].as_str(), r["key"].as_str()) {
                secret_keys.insert((n.to_owned(), k.to_owned()));
            }
        }
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(n) = v["secret"]["secretName"].as_str() {
                for item in v["secret"]["items"].as_array().into_iter().flatten() {
                    secret_keys.insert((n.to_owned(), item["key"].as_str().unwrap_or("?").to_owned()));
                }
            }
        }
        if let Some(file) = literal("secret_key_file") {
            let mounted = mounts.iter().any(|m| {
                let dir = m["mountPath"].as_str().unwrap_or("/nonexistent");
                let from_secret = volume(m).map(|v| &v["secret"]).filter(|s| !s.is_null());
                from_secret.is_some_and(|s| {
                    s["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|i| Path::new(dir).join(str_at(i, "path")) == Path::new(&file))
                })
            });
            if !mounted {
                self.problem(format!("secret_key_file `{file}` is not a mounted item of a Secret volume"));
            }
        }
        for monitor in self.of_kind("ServiceMonitor") {
            for endpoint in monitor["spec"]["endpoints"].as_array().into_iter().flatten() {
                let c = &endpoint["authorization"]["credentials"];
                if let (Some(n), Some(k)) = (c["name"].as_str(), c["key"].as_str()) {
                    secret_keys.insert((n.to_owned(), k.to_owned()));
                }
            }
        }
        let externals = self.of_kind("ExternalSecret");
        for (secret, key) in &secret_keys {
            match externals.iter().find(|e| e["spec"]["target"]["name"] == secret.as_str()) {
                Some(external) => {
                    let provided = external["spec"]["data"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| d["secretKey"] == key.as_str());
                    if !provided {
                        self.problem(format!(
                            "ExternalSecret {} does not provide key `{key}` of Secret {secret}",
                            name(external)
                        ));
                    }
                }
                None => println!(
                    "xtask: manifests: {}: Secret {secret} (key `{key}`) is expected to exist in the cluster, created by hand",
                    self.name
                ),
            }
        }

        // Service: selects these pods, on a port the container has.
        for service in self.of_kind("Service") {
            if !selects(&service["spec"]["selector"], labels) {
                self.problem(format!("Service {} does not select the Deployment's pods", name(service)));
            }
            for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                if !port_named(&port["targetPort"]) {
                    self.problem(format!(
                        "Service {} targets port {}, not a container port",
                        name(service),
                        port["targetPort"]
                    ));
                }
            }
        }

        // Replicas: SQLite is single-writer; PostgreSQL runs several, protected from disruptions.
        let replicas = deployment["spec"]["replicas"].as_i64();
        let hpas: Vec<&Value> = self
            .of_kind("HorizontalPodAutoscaler")
            .into_iter()
            .filter(|h| {
                h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
                    && h["spec"]["scaleTargetRef"]["name"] == name(deployment)
            })
            .collect();
        let strategy = deployment["spec"]["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
        if self.name == "production" && !postgres {
            self.problem("production has no PLUGWATCH_DATABASE_URL: it must run on PostgreSQL");
        }
        if !postgres {
            if replicas != Some(1) {
                self.problem(format!("SQLite is single-writer: replicas must be exactly 1, not {replicas:?}"));
            }
            if strategy != "Recreate" {
                self.problem(format!(
                    "SQLite is single-writer: strategy must be Recreate, not {strategy} (two pods would overlap)"
                ));
            }
            if !hpas.is_empty() {
                self.problem("SQLite is single-writer: no HorizontalPodAutoscaler may scale it");
            }
            if data_volume.is_none_or(|v| v["persistentVolumeClaim"]["claimName"].is_null()) {
                self.problem(
                    "SQLite: the data directory must be on a PersistentVolumeClaim, or the database dies with the pod",
                );
            } else if let Some(claim) = data_volume.and_then(|v| v["persistentVolumeClaim"]["claimName"].as_str())
                && !self.of_kind("PersistentVolumeClaim").iter().any(|p| name(p) == claim)
            {
                self.problem(format!("the data volume claims {claim}, which the overlay does not define"));
            }
        } else {
            let [hpa] = hpas[..] else {
                return self.problem(format!(
                    "PostgreSQL: expected one HorizontalPodAutoscaler for the Deployment, found {}",
                    hpas.len()
                ));
            };
            let min = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
            if min < 2 {
                self.problem(format!("HPA minReplicas is {min}: production needs at least 2"));
            }
            if hpa["spec"]["maxReplicas"].as_i64().unwrap_or(0) < min {
                self.problem("HPA maxReplicas is below minReplicas");
            }
            if let Some(replicas) = replicas {
                self.problem(format!(
                    "the HPA owns the replica count: remove spec.replicas ({replicas}), which each apply would reset"
                ));
            }
            if strategy == "Recreate" {
                self.problem("several replicas should roll (RollingUpdate), not Recreate (an outage per deploy)");
            }
            let pdbs: Vec<&Value> = self
                .of_kind("PodDisruptionBudget")
                .into_iter()
                .filter(|p| selects(&p["spec"]["selector"]["matchLabels"], labels))
                .collect();
            match pdbs[..] {
                [pdb] => match (pdb["spec"]["minAvailable"].as_i64(), pdb["spec"]["maxUnavailable"].as_i64()) {
                    (Some(available), _) if available >= min => self.problem(format!(
                        "PodDisruptionBudget minAvailable {available} is not below minReplicas {min}: no node could ever be drained"
                    )),
                    (Some(_), _) => {}
                    (None, Some(unavailable)) if unavailable >= 1 => {}
                    _ => self.problem("the PodDisruptionBudget needs an integer minAvailable (or maxUnavailable of at least 1)"),
                },
                _ => self.problem(format!("expected one PodDisruptionBudget selecting the pods, found {}", pdbs.len())),
            }
            if pod["topologySpreadConstraints"].as_array().is_none_or(Vec::is_empty) {
                self.problem("several replicas need topologySpreadConstraints, or they may share one node");
            }
            self.check_custom_metrics(hpa);
        }
        self.check_ingress(labels);
        self.check_network_policies(labels, &ports, postgres);
    }

    /// The ConfigMap file the container reads as `path`.
    fn mounted_config(&mut self, pod: &Value, container: &Value, path: &str) -> Option<String> {
        let path = Path::new(path);
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let Some(relative) = mount["mountPath"].as_str().and_then(|dir| path.strip_prefix(dir).ok()) else {
                continue;
            };
            let volume = pod["volumes"].as_array()?.iter().find(|v| v["name"] == mount["name"])?;
            let Some(map_name) = volume["configMap"]["name"].as_str() else {
                self.problem(format!("{} is not mounted from a ConfigMap", path.display()));
                return None;
            };
            let Some(map) = self.of_kind("ConfigMap").into_iter().find(|m| name(m) == map_name) else {
                self.problem(format!("the Deployment mounts ConfigMap {map_name}, which the overlay does not define"));
                return None;
            };
            let key = relative.to_string_lossy();
            return match map["data"][key.as_ref()].as_str() {
                Some(text) => Some(text.to_owned()),
                None => {
                    self.problem(format!(
                        "ConfigMap {map_name} has no key `{key}` (the container reads {})",
                        path.display()
                    ));
                    None
                }
            };
        }
        self.problem(format!("--config {} is on no volume mount", path.display()));
        None
    }

    /// Each custom metric the HPA scales on has a prometheus-adapter rule here, from a metric plugwatch writes.
    fn check_custom_metrics(&mut self, hpa: &Value) {
        let names: Vec<String> = hpa["spec"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["pods"]["metric"]["name"].as_str().or(m["object"]["metric"]["name"].as_str()))
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return;
        }
        let rules_path = self.dir.join("prometheus-adapter-rules.yaml");
        let rules = std::fs::read_to_string(&rules_path).unwrap_or_default();
        for metric in names {
            // The rule's `as:` names the metric and its seriesQuery the family it is computed from.
            let Some(rule) = rules.split("- seriesQuery:").skip(1).find(|r| r.contains(&format!("as: {metric}")))
            else {
                self.problem(format!("the HPA scales on {metric}, which no rule in {} defines", rules_path.display()));
                continue;
            };
            let family = rule.trim().trim_start_matches('\'').split(['{', '\'']).next().unwrap_or("").trim().to_owned();
            if !self.source.metrics.contains(&format!("`{family}`")) {
                self.problem(format!(
                    "{metric} is computed from `{family}`, which crates/telemetry/METRICS.md does not list"
                ));
            }
        }
    }

    fn check_ingress(&mut self, labels: &Value) {
        let ingresses = self.of_kind("Ingress");
        if self.name == "production" && ingresses.is_empty() {
            self.problem("production has no Ingress");
        }
        let services = self.of_kind("Service");
        for ingress in ingresses {
            let n = name(ingress);
            if ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"].as_str().is_none_or(str::is_empty) {
                self.problem(format!("Ingress {n} has no cert-manager.io/cluster-issuer annotation"));
            }
            let tls_hosts: BTreeSet<&str> = ingress["spec"]["tls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["secretName"].is_string())
                .flat_map(|t| t["hosts"].as_array().into_iter().flatten().filter_map(Value::as_str))
                .collect();
            for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
                let host = rule["host"].as_str().unwrap_or("");
                if !tls_hosts.contains(host) {
                    self.problem(format!("Ingress {n}: host `{host}` is not covered by tls (with a secretName)"));
                }
                for path in rule["http"]["paths"].as_array().into_iter().flatten() {
                    let backend = &path["backend"]["service"];
                    let service = services.iter().find(|s| s["metadata"]["name"] == backend["name"]);
                    let port = if backend["port"]["name"].is_string() {
                        &backend["port"]["name"]
                    } else {
                        &backend["port"]["number"]
                    };
                    let has_port = service.is_some_and(|s| {
                        s["spec"]["ports"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|p| p["name"] == *port || p["port"] == *port)
                    });
                    if !has_port || !service.is_some_and(|s| selects(&s["spec"]["selector"], labels)) {
                        self.problem(format!(
                            "Ingress {n}: backend {} port {port} is no port of a Service for plugwatch",
                            backend["name"]
                        ));
                    }
                }
            }
        }
    }

    /// Some policy isolates the pods both ways; ingress only from named peers; egress to what plugwatch needs.
    fn check_network_policies(&mut self, labels: &Value, ports: &[&Value], postgres: bool) {
        let policies: Vec<&Value> = self
            .of_kind("NetworkPolicy")
            .into_iter()
            .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], labels))
            .collect();
        let types: BTreeSet<&str> = policies
            .iter()
            .flat_map(|p| p["spec"]["policyTypes"].as_array().into_iter().flatten().filter_map(Value::as_str))
            .collect();
        for wanted in ["Ingress", "Egress"] {
            if !types.contains(wanted) {
                self.problem(format!("no NetworkPolicy isolates the pods' {wanted}"));
            }
        }
        let mut egress_ports = BTreeSet::new();
        for policy in &policies {
            for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
                if rule["from"].as_array().is_none_or(Vec::is_empty) {
                    self.problem(format!(
                        "NetworkPolicy {}: an ingress rule without `from` admits everyone",
                        name(policy)
                    ));
                }
                for port in rule["ports"].as_array().into_iter().flatten() {
                    let known = ports.iter().any(|p| p["name"] == port["port"] || p["containerPort"] == port["port"]);
                    if !known {
                        self.problem(format!(
                            "NetworkPolicy {}: ingress port {} is not the container's",
                            name(policy),
                            port["port"]
                        ));
                    }
                }
            }
            for rule in policy["spec"]["egress"].as_array().into_iter().flatten() {
                for port in rule["ports"].as_array().into_iter().flatten() {
                    egress_ports.insert(port["port"].as_i64().unwrap_or(-1));
                }
            }
        }
        let mut needed = vec![(53, "DNS"), (443, "HTTPS alert channels"), (587, "SMTP alert channel")];
        if postgres {
            needed.push((5432, "PostgreSQL"));
        }
        for (port, what) in needed {
            if !egress_ports.contains(&port) {
                self.problem(format!("no NetworkPolicy lets the pods reach port {port} ({what})"));
            }
        }
    }

    /// ExternalSecret has no schema here: its required fields (external-secrets.io v1).
    fn check_external_secret(&mut self, object: &Value) {
        let n = name(object);
        let spec = &object["spec"];
        if !object["apiVersion"].as_str().is_some_and(|v| v.starts_with("external-secrets.io/")) {
            self.problem(format!(
                "ExternalSecret {n}: apiVersion {} is not external-secrets.io/…",
                object["apiVersion"]
            ));
        }
        if spec["secretStoreRef"]["name"].as_str().is_none_or(str::is_empty)
            || !matches!(spec["secretStoreRef"]["kind"].as_str(), Some("SecretStore" | "ClusterSecretStore"))
        {
            self.problem(format!(
                "ExternalSecret {n}: secretStoreRef needs a name and kind SecretStore or ClusterSecretStore"
            ));
        }
        if spec["target"]["name"].as_str().is_none_or(str::is_empty) {
            self.problem(format!("ExternalSecret {n}: spec.target.name (the Secret it makes) is missing"));
        }
        let data = spec["data"].as_array().map(Vec::as_slice).unwrap_or_default();
        if data.is_empty() && spec["dataFrom"].is_null() {
            self.problem(format!("ExternalSecret {n}: neither data nor dataFrom"));
        }
        for item in data {
            if item["secretKey"].as_str().is_none_or(str::is_empty)
                || item["remoteRef"]["key"].as_str().is_none_or(str::is_empty)
            {
                self.problem(format!("ExternalSecret {n}: every data item needs secretKey and remoteRef.key"));
            }
        }
    }

    /// ServiceMonitor has no schema here: its required fields, and /metrics scraped with credentials.
    fn check_service_monitor(&mut self, object: &Value) {
        let n = name(object);
        if object["apiVersion"] != "monitoring.coreos.com/v1" {
            self.problem(format!("ServiceMonitor {n}: apiVersion must be monitoring.coreos.com/v1"));
        }
        let services = self.of_kind("Service");
        let selected: Vec<&Value> = services
            .into_iter()
            .filter(|s| selects(&object["spec"]["selector"]["matchLabels"], &s["metadata"]["labels"]))
            .collect();
        if selected.is_empty() {
            self.problem(format!("ServiceMonitor {n}: spec.selector.matchLabels selects no Service of the overlay"));
        }
        let endpoints = object["spec"]["endpoints"].as_array().map(Vec::as_slice).unwrap_or_default();
        if endpoints.is_empty() {
            self.problem(format!("ServiceMonitor {n}: spec.endpoints is empty"));
        }
        for endpoint in endpoints {
            let port = &endpoint["port"];
            if !selected.iter().any(|s| s["spec"]["ports"].as_array().into_iter().flatten().any(|p| p["name"] == *port))
            {
                self.problem(format!("ServiceMonitor {n}: endpoint port {port} is no named port of the Service"));
            }
            let path = endpoint["path"].as_str().unwrap_or("/metrics");
            match self.source.routes.get(path) {
                None => {
                    self.problem(format!("ServiceMonitor {n}: {path} is no GET route in crates/server/src/auth.rs"))
                }
                Some(false) => {
                    let credentials = &endpoint["authorization"]["credentials"];
                    let token = &endpoint["bearerTokenSecret"];
                    let has = |v: &Value| {
                        v["name"].as_str().is_some_and(|s| !s.is_empty())
                            && v["key"].as_str().is_some_and(|s| !s.is_empty())
                    };
                    if !has(credentials) && !has(token) {
                        self.problem(format!("ServiceMonitor {n}: {path} needs a token: set authorization.credentials (Secret name and key)"));
                    }
                }
                Some(true) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Source::read(root).unwrap()
    }

    #[test]
    fn the_settings_are_read_from_the_servers_source() {
        let source = source();
        assert!(source.structs["ServeConfig"].contains_key("drain_timeout_secs"));
        assert_eq!(source.structs["ServeConfig"]["backup"], "plugwatch_backup::BackupConfig");
        assert!(source.structs["S3Config"].contains_key("bucket"));
        assert!(source.env_keys.iter().any(|k| k == "drain_timeout_secs"));
        assert_eq!(source.routes.get("/healthz"), Some(&true));
        assert_eq!(source.routes.get("/metrics"), Some(&false));
    }

    #[test]
    fn a_toml_with_an_unknown_or_mistyped_setting_is_refused() {
        let source = source();
        let mut problems = Vec::new();
        let table: toml::Table =
            "drain_timeout_secs = 30\ndrain_timeout = 5\n[backup]\nenabled = \"no\"\n[backup.s3]\nbucket = \"b\"\n[http]\nsecure_cookie = true"
                .parse()
                .unwrap();
        source.check_toml(&table, &source.structs["ServeConfig"], "", &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("`backup.enabled` (bool)"), "{problems:?}");
        assert!(problems[1].starts_with("`drain_timeout` is not a setting"), "{problems:?}");
        assert!(problems[2].starts_with("`http.secure_cookie` is not a setting"), "{problems:?}");
    }

    #[test]
    fn environment_variables_are_read_as_serve_reads_them() {
        let source = source();
        assert_eq!(source.env_setting("PLUGWATCH_BACKUP__ENABLED").unwrap(), "backup.enabled");
        assert_eq!(source.env_setting("PLUGWATCH_SECRET_KEY_FILE").unwrap(), "secret_key_file");
        assert!(source.env_setting("PLUGWATCH_BACKUP__ENABLE").is_err());
        assert!(source.env_setting("PLUGWATCH_HTTP").is_err());
        assert!(source.env_setting("PLUGWATCH_NOT_A_SETTING").unwrap_err().contains("ENV_KEYS"));
    }
}
