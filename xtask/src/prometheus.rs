//! `cargo xtask prometheus`: the committed observability configuration (`deploy/prometheus`,
//! `deploy/grafana`) against a live `plugwatch serve --demo` and a real Prometheus and Alertmanager, all on
//! free loopback ports: the static checks (`promtool check config/rules`, `amtool check-config`), the
//! scrape with a `viewer` token read from a file, every PromQL expression of the Grafana dashboard
//! returning data, and the alerting rules loaded and evaluated without error. Logs and the templated
//! configuration go to `target/prometheus-run`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::server::Killed;

/// How long Prometheus may take, once plugwatch is ready, to scrape it and have two samples for every
/// rate of the dashboard (scrape and evaluation interval: 15 s in the committed configuration).
const DATA_TIMEOUT: Duration = Duration::from_secs(150);

/// What `$__rate_interval` and `$__interval` become: four scrape intervals, as Grafana computes it.
const RATE_INTERVAL: &str = "1m";

/// Installs Debian's Prometheus and Alertmanager (for `prometheus`, `promtool` and `amtool`) unless they are
/// on PATH already.
pub fn tools(_root: &Path) -> anyhow::Result<()> {
    if ["prometheus", "promtool", "prometheus-alertmanager", "amtool"].iter().all(|tool| on_path(tool)) {
        return Ok(());
    }
    crate::step(
        "prometheus",
        Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
    .context("the Prometheus test needs Debian's `prometheus` and `prometheus-alertmanager` (apt-get, as root)")
}

pub(crate) fn on_path(tool: &str) -> bool {
    Command::new("which").arg(tool).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    println!("\nxtask: prometheus");
    let started = Instant::now();
    let result = run_inner(root);
    println!("xtask: prometheus: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn run_inner(root: &Path) -> anyhow::Result<()> {
    tools(root)?;
    let deploy = root.join("deploy");
    let config = deploy.join("prometheus/prometheus.yml");
    let rules_dir = deploy.join("prometheus/rules");
    let rule_files = files_ending(&rules_dir, ".rules.yml")?;
    ensure!(!rule_files.is_empty(), "no *.rules.yml in {}", rules_dir.display());

    // The committed files as they are. `--syntax-only`: the committed configuration names the token file
    // as compose mounts it (/run/secrets/…), which does not exist here; the templated copy below gets the
    // full check (files referenced, rule files parsed).
    crate::step(
        "promtool check config (committed)",
        Command::new("promtool").args(["check", "config", "--syntax-only"]).arg(&config),
    )?;
    crate::step("promtool check rules", Command::new("promtool").args(["check", "rules"]).args(&rule_files))?;
    let alertmanager_config = deploy.join("prometheus/alertmanager.yml");
    crate::step("amtool check-config", Command::new("amtool").arg("check-config").arg(&alertmanager_config))?;

    let plugwatch = crate::image::plugwatch_binary(root)?;
    let work = root.join("target/prometheus-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let server_log = work.join("plugwatch.log");
    let (_server, addr) = crate::server::start_demo(root, &plugwatch, &work, &server_log)?;

    // The least role that may read /metrics: `viewer` (Permission::Read). The one role without Read,
    // `invoker`, must be refused, or the claim (and the documentation's advice) is wrong.
    let token = crate::server::service_token(&addr, crate::server::DEMO_PASSWORD, &work, "prometheus", "viewer")?;
    let invoker = crate::server::service_token(&addr, crate::server::DEMO_PASSWORD, &work, "xtask-invoker", "invoker")?;
    let metrics = format!("http://{addr}/metrics");
    ensure!(http_status(&metrics, Some(&token))? == 200, "a viewer token cannot read {metrics}");
    let refused = http_status(&metrics, Some(&invoker))?;
    ensure!(refused == 403, "an invoker token reading {metrics} got {refused}, not 403");
    let token_file = work.join("plugwatch_metrics_token");
    write_private(&token_file, &token)?;

    // Alertmanager with the committed configuration (clustering off: it would listen on every interface).
    let am_addr = crate::server::free_loopback_addr()?;
    let _alertmanager = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", alertmanager_config.display()))
            .arg(format!("--storage.path={}", work.join("alertmanager").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("alertmanager.log"))?)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start prometheus-alertmanager")?,
    );

    // The committed prometheus.yml with only its addresses and file paths rewritten.
    let prom_addr = crate::server::free_loopback_addr()?;
    let committed = std::fs::read_to_string(&config)?;
    let templated = template(
        &committed,
        &[
            ("\"plugwatch:8080\"", format!("\"{addr}\"")),
            ("\"alertmanager:9093\"", format!("\"{am_addr}\"")),
            ("\"localhost:9090\"", format!("\"{prom_addr}\"")),
            ("/run/secrets/plugwatch_metrics_token", token_file.display().to_string()),
            ("rules/*.rules.yml", format!("{}/*.rules.yml", rules_dir.display())),
        ],
    )?;
    let prom_dir = work.join("prometheus");
    std::fs::create_dir_all(&prom_dir)?;
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(&prom_config, templated)?;
    crate::step(
        "promtool check config (templated)",
        Command::new("promtool").args(["check", "config"]).arg(&prom_config),
    )?;

    let prom_log = work.join("prometheus.log");
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log)?)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start prometheus")?,
    );
    let logs = || {
        format!("logs: {}, {}, {}", server_log.display(), prom_log.display(), work.join("alertmanager.log").display())
    };
    crate::server::wait_until_ok(&format!("http://{prom_addr}/-/ready"), Duration::from_secs(60)).with_context(logs)?;
    let api = format!("http://{prom_addr}/api/v1");

    let deadline = Instant::now() + DATA_TIMEOUT;
    wait_for_target_up(&api, &addr, deadline).with_context(logs)?;
    println!("xtask: Prometheus scrapes plugwatch on {addr} with the viewer token");

    let dashboard = root.join("deploy/grafana/dashboards/plugwatch.json");
    let queries = dashboard_queries(&std::fs::read_to_string(&dashboard)?)
        .with_context(|| format!("reading {}", dashboard.display()))?;
    ensure!(!queries.is_empty(), "{} has no PromQL expression", dashboard.display());
    check_queries(&api, &queries, deadline).with_context(logs)?;
    println!("xtask: all {} dashboard expressions return data", queries.len());

    let expected = alert_names(&rule_files)?;
    check_rules(&api, &expected, deadline).with_context(logs)?;
    println!("xtask: {} alerting rules loaded and evaluated without error", expected.len());
    check_alertmanager(&api, &am_addr, deadline).with_context(logs)?;
    println!("xtask: Prometheus delivers to the Alertmanager on {am_addr}");
    Ok(())
}

