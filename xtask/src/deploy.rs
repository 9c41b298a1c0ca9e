//! `cargo xtask deploy --environment staging|production [--image-tag T] [--dry-run] [--config FILE]
//! [--repository R] [--url U] [--token-file F]`: the release checklist, in order, each step timed.
//!
//! - **Before** (nothing is built, pushed or applied until all pass): the overlay renders
//!   (`kubectl kustomize` into `target/deploy/<env>/rendered.yaml`), the pre-check commands of
//!   `deploy/deploy.toml` pass (tests passed for this commit, clean work tree, cargo-deny, hadolint, the
//!   rendered objects validate with kubernetes-validate and checkov, the load test's `--check`), and a
//!   backup of the target is taken through `POST /api/v1/backups` (where the environment has backups).
//! - **Deploy**: `docker build`, `docker push`, the digest from `docker inspect`, the rendered objects with
//!   the image pinned to `repository@sha256:…` (`apply.yaml`), `kubectl apply`, `kubectl rollout status`.
//! - **After**: `/healthz` and `/readyz` answer 200, then an authenticated smoke test: list the plugins,
//!   read `/metrics`, invoke the configured plugin (outcome `ok`), load the dashboard page, send a test
//!   notification (if a channel is configured), and the plugin's invocation counter in `/metrics` rose.
//! - **On a failure after apply**: the new pods' log is read, `kubectl rollout undo` and its rollout
//!   waited for; where the log names a migration failure, the backup taken before is restored
//!   (`POST /api/v1/backups/{id}/restore`).
//!
//! Every external program (git, docker, kubectl, curl, the pre-checks) runs as a process with the PATH of
//! [`Settings`], so the tests put recording test doubles first on it. The API token goes to curl on its
//! standard input (`-H @-`): it is in no argument, no output and no report. The report, JSON and Markdown,
//! goes to `target/deploy/<UTC time>-<env>.{json,md}`. `--dry-run` prints every command and request in
//! order (the token as `***`), runs only the read-only `git` look-ups, and writes only its report
//! (`…-<env>-dry-run.{json,md}`, `"dry_run": true`, every step `planned`).
//!
//! [`smoke_check`] runs the after-deploy stage with real curl against a real `plugwatch serve --demo`
//! (part of `cargo xtask test`; `cargo xtask deploy-smoke` alone).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

/// The counter whose rise shows that invocations are measured (crates/telemetry/METRICS.md).
const INVOCATIONS_METRIC: &str = "plugwatch_plugin_invocations_total";
/// What plugwatch prints when a migration fails at start (`StoreError::Migrate` in crates/store, reported
/// by `serve` as `error: … database migration failed: …`).
const MIGRATION_FAILED: &str = "database migration failed";
/// How long the invocation counter may take to show the smoke test's invocation.
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);
/// One HTTP request's time limit.
const HTTP_TIMEOUT_SECS: &str = "30";

/// One environment's table of `deploy/deploy.toml`.
#[derive(Clone, Debug)]
pub struct Environment {
    pub name: String,
    pub namespace: String,
    /// The kustomize overlay, relative to the repository root.
    pub overlay: PathBuf,
    pub deployment: String,
    /// The image name the manifests use, replaced by `repository@digest`.
    pub manifest_image: String,
    pub url: String,
    pub repository: String,
    pub rollout_timeout_secs: u64,
    pub health_timeout_secs: u64,
    /// Whether to take a backup through the API before applying.
    pub backup: bool,
    /// Whether that backup is restored through the API after a migration failure (one server on SQLite);
    /// `false` with several replicas on PostgreSQL, which must all stop first: the report says how.
    pub restore_in_place: bool,
    pub smoke: Smoke,
    pub prechecks: Vec<Precheck>,
}

/// What the smoke test invokes, and the channel it tests (if any).
#[derive(Clone, Debug)]
pub struct Smoke {
    pub plugin: String,
    pub hook: String,
    /// The input, JSON.
    pub input: Value,
    pub channel: Option<i64>,
}

/// A named pre-check command (argv, with `{commit}`, `{rendered}`, `{overlay}`, `{environment}`).
#[derive(Clone, Debug)]
pub struct Precheck {
    pub name: String,
    pub command: Vec<String>,
}

/// Reads the table `environment` of the deploy configuration at `path`.
pub fn load_config(path: &Path, environment: &str) -> anyhow::Result<Environment> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_config(&text, environment).with_context(|| format!("{}", path.display()))
}

fn parse_config(text: &str, environment: &str) -> anyhow::Result<Environment> {
    let doc: toml::Table = text.parse()?;
    let names: Vec<&String> = doc.keys().collect();
    let table = doc
        .get(environment)
        .and_then(toml::Value::as_table)
        .with_context(|| format!("no environment `{environment}` (there are {names:?})"))?;
    const KEYS: &[&str] = &[
        "namespace",
        "overlay",
        "deployment",
        "manifest_image",
        "url",
        "repository",
        "rollout_timeout_secs",
        "health_timeout_secs",
        "backup",
        "restore_in_place",
        "smoke",
        "prechecks",
    ];
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        bail!("`{environment}.{key}` is not a setting (the settings: {KEYS:?})");
    }
    let string = |t: &toml::Table, key: &str| -> anyhow::Result<String> {
        t.get(key).and_then(toml::Value::as_str).map(str::to_owned).with_context(|| format!("`{key}`: a string"))
    };
    let number = |key: &str| -> anyhow::Result<u64> {
        let n = table.get(key).and_then(toml::Value::as_integer).with_context(|| format!("`{key}`: an integer"))?;
        u64::try_from(n).ok().filter(|n| *n > 0).with_context(|| format!("`{key}` must be positive"))
    };
    let smoke = table.get("smoke").and_then(toml::Value::as_table).context("`smoke`: a table")?;
    if let Some(key) = smoke.keys().find(|k| !["plugin", "hook", "input", "channel"].contains(&k.as_str())) {
        bail!("`{environment}.smoke.{key}` is not a setting");
    }
    let input = string(smoke, "input")?;
    let input: Value = serde_json::from_str(&input).context("`smoke.input` is not JSON")?;
    let channel = match smoke.get("channel") {
        None => None,
        Some(value) => Some(value.as_integer().context("`smoke.channel`: a channel id (an integer)")?),
    };
    let mut prechecks = Vec::new();
    for check in table.get("prechecks").and_then(toml::Value::as_array).into_iter().flatten() {
        let check = check.as_table().context("`prechecks`: tables with `name` and `command`")?;
        let command: Vec<String> = check
            .get("command")
            .and_then(toml::Value::as_array)
            .context("a pre-check's `command`: an array of strings")?
            .iter()
            .map(|a| a.as_str().map(str::to_owned).context("a pre-check's `command`: an array of strings"))
            .collect::<anyhow::Result<_>>()?;
        ensure!(!command.is_empty(), "a pre-check's `command` is empty");
        prechecks.push(Precheck { name: string(check, "name")?, command });
    }
    Ok(Environment {
        name: environment.to_owned(),
        namespace: string(table, "namespace")?,
        overlay: PathBuf::from(string(table, "overlay")?),
        deployment: string(table, "deployment")?,
        manifest_image: string(table, "manifest_image")?,
        url: string(table, "url")?,
        repository: string(table, "repository")?,
        rollout_timeout_secs: number("rollout_timeout_secs")?,
        health_timeout_secs: number("health_timeout_secs")?,
        backup: table.get("backup").and_then(toml::Value::as_bool).context("`backup`: true or false")?,
        restore_in_place: match table.get("restore_in_place") {
            None => true,
            Some(value) => value.as_bool().context("`restore_in_place`: true or false")?,
        },
        smoke: Smoke { plugin: string(smoke, "plugin")?, hook: string(smoke, "hook")?, input, channel },
        prechecks,
    })
}

/// An API token: shown as `***` by `Debug`, written only to curl's standard input.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Everything a deployment depends on: nothing is read from the process's environment after this.
#[derive(Debug)]
pub struct Settings {
    /// The repository: every command runs here, relative paths are from here.
    pub root: PathBuf,
    /// The PATH every external command runs with (and is looked up on).
    pub path: OsString,
    /// Where reports and the rendered objects go (`target/deploy`).
    pub out: PathBuf,
    pub environment: Environment,
    /// The image tag; the short git commit when none.
    pub image_tag: Option<String>,
    pub url: String,
    pub token: Option<Secret>,
    pub dry_run: bool,
    /// Who deploys, when git has no `user.name` (`$USER`).
    pub user: Option<String>,
    /// How often health and metrics are polled.
    pub poll: Duration,
    /// Print each line as it comes (the tests read the transcript instead).
    pub echo: bool,
}

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Applied and every check after it passed.
    Deployed,
    /// Something failed after the apply: the previous release is back.
    RolledBack,
    /// A check before the deployment failed: nothing was built, pushed or applied.
    Refused,
    /// Building, pushing or applying failed: nothing was rolled back (an undo could revert the previous
    /// release when the apply changed nothing).
    Failed,
    /// `--dry-run`: nothing ran.
    DryRun,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Deployed => "deployed",
            Verdict::RolledBack => "rolled back",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
            Verdict::DryRun => "dry run",
        }
    }
}

/// What [`deploy`] did.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Why it was not deployed (and what the rollback did).
    pub reason: Option<String>,
    /// The JSON report (the Markdown one beside it); a dry run's is marked so, its steps `planned`.
    pub report: Option<PathBuf>,
    /// Every line printed (the tests read it; the command line printed it already).
    #[cfg_attr(not(test), allow(dead_code))]
    pub transcript: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Ok,
    Failed,
    Skipped,
    /// A dry run's step: printed, not run.
    Planned,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
        }
    }
}

struct StepRecord {
    name: String,
    status: Status,
    secs: f64,
    detail: String,
}

