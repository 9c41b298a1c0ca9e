//! The JSON shapes of the API: requests in, responses out, and their conversions to and from domain types.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use plugwatch_registry::{Entry, HookOutcome, HookRun, Manifest};
use plugwatch_runtime::{Invocation, Limits, LogLine};
use plugwatch_store::{FailurePolicy, Subscription, VersionRecord};
use plugwatch_telemetry::{LiveStats, RunLogEntry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::ApiError;

/// The `manifest` part of an upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestDto {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub hooks: Vec<HookDto>,
    #[serde(default)]
    pub limits: LimitsDto,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Write-only: stored encrypted, handed to the plugin, never returned.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: BTreeMap<String, crate::config::Secret>,
    #[serde(default)]
    pub failure_policy: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A subscription to a hook; lower priorities run first.
#[derive(Debug, Deserialize, Serialize, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookDto {
    pub hook: String,
    #[serde(default = "default_priority")]
    pub priority: i32,
}

fn default_priority() -> i32 {
    100
}

/// Per-plugin limits; each omitted field takes the default.
#[derive(Debug, Default, Deserialize, Serialize, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
}

impl LimitsDto {
    pub fn to_limits(&self) -> Limits {
        let d = Limits::default();
        let timeout = self.timeout_ms.map_or(d.timeout, Duration::from_millis);
        Limits {
            timeout,
            fuel: Some(self.fuel.unwrap_or_else(|| plugwatch_runtime::default_fuel_for(timeout))),
            memory_bytes: self.memory_bytes.unwrap_or(d.memory_bytes),
            max_input_bytes: self.max_input_bytes.unwrap_or(d.max_input_bytes),
            max_output_bytes: self.max_output_bytes.unwrap_or(d.max_output_bytes),
            max_log_bytes: self.max_log_bytes.unwrap_or(d.max_log_bytes),
            max_concurrency: self.max_concurrency.unwrap_or(d.max_concurrency),
            max_queue: self.max_queue.unwrap_or(d.max_queue),
        }
    }

    pub fn from_limits(l: &Limits) -> Self {
        LimitsDto {
            timeout_ms: Some(l.timeout.as_millis() as u64),
            fuel: l.fuel,
            memory_bytes: Some(l.memory_bytes),
            max_input_bytes: Some(l.max_input_bytes),
            max_output_bytes: Some(l.max_output_bytes),
            max_log_bytes: Some(l.max_log_bytes),
            max_concurrency: Some(l.max_concurrency),
            max_queue: Some(l.max_queue),
        }
    }
}

impl ManifestDto {
    pub fn into_manifest(self) -> Result<Manifest, ApiError> {
        let failure_policy = match self.failure_policy.as_deref() {
            None => FailurePolicy::default(),
            Some(p) => p.parse().map_err(|e: String| ApiError::bad_request(format!("invalid manifest: {e}")))?,
        };
        Ok(Manifest {
            name: self.name,
            version: self.version,
            description: self.description,
            hooks: self.hooks.into_iter().map(|h| Subscription { hook: h.hook, priority: h.priority }).collect(),
            limits: self.limits.to_limits(),
            config: self.config,
            secrets: self.secrets.into_iter().map(|(k, v)| (k, v.0.into())).collect(),
            failure_policy,
            sha256: self.sha256,
        })
    }
}

/// Input bytes: `input` (any JSON value, passed on as its exact JSON text) or `input_base64` (raw bytes).
#[derive(Debug, Default)]
pub struct InputDto {
    pub input: Option<Box<RawValue>>,
    pub input_base64: Option<String>,
}

impl InputDto {
    /// The input as bytes: borrowed JSON text, or decoded base64.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
        match (&self.input, &self.input_base64) {
            (Some(_), Some(_)) => Err(ApiError::bad_request("give `input` or `input_base64`, not both")),
            (Some(raw), None) => Ok(raw.get().as_bytes().into()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Into::into)
                .map_err(|e| ApiError::bad_request(format!("`input_base64` is not base64: {e}"))),
            (None, None) => Ok((&[][..]).into()),
        }
    }
}

/// One invocation: the hook to pass and the input, as JSON (`input`, passed on as its exact text) or as
/// base64 bytes (`input_base64`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9._:-]{0,127}$", example = "order.created")]
    pub hook: String,
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub input: Option<Box<RawValue>>,
    #[serde(default)]
    pub input_base64: Option<String>,
}

/// Firing a hook: the input (JSON or base64) and the mode.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookRequest {
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub input: Option<Box<RawValue>>,
    #[serde(default)]
    pub input_base64: Option<String>,
    /// `filter` (default) or `actions`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// Output bytes as JSON: the plugin's exact JSON text when the bytes are JSON, else base64.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputDto<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub output: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_base64: Option<String>,
}

