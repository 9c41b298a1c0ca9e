//! plugwatch's telemetry: aggregates the runtime's invocation records into per-plugin, per-version time
//! series and run logs, samples the host, and encodes Prometheus metrics.
//!
//! It knows nothing of HTTP routing or SQL: [`Telemetry::flush`] returns what should be persisted (closed
//! 10 s buckets, the current minute and hour rollups, capped run-log entries) and another crate stores it;
//! after a restart, [`Telemetry::restore`] hands back what was persisted (the recent 10 s buckets, the
//! current minute and hour), so that accumulation continues and every row written holds its whole interval.
//!
//! # Time series
//!
//! Each invocation lands in the 10 s bucket of its `started_at` (unix seconds, rounded down to the bucket). A
//! flush closes every bucket that ended at or before its `now`; a record that arrives later for a closed
//! bucket goes into the open bucket (the first one not closed), so nothing is lost and nothing closed is
//! reopened. A closed bucket is merged into its series' minute and hour rollups (aligned to 60 s and 3600 s)
//! and kept in memory for `live_buckets` bucket lengths, for [`Telemetry::overview`] and [`Telemetry::live`].
//!
//! # The hot path
//!
//! [`Series::record`] takes one lock of its own series (each series is split into a few shards so that
//! threads recording into the same plugin version do not contend), and computes the latency bin and copies
//! any failure text or logs before taking it; it allocates nothing for a successful invocation without logs.
//! Callers get the [`Series`] once from [`Telemetry::series`] (which takes the global map lock) and keep the
//! `Arc`. `benches/record.rs` measures it.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use plugwatch_model::{Invocation, Outcome};
//! use plugwatch_telemetry::{Telemetry, TelemetryConfig};
//!
//! let telemetry = Telemetry::new(TelemetryConfig::default());
//! let series = telemetry.series("tax-calculator", "1.2.0");
//! # let invocation = Invocation { outcome: Outcome::Ok, trap_kind: None, detail: None, output: None,
//! #     started_at: SystemTime::now(), wall: Duration::from_micros(900), queued: Duration::ZERO,
//! #     instantiate: Duration::ZERO, cpu: Duration::from_micros(800), instructions: Some(12_000),
//! #     memory_peak_bytes: 1 << 20, concurrency: 1, input_bytes: 120, output_bytes: 40, logs: Vec::new(), logs_dropped_bytes: 0 };
//! series.record("order.created", &invocation);
//! let flush = telemetry.flush(SystemTime::now() + Duration::from_secs(10));
//! assert_eq!(flush.closed[0].total(), 1);
//! ```

mod exposition;
mod host;
pub mod names;
mod prometheus;
mod rollup;
mod runlog;
mod series;
mod sketch;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use exposition::{CONTENT_TYPE, Exposition, MetricKind};
pub use host::{HostSample, HostSampler};
pub use names::Family;
pub use rollup::{Resolution, Rollup, UnknownResolution};
pub use runlog::RunLogEntry;
pub use series::Series;
pub use sketch::{DecodeError, LatencySketch};

use series::{unix_f64, unix_secs};

/// How much the telemetry keeps and hands out.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// The live bucket length: a whole number of seconds dividing a minute (10 s).
    pub bucket: Duration,
    /// Closed buckets kept in memory per series (90, i.e. 15 minutes of 10 s buckets).
    pub live_buckets: usize,
    /// Runs of any outcome kept in memory per series (100).
    pub recent_runs: usize,
    /// Failed runs kept in memory per series, in addition, so failures stay visible longer (100).
    pub recent_failures: usize,
    /// Successful runs per series that one flush hands out for persistence, the newest (10).
    pub persist_successes_per_flush: usize,
    /// Failed runs per series that one flush hands out for persistence, the newest (50).
    pub persist_failures_per_flush: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            bucket: Duration::from_secs(10),
            live_buckets: 90,
            recent_runs: 100,
            recent_failures: 100,
            persist_successes_per_flush: 10,
            persist_failures_per_flush: 50,
        }
    }
}

/// What the store kept of an earlier process's telemetry, for [`Telemetry::restore`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Persisted {
    /// The 10 s buckets of the live window before the restart, and the minute and hour rollups of the
    /// intervals holding the restart.
    pub rollups: Vec<Rollup>,
    /// When each series (plugin, version) last saw an invocation start.
    pub last_started: Vec<(String, String, SystemTime)>,
}