/// `text` with every `from` replaced by its `to`; each `from` must occur (a committed file that no longer
/// says what the template expects would otherwise be tested unchanged, against the wrong addresses).
fn template(text: &str, replacements: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = text.to_owned();
    for (from, to) in replacements {
        ensure!(
            out.contains(from),
            "the committed prometheus.yml no longer contains {from}: update the test's template"
        );
        out = out.replace(from, to);
    }
    Ok(out)
}

/// Waits until Prometheus reports the target at `addr` as up.
fn wait_for_target_up(api: &str, addr: &str, deadline: Instant) -> anyhow::Result<()> {
    let mut last = String::from("the target is not listed yet");
    while Instant::now() < deadline {
        let targets = get_json(&format!("{api}/targets?state=active"))?;
        let found = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["labels"]["instance"].as_str() == Some(addr));
        if let Some(target) = found {
            if target["health"] == "up" {
                return Ok(());
            }
            last = format!("health {}, last error: {}", target["health"], target["lastError"]);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("Prometheus never scraped plugwatch at {addr} successfully: {last}")
}

/// One PromQL expression of the dashboard, named by where it is.
#[derive(Debug)]
struct Query {
    place: String,
    expr: String,
}

/// Every PromQL expression of a Grafana dashboard, panels (rows' nested panels included) and query
/// variables (`label_values(selector, label)` becomes `count by (label) (selector)`), with the dashboard's
/// variables replaced by a regex matching every value and `$__rate_interval` by a fixed window. A `$` left
/// over (a variable the dashboard does not define) is an error.
fn dashboard_queries(json: &str) -> anyhow::Result<Vec<Query>> {
    let dashboard: Value = serde_json::from_str(json)?;
    let variables = dashboard["templating"]["list"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = variables
        .iter()
        .filter(|v| v["type"] == "query" || v["type"] == "custom")
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let substitute = |expr: &str, place: &str| -> anyhow::Result<String> {
        let mut out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", RATE_INTERVAL);
        for name in &names {
            out = out.replace(&format!("${{{name}}}"), ".+").replace(&format!("${name}"), ".+");
        }
        ensure!(!out.contains('$'), "{place}: `{expr}` uses a variable the dashboard does not define");
        Ok(out)
    };
    let mut queries = Vec::new();
    for variable in &variables {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let place = format!("variable `{name}`");
        let definition =
            variable["query"]["query"].as_str().or(variable["query"].as_str()).or(variable["definition"].as_str());
        let definition = definition.with_context(|| format!("{place} has no query"))?;
        let expr = match definition.trim().strip_prefix("label_values(").and_then(|rest| rest.strip_suffix(')')) {
            Some(args) => {
                let (selector, label) = args.rsplit_once(',').with_context(|| format!("{place}: `{definition}`"))?;
                format!("count by ({}) ({})", label.trim(), selector.trim())
            }
            None => definition.to_owned(),
        };
        queries.push(Query { expr: substitute(&expr, &place)?, place });
    }
    let mut panels: Vec<Value> = dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else { continue };
            let place = format!(
                "panel `{}` query {}",
                panel["title"].as_str().unwrap_or("?"),
                target["refId"].as_str().unwrap_or("?")
            );
            queries.push(Query { expr: substitute(expr, &place)?, place });
        }
    }
    queries.sort_by(|a, b| a.place.cmp(&b.place));
    Ok(queries)
}