impl<'a> OutputDto<'a> {
    pub fn new(bytes: Option<&'a [u8]>) -> Self {
        match bytes {
            None => OutputDto { output: None, output_base64: None },
            Some(b) => match serde_json::from_slice(b) {
                Ok(value) => OutputDto { output: Some(value), output_base64: None },
                Err(_) => {
                    OutputDto { output: None, output_base64: Some(base64::engine::general_purpose::STANDARD.encode(b)) }
                }
            },
        }
    }
}

/// A line the plugin logged (host `log`, or WASI stdout/stderr).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogDto<'a> {
    pub at_us: u64,
    pub level: &'static str,
    pub source: &'static str,
    pub message: &'a str,
}

pub fn logs(lines: &[LogLine]) -> Vec<LogDto<'_>> {
    lines
        .iter()
        .map(|l| LogDto {
            at_us: micros(l.at),
            level: l.level.as_str(),
            source: l.source.as_str(),
            message: &l.message,
        })
        .collect()
}

/// One invocation as the API shows it (the response to an invoke, and each run-log entry). It borrows
/// from the record: a response is serialised without copying the plugin's strings or logs.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationDto<'a> {
    pub plugin: &'a str,
    pub version: &'a str,
    pub hook: &'a str,
    /// `ok`, `plugin_error`, `trap`, `timeout`, `fuel_exhausted`, `memory_limit`, `output_too_large`,
    /// `input_too_large` or `rejected`.
    pub outcome: &'static str,
    pub trap_kind: Option<&'a str>,
    pub detail: Option<&'a str>,
    #[serde(flatten)]
    pub output: OutputDto<'a>,
    pub started_at: String,
    pub wall_us: u64,
    pub queued_us: u64,
    pub instantiate_us: u64,
    pub cpu_us: u64,
    pub instructions: Option<u64>,
    pub memory_peak_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub logs: Vec<LogDto<'a>>,
    pub logs_dropped_bytes: u64,
}

impl<'a> InvocationDto<'a> {
    /// The response to an invocation.
    pub fn new(plugin: &'a str, version: &'a str, hook: &'a str, r: &'a Invocation) -> Self {
        InvocationDto {
            plugin,
            version,
            hook,
            outcome: r.outcome.as_str(),
            trap_kind: r.trap_kind.as_deref(),
            detail: r.detail.as_deref(),
            output: OutputDto::new(r.output.as_deref()),
            started_at: rfc3339(r.started_at),
            wall_us: micros(r.wall),
            queued_us: micros(r.queued),
            instantiate_us: micros(r.instantiate),
            cpu_us: micros(r.cpu),
            instructions: r.instructions,
            memory_peak_bytes: r.memory_peak_bytes,
            input_bytes: r.input_bytes,
            output_bytes: r.output_bytes,
            logs: logs(&r.logs),
            logs_dropped_bytes: r.logs_dropped_bytes,
        }
    }