/// A finished command.
struct Captured {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// An HTTP answer.
struct Answer {
    status: u16,
    body: String,
}

/// One deployment in progress.
struct Run<'a> {
    s: &'a Settings,
    env: &'a Environment,
    transcript: Vec<String>,
    steps: Vec<StepRecord>,
    commit: String,
    tag: String,
    digest: Option<String>,
    backup: Option<String>,
    /// The repository's URL (git's `origin`), for the image's OCI `source` label.
    source: Option<String>,
    rendered: PathBuf,
    apply: PathBuf,
}

/// Runs the whole checklist and writes the report (unless a dry run). Never panics on a failed step:
/// the outcome says what happened.
pub fn deploy(settings: &Settings) -> Outcome {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let env = &settings.environment;
    let mut run = Run::new(settings);
    run.commit = run.git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    run.tag = match &settings.image_tag {
        Some(tag) => tag.clone(),
        None => run.git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned()),
    };
    run.source = run.git(&["remote", "get-url", "origin"]).filter(|s| !s.is_empty());
    let who = run
        .git(&["config", "user.name"])
        .filter(|w| !w.is_empty())
        .or_else(|| settings.user.clone())
        .unwrap_or_else(|| "unknown".to_owned());
    run.say(format!(
        "deploy: {} to {} ({}), image {}:{}, commit {}, by {who}{}",
        env.deployment,
        env.name,
        settings.url,
        env.repository,
        run.tag,
        run.commit,
        if settings.dry_run { " — dry run: nothing is executed" } else { "" }
    ));
    let (verdict, reason) = run.sequence();
    if settings.dry_run {
        run.dry_run_rollback_plan();
    }
    let finished_at = SystemTime::now();
    let mut report = None;
    match run.write_report(verdict, reason.as_deref(), &who, started_at, finished_at, started.elapsed()) {
        Ok(path) => {
            run.say(format!("deploy: report: {} (and .md)", path.display()));
            report = Some(path);
        }
        Err(error) => run.say(format!("deploy: cannot write the report: {error:#}")),
    }
    let line = match &reason {
        Some(reason) => format!("deploy: {}: {reason}", verdict.as_str()),
        None => format!("deploy: {} in {:.1} s", verdict.as_str(), started.elapsed().as_secs_f64()),
    };
    run.say(line);
    Outcome { verdict, reason, report, transcript: run.transcript }
}

