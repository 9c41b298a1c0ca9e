//! `plugwatch run`: the local runner for plugin authors. Runs one invocation exactly as the server would and
//! reports what it did and cost.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use bytesize::ByteSize;
use plugwatch_runtime::{Invocation, Limits, LoadOptions, Prewarm, Runtime, RuntimeConfig};
use serde_json::json;

/// Run a plugin once, locally, and report its output and what it cost.
///
/// The plugin's output goes to stdout and the measurement to stderr; with `--json`, one JSON object with
/// both goes to stdout. Exit status: 0 when the outcome is `ok`, 1 for any other outcome, 2 when the
/// plugin could not be loaded or the arguments are wrong.
#[derive(clap::Args)]
pub struct Run {
    /// The plugin: a WebAssembly component built against wit/plugin.wit.
    plugin: PathBuf,
    /// The hook (event name) to pass to the plugin.
    #[arg(long, default_value = "order.created")]
    hook: String,
    /// A file holding the input bytes (`-` for stdin). Without it the input is empty.
    #[arg(long)]
    input: Option<PathBuf>,
    /// A configuration value the plugin can read with `host.config`, as key=value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Wall-clock limit, e.g. 50ms or 2s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    timeout: Duration,
    /// Linear-memory cap, e.g. 64MiB.
    #[arg(long, default_value = "64MiB")]
    memory: ByteSize,
    /// Instruction budget (fuel) [default: 2,000,000,000 per 100 ms of --timeout, as on the server].
    #[arg(long)]
    fuel: Option<u64>,
    /// Print one JSON object (output and measurement) on stdout instead.
    #[arg(long)]
    json: bool,
    /// Where compiled plugins are cached between runs (default: $XDG_CACHE_HOME/plugwatch or ~/.cache/plugwatch).
    #[arg(long, env = "PLUGWATCH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled plugins.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

impl Run {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let bytes = std::fs::read(&self.plugin).with_context(|| format!("cannot read {}", self.plugin.display()))?;
        let input = match &self.input {
            None => Vec::new(),
            Some(p) if p.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).context("cannot read stdin")?;
                buf
            }
            Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        };
        let limits = Limits {
            timeout: self.timeout,
            memory_bytes: self.memory.as_u64(),
            fuel: Some(self.fuel.unwrap_or_else(|| plugwatch_runtime::default_fuel_for(self.timeout))),
            ..Limits::default()
        };
        let cache_dir = if self.no_cache { None } else { self.cache_dir.clone().or_else(default_cache_dir) };
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let record = tokio.block_on(async {
            let runtime = Runtime::new(RuntimeConfig { cache_dir, ..RuntimeConfig::default() })?;
            let options = LoadOptions {
                limits,
                config: self.config.iter().cloned().collect(),
                prewarm: Prewarm::Off,
                ..LoadOptions::default()
            };
            let plugin = runtime.load(bytes, options).await.context("the plugin was not loaded")?;
            Ok::<_, anyhow::Error>(plugin.invoke(&self.hook, &input).await)
        })?;

        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &to_json(&record))?;
            writeln!(out)?;
        } else {
            if let Some(output) = &record.output {
                let mut out = std::io::stdout().lock();
                out.write_all(output)?;
                out.flush()?;
            }
            eprint!("{}", report(&record));
        }
        if record.outcome.is_ok() {
            return Ok(ExitCode::SUCCESS);
        }
        if !self.json {
            eprintln!("error: {}: {}", record.outcome, record.detail.as_deref().unwrap_or("no detail"));
        }
        Ok(ExitCode::from(1))
    }
}

/// `$XDG_CACHE_HOME/plugwatch`, else `~/.cache/plugwatch`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("plugwatch"))
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// The record as one JSON object; `outcome` holds the outcome's name.
fn to_json(r: &Invocation) -> serde_json::Value {
    let (output, output_base64) = match &r.output {
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes))),
        },
        None => (None, None),
    };
    json!({
        "outcome": r.outcome.as_str(),
        "trap_kind": r.trap_kind,
        "detail": r.detail,
        "output": output,
        "output_base64": output_base64,
        "wall_us": micros(r.wall),
        "queued_us": micros(r.queued),
        "instantiate_us": micros(r.instantiate),
        "cpu_us": micros(r.cpu),
        "instructions": r.instructions,
        "memory_peak_bytes": r.memory_peak_bytes,
        "input_bytes": r.input_bytes,
        "output_bytes": r.output_bytes,
        "logs": r.logs.iter().map(|l| json!({
            "at_us": micros(l.at),
            "level": l.level.as_str(),
            "source": l.source.as_str(),
            "message": l.message,
        })).collect::<Vec<_>>(),
        "logs_dropped_bytes": r.logs_dropped_bytes,
    })
}

/// The record for a human, one measurement per line.
fn report(r: &Invocation) -> String {
    let mut s = String::new();
    let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<14}{v}\n"));
    s.push('\n');
    let outcome = match &r.trap_kind {
        Some(kind) => format!("{} ({kind})", r.outcome),
        None => r.outcome.to_string(),
    };
    line(&mut s, "outcome", outcome);
    line(&mut s, "wall", format!("{:?} (instantiate {:?})", r.wall, r.instantiate));
    line(&mut s, "cpu", format!("{:?}", r.cpu));
    line(&mut s, "instructions", r.instructions.map_or("not metered".into(), |n| n.to_string()));
    line(&mut s, "memory peak", ByteSize(r.memory_peak_bytes).display().iec().to_string());
    line(&mut s, "input", format!("{} bytes", r.input_bytes));
    line(&mut s, "output", format!("{} bytes", r.output_bytes));
    if r.logs.is_empty() {
        line(&mut s, "logs", "none".into());
    } else {
        line(&mut s, "logs", format!("{} lines", r.logs.len()));
        for l in &r.logs {
            s.push_str(&format!(
                "  {:>9.3}ms {:<5} [{}] {}\n",
                l.at.as_secs_f64() * 1e3,
                l.level.as_str(),
                l.source.as_str(),
                l.message
            ));
        }
    }
    if r.logs_dropped_bytes > 0 {
        line(&mut s, "logs dropped", format!("{} bytes (over the log limit)", r.logs_dropped_bytes));
    }
    s
}