/// What one [`Telemetry::flush`] hands out for persistence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flush {
    /// Every 10 s bucket this flush closed that had traffic.
    pub closed: Vec<Rollup>,
    /// The still-open 10 s buckets with traffic, as they are so far: upsert them like closed ones (a later
    /// flush writes them again, complete). Together with `rollups`, which include them, this bounds what a
    /// crash can lose to one flush interval.
    pub open: Vec<Rollup>,
    /// The current state of each minute and hour rollup that changed since the previous flush (including any
    /// that became final since, and the data of the open buckets): upsert them by (plugin, version,
    /// resolution, start).
    pub rollups: Vec<Rollup>,
    /// Run-log entries recorded since the previous flush: per series, at most
    /// [`TelemetryConfig::persist_failures_per_flush`] failures and
    /// [`TelemetryConfig::persist_successes_per_flush`] successes, the newest; oldest first per series.
    pub runs: Vec<RunLogEntry>,
}

/// One series over a recent window (the last minute, for the overview), for dashboards and alert rules.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveStats {
    pub plugin: String,
    pub version: String,
    /// The length of the window the numbers cover: the closed buckets of the window and the open one up to
    /// `now` (50 to 60 s for a minute).
    pub window_secs: f64,
    pub requests: u64,
    pub rps: f64,
    /// Wall-time quantiles in seconds, `None` without requests.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Failures per request, 0 without requests.
    pub error_rate: f64,
    /// CPU seconds per second.
    pub cpu_cores: f64,
    /// CPU seconds of all requests.
    pub cpu_seconds: f64,
    /// Instructions of all requests that report them.
    pub instructions: u64,
    pub memory_peak_bytes: u64,
    /// The largest single invocation: instructions, output bytes, invocations executing at once.
    pub instructions_max: u64,
    pub output_bytes_max: u64,
    pub concurrency_max: u32,
    /// Requests by [`Outcome::index`](plugwatch_model::Outcome::index).
    pub counts: [u64; 9],
    /// The latest `started_at` this process has recorded for the series.
    pub last_invocation: Option<SystemTime>,
}

/// How much of each of its own limits a plugin version used over a window, as a share (1.0 is the limit;
/// a rejected invocation counts as full concurrency). `None`: no invocation measured it, or the limit is
/// unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Headroom {
    /// p99 wall time over the timeout (wall time includes waiting, so this errs towards warning early).
    pub wall_time: Option<f64>,
    /// The most instructions of one invocation over the fuel budget.
    pub instructions: Option<f64>,
    /// The highest peak memory over the memory cap.
    pub memory: Option<f64>,
    /// The largest output over `max_output_bytes`.
    pub output: Option<f64>,
    /// The most invocations executing at once over `max_concurrency`.
    pub concurrency: Option<f64>,
}

impl Headroom {
    /// The shares and the limit each is of, in a fixed order (`wall_time`, `instructions`, `memory`,
    /// `output`, `concurrency`), for readers that list them.
    pub fn shares(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("wall_time", self.wall_time),
            ("instructions", self.instructions),
            ("memory", self.memory),
            ("output", self.output),
            ("concurrency", self.concurrency),
        ]
    }

    /// The highest share.
    pub fn max(&self) -> Option<f64> {
        self.shares().into_iter().filter_map(|(_, s)| s).reduce(f64::max)
    }
}

/// One of a plugin's limits and the most a window used of it: what a headroom share is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitUse {
    /// `wall_time`, `instructions`, `memory`, `output` or `concurrency`.
    pub limit: &'static str,
    /// The limit (seconds, instructions, bytes, bytes, invocations); `None`: unlimited.
    pub allowed: Option<f64>,
    /// The most used (p99 wall seconds, most instructions, highest peak memory, largest output, most at
    /// once — all of it when one was rejected); `None`: nothing measured it.
    pub used: Option<f64>,
}

impl LimitUse {
    /// `used / allowed`, when both are known and the limit is positive.
    pub fn share(&self) -> Option<f64> {
        match (self.used, self.allowed) {
            (Some(used), Some(allowed)) if allowed > 0.0 => Some(used / allowed),
            _ => None,
        }
    }
}

