//! Evaluation: the value each rule measures on each series it selects, and the state machine that turns
//! values into alert states and transitions. Pure functions of their inputs (no clock, no I/O), so that
//! every rule of the state machine is tested directly.
//!
//! # States
//!
//! Per rule and series, each evaluation gives the condition as true, false or unknown (no data):
//!
//! | now \ condition | true | false | no data (`no_data = no_data`) |
//! |---|---|---|---|
//! | inactive | pending (firing if `for` is 0) | — | no_data |
//! | pending | firing once it held for `for` | inactive | no_data |
//! | firing | firing | firing until `keep_firing_for` after it last held, then resolved | no_data |
//! | no_data | pending (firing if `for` is 0) | resolved | no_data |
//!
//! `no_data = ok` reads no data as false, `no_data = alerting` as true. `keep_firing_for` damps flapping: an
//! error rate that dips under its threshold for one evaluation does not resolve and fire again, it stays
//! firing (one notification) until it stayed under for that long. Pending does not survive a false
//! evaluation, so a condition must hold for `for` without a break before anything fires.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use plugwatch_model::alerts::{AlertRecord, HeadroomLimit, Metric, NoData, RuleSpec, SeriesKey, State};
use plugwatch_model::{Limits, Outcome};
use plugwatch_telemetry::{HostSample, LiveStats};

use crate::rules::Pattern;

/// A plugin version the inventory says should be evaluated: the active version of an enabled plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginTarget {
    pub plugin: String,
    pub version: String,
    pub limits: Limits,
}

/// What the rules of one evaluation read: the inventory, telemetry's windows and the host.
pub struct Inputs<'a> {
    pub now: SystemTime,
    pub targets: &'a [PluginTarget],
    /// Each window's stats, by window length in seconds.
    pub windows: &'a HashMap<u32, Window>,
    pub host: Option<&'a HostSample>,
    /// Scheduled backups failed in a row (`None`: backups are not scheduled).
    pub backup_failures: Option<u32>,
}

/// One window's stats, by plugin, then version.
pub type Window = HashMap<String, HashMap<String, LiveStats>>;

/// Groups telemetry's stats of one window by plugin and version.
pub fn window(stats: Vec<LiveStats>) -> Window {
    let mut out = Window::new();
    for s in stats {
        out.entry(s.plugin.clone()).or_default().insert(s.version.clone(), s);
    }
    out
}

/// A host sample older than this is no data.
pub const HOST_SAMPLE_MAX_AGE: Duration = Duration::from_secs(60);

/// The series a rule selects now and the value of each (`None`: no data). For plugins: the active version
/// of every enabled plugin whose name matches, and any other version of those plugins with requests in the
/// window (a rollout in progress; without its own limits, its headroom is no data).
pub fn measure(spec: &RuleSpec, pattern: Option<&Pattern>, inputs: &Inputs<'_>) -> Vec<(SeriesKey, Option<f64>)> {
    if spec.metric == Metric::BackupFailures {
        return vec![(SeriesKey::default(), inputs.backup_failures.map(f64::from))];
    }
    if spec.metric.scope() == plugwatch_model::alerts::Scope::Host {
        let fresh = inputs.host.filter(|h| inputs.now.duration_since(h.at).unwrap_or_default() <= HOST_SAMPLE_MAX_AGE);
        return vec![(SeriesKey::default(), fresh.and_then(|h| host_value(spec.metric, h)))];
    }
    let Some(pattern) = pattern else { return Vec::new() };
    let empty = HashMap::new();
    let window = inputs.windows.get(&spec.window_secs).unwrap_or(&empty);
    let mut out = Vec::new();
    for target in inputs.targets.iter().filter(|t| pattern.matches(&t.plugin)) {
        let versions = window.get(&target.plugin);
        let stats = versions.and_then(|v| v.get(&target.version));
        out.push((key(&target.plugin, &target.version), plugin_value(spec, stats, Some(&target.limits), inputs.now)));
        // Other versions of the plugin still answering (a rollout in progress), without limits of their own.
        for (version, stats) in versions.into_iter().flatten() {
            if stats.requests > 0 && *version != target.version {
                out.push((key(&target.plugin, version), plugin_value(spec, Some(stats), None, inputs.now)));
            }
        }
    }
    out
}