impl<'a> Run<'a> {
    fn new(s: &'a Settings) -> Run<'a> {
        let dir = s.out.join(&s.environment.name);
        Run {
            s,
            env: &s.environment,
            transcript: Vec::new(),
            steps: Vec::new(),
            commit: String::new(),
            tag: String::new(),
            digest: None,
            backup: None,
            source: None,
            rendered: dir.join("rendered.yaml"),
            apply: dir.join("apply.yaml"),
        }
    }

    /// Prints a line (with the token masked, should it ever be in one) and keeps it.
    fn say(&mut self, line: String) {
        let line = self.mask(&line);
        if self.s.echo {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
        self.transcript.push(line);
    }

    fn mask(&self, text: &str) -> String {
        match &self.s.token {
            Some(Secret(token)) if !token.is_empty() => text.replace(token.as_str(), "***"),
            _ => text.to_owned(),
        }
    }

    /// A read-only git look-up (run in a dry run too); None when git fails.
    fn git(&mut self, args: &[&str]) -> Option<String> {
        let out = self.command("git", args.iter().copied()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn command<I, S>(&self, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        // A relative path with a directory in it is the repository's (not the caller's working directory's).
        let program = if program.contains('/') { self.s.root.join(program) } else { PathBuf::from(program) };
        let mut command = Command::new(program);
        command.args(args).current_dir(&self.s.root).env("PATH", &self.s.path).stdin(Stdio::null());
        command
    }

    /// Prints and (unless a dry run) runs a command to completion, capturing its output.
    fn exec(&mut self, argv: &[String]) -> anyhow::Result<Option<Captured>> {
        self.say(format!("deploy:   $ {}", shell_line(argv)));
        if self.s.dry_run {
            return Ok(None);
        }
        let output =
            self.command(&argv[0], &argv[1..]).output().with_context(|| format!("cannot start `{}`", argv[0]))?;
        Ok(Some(Captured {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }))
    }

    /// [`Run::exec`], failing with the command's last lines of output unless it succeeded; its stdout.
    fn exec_ok(&mut self, argv: &[String]) -> anyhow::Result<Option<String>> {
        let Some(out) = self.exec(argv)? else { return Ok(None) };
        if !out.success {
            let code = out.code.map_or("a signal".to_owned(), |c| format!("exit status {c}"));
            bail!("`{}` failed with {code}: {}", argv[0], self.mask(&tail(&format!("{}{}", out.stdout, out.stderr))));
        }
        Ok(Some(out.stdout))
    }

    /// One HTTP request through curl (the token, if `auth`, on its stdin); None in a dry run.
    fn http(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        auth: bool,
        print: bool,
    ) -> anyhow::Result<Option<Answer>> {
        let url = format!("{}{path}", self.s.url.trim_end_matches('/'));
        let mut argv: Vec<String> =
            ["curl", "-sS", "--max-time", HTTP_TIMEOUT_SECS, "-X", method, "-w", "\\n%{http_code}"]
                .map(str::to_owned)
                .into();
        if auth {
            argv.extend(["-H".to_owned(), "@-".to_owned()]);
        }
        if let Some(body) = body {
            argv.extend(["-H", "content-type: application/json", "--data-binary"].map(str::to_owned));
            argv.push(body.to_string());
        }
        argv.push(url.clone());
        if print {
            let stdin = if auth { "   (stdin: Authorization: Bearer ***)" } else { "" };
            self.say(format!("deploy:   $ {}{stdin}", shell_line(&argv)));
        }
        if self.s.dry_run {
            return Ok(None);
        }
        let token = match (&self.s.token, auth) {
            (Some(Secret(token)), true) => Some(token.clone()),
            (None, true) => bail!("no API token: set PLUGWATCH_DEPLOY_TOKEN or pass --token-file"),
            _ => None,
        };
        let mut child = self
            .command(&argv[0], &argv[1..])
            .stdin(if token.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start curl")?;
        if let Some(token) = token {
            let mut stdin = child.stdin.take().context("curl's stdin")?;
            // curl may exit before reading (a refused connection): its answer below says why.
            let _ = stdin.write_all(format!("Authorization: Bearer {token}\n").as_bytes());
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("{method} {url}: curl failed: {}", self.mask(String::from_utf8_lossy(&out.stderr).trim()));
        }
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
        let status = status.trim().parse().with_context(|| format!("{method} {url}: no HTTP status from curl"))?;
        Ok(Some(Answer { status, body: body.to_owned() }))
    }

    /// An HTTP request that must answer `expected`; its body (None in a dry run).
    fn expect(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> anyhow::Result<Option<String>> {
        let Some(answer) = self.http(method, path, body, true, true)? else { return Ok(None) };
        ensure!(
            answer.status == expected,
            "{method} {path} answered {} (expected {expected}): {}",
            answer.status,
            self.mask(&tail(&answer.body))
        );
        Ok(Some(answer.body))
    }

    /// Runs a step: says it starts, times it, records it.
    fn step(&mut self, name: &str, f: impl FnOnce(&mut Self) -> anyhow::Result<String>) -> anyhow::Result<()> {
        self.say(format!("deploy: {name} …"));
        let started = Instant::now();
        let result = f(self);
        let secs = started.elapsed().as_secs_f64();
        let (status, detail) = match &result {
            Ok(detail) if self.s.dry_run => (Status::Planned, self.mask(detail)),
            Ok(detail) => (Status::Ok, self.mask(detail)),
            Err(error) => (Status::Failed, self.mask(&format!("{error:#}"))),
        };
        let shown = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        self.say(format!("deploy: {name} … {} ({secs:.1} s){shown}", status.as_str()));
        self.steps.push(StepRecord { name: name.to_owned(), status, secs, detail });
        result.map(drop)
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.say(format!("deploy: {name} … skipped: {why}"));
        self.steps.push(StepRecord {
            name: name.to_owned(),
            status: Status::Skipped,
            secs: 0.0,
            detail: why.to_owned(),
        });
    }

    fn dry(&self) -> bool {
        self.s.dry_run
    }

    /// Before, deploy, after; a rollback on a failure after the apply.
    fn sequence(&mut self) -> (Verdict, Option<String>) {
        let failed_name = |run: &Self| run.steps.last().map(|s| s.name.clone()).unwrap_or_default();
        if let Err(error) = self.before() {
            let why = format!(
                "the pre-check `{}` failed ({error:#}): nothing was built, pushed or applied",
                failed_name(self)
            );
            return (Verdict::Refused, Some(self.mask(&why)));
        }
        if let Err(error) = self.build_and_apply() {
            let why = format!("`{}` failed ({error:#}); nothing was rolled back", failed_name(self));
            return (Verdict::Failed, Some(self.mask(&why)));
        }
        let after = self.rollout().and_then(|()| self.after());
        match after {
            Ok(()) => (if self.dry() { Verdict::DryRun } else { Verdict::Deployed }, None),
            Err(error) => {
                let why = format!("`{}` failed ({error:#})", failed_name(self));
                let why = self.mask(&why);
                let rollback = self.roll_back();
                (Verdict::RolledBack, Some(format!("{why}; {rollback}")))
            }
        }
    }

    fn before(&mut self) -> anyhow::Result<()> {
        if self.s.token.is_none() && !self.dry() {
            // Before anything runs: the backup and the smoke test need it.
            self.step("the API token", |_| bail!("no API token: set PLUGWATCH_DEPLOY_TOKEN or pass --token-file"))?;
        }
        let overlay = self.s.root.join(&self.env.overlay);
        let rendered = self.rendered.clone();
        self.step("render the configuration (kubectl kustomize)", |run| {
            let argv = vec!["kubectl".to_owned(), "kustomize".to_owned(), overlay.display().to_string()];
            let Some(yaml) = run.exec_ok(&argv)? else { return Ok(format!("would write {}", rendered.display())) };
            std::fs::create_dir_all(rendered.parent().context("a parent")?)?;
            std::fs::write(&rendered, &yaml)?;
            let objects = yaml.lines().filter(|l| l.starts_with("kind:")).count();
            Ok(format!("{objects} objects in {}", rendered.display()))
        })?;
        for check in self.env.prechecks.clone() {
            let argv: Vec<String> = check.command.iter().map(|a| self.substitute(a)).collect();
            self.step(&check.name, |run| run.exec_ok(&argv).map(|_| String::new()))?;
        }
        if self.env.backup {
            self.step("back up the target (POST /api/v1/backups)", |run| {
                let Some(body) = run.expect("POST", "/api/v1/backups", None, 201)? else { return Ok(String::new()) };
                let backup = crate::server::json(&body)?;
                let id = backup["id"].as_str().context("the backup's answer has no `id`")?.to_owned();
                let detail = format!("{id} ({} bytes)", backup["size_bytes"]);
                run.backup = Some(id);
                Ok(detail)
            })?;
        } else {
            self.skip(
                "back up the target (POST /api/v1/backups)",
                "backup = false for this environment (PostgreSQL: back it up with its own tools)",
            );
        }
        Ok(())
    }

    fn substitute(&self, arg: &str) -> String {
        arg.replace("{commit}", &self.commit)
            .replace("{rendered}", &self.rendered.display().to_string())
            .replace("{overlay}", &self.s.root.join(&self.env.overlay).display().to_string())
            .replace("{environment}", &self.env.name)
    }

    fn image(&self) -> String {
        format!("{}:{}", self.env.repository, self.tag)
    }

    fn build_and_apply(&mut self) -> anyhow::Result<()> {
        let image = self.image();
        let argv = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let build = argv(&[
            "docker",
            "build",
            "-f",
            "Dockerfile",
            "-t",
            &image,
            "--build-arg",
            &format!("VERSION={}", env!("CARGO_PKG_VERSION")),
            "--build-arg",
            &format!("REVISION={}", self.commit),
        ]);
        let mut build = build;
        if let Some(source) = self.source.clone() {
            build.extend(["--build-arg".to_owned(), format!("SOURCE={source}")]);
        }
        build.push(".".to_owned());
        self.step("build the image", |run| run.exec_ok(&build).map(|_| image.clone()))?;
        let push = argv(&["docker", "push", &image]);
        self.step("push the image", |run| run.exec_ok(&push).map(|_| String::new()))?;
        let inspect = argv(&["docker", "inspect", "--format", "{{index .RepoDigests 0}}", &image]);
        self.step("record the digest", |run| {
            let Some(out) = run.exec_ok(&inspect)? else { return Ok(String::new()) };
            let digest = out.trim().rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default();
            ensure!(
                digest.starts_with("sha256:") && digest.len() == 71,
                "docker inspect gave no digest (`{}`): was the image pushed?",
                out.trim()
            );
            let pinned = format!("{}@{digest}", run.env.repository);
            run.digest = Some(pinned.clone());
            Ok(pinned)
        })?;
        let (rendered, apply) = (self.rendered.clone(), self.apply.clone());
        self.step("pin the image by digest in the rendered objects", |run| {
            let Some(pinned) = run.digest.clone() else {
                return Ok(format!("would write {} with the image {}@sha256:…", apply.display(), run.env.repository));
            };
            let text = std::fs::read_to_string(&rendered)?;
            let (text, replaced) = pin_image(&text, &run.env.manifest_image, &pinned);
            ensure!(replaced > 0, "no `image: {}` in {}", run.env.manifest_image, rendered.display());
            std::fs::write(&apply, text)?;
            Ok(format!("{replaced} container(s) → {pinned} in {}", apply.display()))
        })?;
        let kubectl = argv(&["kubectl", "apply", "-f", &self.apply.display().to_string()]);
        self.step("apply (kubectl apply)", |run| {
            run.exec_ok(&kubectl).map(|out| out.unwrap_or_default().trim().to_owned())
        })
    }

    fn rollout_argv(&self) -> Vec<String> {
        let deployment = format!("deployment/{}", self.env.deployment);
        let timeout = format!("--timeout={}s", self.env.rollout_timeout_secs);
        ["kubectl", "-n", &self.env.namespace, "rollout", "status", &deployment, &timeout].map(str::to_owned).into()
    }

    fn rollout(&mut self) -> anyhow::Result<()> {
        let argv = self.rollout_argv();
        self.step("wait for the rollout", |run| run.exec_ok(&argv).map(|out| out.unwrap_or_default().trim().to_owned()))
    }

    /// Health, the smoke test and the metrics: also what [`smoke_check`] runs against a real server.
    fn after(&mut self) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(self.env.health_timeout_secs);
        self.step("health (/healthz and /readyz answer 200)", |run| {
            for path in ["/healthz", "/readyz"] {
                run.wait_for_200(path, timeout)?;
            }
            Ok(String::new())
        })?;
        let plugin = self.env.smoke.plugin.clone();
        self.step("smoke: list the plugins", |run| {
            let Some(body) = run.expect("GET", "/api/v1/plugins", None, 200)? else { return Ok(String::new()) };
            let list = crate::server::json(&body)?;
            ensure!(has_name(&list, &plugin), "the plugin `{plugin}` is not in the list");
            Ok(format!("`{plugin}` is listed"))
        })?;
        let mut before = 0.0;
        self.step("smoke: read /metrics", |run| {
            let Some(text) = run.expect("GET", "/metrics", None, 200)? else { return Ok(String::new()) };
            ensure!(text.contains("# TYPE plugwatch_"), "/metrics has no plugwatch metric family");
            before = invocations(&text, &plugin);
            Ok(format!("{INVOCATIONS_METRIC} for `{plugin}`: {before}"))
        })?;
        let request = json!({"hook": self.env.smoke.hook, "input": self.env.smoke.input});
        self.step(&format!("smoke: invoke {plugin}"), |run| {
            let path = format!("/api/v1/plugins/{plugin}/invoke");
            let Some(body) = run.expect("POST", &path, Some(&request), 200)? else { return Ok(String::new()) };
            let answer = crate::server::json(&body)?;
            ensure!(
                answer["outcome"] == "ok",
                "the outcome is {} ({})",
                answer["outcome"],
                answer["detail"].as_str().unwrap_or("no detail")
            );
            Ok(format!("outcome ok in {} µs", answer["wall_us"]))
        })?;
        self.step("smoke: the dashboard page", |run| {
            let Some(body) = run.expect("GET", "/plugin-monitoring", None, 200)? else { return Ok(String::new()) };
            ensure!(body.to_ascii_lowercase().contains("<html"), "/plugin-monitoring is not an HTML page");
            Ok(format!("{} bytes of HTML", body.len()))
        })?;
        match self.env.smoke.channel {
            Some(channel) => self.step("smoke: send a test notification", |run| {
                let path = format!("/api/v1/alerts/channels/{channel}/test");
                let Some(body) = run.expect("POST", &path, None, 200)? else { return Ok(String::new()) };
                let answer = crate::server::json(&body)?;
                ensure!(
                    answer["delivered"] == true,
                    "channel {channel} did not deliver: {}",
                    answer["error"].as_str().unwrap_or("no error given")
                );
                Ok(format!("channel {channel} delivered"))
            })?,
            None => self.skip("smoke: send a test notification", "no `smoke.channel` configured"),
        }
        self.step("metrics are being collected", |run| {
            let deadline = Instant::now() + METRICS_TIMEOUT;
            let mut printed = true;
            loop {
                let answer = run.http("GET", "/metrics", None, true, printed)?;
                printed = false;
                let Some(answer) = answer else { return Ok(String::new()) };
                let now = invocations(&answer.body, &plugin);
                if answer.status == 200 && now > before {
                    return Ok(format!("{INVOCATIONS_METRIC} for `{plugin}`: {before} → {now}"));
                }
                ensure!(
                    Instant::now() < deadline,
                    "{INVOCATIONS_METRIC} for `{plugin}` stayed at {now} (HTTP {}) for {} s after the invocation",
                    answer.status,
                    METRICS_TIMEOUT.as_secs()
                );
                std::thread::sleep(run.s.poll);
            }
        })
    }

    /// Polls `path` (no credentials) until it answers 200, for at most `timeout`.
    fn wait_for_200(&mut self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut print = true;
        loop {
            let answer = self.http("GET", path, None, false, print);
            print = false;
            let last = match answer {
                Ok(None) => return Ok(()),
                Ok(Some(answer)) if answer.status == 200 => return Ok(()),
                Ok(Some(answer)) => format!("HTTP {}: {}", answer.status, tail(&answer.body)),
                Err(error) => format!("{error:#}"),
            };
            ensure!(Instant::now() < deadline, "{path} did not answer 200 within {} s: {last}", timeout.as_secs());
            std::thread::sleep(self.s.poll);
        }
    }

    /// The new pods' log, `rollout undo` and its rollout, and the restore after a migration failure.
    /// Returns what it did, for the reason.
    fn roll_back(&mut self) -> String {
        let ns = self.env.namespace.clone();
        let deployment = format!("deployment/{}", self.env.deployment);
        let mut log = String::new();
        let logs: Vec<String> = ["kubectl", "-n", &ns, "logs", &deployment, "--all-containers=true", "--tail=500"]
            .map(str::to_owned)
            .into();
        let _ = self.step("read the new pods' log", |run| {
            let Some(out) = run.exec(&logs)? else { return Ok(String::new()) };
            log = format!("{}{}", out.stdout, out.stderr);
            Ok(format!("{} lines", log.lines().count()))
        });
        let migration = log.to_ascii_lowercase().contains(MIGRATION_FAILED);
        let undo: Vec<String> = ["kubectl", "-n", &ns, "rollout", "undo", &deployment].map(str::to_owned).into();
        let undone = self.step("roll back (kubectl rollout undo)", |run| run.exec_ok(&undo).map(|_| String::new()));
        let rollout = self.rollout_argv();
        let undone = undone.and_then(|()| {
            self.step("wait for the rollback's rollout", |run| run.exec_ok(&rollout).map(|_| String::new()))
        });
        let mut said = match &undone {
            Ok(()) => "rolled back to the previous release".to_owned(),
            Err(error) => format!("the rollback FAILED ({error:#}): the cluster needs a person now"),
        };
        let restore = "restore the backup taken before";
        if !migration {
            self.skip(restore, "the new pods' log names no migration failure");
            return said;
        }
        said.push_str("; the new pods' log names a migration failure");
        match (self.backup.clone(), undone.is_ok()) {
            (Some(id), true) if !self.env.restore_in_place => {
                let how = format!(
                    "restore the backup {id} by hand: scale deployment/{} to 0 replicas, run `plugwatch backup \
                     restore {id}` with the database URL, then scale back",
                    self.env.deployment
                );
                self.skip(restore, &how);
                said.push_str(&format!(": {how}"));
            }
            (Some(id), true) => {
                let restored = self.step(restore, |run| {
                    let path = format!("/api/v1/backups/{id}/restore");
                    let Some(body) = run.expect("POST", &path, None, 202)? else { return Ok(String::new()) };
                    let answer = crate::server::json(&body)?;
                    Ok(format!("restored from {}, safety backup {}", id, answer["safety_backup"]))
                });
                let timeout = Duration::from_secs(self.env.health_timeout_secs);
                let restored = restored.and_then(|()| {
                    // The restore restarts the server in place.
                    self.step("health after the restore", |run| {
                        run.wait_for_200("/readyz", timeout).map(|()| String::new())
                    })
                });
                match restored {
                    Ok(()) => said.push_str(&format!(", so the backup {id} taken before the deployment was restored")),
                    Err(error) => said.push_str(&format!(", and restoring the backup {id} FAILED ({error:#})")),
                }
            }
            (Some(id), false) => {
                self.skip(restore, "the rollback failed: restoring into the new release would not help");
                said.push_str(&format!(": restore the backup {id} by hand once the rollback is done"));
            }
            (None, _) => {
                self.skip(restore, "no backup was taken (backup = false): restore the database with its own tools");
                said.push_str(": no backup was taken here, restore the database with its own tools");
            }
        }
        said
    }

    fn dry_run_rollback_plan(&mut self) {
        let ns = &self.env.namespace;
        let d = &self.env.deployment;
        let lines = [
            "deploy: on a failure after the apply it would run:".to_owned(),
            format!("deploy:   $ kubectl -n {ns} logs deployment/{d} --all-containers=true --tail=500"),
            format!("deploy:   $ kubectl -n {ns} rollout undo deployment/{d}"),
            format!("deploy:   $ {}", shell_line(&self.rollout_argv())),
            format!(
                "deploy:   and, where the log names a migration failure, POST {}/api/v1/backups/<id>/restore \
                 (Authorization: Bearer ***)",
                self.s.url.trim_end_matches('/')
            ),
        ];
        for line in lines {
            self.say(line);
        }
    }

    fn write_report(
        &self,
        verdict: Verdict,
        reason: Option<&str>,
        who: &str,
        started_at: SystemTime,
        finished_at: SystemTime,
        took: Duration,
    ) -> anyhow::Result<PathBuf> {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| json!({"name": s.name, "status": s.status.as_str(), "duration_secs": round(s.secs), "detail": s.detail}))
            .collect();
        let report = json!({
            "environment": self.env.name,
            "dry_run": self.s.dry_run,
            "result": verdict.as_str(),
            "reason": reason,
            "image": {"repository": self.env.repository, "tag": self.tag, "digest": self.digest},
            "backup": self.backup,
            "url": self.s.url,
            "namespace": self.env.namespace,
            "deployment": self.env.deployment,
            "commit": self.commit,
            "who": who,
            "started_at": rfc3339(started_at),
            "finished_at": rfc3339(finished_at),
            "duration_secs": round(took.as_secs_f64()),
            "steps": steps,
        });
        std::fs::create_dir_all(&self.s.out)?;
        let dry = if self.s.dry_run { "-dry-run" } else { "" };
        let stem = format!("{}-{}{dry}", file_stamp(started_at), self.env.name);
        let mut json_path = self.s.out.join(format!("{stem}.json"));
        for n in 2.. {
            if !json_path.exists() {
                break;
            }
            json_path = self.s.out.join(format!("{stem}-{n}.json"));
        }
        let text = self.mask(&serde_json::to_string_pretty(&report)?);
        std::fs::write(&json_path, text + "\n")?;
        let mut md = format!("# Deployment of {} to {}: {}\n\n", self.env.deployment, self.env.name, verdict.as_str());
        if let Some(reason) = reason {
            md.push_str(&format!("**Why:** {reason}\n\n"));
        }
        let digest = self.digest.as_deref().unwrap_or("none (not built)");
        md.push_str(&format!(
            "- Image: `{}:{}`, digest `{digest}`\n- Commit: `{}`\n- By: {who}\n- Started {}, finished {} ({:.1} s)\n- Backup before: {}\n\n",
            self.env.repository,
            self.tag,
            self.commit,
            rfc3339(started_at),
            rfc3339(finished_at),
            took.as_secs_f64(),
            self.backup.as_deref().unwrap_or("none"),
        ));
        md.push_str("| Step | Status | Time | Detail |\n| --- | --- | --- | --- |\n");
        for s in &self.steps {
            let detail = s.detail.replace('|', "\\|").replace('\n', " ");
            md.push_str(&format!("| {} | {} | {:.1} s | {detail} |\n", s.name, s.status.as_str(), s.secs));
        }
        std::fs::write(json_path.with_extension("md"), self.mask(&md))?;
        Ok(json_path)
    }
}

/// Replaces every `image: <name>[:tag|@digest]` whose name is `name` with `pinned`; returns the text and
/// how many it replaced.
fn pin_image(yaml: &str, name: &str, pinned: &str) -> (String, usize) {
    let mut replaced = 0;
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let key_at = body.find("image:");
        let prefix_ok = key_at.is_some_and(|at| body[..at].chars().all(|c| c == ' ' || c == '-'));
        if let (Some(at), true) = (key_at, prefix_ok) {
            let value = body[at + "image:".len()..].trim().trim_matches(['"', '\'']);
            let matches = value == name
                || value.strip_prefix(name).is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'));
            if matches {
                out.push_str(&body[..at]);
                out.push_str("image: ");
                out.push_str(pinned);
                out.push_str(&line[body.len()..]);
                replaced += 1;
                continue;
            }
        }
        out.push_str(line);
    }
    (out, replaced)
}

/// The sum of `plugwatch_plugin_invocations_total` over the plugin's versions and outcomes.
fn invocations(metrics: &str, plugin: &str) -> f64 {
    let label = format!("plugin=\"{plugin}\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(INVOCATIONS_METRIC)?;
            let (labels, value) = rest.strip_prefix('{')?.split_once('}')?;
            labels.split(',').any(|l| l.trim() == label).then_some(())?;
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Whether some object in `value` has `"name": name`.
fn has_name(value: &Value, name: &str) -> bool {
    match value {
        Value::Object(map) => map.get("name").is_some_and(|n| n == name) || map.values().any(|v| has_name(v, name)),
        Value::Array(items) => items.iter().any(|v| has_name(v, name)),
        _ => false,
    }
}

/// An argv as one could paste it into a shell.
fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a command's output, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// `2026-12-01T01:02:03Z`.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `20261201T010203Z`, for file names.
fn file_stamp(t: SystemTime) -> String {
    rfc3339(t).replace(['-', ':'], "")
}

/// `cargo xtask deploy …`: the command line into [`Settings`], then [`deploy`]; fails unless deployed.
pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let mut environment = None;
    let mut image_tag = None;
    let mut dry_run = false;
    let mut config = root.join("deploy/deploy.toml");
    let mut repository = std::env::var("PLUGWATCH_DEPLOY_REPOSITORY").ok();
    let mut url = std::env::var("PLUGWATCH_DEPLOY_URL").ok();
    let mut token_file = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--environment" => environment = Some(value()?),
            "--image-tag" => image_tag = Some(value()?),
            "--dry-run" => dry_run = true,
            "--config" => config = PathBuf::from(value()?),
            "--repository" => repository = Some(value()?),
            "--url" => url = Some(value()?),
            "--token-file" => token_file = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown argument `{other}`: cargo xtask deploy --environment staging|production [--image-tag T] \
                 [--dry-run] [--config FILE] [--repository R] [--url U] [--token-file F]"
            ),
        }
    }
    let environment = environment.context("--environment staging|production is required")?;
    let mut env = load_config(&config, &environment)?;
    if let Some(repository) = repository {
        env.repository = repository;
    }
    let token = match token_file {
        Some(file) => Some(
            std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("PLUGWATCH_DEPLOY_TOKEN").ok(),
    };
    let settings = Settings {
        root: root.to_owned(),
        path: std::env::var_os("PATH").unwrap_or_default(),
        out: root.join("target/deploy"),
        url: url.unwrap_or_else(|| env.url.clone()),
        environment: env,
        image_tag,
        token: token.filter(|t| !t.is_empty()).map(Secret::new),
        dry_run,
        user: std::env::var("USER").ok(),
        poll: Duration::from_secs(1),
        echo: true,
    };
    let outcome = deploy(&settings);
    match outcome.verdict {
        Verdict::Deployed | Verdict::DryRun => Ok(()),
        verdict => bail!(
            "{}: {} (report: {})",
            verdict.as_str(),
            outcome.reason.unwrap_or_default(),
            outcome.report.map_or("none written".to_owned(), |p| p.display().to_string())
        ),
    }
}

/// The after-deploy stage (health, smoke test with a test notification, metrics collected) with real curl
/// against a real `plugwatch serve --demo`, using the staging table of `deploy/deploy.toml` with a webhook
/// channel that points at a receiver of this process. Work files in `target/deploy-smoke`.
pub fn smoke_check(root: &Path) -> anyhow::Result<()> {
    println!("\nxtask: deploy smoke test against a real server");
    let started = Instant::now();
    let result = smoke_check_inner(root);
    println!("xtask: deploy smoke test against a real server: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn smoke_check_inner(root: &Path) -> anyhow::Result<()> {
    let mut env = load_config(&root.join("deploy/deploy.toml"), "staging")?;
    let plugwatch = crate::image::plugwatch_binary(root)?;
    let work = root.join("target/deploy-smoke");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let (_server, addr) = crate::server::start_demo(root, &plugwatch, &work, &work.join("server.log"))?;
    let token = crate::server::admin_token(&addr, crate::server::DEMO_PASSWORD, &work)?;

    // A webhook receiver on loopback that answers 200 and counts what it got.
    let receiver = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hook_url = format!("http://{}/deploy-smoke", receiver.local_addr()?);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for stream in receiver.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = read_request(&mut stream);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let channel = json!({"name": "deploy smoke", "kind": "webhook", "secrets": {"url": hook_url}});
    let created = Command::new("curl")
        .args(["-sS", "-H", "@-", "-H", "content-type: application/json", "--data-binary"])
        .arg(channel.to_string())
        .arg(format!("http://{addr}/api/v1/alerts/channels"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("piped").write_all(format!("Authorization: Bearer {token}\n").as_bytes())?;
            child.wait_with_output()
        })?;
    let created = crate::server::json(&String::from_utf8_lossy(&created.stdout))?;
    env.smoke.channel = Some(created["id"].as_i64().with_context(|| format!("no channel created: {created}"))?);

    let settings = Settings {
        root: root.to_owned(),
        path: std::env::var_os("PATH").unwrap_or_default(),
        out: work.clone(),
        url: format!("http://{addr}"),
        environment: env,
        image_tag: None,
        token: Some(Secret(token.clone())),
        dry_run: false,
        user: None,
        poll: Duration::from_millis(200),
        echo: true,
    };
    let mut run = Run::new(&settings);
    run.after()?;
    let failed: Vec<&str> = run.steps.iter().filter(|s| s.status != Status::Ok).map(|s| s.name.as_str()).collect();
    ensure!(failed.is_empty(), "steps not ok: {failed:?}");
    ensure!(run.steps.len() == 7, "expected 7 steps, ran {:?}", run.steps.iter().map(|s| &s.name).collect::<Vec<_>>());
    ensure!(
        received.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the test notification never reached the webhook receiver"
    );
    ensure!(!run.transcript.iter().any(|l| l.contains(&token)), "the token was printed");
    Ok(())
}

/// Reads one HTTP request (headers and a `content-length` body).
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Ok(data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// The token every test hands the deployer: it must reach curl's stdin and nothing else.
    const TOKEN: &str = "pw_test_token_5e3f9c2a7b1d";
    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const BACKUP_ID: &str = "plugwatch-backup-20261201T000000Z.tar.zst";
    const RENDERED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: plugwatch\nspec:\n  template:\n    \
                            spec:\n      containers:\n        - name: plugwatch\n          image: plugwatch:staging\n";

    /// A scratch directory for one test: the test doubles (`bin/`), their log, the repository root and
    /// the reports. Removed when the test passes.
    struct Scratch {
        dir: PathBuf,
    }

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir().join(format!("xtask-deploy-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            std::fs::create_dir_all(dir.join("repo/deploy/kubernetes/overlays/staging")).unwrap();
            Scratch { dir }
        }

        fn bin(&self) -> PathBuf {
            self.dir.join("bin")
        }

        /// What the test doubles recorded, one line per call: `<tool> <arguments>`.
        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
        }

        /// The calls other than the read-only git look-ups.
        fn effective_calls(&self) -> Vec<String> {
            self.calls().into_iter().filter(|c| !c.starts_with("git ")).collect()
        }

        /// What curl's test double read on its stdin (the headers given with `-H @-`).
        fn curl_stdin(&self) -> String {
            std::fs::read_to_string(self.dir.join("curl-stdin.log")).unwrap_or_default()
        }

        /// Writes the test double `name` into `bin/`: records its arguments, then answers by the first
        /// rule whose pattern is a substring of its arguments; the n-th call matching a rule gets the
        /// n-th answer (the last one from then on). Unmatched calls succeed silently.
        fn double(&self, name: &str, rules: &[(&str, Vec<Reply>)]) {
            let dir = self.dir.display().to_string();
            let mut script = format!(
                "#!/bin/sh\n# TEST DOUBLE for `{name}` (not the real tool), written by xtask/src/deploy.rs's tests: it\n\
                 # records its arguments in calls.log and answers as the test scripted.\n\
                 printf '%s\\n' \"{name} $*\" >> '{dir}/calls.log'\n"
            );
            if name == "curl" {
                script.push_str(&format!("case \" $* \" in *' @- '*) cat >> '{dir}/curl-stdin.log' ;; esac\n"));
            }
            script.push_str("case \"$*\" in\n");
            for (i, (pattern, replies)) in rules.iter().enumerate() {
                assert!(!pattern.contains('\''), "{pattern}");
                let count = format!("{dir}/{name}-{i}.count");
                script.push_str(&format!(
                    "  *'{pattern}'*)\n    n=$(cat '{count}' 2>/dev/null || echo 0); echo $((n + 1)) > '{count}'\n    case $n in\n"
                ));
                for (k, reply) in replies.iter().enumerate() {
                    let out = self.dir.join(format!("{name}-{i}-{k}.out"));
                    let err = self.dir.join(format!("{name}-{i}-{k}.err"));
                    std::fs::write(&out, &reply.stdout).unwrap();
                    std::fs::write(&err, &reply.stderr).unwrap();
                    let arm = if k + 1 == replies.len() { "*".to_owned() } else { k.to_string() };
                    script.push_str(&format!(
                        "      {arm}) {} cat '{}'; cat '{}' >&2; exit {} ;;\n",
                        reply.shell,
                        out.display(),
                        err.display(),
                        reply.code
                    ));
                }
                script.push_str("    esac ;;\n");
            }
            script.push_str("esac\nexit 0\n");
            let path = self.bin().join(name);
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    /// A test double's answer.
    #[derive(Clone, Default)]
    struct Reply {
        stdout: String,
        stderr: String,
        code: i32,
        /// Shell run first (e.g. to record a file the real tool would read).
        shell: String,
    }

    fn out(text: &str) -> Vec<Reply> {
        vec![Reply { stdout: text.to_owned(), ..Reply::default() }]
    }

    fn fail(stderr: &str) -> Reply {
        Reply { stderr: stderr.to_owned(), code: 1, ..Reply::default() }
    }

    /// curl's answer as `-w '\n%{http_code}'` prints it.
    fn http(status: u16, body: &str) -> Reply {
        Reply { stdout: format!("{body}\n{status}"), ..Reply::default() }
    }

    const CONFIG: &str = r#"
[staging]
namespace = "restaurant-system"
overlay = "deploy/kubernetes/overlays/staging"
deployment = "plugwatch"
manifest_image = "plugwatch"
url = "http://plugwatch.test"
repository = "registry.test/restaurant/plugwatch"
rollout_timeout_secs = 120
health_timeout_secs = 2
backup = true

[staging.smoke]
plugin = "promo-discount"
hook = "order.pricing"
input = '{"items": [{"sku": "mandu", "quantity": 1, "unit_price": 6500}]}'
channel = 7

[[staging.prechecks]]
name = "tests passed"
command = ["check", "tests-passed", "{commit}"]

[[staging.prechecks]]
name = "security scans"
command = ["check", "scan", "{rendered}"]

[[staging.prechecks]]
name = "performance"
command = ["check", "load"]
"#;

    fn metrics(count: u32) -> String {
        format!(
            "# TYPE plugwatch_plugin_invocations_total counter\n\
             plugwatch_plugin_invocations_total{{plugin=\"promo-discount\",version=\"1.0.0\",outcome=\"ok\"}} {count}\n\
             plugwatch_plugin_invocations_total{{plugin=\"loyalty-points\",version=\"1.0.0\",outcome=\"ok\"}} 99\n"
        )
    }

    /// The doubles for a deployment where everything works; a test replaces one to make it fail.
    fn doubles(s: &Scratch) {
        s.double(
            "git",
            &[
                ("rev-parse --short HEAD", out("abc1234\n")),
                ("rev-parse HEAD", out("abc1234def5678abc1234def5678abc1234def56\n")),
                ("config user.name", out("Dana Deployer\n")),
                ("remote get-url origin", out("https://git.example.test/restaurant/plugwatch.git\n")),
            ],
        );
        s.double("check", &[("fail", vec![fail("the check failed")])]);
        s.double(
            "docker",
            &[
                ("inspect", out(&format!("registry.test/restaurant/plugwatch@{DIGEST}\n"))),
                ("build", out("built\n")),
                ("push", out("pushed\n")),
            ],
        );
        kubectl(s, vec![Reply::default()], "plugwatch-6d4f started\n");
        curl(s, http(200, r#"{"outcome":"ok","wall_us":812}"#));
    }

    fn kubectl(s: &Scratch, rollout: Vec<Reply>, log: &str) {
        let dir = s.dir.display();
        s.double(
            "kubectl",
            &[
                ("kustomize", out(RENDERED)),
                // What the real one would apply: the image lines of the file, into the log.
                (
                    "apply -f",
                    vec![Reply {
                        shell: format!("grep 'image:' \"$3\" | sed 's/^ */applied /' >> '{dir}/calls.log';"),
                        stdout: "deployment.apps/plugwatch configured\n".to_owned(),
                        ..Reply::default()
                    }],
                ),
                ("rollout status", rollout),
                ("rollout undo", out("deployment.apps/plugwatch rolled back\n")),
                ("logs", out(log)),
            ],
        );
    }

    fn curl(s: &Scratch, invoke: Reply) {
        s.double(
            "curl",
            &[
                (
                    "/restore",
                    vec![http(202, r#"{"restored_from":"x","safety_backup":"plugwatch-backup-safety.tar.zst"}"#)],
                ),
                ("/api/v1/backups", vec![http(201, &format!(r#"{{"id":"{BACKUP_ID}","size_bytes":4096}}"#))]),
                ("/healthz", vec![http(200, r#"{"status":"ok"}"#)]),
                ("/readyz", vec![http(200, r#"{"status":"ready"}"#)]),
                ("/invoke", vec![invoke]),
                ("/api/v1/plugins", vec![http(200, r#"{"plugins":[{"name":"promo-discount","status":"enabled"}]}"#)]),
                ("/metrics", vec![http(200, &metrics(4)), http(200, &metrics(5))]),
                ("/plugin-monitoring", vec![http(200, "<!doctype html><html><title>plugwatch</title></html>")]),
                ("/channels/7/test", vec![http(200, r#"{"delivered":true,"response":"200 OK"}"#)]),
            ],
        );
    }

    fn settings(s: &Scratch, dry_run: bool) -> Settings {
        Settings {
            root: s.dir.join("repo"),
            path: format!("{}:/usr/bin:/bin", s.bin().display()).into(),
            out: s.dir.join("repo/target/deploy"),
            environment: parse_config(CONFIG, "staging").unwrap(),
            image_tag: None,
            url: "http://plugwatch.test".to_owned(),
            token: Some(Secret::new(TOKEN)),
            dry_run,
            user: Some("fallback-user".to_owned()),
            poll: Duration::from_millis(10),
            echo: false,
        }
    }

    fn report(outcome: &Outcome) -> Value {
        let path = outcome.report.as_ref().expect("a report was written");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn step_names(report: &Value) -> Vec<String> {
        report["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
    }

    fn step_status<'a>(report: &'a Value, name: &str) -> &'a str {
        let step = report["steps"].as_array().unwrap().iter().find(|s| s["name"] == name);
        step.unwrap_or_else(|| panic!("no step `{name}` in {report:#}"))["status"].as_str().unwrap()
    }

    /// Each call contains every fragment of its expectation, in this order, and there are no others.
    fn assert_calls(calls: &[String], expected: &[&[&str]]) {
        let shown = calls.join("\n");
        assert_eq!(calls.len(), expected.len(), "calls:\n{shown}");
        for (call, fragments) in calls.iter().zip(expected) {
            for fragment in *fragments {
                assert!(call.contains(fragment), "`{call}` lacks `{fragment}`; calls:\n{shown}");
            }
        }
    }

    /// The token reached curl on its stdin, once per authenticated request, and appears nowhere else.
    fn assert_token_hidden(s: &Scratch, outcome: &Outcome, authenticated: usize) {
        assert_eq!(s.curl_stdin().matches(&format!("Authorization: Bearer {TOKEN}\n")).count(), authenticated);
        assert!(!s.calls().iter().any(|c| c.contains(TOKEN)), "the token is in a command's arguments");
        assert!(!outcome.transcript.iter().any(|l| l.contains(TOKEN)), "the token was printed");
        for file in walk(&s.dir.join("repo")) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(!text.contains(TOKEN), "the token is in {}", file.display());
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }

    const HEALTH_AND_SMOKE: &[&[&str]] = &[
        &["curl", "-X GET", "http://plugwatch.test/healthz"],
        &["curl", "-X GET", "http://plugwatch.test/readyz"],
        &["curl", "-X GET", "-H @-", "http://plugwatch.test/api/v1/plugins"],
        &["curl", "-X GET", "-H @-", "http://plugwatch.test/metrics"],
        &[
            "curl",
            "-X POST",
            "-H @-",
            r#"{"hook":"order.pricing","input":{"items""#,
            "/api/v1/plugins/promo-discount/invoke",
        ],
        &["curl", "-X GET", "-H @-", "http://plugwatch.test/plugin-monitoring"],
        &["curl", "-X POST", "-H @-", "http://plugwatch.test/api/v1/alerts/channels/7/test"],
        &["curl", "-X GET", "-H @-", "http://plugwatch.test/metrics"],
    ];

    fn before_and_deploy(repo: &Path) -> Vec<Vec<String>> {
        let overlay = repo.join("deploy/kubernetes/overlays/staging").display().to_string();
        let rendered = repo.join("target/deploy/staging/rendered.yaml").display().to_string();
        let apply = repo.join("target/deploy/staging/apply.yaml").display().to_string();
        let image = "registry.test/restaurant/plugwatch:abc1234";
        [
            vec!["kubectl kustomize ".to_owned() + &overlay],
            vec!["check tests-passed abc1234def5678abc1234def5678abc1234def56".to_owned()],
            vec![format!("check scan {rendered}")],
            vec!["check load".to_owned()],
            vec![
                "curl".to_owned(),
                "-X POST".to_owned(),
                "-H @-".to_owned(),
                "http://plugwatch.test/api/v1/backups".to_owned(),
            ],
            vec![
                format!("docker build -f Dockerfile -t {image} "),
                "REVISION=abc1234def5678".to_owned(),
                "SOURCE=https://git.example.test/restaurant/plugwatch.git .".to_owned(),
            ],
            vec![format!("docker push {image}")],
            vec![format!("docker inspect --format {{{{index .RepoDigests 0}}}} {image}")],
            vec![format!("kubectl apply -f {apply}")],
            vec![format!("applied image: registry.test/restaurant/plugwatch@{DIGEST}")],
            vec!["kubectl -n restaurant-system rollout status deployment/plugwatch --timeout=120s".to_owned()],
        ]
        .into()
    }

    fn expected(parts: &[Vec<Vec<String>>], tail: &[&[&str]]) -> Vec<Vec<String>> {
        let mut all: Vec<Vec<String>> = parts.iter().flatten().cloned().collect();
        all.extend(tail.iter().map(|f| f.iter().map(|s| (*s).to_owned()).collect()));
        all
    }

    fn assert_calls_owned(calls: &[String], expected: &[Vec<String>]) {
        let borrowed: Vec<Vec<&str>> = expected.iter().map(|e| e.iter().map(String::as_str).collect()).collect();
        let slices: Vec<&[&str]> = borrowed.iter().map(Vec::as_slice).collect();
        assert_calls(calls, &slices);
    }

    #[test]
    fn a_deployment_runs_every_step_in_order_and_reports_the_digest() {
        let s = Scratch::new("success");
        doubles(&s);
        let outcome = deploy(&settings(&s, false));
        assert_eq!(outcome.verdict, Verdict::Deployed, "{:#?}", outcome.transcript);
        let repo = s.dir.join("repo");
        assert_calls_owned(&s.effective_calls(), &expected(&[before_and_deploy(&repo)], HEALTH_AND_SMOKE));
        let apply = std::fs::read_to_string(repo.join("target/deploy/staging/apply.yaml")).unwrap();
        assert!(apply.contains(&format!("          image: registry.test/restaurant/plugwatch@{DIGEST}\n")), "{apply}");

        let report = report(&outcome);
        assert_eq!(report["result"], "deployed");
        assert_eq!(report["reason"], Value::Null);
        assert_eq!(report["image"]["digest"], format!("registry.test/restaurant/plugwatch@{DIGEST}"));
        assert_eq!(report["image"]["tag"], "abc1234");
        assert_eq!(report["backup"], BACKUP_ID);
        assert_eq!(report["commit"], "abc1234def5678abc1234def5678abc1234def56");
        assert_eq!(report["who"], "Dana Deployer");
        assert_eq!(report["environment"], "staging");
        assert!(report["started_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            step_names(&report),
            [
                "render the configuration (kubectl kustomize)",
                "tests passed",
                "security scans",
                "performance",
                "back up the target (POST /api/v1/backups)",
                "build the image",
                "push the image",
                "record the digest",
                "pin the image by digest in the rendered objects",
                "apply (kubectl apply)",
                "wait for the rollout",
                "health (/healthz and /readyz answer 200)",
                "smoke: list the plugins",
                "smoke: read /metrics",
                "smoke: invoke promo-discount",
                "smoke: the dashboard page",
                "smoke: send a test notification",
                "metrics are being collected",
            ]
        );
        for step in report["steps"].as_array().unwrap() {
            assert_eq!(step["status"], "ok", "{step}");
            assert!(step["duration_secs"].as_f64().unwrap() >= 0.0);
        }
        let metrics_step = report["steps"].as_array().unwrap().last().unwrap();
        assert!(metrics_step["detail"].as_str().unwrap().contains("4 → 5"), "{metrics_step}");
        let markdown = std::fs::read_to_string(outcome.report.as_ref().unwrap().with_extension("md")).unwrap();
        assert!(markdown.contains(": deployed") && markdown.contains(DIGEST), "{markdown}");
        assert!(markdown.contains("| smoke: invoke promo-discount | ok |"), "{markdown}");
        assert!(
            outcome.transcript.iter().any(|l| l.starts_with("deploy: build the image … ok (")),
            "{:#?}",
            outcome.transcript
        );
        // Backup, 4 smoke reads, invoke, notification: each with the token on stdin.
        assert_token_hidden(&s, &outcome, 7);
    }

    #[test]
    fn a_failed_rollout_is_rolled_back_and_says_why() {
        let s = Scratch::new("rollout");
        doubles(&s);
        let stuck = fail("error: deployment \"plugwatch\" exceeded its progress deadline");
        kubectl(&s, vec![stuck, Reply::default()], "plugwatch listening on 0.0.0.0:8080\n");
        let outcome = deploy(&settings(&s, false));
        assert_eq!(outcome.verdict, Verdict::RolledBack, "{:#?}", outcome.transcript);
        let repo = s.dir.join("repo");
        let tail: &[&[&str]] = &[
            &["kubectl -n restaurant-system logs deployment/plugwatch --all-containers=true"],
            &["kubectl -n restaurant-system rollout undo deployment/plugwatch"],
            &["kubectl -n restaurant-system rollout status deployment/plugwatch --timeout=120s"],
        ];
        // No health or smoke call, no restore: a rollout that did not finish changed no data.
        assert_calls_owned(&s.effective_calls(), &expected(&[before_and_deploy(&repo)], tail));
        let report = report(&outcome);
        assert_eq!(report["result"], "rolled back");
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains("`wait for the rollout` failed") && reason.contains("progress deadline"), "{reason}");
        assert!(reason.contains("rolled back to the previous release"), "{reason}");
        assert_eq!(step_status(&report, "wait for the rollout"), "failed");
        assert_eq!(step_status(&report, "roll back (kubectl rollout undo)"), "ok");
        assert_eq!(step_status(&report, "wait for the rollback's rollout"), "ok");
        assert_eq!(step_status(&report, "restore the backup taken before"), "skipped");
        assert_token_hidden(&s, &outcome, 1);
    }

    #[test]
    fn a_failed_smoke_test_is_rolled_back() {
        let s = Scratch::new("smoke");
        doubles(&s);
        curl(&s, http(200, r#"{"outcome":"trap","trap_kind":"unreachable","detail":"wasm trap: unreachable"}"#));
        let outcome = deploy(&settings(&s, false));
        assert_eq!(outcome.verdict, Verdict::RolledBack, "{:#?}", outcome.transcript);
        let repo = s.dir.join("repo");
        let tail: &[&[&str]] = &[
            &["kubectl -n restaurant-system logs deployment/plugwatch"],
            &["kubectl -n restaurant-system rollout undo deployment/plugwatch"],
            &["kubectl -n restaurant-system rollout status deployment/plugwatch"],
        ];
        // The smoke test stops at the failed invoke: no dashboard, notification or second metrics read.
        assert_calls_owned(
            &s.effective_calls(),
            &expected(&[before_and_deploy(&repo), expected(&[], &HEALTH_AND_SMOKE[..5])], tail),
        );
        let report = report(&outcome);
        assert_eq!(report["result"], "rolled back");
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains("`smoke: invoke promo-discount` failed") && reason.contains("trap"), "{reason}");
        assert_eq!(step_status(&report, "smoke: invoke promo-discount"), "failed");
        assert!(!step_names(&report).contains(&"smoke: the dashboard page".to_owned()));
        assert_token_hidden(&s, &outcome, 4);
    }

    #[test]
    fn a_migration_failure_is_rolled_back_and_the_backup_restored() {
        let s = Scratch::new("migration");
        doubles(&s);
        let crashing = fail("error: deployment \"plugwatch\" exceeded its progress deadline");
        let log = "error: storage: database migration failed: while executing migration 14: no such column: kind\n";
        kubectl(&s, vec![crashing, Reply::default()], log);
        let outcome = deploy(&settings(&s, false));
        assert_eq!(outcome.verdict, Verdict::RolledBack, "{:#?}", outcome.transcript);
        let repo = s.dir.join("repo");
        let tail: &[&[&str]] = &[
            &["kubectl -n restaurant-system logs deployment/plugwatch"],
            &["kubectl -n restaurant-system rollout undo deployment/plugwatch"],
            &["kubectl -n restaurant-system rollout status deployment/plugwatch"],
            // After the old release is back, the backup taken before the apply goes back in.
            &["curl", "-X POST", "-H @-", &format!("http://plugwatch.test/api/v1/backups/{BACKUP_ID}/restore")],
            &["curl", "-X GET", "http://plugwatch.test/readyz"],
        ];
        assert_calls_owned(&s.effective_calls(), &expected(&[before_and_deploy(&repo)], tail));
        let report = report(&outcome);
        assert_eq!(report["result"], "rolled back");
        let reason = report["reason"].as_str().unwrap();
        assert!(
            reason.contains("migration failure") && reason.contains(&format!("the backup {BACKUP_ID}")),
            "{reason}"
        );
        assert_eq!(step_status(&report, "restore the backup taken before"), "ok");
        assert_eq!(step_status(&report, "health after the restore"), "ok");
        // The backup and the restore.
        assert_token_hidden(&s, &outcome, 2);
    }

    /// Several replicas on PostgreSQL: the backup is taken, but after a migration failure the tool says how
    /// to restore it (every replica stopped) instead of restoring through the API.
    #[test]
    fn a_migration_failure_on_a_cluster_is_rolled_back_and_the_restore_explained() {
        let s = Scratch::new("migration-cluster");
        doubles(&s);
        let crashing = fail("error: deployment \"plugwatch\" exceeded its progress deadline");
        let log = "error: storage: database migration failed: while executing migration 14: no such column: kind\n";
        kubectl(&s, vec![crashing, Reply::default()], log);
        let mut settings = settings(&s, false);
        settings.environment.restore_in_place = false;
        let outcome = deploy(&settings);
        assert_eq!(outcome.verdict, Verdict::RolledBack, "{:#?}", outcome.transcript);
        let calls = s.effective_calls();
        assert!(!calls.iter().any(|c| c.contains("/restore")), "no restore through the API: {calls:#?}");
        let report = report(&outcome);
        let reason = report["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("plugwatch backup restore {BACKUP_ID}")) && reason.contains("to 0 replicas"),
            "{reason}"
        );
        assert_eq!(step_status(&report, "restore the backup taken before"), "skipped");
    }

    #[test]
    fn a_failed_precheck_builds_pushes_and_applies_nothing() {
        let s = Scratch::new("precheck");
        doubles(&s);
        let mut settings = settings(&s, false);
        settings.environment.prechecks[1].command = vec!["check".into(), "fail".into()];
        let outcome = deploy(&settings);
        assert_eq!(outcome.verdict, Verdict::Refused, "{:#?}", outcome.transcript);
        let calls = s.effective_calls();
        // Stopped at the failed check: not the next one, no backup, no docker, no apply.
        assert_calls(&calls, &[&["kubectl kustomize"], &["check tests-passed"], &["check fail"]]);
        assert!(!calls.iter().any(|c| c.starts_with("docker") || c.contains("apply") || c.starts_with("curl")));
        let report = report(&outcome);
        assert_eq!(report["result"], "refused");
        assert_eq!(report["image"]["digest"], Value::Null);
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains("`security scans` failed") && reason.contains("the check failed"), "{reason}");
        assert!(reason.contains("nothing was built, pushed or applied"), "{reason}");
        assert_eq!(step_status(&report, "security scans"), "failed");
        assert_eq!(step_names(&report).len(), 3);
        assert_token_hidden(&s, &outcome, 0);
    }

    #[test]
    fn a_failed_push_applies_nothing_and_rolls_nothing_back() {
        let s = Scratch::new("push");
        doubles(&s);
        s.double("docker", &[("push", vec![fail("denied: requested access to the resource is denied")])]);
        let outcome = deploy(&settings(&s, false));
        assert_eq!(outcome.verdict, Verdict::Failed, "{:#?}", outcome.transcript);
        let calls = s.effective_calls();
        assert!(calls.last().unwrap().starts_with("docker push "), "{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains(" apply ") || c.contains("rollout")), "{calls:#?}");
        let report = report(&outcome);
        assert_eq!(report["result"], "failed");
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains("`push the image` failed") && reason.contains("denied"), "{reason}");
        assert!(reason.contains("nothing was rolled back"), "{reason}");
    }

    #[test]
    fn a_dry_run_runs_nothing_and_prints_every_command() {
        let s = Scratch::new("dry");
        doubles(&s);
        let outcome = deploy(&settings(&s, true));
        assert_eq!(outcome.verdict, Verdict::DryRun, "{:#?}", outcome.transcript);
        // Nothing but its own report, marked as a dry run's.
        let report_path = outcome.report.clone().unwrap();
        let mut written = walk(&s.dir.join("repo"));
        written.sort();
        assert_eq!(written, [report_path.clone(), report_path.with_extension("md")]);
        assert!(report_path.to_string_lossy().ends_with("-staging-dry-run.json"), "{}", report_path.display());
        let report = report(&outcome);
        assert_eq!((report["dry_run"].as_bool(), report["result"].as_str()), (Some(true), Some("dry run")));
        assert_eq!(step_names(&report).len(), 18);
        for step in report["steps"].as_array().unwrap() {
            let status = step["status"].as_str().unwrap();
            let skipped = step["name"] == "back up the target (POST /api/v1/backups)" && status == "skipped";
            assert!(status == "planned" || skipped, "{step}");
        }
        // Only git's read-only look-ups ran.
        let calls = s.calls();
        assert!(
            !calls.is_empty()
                && calls.iter().all(|c| c.starts_with("git rev-parse")
                    || c.starts_with("git config")
                    || c.starts_with("git remote get-url")),
            "{calls:#?}"
        );
        let commands: Vec<&String> = outcome.transcript.iter().filter(|l| l.starts_with("deploy:   $ ")).collect();
        let expected = [
            "kubectl kustomize ",
            "check tests-passed abc1234def5678abc1234def5678abc1234def56",
            "check scan ",
            "check load",
            "curl -sS --max-time 30 -X POST -w '\\n%{http_code}' -H @- http://plugwatch.test/api/v1/backups   (stdin: Authorization: Bearer ***)",
            "docker build -f Dockerfile -t registry.test/restaurant/plugwatch:abc1234 ",
            "docker push registry.test/restaurant/plugwatch:abc1234",
            "docker inspect --format '{{index .RepoDigests 0}}' registry.test/restaurant/plugwatch:abc1234",
            "kubectl apply -f ",
            "kubectl -n restaurant-system rollout status deployment/plugwatch --timeout=120s",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' http://plugwatch.test/healthz",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' http://plugwatch.test/readyz",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' -H @- http://plugwatch.test/api/v1/plugins",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' -H @- http://plugwatch.test/metrics",
            "curl -sS --max-time 30 -X POST -w '\\n%{http_code}' -H @- -H 'content-type: application/json' --data-binary",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' -H @- http://plugwatch.test/plugin-monitoring",
            "curl -sS --max-time 30 -X POST -w '\\n%{http_code}' -H @- http://plugwatch.test/api/v1/alerts/channels/7/test",
            "curl -sS --max-time 30 -X GET -w '\\n%{http_code}' -H @- http://plugwatch.test/metrics",
            // What it would do on a failure after the apply.
            "kubectl -n restaurant-system logs deployment/plugwatch --all-containers=true --tail=500",
            "kubectl -n restaurant-system rollout undo deployment/plugwatch",
            "kubectl -n restaurant-system rollout status deployment/plugwatch --timeout=120s",
        ];
        assert_eq!(commands.len(), expected.len(), "{commands:#?}");
        for (line, start) in commands.iter().zip(expected) {
            assert!(line.starts_with(&format!("deploy:   $ {start}")), "`{line}` does not start with `{start}`");
        }
        let transcript = outcome.transcript.join("\n");
        assert!(transcript.contains("/api/v1/backups/<id>/restore (Authorization: Bearer ***)"), "{transcript}");
        assert_token_hidden(&s, &outcome, 0);
    }

    #[test]
    fn without_a_token_nothing_is_deployed() {
        let s = Scratch::new("notoken");
        doubles(&s);
        let mut settings = settings(&s, false);
        settings.token = None;
        let outcome = deploy(&settings);
        assert_eq!(outcome.verdict, Verdict::Refused);
        assert!(outcome.reason.as_deref().unwrap().contains("PLUGWATCH_DEPLOY_TOKEN"), "{:?}", outcome.reason);
        // Refused before the first command: no pre-check spent its time on a deployment that cannot finish.
        assert_eq!(s.effective_calls(), Vec::<String>::new());
        assert_eq!(step_names(&report(&outcome)), ["the API token"]);
    }

    /// A stand-in for a deployed plugwatch on loopback (std only): the routes the after-deploy stage
    /// calls, credentials required as plugwatch requires them, the invocation counter counting.
    fn fake_plugwatch() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut invoked = 0;
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let request = String::from_utf8_lossy(&read_request(&mut stream).unwrap()).into_owned();
                let (head, body) = request.split_once("\r\n\r\n").unwrap_or((&request, ""));
                let line = head.lines().next().unwrap_or_default().to_owned();
                let authorized =
                    head.lines().any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}")));
                log.lock().unwrap().push(format!("{line} authorized={authorized}"));
                let (status, answer) = match line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                    ["GET", "/healthz"] | ["GET", "/readyz"] => (200, r#"{"status":"ok"}"#.to_owned()),
                    _ if !authorized => (401, r#"{"error":{"code":"unauthorized"}}"#.to_owned()),
                    ["GET", "/api/v1/plugins"] => (200, r#"{"plugins":[{"name":"promo-discount"}]}"#.to_owned()),
                    ["GET", "/metrics"] => (200, metrics(invoked)),
                    ["POST", "/api/v1/plugins/promo-discount/invoke"] => {
                        let request: Value = serde_json::from_str(body).unwrap_or_default();
                        let ok = request["hook"] == "order.pricing" && request["input"]["items"].is_array();
                        invoked += 1;
                        (200, json!({"outcome": if ok { "ok" } else { "plugin_error" }, "wall_us": 700}).to_string())
                    }
                    ["GET", "/plugin-monitoring"] => (200, "<!doctype html><html lang=en></html>".to_owned()),
                    ["POST", "/api/v1/alerts/channels/7/test"] => (200, r#"{"delivered":true}"#.to_owned()),
                    _ => (404, "{}".to_owned()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.read(&mut [0; 1]);
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[test]
    fn the_after_deploy_stage_speaks_http_through_the_real_curl() {
        let s = Scratch::new("real-curl");
        let (url, seen) = fake_plugwatch();
        let mut settings = settings(&s, false);
        // The machine's own curl this time, no test double.
        settings.path = std::env::var_os("PATH").unwrap();
        settings.url = url;
        let mut run = Run::new(&settings);
        run.after().unwrap_or_else(|e| panic!("{e:#}\n{:#?}", run.transcript));
        let statuses: Vec<(&str, Status)> = run.steps.iter().map(|s| (s.name.as_str(), s.status)).collect();
        assert_eq!(statuses.len(), 7, "{statuses:?}");
        assert!(statuses.iter().all(|(_, status)| *status == Status::Ok), "{statuses:?}");
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "GET /healthz HTTP/1.1 authorized=false",
                "GET /readyz HTTP/1.1 authorized=false",
                "GET /api/v1/plugins HTTP/1.1 authorized=true",
                "GET /metrics HTTP/1.1 authorized=true",
                "POST /api/v1/plugins/promo-discount/invoke HTTP/1.1 authorized=true",
                "GET /plugin-monitoring HTTP/1.1 authorized=true",
                "POST /api/v1/alerts/channels/7/test HTTP/1.1 authorized=true",
                "GET /metrics HTTP/1.1 authorized=true",
            ]
        );
        assert!(run.steps.last().unwrap().detail.contains("0 → 1"), "{}", run.steps.last().unwrap().detail);
        assert!(!run.transcript.iter().any(|l| l.contains(TOKEN)));
    }

    #[test]
    fn the_image_is_pinned_only_where_the_manifests_name_it() {
        let yaml = "containers:\n  - image: plugwatch:staging\n    name: a\n  - name: b\n    image: \"plugwatch\"\n  \
                    - image: plugwatch-sidecar:1\n  - image: busybox\n# image: plugwatch\n";
        let (pinned, n) = pin_image(yaml, "plugwatch", "r.test/plugwatch@sha256:ab");
        assert_eq!(n, 2, "{pinned}");
        assert_eq!(
            pinned,
            "containers:\n  - image: r.test/plugwatch@sha256:ab\n    name: a\n  - name: b\n    image: r.test/plugwatch@sha256:ab\n  \
             - image: plugwatch-sidecar:1\n  - image: busybox\n# image: plugwatch\n"
        );
    }

    #[test]
    fn the_invocation_counter_is_summed_over_versions_and_outcomes() {
        let text = "# HELP x\nplugwatch_plugin_invocations_total{plugin=\"a\",version=\"1\",outcome=\"ok\"} 3\n\
                    plugwatch_plugin_invocations_total{plugin=\"a\",version=\"2\",outcome=\"trap\"} 2 1700000000\n\
                    plugwatch_plugin_invocations_total{plugin=\"ab\",version=\"1\",outcome=\"ok\"} 40\n\
                    plugwatch_plugin_invocations_total_other{plugin=\"a\"} 500\n";
        assert_eq!(invocations(text, "a"), 5.0);
        assert_eq!(invocations(text, "missing"), 0.0);
    }

    #[test]
    fn the_committed_configuration_names_what_the_repository_has() {
        let root = crate::root();
        let base = std::fs::read_to_string(root.join("deploy/kubernetes/base/deployment.yaml")).unwrap();
        let demo = std::fs::read_to_string(root.join("crates/server/src/demo.rs")).unwrap();
        for name in ["staging", "production"] {
            let env = load_config(&root.join("deploy/deploy.toml"), name).unwrap();
            assert!(root.join(&env.overlay).join("kustomization.yaml").is_file(), "{name}: {:?}", env.overlay);
            assert!(base.contains(&format!("metadata:\n  name: {}\n", env.deployment)), "{name}");
            assert!(base.contains(&format!("image: {}\n", env.manifest_image)), "{name}");
            assert_eq!(env.namespace, "restaurant-system");
            assert!(demo.contains(&format!("name: \"{}\".into()", env.smoke.plugin)), "{name}: not a demo plugin");
            let names: Vec<&str> = env.prechecks.iter().map(|p| p.name.as_str()).collect();
            for command in
                ["target/ci/passed/{commit}", "git status --porcelain", "cargo-deny", "hadolint", "--rendered", "load"]
            {
                assert!(
                    env.prechecks.iter().any(|p| p.command.iter().any(|a| a.contains(command))),
                    "{name}: no pre-check runs {command} ({names:?})"
                );
            }
        }
        assert!(load_config(&root.join("deploy/deploy.toml"), "staging").unwrap().backup);
        let production = load_config(&root.join("deploy/deploy.toml"), "production").unwrap();
        assert!(production.backup && !production.restore_in_place);
        assert!(parse_config(CONFIG, "prod").unwrap_err().to_string().contains("no environment `prod`"));
        let typo = CONFIG.replace("rollout_timeout_secs", "rollout_timeout");
        assert!(
            parse_config(&typo, "staging")
                .unwrap_err()
                .to_string()
                .contains("`staging.rollout_timeout` is not a setting")
        );
    }

    #[test]
    fn times_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 3_723);
        assert_eq!(rfc3339(t), "2026-12-01T01:02:03Z");
        assert_eq!(file_stamp(t), "20261201T010203Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