/// Evaluates every query until each returns at least one series (or the deadline passes), then names each
/// that returned none or failed.
fn check_queries(api: &str, queries: &[Query], deadline: Instant) -> anyhow::Result<()> {
    loop {
        let mut failing = Vec::new();
        for query in queries {
            let answer = query_api(api, &query.expr)?;
            if answer["status"] != "success" {
                failing.push(format!("{}: `{}`: {}", query.place, query.expr, answer["error"]));
            } else if answer["data"]["result"].as_array().is_none_or(Vec::is_empty) {
                failing.push(format!("{}: `{}`: no data", query.place, query.expr));
            }
        }
        if failing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} dashboard expressions return no data:\n  {}",
                failing.len(),
                queries.len(),
                failing.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The `alert:` names of the committed rule files (a line scan: xtask carries no YAML parser, and the
/// files keep one `- alert: Name` per line).
fn alert_names(files: &[PathBuf]) -> anyhow::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for file in files {
        for line in std::fs::read_to_string(file)?.lines() {
            if let Some(name) = line.trim().strip_prefix("- alert:") {
                ensure!(names.insert(name.trim().to_owned()), "alert {} is defined twice", name.trim());
            }
        }
    }
    Ok(names)
}

/// Waits until Prometheus has loaded exactly the committed alerting rules and evaluated each at least once,
/// then requires every one healthy (no evaluation error).
fn check_rules(api: &str, expected: &BTreeSet<String>, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let answer = get_json(&format!("{api}/rules?type=alert"))?;
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().into_iter().flatten())
            .collect();
        let loaded: BTreeSet<String> = rules.iter().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
        ensure!(&loaded == expected, "Prometheus loaded the alerts {loaded:?}, the rule files define {expected:?}");
        // An unevaluated rule reports the zero time.
        let evaluated = rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001-")));
        if evaluated {
            let unhealthy: Vec<String> = rules
                .iter()
                .filter(|r| r["health"] != "ok" || r["lastError"].as_str().is_some_and(|e| !e.is_empty()))
                .map(|r| format!("{}: health {}, error {}", r["name"], r["health"], r["lastError"]))
                .collect();
            ensure!(unhealthy.is_empty(), "alerting rules failing to evaluate:\n  {}", unhealthy.join("\n  "));
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "not every alerting rule was evaluated in time");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Waits until Prometheus lists the test's Alertmanager as an active one.
fn check_alertmanager(api: &str, am_addr: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let answer = get_json(&format!("{api}/alertmanagers"))?;
        let active = answer["data"]["activeAlertmanagers"].as_array().into_iter().flatten();
        if active.filter_map(|a| a["url"].as_str()).any(|url| url.contains(am_addr)) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "Prometheus does not list the Alertmanager on {am_addr}: {answer}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn query_api(api: &str, expr: &str) -> anyhow::Result<Value> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--get", "--data-urlencode"])
        .arg(format!("query={expr}"))
        .arg(format!("{api}/query"))
        .output()?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("Prometheus's answer to `{expr}` is not JSON"))
}