/// What a window (`None`: no data at all) used of each of `limits`, in [`Headroom::shares`]' order.
pub fn limit_uses(stats: Option<&LiveStats>, limits: &plugwatch_model::Limits) -> [LimitUse; 5] {
    let measured = stats.filter(|s| s.requests > 0);
    let nonzero = |v: u64| (v > 0).then_some(v as f64);
    let concurrency = |s: &LiveStats| {
        let rejected = s.counts[plugwatch_model::Outcome::Rejected.index()] > 0;
        f64::from(if rejected { limits.max_concurrency } else { s.concurrency_max })
    };
    [
        LimitUse { limit: "wall_time", allowed: Some(limits.timeout.as_secs_f64()), used: stats.and_then(|s| s.p99) },
        LimitUse {
            limit: "instructions",
            allowed: limits.fuel.map(|f| f as f64),
            used: stats.and_then(|s| nonzero(s.instructions_max)),
        },
        LimitUse {
            limit: "memory",
            allowed: Some(limits.memory_bytes as f64),
            used: stats.and_then(|s| nonzero(s.memory_peak_bytes)),
        },
        LimitUse {
            limit: "output",
            allowed: Some(limits.max_output_bytes as f64),
            used: measured.map(|s| s.output_bytes_max as f64),
        },
        LimitUse {
            limit: "concurrency",
            allowed: Some(f64::from(limits.max_concurrency)),
            used: measured.map(concurrency),
        },
    ]
}

impl LiveStats {
    /// How much of `limits` this window used, as shares ([`limit_uses`]).
    pub fn headroom(&self, limits: &plugwatch_model::Limits) -> Headroom {
        let [wall_time, instructions, memory, output, concurrency] = limit_uses(Some(self), limits).map(|u| u.share());
        Headroom { wall_time, instructions, memory, output, concurrency }
    }
}

/// The process-wide telemetry: every series, by plugin and version. `Send + Sync`; share it in an `Arc`.
pub struct Telemetry {
    config: TelemetryConfig,
    series: RwLock<BTreeMap<String, BTreeMap<String, Arc<Series>>>>,
    /// The host sampler's latest sample.
    host: std::sync::Mutex<Option<HostSample>>,
    /// Other replicas' 10 s buckets (see [`Telemetry::set_peers`]).
    peers: RwLock<Arc<Peers>>,
}

/// What the other replicas on the same database have flushed of the live window: their 10 s buckets,
/// merged across replicas, by series and start.
#[derive(Debug, Default)]
struct Peers {
    buckets: BTreeMap<(String, String), BTreeMap<i64, Rollup>>,
}