    /// A run-log entry (its output is not kept).
    pub fn from_run(r: &'a RunLogEntry) -> Self {
        InvocationDto {
            plugin: &r.plugin,
            version: &r.version,
            hook: &r.hook,
            outcome: r.outcome.as_str(),
            trap_kind: r.trap_kind.as_deref(),
            detail: r.detail.as_deref(),
            output: OutputDto::new(None),
            started_at: rfc3339(r.started_at),
            wall_us: r.wall_us,
            queued_us: r.queued_us,
            instantiate_us: r.instantiate_us,
            cpu_us: r.cpu_us,
            instructions: r.instructions,
            memory_peak_bytes: r.memory_peak_bytes,
            input_bytes: r.input_bytes,
            output_bytes: r.output_bytes,
            logs: logs(&r.logs),
            logs_dropped_bytes: r.logs_dropped_bytes,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookRunDto<'a> {
    pub plugin: String,
    pub version: String,
    pub outcome: &'static str,
    pub trap_kind: Option<String>,
    pub detail: Option<String>,
    pub wall_us: u64,
    pub skipped: bool,
    #[serde(flatten)]
    pub output: OutputDto<'a>,
}

impl<'a> From<&'a HookRun> for HookRunDto<'a> {
    fn from(r: &'a HookRun) -> Self {
        HookRunDto {
            plugin: r.plugin.clone(),
            version: r.version.clone(),
            outcome: r.outcome.as_str(),
            trap_kind: r.trap_kind.clone(),
            detail: r.detail.clone(),
            wall_us: micros(r.wall),
            skipped: r.skipped,
            output: OutputDto::new(r.output.as_deref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookResponse<'a> {
    pub hook: String,
    pub mode: &'static str,
    #[serde(flatten)]
    pub output: OutputDto<'a>,
    pub plugins: Vec<HookRunDto<'a>>,
    /// The `fail_closed` plugin whose failure stopped the hook.
    pub failed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<'a> From<&'a HookOutcome> for HookResponse<'a> {
    fn from(o: &'a HookOutcome) -> Self {
        let error = o.failed.as_ref().map(|name| {
            let run = o.runs.iter().find(|r| &r.plugin == name);
            let why = run.map_or(String::new(), |r| {
                format!(": {}{}", r.outcome.as_str(), r.detail.as_deref().map_or(String::new(), |d| format!(" ({d})")))
            });
            format!("plugin `{name}` failed and its failure policy is fail_closed{why}")
        });
        HookResponse {
            hook: o.hook.clone(),
            mode: o.mode.as_str(),
            output: OutputDto::new(o.output.as_deref()),
            plugins: o.runs.iter().map(HookRunDto::from).collect(),
            failed: o.failed.clone(),
            error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDto {
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub description: Option<String>,
    pub created_at: String,
    pub active: bool,
    pub hooks: Vec<HookDto>,
    pub failure_policy: &'static str,
    pub limits: LimitsDto,
    pub config: BTreeMap<String, String>,
    /// Only the names: secret values are never returned.
    pub secret_keys: Vec<String>,
}

impl VersionDto {
    pub fn new(v: &VersionRecord, active: bool) -> Self {
        VersionDto {
            version: v.version.clone(),
            sha256: v.sha256.clone(),
            size: v.size,
            description: v.description.clone(),
            created_at: rfc3339(UNIX_EPOCH + Duration::from_secs(v.created_at.max(0) as u64)),
            active,
            hooks: v.hooks.iter().map(|s| HookDto { hook: s.hook.clone(), priority: s.priority }).collect(),
            failure_policy: v.failure_policy.as_str(),
            limits: LimitsDto::from_limits(&v.limits),
            config: v.config.clone(),
            secret_keys: v.secrets.keys().cloned().collect(),
        }
    }
}

/// A plugin's last minute.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveDto {
    pub window_secs: f64,
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_rate: f64,
    pub cpu_cores: f64,
    pub memory_peak_bytes: u64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub outcomes: BTreeMap<&'static str, u64>,
    pub last_invocation: Option<String>,
}

impl LiveDto {
    pub fn new(s: &LiveStats) -> Self {
        LiveDto {
            window_secs: s.window_secs,
            requests: s.requests,
            rps: s.rps,
            p50_ms: s.p50.map(ms),
            p95_ms: s.p95.map(ms),
            p99_ms: s.p99.map(ms),
            error_rate: s.error_rate,
            cpu_cores: s.cpu_cores,
            memory_peak_bytes: s.memory_peak_bytes,
            outcomes: outcomes(&s.counts),
            last_invocation: s.last_invocation.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDto {
    pub name: String,
    /// `running`, `disabled`, `loading` (the server is starting), `failed` (could not load) or `empty`
    /// (no version).
    pub status: &'static str,
    pub enabled: bool,
    pub active_version: Option<String>,
    pub previous_version: Option<String>,
    pub hooks: Vec<HookDto>,
    pub failure_policy: Option<&'static str>,
    /// Why the active version could not be loaded.
    pub load_error: Option<String>,
    pub cold_start_us: Option<u64>,
    pub in_flight: u32,
    pub queued: u32,
    pub live: Option<LiveDto>,
    pub updated_at: String,
}

impl PluginDto {
    pub fn new(entry: &Entry, live: Option<&LiveStats>) -> Self {
        let active = entry.active.as_ref();
        let loaded = active.and_then(|a| a.loaded.plugin());
        PluginDto {
            name: entry.record.name.clone(),
            status: entry.status(),
            enabled: entry.record.enabled,
            active_version: entry.record.active_version.clone(),
            previous_version: entry.record.previous_version.clone(),
            hooks: active.map_or(Vec::new(), |a| {
                a.version.hooks.iter().map(|s| HookDto { hook: s.hook.clone(), priority: s.priority }).collect()
            }),
            failure_policy: active.map(|a| a.version.failure_policy.as_str()),
            load_error: active.and_then(|a| a.loaded.error().map(str::to_owned)),
            cold_start_us: loaded.map(|p| micros(p.cold_start())),
            in_flight: loaded.map_or(0, |p| p.in_flight()),
            queued: loaded.map_or(0, |p| p.queued()),
            live: live.map(LiveDto::new),
            updated_at: rfc3339(UNIX_EPOCH + Duration::from_secs(entry.record.updated_at.max(0) as u64)),
        }
    }
}

/// The error every endpoint answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(inline)]
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`unknown_plugin`, `invalid_manifest`, `forbidden`, …).
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
    /// For `invalid_field`: the input field that is wrong (`threshold`, `settings.to`, `labels.team`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDetail {
    pub plugin: PluginDto,
    pub versions: Vec<VersionDto>,
    /// The active component's imports, when it is loaded.
    pub imports: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionDto>,
}

/// The form of an upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The manifest, as JSON text (see `ManifestDto`).
    #[schema(value_type = String, example = r#"{"name":"promo-discount","version":"1.0.0","hooks":[{"hook":"order.pricing","priority":10}]}"#)]
    pub manifest: String,
    /// The component (.wasm).
    #[schema(value_type = String, format = Binary)]
    pub component: Vec<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    /// False when the same name, version and component were already stored.
    pub created: bool,
    /// Whether this version is now the active one.
    pub active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolledBack {
    pub plugin: String,
    pub active_version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookSubscribers {
    pub hook: String,
    pub subscribers: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HookList {
    pub hooks: Vec<HookSubscribers>,
}

/// Aggregates over `[t, t + step)`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// Unix seconds.
    pub t: i64,
    pub requests: u64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_cores: f64,
    pub instructions: u64,
    pub memory_peak_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub outcomes: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    pub plugin: String,
    pub version: Option<String>,
    /// The step used, in seconds (at least the stored resolution).
    pub step: u64,
    /// `10s`, `1m` or `1h`.
    pub resolution: &'static str,
    pub points: Vec<SeriesPoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationList<'a> {
    pub plugin: String,
    pub invocations: Vec<InvocationDto<'a>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewPlugin {
    pub name: String,
    pub status: &'static str,
    pub version: Option<String>,
    pub live: Option<LiveDto>,
    /// Requests per minute over the last hour, oldest first (with `sparkline=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparkline: Option<Vec<u64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostDto {
    pub at: String,
    pub cpu_usage: f64,
    pub cpu_cores: usize,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub process_rss_bytes: u64,
    pub process_cpu_usage: f64,
    pub process_cpu_seconds: f64,
}

impl HostDto {
    pub fn new(h: &plugwatch_telemetry::HostSample) -> Self {
        HostDto {
            at: rfc3339(h.at),
            cpu_usage: h.cpu_usage,
            cpu_cores: h.cpu_cores,
            memory_used_bytes: h.memory_used_bytes,
            memory_total_bytes: h.memory_total_bytes,
            disk_used_bytes: h.disk_used_bytes,
            disk_total_bytes: h.disk_total_bytes,
            process_rss_bytes: h.process_rss_bytes,
            process_cpu_usage: h.process_cpu_usage,
            process_cpu_seconds: h.process_cpu_seconds,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub at: String,
    /// Plugins matching the filters (before pagination).
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub plugins: Vec<OverviewPlugin>,
    pub host: Option<HostDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostPointDto {
    pub t: i64,
    pub cpu_usage: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub process_rss_bytes: u64,
    pub process_cpu_usage: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostSeries {
    pub latest: Option<HostDto>,
    pub step: u64,
    pub points: Vec<HostPointDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub problems: Vec<&'static str>,
    pub plugins: usize,
    /// Plugins being compiled and loaded right now (at startup, every one not loaded yet).
    pub loading: Vec<String>,
}

/// This replica and the others on the same database.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    /// `sqlite` (one process) or `postgres` (any number of replicas).
    pub database: &'static str,
    /// This replica's name (`""` on SQLite).
    pub replica: String,
    /// Whether this replica runs alerting, retention and backups now.
    pub leader: bool,
    /// Every replica that wrote a host sample in the last two minutes (this one included), by name.
    pub replicas: Vec<ClusterReplica>,
    /// The shared cache (Redis) as this replica sees it; absent when none is configured.
    pub cache: Option<CacheDto>,
}

/// What this replica's shared cache did since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct CacheDto {
    /// Whether Redis answered the last command.
    pub up: bool,
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads Redis answered without a value (then read from the database and stored).
    pub misses: u64,
    /// Commands that failed, or were skipped while Redis was away.
    pub errors: u64,
    /// Change announcements sent through Redis (the others went through the database).
    pub published: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterReplica {
    pub replica: String,
    /// Its last host sample (RFC 3339).
    pub last_seen: String,
}

pub fn outcomes(counts: &[u64; 9]) -> BTreeMap<&'static str, u64> {
    plugwatch_runtime::Outcome::ALL.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(o, n)| (o.as_str(), *n)).collect()
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

pub fn ms(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e3
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-27T10:00:00.000000Z`. Times past the year 9999 (which
/// RFC 3339 cannot write) are written as its last instant rather than failing.
/// [`rfc3339`] of a time in seconds since the Unix epoch (a negative one is the epoch).
pub fn rfc3339_secs(secs: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

pub fn rfc3339(t: SystemTime) -> String {
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    humantime::format_rfc3339_micros(t.min(UNIX_EPOCH + LAST)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_micros(1_795_739_400_123_456)), "2026-11-27T00:30:00.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)), "9999-12-31T23:59:59.000000Z");
    }
}