fn get_json(url: &str) -> anyhow::Result<Value> {
    let out = Command::new("curl").args(["-sf", "--max-time", "10", url]).output()?;
    ensure!(out.status.success(), "GET {url} failed");
    serde_json::from_slice(&out.stdout).with_context(|| format!("GET {url}: not JSON"))
}

/// The HTTP status of a GET, with a bearer token if given (passed to curl on stdin, not in its arguments).
pub(crate) fn http_status(url: &str, token: Option<&str>) -> anyhow::Result<u16> {
    let mut command = Command::new("curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]);
    if token.is_some() {
        command.args(["-H", "@-"]);
    }
    let mut child = command.arg(url).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    if let Some(token) = token {
        use std::io::Write;
        child.stdin.take().context("curl's stdin")?.write_all(format!("Authorization: Bearer {token}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().with_context(|| format!("GET {url}: no status"))
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(())
}

fn files_ending(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_variables_and_label_values_are_rewritten_and_unknown_ones_refused() {
        let json = r#"{"templating":{"list":[
            {"name":"datasource","type":"datasource"},
            {"name":"plugin","type":"query","query":{"query":"label_values(m{instance=~\"$instance\"}, plugin)"}},
            {"name":"instance","type":"query","definition":"label_values(up, instance)","query":"label_values(up, instance)"}]},
          "panels":[{"type":"row","title":"r","panels":[
            {"title":"p","targets":[{"refId":"A","expr":"rate(x{plugin=~\"${plugin}\"}[$__rate_interval])"}]}]}]}"#;
        let queries = dashboard_queries(json).unwrap();
        let exprs: Vec<&str> = queries.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(
            exprs,
            ["rate(x{plugin=~\".+\"}[1m])", "count by (instance) (up)", "count by (plugin) (m{instance=~\".+\"})"]
        );
        let unknown = json.replace("${plugin}", "$other");
        assert!(dashboard_queries(&unknown).unwrap_err().to_string().contains("does not define"));
    }

    #[test]
    fn the_committed_dashboard_yields_queries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let json = std::fs::read_to_string(root.join("deploy/grafana/dashboards/plugwatch.json")).unwrap();
        let queries = dashboard_queries(&json).unwrap();
        assert!(queries.iter().any(|q| q.expr.contains("histogram_quantile(0.99")), "{queries:?}");
    }

    #[test]
    fn a_template_whose_anchor_is_gone_is_refused() {
        assert_eq!(template("a b", &[("a", "c".into())]).unwrap(), "c b");
        assert!(template("a b", &[("x", "c".into())]).is_err());
    }
}