impl Peers {
    /// Adds the buckets of `(plugin, version)` starting at or after `from` to `total`; the latest start
    /// with traffic.
    fn add(&self, plugin: &str, version: &str, from: i64, total: &mut Rollup) -> Option<SystemTime> {
        let buckets = self.buckets.get(&(plugin.to_owned(), version.to_owned()))?;
        let mut last = None;
        for (start, bucket) in buckets.range(from..) {
            total.merge(bucket);
            if bucket.total() > 0 {
                last = Some(UNIX_EPOCH + Duration::from_secs((*start).max(0) as u64));
            }
        }
        last
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Telemetry {
    /// # Panics
    ///
    /// If `config.bucket` is not a whole number of seconds dividing 60.
    pub fn new(config: TelemetryConfig) -> Self {
        let secs = config.bucket.as_secs();
        assert!(
            config.bucket.subsec_nanos() == 0 && secs > 0 && 60 % secs == 0,
            "the telemetry bucket must be a whole number of seconds dividing 60, not {:?}",
            config.bucket
        );
        Telemetry {
            config,
            series: RwLock::new(BTreeMap::new()),
            host: std::sync::Mutex::new(None),
            peers: RwLock::default(),
        }
    }

    /// Replaces what the other replicas on the same database have flushed (their 10 s buckets of the live
    /// window, each replica's own row per bucket, as the store reads them): from then on every window
    /// ([`overview`](Telemetry::overview), [`window`](Telemetry::window),
    /// [`plugin_window`](Telemetry::plugin_window)) is the cluster's, this process's live buckets plus
    /// theirs. [`live`](Telemetry::live), the series' rows, and `/metrics` stay this process's own.
    pub fn set_peers(&self, rollups: Vec<Rollup>) {
        let mut peers = Peers::default();
        for rollup in rollups {
            let key = (rollup.plugin.clone(), rollup.version.clone());
            match peers.buckets.entry(key).or_default().entry(rollup.start) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(rollup);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => slot.get_mut().merge(&rollup),
            }
        }
        *self.peers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(peers);
    }

    fn peers(&self) -> Arc<Peers> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keeps the host sampler's latest sample, for readers (the overview, `/metrics`, alert rules).
    pub fn record_host(&self, sample: HostSample) {
        *self.host.lock().unwrap_or_else(PoisonError::into_inner) = Some(sample);
    }

    /// The host sampler's latest sample, once it has taken one.
    pub fn latest_host(&self) -> Option<HostSample> {
        self.host.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The series of a plugin version, created on first use. Callers should keep the `Arc`.
    pub fn series(&self, plugin: &str, version: &str) -> Arc<Series> {
        if let Some(series) = self.read().get(plugin).and_then(|versions| versions.get(version)) {
            return series.clone();
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(plugin.to_owned())
            .or_default()
            .entry(version.to_owned())
            .or_insert_with(|| Arc::new(Series::new(plugin, version, &self.config)))
            .clone()
    }

    /// Forgets every series of a plugin (it was deleted). `Arc`s callers still hold keep working but are no
    /// longer flushed or reported.
    pub fn remove_plugin(&self, plugin: &str) {
        self.series.write().unwrap_or_else(PoisonError::into_inner).remove(plugin);
    }

    /// How far back the 10 s buckets kept in memory reach: what [`Telemetry::restore`] wants of them.
    pub fn live_window(&self) -> Duration {
        self.config.bucket * self.config.live_buckets as u32
    }

    /// Continues after a restart from what the earlier process stored, before this one records anything:
    /// the 10 s buckets of the last [`live_window`](Telemetry::live_window) before `now` (so the overview and
    /// the live series show them), the minute and hour rollups still accumulating at `now`, and when each
    /// series last saw an invocation start.
    ///
    /// Every row a flush returns holds the whole of its interval, the earlier process's part included: a
    /// 10 s bucket that was still open when the earlier process stopped (its row holding what was flushed
    /// of it) is written again with this process's invocations added, and a minute or hour rollup goes on
    /// from its stored state. Upserting the first flush's rows before restoring would overwrite the
    /// stored ones, so restore first.
    pub fn restore(&self, now: SystemTime, persisted: Persisted) {
        let until =
            unix_secs(now).div_euclid(self.config.bucket.as_secs() as i64) * self.config.bucket.as_secs() as i64;
        for rollup in persisted.rollups {
            self.series(&rollup.plugin, &rollup.version).seed(rollup, until);
        }
        for (plugin, version, at) in persisted.last_started {
            self.series(&plugin, &version).seed_last_started(at);
        }
    }

    /// Closes every 10 s bucket that ended at or before `now` and returns what to persist.
    pub fn flush(&self, now: SystemTime) -> Flush {
        let now = unix_secs(now);
        let mut flush = Flush::default();
        for series in self.all() {
            series.flush(now, &mut flush);
        }
        flush
    }

    /// One entry per series, over the last minute before `now` (closed buckets still in memory and the open
    /// ones), sorted by plugin and version.
    pub fn overview(&self, now: SystemTime) -> Vec<LiveStats> {
        self.windows(None, now, 60)
    }

    /// One entry per series over at least the `window` before `now`: the buckets that ended within it and
    /// the open one (so `window` to `window` + one bucket of data; `window_secs` says which). A window
    /// longer than the [`live_window`](Telemetry::live_window) covers only what memory holds.
    pub fn window(&self, now: SystemTime, window: Duration) -> Vec<LiveStats> {
        self.windows(None, now, self.span(window))
    }

    /// [`window`](Telemetry::window) for one plugin's versions.
    pub fn plugin_window(&self, plugin: &str, now: SystemTime, window: Duration) -> Vec<LiveStats> {
        self.windows(Some(plugin), now, self.span(window))
    }

    /// The window of `span` seconds before `now` of every series (of one plugin, or all) that this process
    /// or another replica has, by plugin and version.
    fn windows(&self, plugin: Option<&str>, now: SystemTime, span: i64) -> Vec<LiveStats> {
        let series: Vec<Arc<Series>> = match plugin {
            Some(plugin) => {
                self.read().get(plugin).map(|versions| versions.values().cloned().collect()).unwrap_or_default()
            }
            None => self.all(),
        };
        let (now_secs, peers) = (unix_secs(now), self.peers());
        let mut out: Vec<LiveStats> = series
            .iter()
            .map(|series| {
                let (mut window, window_start, last) = series.window(now_secs, span);
                let peer_last = peers.add(series.plugin(), series.version(), window_start, &mut window);
                stats(series.plugin(), series.version(), window, window_start, last.max(peer_last), now)
            })
            .collect();
        let bucket = self.config.bucket.as_secs() as i64;
        let window_start = series::window_start(now_secs, span, bucket);
        // This process's series, by plugin and version (the map's order): the peers' series among them
        // are done.
        let local = out.len();
        for (p, v) in peers.buckets.keys().filter(|(p, _)| plugin.is_none_or(|only| only == p)) {
            let key = (p.as_str(), v.as_str());
            if out[..local].binary_search_by(|s| (s.plugin.as_str(), s.version.as_str()).cmp(&key)).is_ok() {
                continue;
            }
            let mut window = Rollup::new(String::new(), String::new(), Resolution::Minute, window_start);
            if let Some(last) = peers.add(p, v, window_start, &mut window) {
                out.push(stats(p, v, window, window_start, Some(last), now));
            }
        }
        if out.len() > local {
            out.sort_by(|a, b| (&a.plugin, &a.version).cmp(&(&b.plugin, &b.version)));
        }
        out
    }

    /// The buckets of a window: those that ended within it, and the open one.
    fn span(&self, window: Duration) -> i64 {
        (window.as_secs() + self.config.bucket.as_secs()) as i64
    }

    /// What this process holds of the intervals of `resolution` that overlap `[from, to)`, of one version
    /// or of each, by start then version: the 10 s buckets of the live window, or the current minute or hour
    /// (and any that ended since the last flush), each with the open buckets' data so far. Each holds its
    /// whole interval as far as this process knows (what was restored included), so it supersedes a stored
    /// row of the same version, resolution and start.
    pub fn live(
        &self,
        plugin: &str,
        version: Option<&str>,
        resolution: Resolution,
        from: SystemTime,
        to: SystemTime,
    ) -> Vec<Rollup> {
        let series: Vec<Arc<Series>> = match self.read().get(plugin) {
            None => return Vec::new(),
            Some(versions) => match version {
                Some(v) => versions.get(v).cloned().into_iter().collect(),
                None => versions.values().cloned().collect(),
            },
        };
        let from = unix_secs(from);
        let to = unix_secs(to) + i64::from(to.duration_since(UNIX_EPOCH).is_ok_and(|d| d.subsec_nanos() > 0));
        let mut rollups: BTreeMap<(i64, &str), Rollup> = BTreeMap::new();
        for s in &series {
            s.rollups(resolution, from, to, |b| {
                rollups
                    .entry((b.start, s.version()))
                    .or_insert_with(|| Rollup::new(plugin, s.version(), resolution, b.start))
                    .merge(b)
            });
        }
        rollups.into_values().collect()
    }

    /// The newest `limit` runs of a plugin (every version), newest first, from the in-memory rings: all runs,
    /// or only failures (which are kept longer).
    pub fn recent(&self, plugin: &str, limit: usize, failures_only: bool) -> Vec<RunLogEntry> {
        let series: Vec<Arc<Series>> =
            self.read().get(plugin).map(|versions| versions.values().cloned().collect()).unwrap_or_default();
        let mut runs = Vec::new();
        for s in &series {
            s.recent(limit, failures_only, &mut runs);
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        runs.truncate(limit);
        runs
    }

    /// Appends the plugin families (and, given a sample, the host and process families) of [`names`] to `out`
    /// in the Prometheus text format. Counters count since the process started.
    pub fn encode_prometheus(&self, host: Option<&HostSample>, out: &mut String) {
        let snapshots: Vec<_> = self
            .all()
            .into_iter()
            .map(|s| {
                let snapshot = s.snapshot();
                (s, snapshot)
            })
            .collect();
        prometheus::encode(&snapshots, host, out);
    }

    /// Appends [`names::PLUGIN_HEADROOM`] for each `(plugin, version, limits)`: the share of each limit
    /// used over the 5 minutes before `now`, for the limits that were measured.
    pub fn encode_headroom(
        &self,
        now: SystemTime,
        targets: &[(&str, &str, &plugwatch_model::Limits)],
        out: &mut String,
    ) {
        let mut e = Exposition::new(out);
        e.declare(&names::PLUGIN_HEADROOM);
        let now_secs = unix_secs(now);
        for (plugin, version, limits) in targets {
            let Some(series) = self.read().get(*plugin).and_then(|v| v.get(*version)).cloned() else { continue };
            let (window, window_start, last) = series.window(now_secs, self.span(Duration::from_secs(300)));
            let headroom = stats(plugin, version, window, window_start, last, now).headroom(limits);
            for (limit, share) in headroom.shares() {
                if let Some(share) = share {
                    let labels =
                        [(names::LABEL_PLUGIN, *plugin), (names::LABEL_VERSION, *version), (names::LABEL_LIMIT, limit)];
                    e.sample(names::PLUGIN_HEADROOM.name, &labels, share);
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, BTreeMap<String, Arc<Series>>>> {
        self.series.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every series, by plugin and version, without holding the map lock afterwards.
    fn all(&self) -> Vec<Arc<Series>> {
        self.read().values().flat_map(|versions| versions.values().cloned()).collect()
    }
}

/// One series' figures over the window from `window_start` to `now`, whose invocations `window` merges.
fn stats(
    plugin: &str,
    version: &str,
    window: Rollup,
    window_start: i64,
    last_invocation: Option<SystemTime>,
    now: SystemTime,
) -> LiveStats {
    let window_secs = (unix_f64(now) - window_start as f64).max(1.0);
    let requests = window.total();
    LiveStats {
        plugin: plugin.to_owned(),
        version: version.to_owned(),
        window_secs,
        requests,
        rps: requests as f64 / window_secs,
        p50: window.quantile(0.50),
        p95: window.quantile(0.95),
        p99: window.quantile(0.99),
        error_rate: if requests == 0 { 0.0 } else { window.failures() as f64 / requests as f64 },
        cpu_cores: window.cpu_sum_us as f64 / 1e6 / window_secs,
        cpu_seconds: window.cpu_sum_us as f64 / 1e6,
        instructions: window.instructions,
        memory_peak_bytes: window.memory_peak_max,
        instructions_max: window.instructions_max,
        output_bytes_max: window.output_bytes_max,
        concurrency_max: window.concurrency_max,
        counts: window.counts,
        last_invocation,
    }
}

#[cfg(test)]
mod tests;

/// Appends the families of [`names::WITH_POOLS`] for each `(plugin, version, pool)`: each plugin version's
/// pool of pre-instantiated instances, as the runtime reports it; then [`names::WITH_POOL_MEMORY`], the
/// process's pool memory against its budget.
pub fn encode_pools(
    pools: &[(&str, &str, plugwatch_model::PoolStats)],
    memory: plugwatch_model::PoolMemory,
    out: &mut String,
) {
    type Value = fn(&plugwatch_model::PoolStats) -> f64;
    let mut e = Exposition::new(out);
    let families: [(&Family, Value); 5] = [
        (&names::PLUGIN_POOL_MAX, |p| p.max as f64),
        (&names::PLUGIN_POOL_TARGET, |p| p.target as f64),
        (&names::PLUGIN_POOL_READY, |p| p.ready as f64),
        (&names::PLUGIN_POOL_MISSES, |p| p.misses as f64),
        (&names::PLUGIN_POOL_MEMORY, |p| p.bytes as f64),
    ];
    for (family, value) in families {
        e.declare(family);
        for (plugin, version, pool) in pools {
            e.sample(family.name, &[(names::LABEL_PLUGIN, *plugin), (names::LABEL_VERSION, *version)], value(pool));
        }
    }
    for (family, value) in [
        (&names::RUNTIME_POOL_MEMORY, memory.held_bytes),
        (&names::RUNTIME_POOL_BUDGET, memory.budget_bytes),
        (&names::RUNTIME_IDLE_SLOT_MEMORY, memory.idle_slot_bytes),
    ] {
        e.declare(family);
        e.sample(family.name, &[], value as f64);
    }
}