fn key(plugin: &str, version: &str) -> SeriesKey {
    SeriesKey { plugin: Some(plugin.to_owned()), version: Some(version.to_owned()) }
}

fn host_value(metric: Metric, h: &HostSample) -> Option<f64> {
    let share = |used: u64, total: u64| (total > 0).then(|| used as f64 / total as f64);
    match metric {
        Metric::HostCpu => Some(h.cpu_usage),
        Metric::HostMemory => share(h.memory_used_bytes, h.memory_total_bytes),
        Metric::HostDisk => share(h.disk_used_bytes, h.disk_total_bytes),
        _ => None,
    }
}

/// One plugin version's value for a rule. Counts and throughput are zero without traffic; ratios, means,
/// quantiles and peaks are no data.
pub fn plugin_value(
    spec: &RuleSpec,
    stats: Option<&LiveStats>,
    limits: Option<&Limits>,
    now: SystemTime,
) -> Option<f64> {
    let count = |outcome: Outcome| stats.map_or(0, |s| s.counts[outcome.index()]) as f64;
    let traffic = stats.filter(|s| s.requests > 0);
    match spec.metric {
        Metric::LatencyP50 => traffic.and_then(|s| s.p50),
        Metric::LatencyP95 => traffic.and_then(|s| s.p95),
        Metric::LatencyP99 => traffic.and_then(|s| s.p99),
        Metric::ErrorRate => traffic.map(|s| {
            let errors: u64 = if spec.outcomes.is_empty() {
                s.requests - s.counts[Outcome::Ok.index()]
            } else {
                spec.outcomes.iter().map(|o| s.counts[o.index()]).sum()
            };
            errors as f64 / s.requests as f64
        }),
        Metric::Timeouts => Some(count(Outcome::Timeout)),
        Metric::Rejected => Some(count(Outcome::Rejected)),
        Metric::Throughput => Some(stats.map_or(0.0, |s| s.rps)),
        Metric::CpuTime => traffic.map(|s| s.cpu_seconds / s.requests as f64),
        Metric::Instructions => traffic.map(|s| s.instructions as f64 / s.requests as f64),
        Metric::MemoryPeak => traffic.map(|s| s.memory_peak_bytes as f64),
        Metric::Headroom => {
            let headroom = traffic?.headroom(limits?);
            match spec.limit.unwrap_or(HeadroomLimit::Any) {
                HeadroomLimit::WallTime => headroom.wall_time,
                HeadroomLimit::Instructions => headroom.instructions,
                HeadroomLimit::Memory => headroom.memory,
                HeadroomLimit::Output => headroom.output,
                HeadroomLimit::Concurrency => headroom.concurrency,
                HeadroomLimit::Any => headroom.max(),
            }
        }
        Metric::Idle => {
            stats.and_then(|s| s.last_invocation).map(|at| now.duration_since(at).unwrap_or_default().as_secs_f64())
        }
        Metric::HostCpu | Metric::HostMemory | Metric::HostDisk | Metric::BackupFailures => None,
    }
}

/// What one evaluation did to one alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The alert's record afterwards; `None` when it is inactive.
    pub record: Option<AlertRecord>,
    /// `(from, to)` when the state changed.
    pub transition: Option<(State, State)>,
}

/// Moves one alert by one evaluation (see the module doc's table).
pub fn step(
    rule_id: i64,
    spec: &RuleSpec,
    series: &SeriesKey,
    previous: Option<&AlertRecord>,
    value: Option<f64>,
    now: SystemTime,
) -> Step {
    let condition = match value {
        Some(v) => Some(spec.comparison.holds(v, spec.threshold)),
        None => match spec.no_data {
            NoData::Ok => Some(false),
            NoData::Alerting => Some(true),
            NoData::NoData => None,
        },
    };
    let from = previous.map_or(State::Inactive, |r| r.state);
    let held_for = |since: SystemTime| now.duration_since(since).unwrap_or_default();
    let for_ = Duration::from_secs(u64::from(spec.for_secs));
    let last_true = if condition == Some(true) { Some(now) } else { previous.and_then(|r| r.last_true) };
    let to = match (from, condition) {
        (State::Inactive | State::NoData | State::Resolved, Some(true)) => {
            if for_.is_zero() {
                State::Firing
            } else {
                State::Pending
            }
        }
        (State::Pending, Some(true)) => {
            if held_for(previous.map_or(now, |r| r.since)) >= for_ {
                State::Firing
            } else {
                State::Pending
            }
        }
        (State::Firing, Some(true)) => State::Firing,
        (State::Firing, Some(false)) => {
            let keep = Duration::from_secs(u64::from(spec.keep_firing_for_secs));
            match last_true {
                Some(at) if held_for(at) < keep => State::Firing,
                _ => State::Resolved,
            }
        }
        (State::NoData, Some(false)) => State::Resolved,
        (State::Pending | State::Inactive | State::Resolved, Some(false)) => State::Inactive,
        (_, None) => State::NoData,
    };
    let transition = (to != from && !(from == State::Inactive && to == State::Inactive)).then_some((from, to));
    let record = match to {
        State::Inactive | State::Resolved => None,
        state => {
            let since = if transition.is_some() { now } else { previous.map_or(now, |r| r.since) };
            Some(AlertRecord {
                rule_id,
                series: series.clone(),
                state,
                since,
                last_true,
                value,
                notified_at: if transition.is_some() { None } else { previous.and_then(|r| r.notified_at) },
            })
        }
    };
    Step { record, transition }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugwatch_model::alerts::{Comparison, NoData as Nd};

    fn rule(for_secs: u32, keep: u32, no_data: Nd) -> RuleSpec {
        RuleSpec {
            for_secs,
            keep_firing_for_secs: keep,
            no_data,
            comparison: Comparison::Above,
            threshold: 0.05,
            ..crate::rules::default_rules().remove(0)
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// Runs values through the state machine every 5 s; returns the state after each and the transitions.
    fn run(spec: &RuleSpec, values: &[Option<f64>]) -> (Vec<State>, Vec<(u64, State, State)>) {
        let key = SeriesKey { plugin: Some("p".into()), version: Some("1".into()) };
        let mut record: Option<AlertRecord> = None;
        let (mut states, mut transitions) = (Vec::new(), Vec::new());
        for (i, value) in values.iter().enumerate() {
            let now = at(i as u64 * 5);
            let s = step(1, spec, &key, record.as_ref(), *value, now);
            if let Some((from, to)) = s.transition {
                transitions.push((i as u64 * 5, from, to));
            }
            states.push(s.record.as_ref().map_or(State::Inactive, |r| r.state));
            record = s.record;
        }
        (states, transitions)
    }

    #[test]
    fn pending_fires_after_for_and_resolves() {
        let spec = rule(10, 0, Nd::Ok);
        let (states, transitions) = run(&spec, &[Some(0.1), Some(0.1), Some(0.1), Some(0.0), Some(0.0)]);
        use State::*;
        assert_eq!(states, [Pending, Pending, Firing, Inactive, Inactive]);
        assert_eq!(transitions, [(0, Inactive, Pending), (10, Pending, Firing), (15, Firing, Resolved)]);
    }

    #[test]
    fn a_break_in_the_condition_restarts_pending() {
        let spec = rule(10, 0, Nd::Ok);
        let (states, _) = run(&spec, &[Some(0.1), Some(0.1), Some(0.0), Some(0.1), Some(0.1), Some(0.1)]);
        use State::*;
        assert_eq!(states, [Pending, Pending, Inactive, Pending, Pending, Firing]);
    }

    #[test]
    fn keep_firing_for_damps_flapping() {
        let flapping =
            [Some(0.1), Some(0.0), Some(0.1), Some(0.0), Some(0.1), Some(0.0), Some(0.0), Some(0.0), Some(0.0)];
        let (_, without) = run(&rule(0, 0, Nd::Ok), &flapping);
        assert_eq!(without.iter().filter(|t| t.2 == State::Firing).count(), 3, "{without:?}");
        let (states, damped) = run(&rule(0, 12, Nd::Ok), &flapping);
        assert_eq!(damped, [(0, State::Inactive, State::Firing), (35, State::Firing, State::Resolved)], "{states:?}");
    }

    #[test]
    fn no_data_is_explicit() {
        use State::*;
        let gap = [Some(0.1), None, None, Some(0.0)];
        let (states, transitions) = run(&rule(0, 0, Nd::NoData), &gap);
        assert_eq!(states, [Firing, NoData, NoData, Inactive]);
        assert_eq!(transitions, [(0, Inactive, Firing), (5, Firing, NoData), (15, NoData, Resolved)]);
        let (states, _) = run(&rule(0, 0, Nd::Ok), &gap);
        assert_eq!(states, [Firing, Inactive, Inactive, Inactive]);
        let (states, _) = run(&rule(0, 0, Nd::Alerting), &gap);
        assert_eq!(states, [Firing, Firing, Firing, Inactive]);
    }

    #[test]
    fn values_follow_the_metric_and_traffic() {
        let mut spec = rule(0, 0, Nd::Ok);
        let mut stats = LiveStats {
            plugin: "p".into(),
            version: "1".into(),
            window_secs: 60.0,
            requests: 100,
            rps: 100.0 / 60.0,
            p50: Some(0.001),
            p95: Some(0.002),
            p99: Some(0.08),
            error_rate: 0.1,
            cpu_cores: 0.1,
            cpu_seconds: 0.5,
            instructions: 1_000_000,
            memory_peak_bytes: 32 << 20,
            instructions_max: 1_800_000_000,
            output_bytes_max: 100,
            concurrency_max: 2,
            counts: [0; 9],
            last_invocation: Some(at(0)),
        };
        stats.counts[Outcome::Ok.index()] = 90;
        stats.counts[Outcome::Timeout.index()] = 4;
        stats.counts[Outcome::PluginError.index()] = 6;
        let now = at(30);
        let value =
            |spec: &RuleSpec, stats: Option<&LiveStats>| plugin_value(spec, stats, Some(&Limits::default()), now);
        assert_eq!(value(&spec, Some(&stats)), Some(0.1));
        spec.outcomes = vec![Outcome::Timeout];
        assert_eq!(value(&spec, Some(&stats)), Some(0.04));
        spec.outcomes.clear();
        spec.metric = Metric::Headroom;
        spec.limit = Some(HeadroomLimit::Instructions);
        assert_eq!(value(&spec, Some(&stats)), Some(0.9));
        spec.limit = Some(HeadroomLimit::Any);
        assert_eq!(value(&spec, Some(&stats)), Some(0.9));
        spec.limit = Some(HeadroomLimit::WallTime);
        assert!((value(&spec, Some(&stats)).unwrap() - 0.8).abs() < 1e-9);
        spec.limit = Some(HeadroomLimit::Memory);
        assert_eq!(value(&spec, Some(&stats)), Some(0.5));
        spec.metric = Metric::Idle;
        spec.limit = None;
        assert_eq!(value(&spec, Some(&stats)), Some(30.0));
        let mut idle = stats.clone();
        idle.requests = 0;
        idle.counts = [0; 9];
        spec.metric = Metric::ErrorRate;
        assert_eq!(value(&spec, Some(&idle)), None, "no traffic is no data for a ratio");
        spec.metric = Metric::Timeouts;
        assert_eq!(value(&spec, Some(&idle)), Some(0.0), "a count is zero without traffic");
        spec.metric = Metric::Throughput;
        assert_eq!(value(&spec, None), Some(0.0));
        spec.metric = Metric::Idle;
        assert_eq!(value(&spec, None), None, "never invoked is no data");
    }
}
