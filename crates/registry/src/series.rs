//! Per-plugin time series for any range and step: what telemetry holds in memory (the live window's 10 s
//! buckets, the current minute and hour) and the store's rows for the rest, merged into points of the
//! requested step.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_runtime::Outcome;
use plugwatch_store::StoredRollup;
use plugwatch_telemetry::{Resolution, Rollup};

use crate::{Registry, Result};

/// The most points one query returns; a finer step over a longer range is coarsened to fit.
pub const MAX_POINTS: u64 = 2000;

/// One point of a series: aggregates over `[start, start + step)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub start: i64,
    pub requests: u64,
    pub counts: [u64; 9],
    /// Seconds; `None` without traffic.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub cpu_sum_us: u64,
    pub instructions: u64,
    pub memory_peak_max: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

impl Point {
    pub fn failures(&self) -> u64 {
        self.requests - self.counts[Outcome::Ok.index()]
    }
}

/// A series answer: the step actually used and the resolution it was built from.
#[derive(Clone, Debug)]
pub struct SeriesData {
    pub step: u64,
    pub resolution: Resolution,
    pub points: Vec<Point>,
}

impl Registry {
    /// Points from `from` to `to` every `step` for one plugin (one version, or all merged).
    pub async fn series(
        &self,
        plugin: &str,
        version: Option<&str>,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<SeriesData> {
        self.plugin(plugin)?;
        let (from_s, to_s) = (unix(from), unix(to).max(unix(from) + 1));
        let span = (to_s - from_s) as u64;
        let mut step = step.as_secs().max(10).max(span.div_ceil(MAX_POINTS));
        let resolution = if step < 60 {
            Resolution::TenSeconds
        } else if step < 3600 {
            Resolution::Minute
        } else {
            Resolution::Hour
        };
        let resolution_secs = resolution.seconds() as u64;
        step = step.div_ceil(resolution_secs) * resolution_secs;
        let stored = self.inner.store.rollups(plugin, version, resolution, from, to).await?;
        // Buckets still in memory hold their whole interval as far as this replica knows (what a restart
        // restored included) and are the freshest: each replaces this replica's stored row of its version
        // and start. Other replicas' rows add to them.
        let replica = self.inner.store.replica();
        let mut rows: BTreeMap<(i64, String, String), StoredRollup> = BTreeMap::new();
        for s in stored {
            rows.insert((s.rollup.start, s.rollup.version.clone(), s.replica.clone()), s);
        }
        for live in self.inner.telemetry.live(plugin, version, resolution, from, to) {
            let key = (live.start, live.version.clone(), replica.clone());
            rows.insert(key, StoredRollup { rollup: live, quantiles: None, replica: replica.clone() });
        }
        let mut points: BTreeMap<i64, Accumulated> = BTreeMap::new();
        for ((start, _, _), StoredRollup { rollup, quantiles, .. }) in rows {
            let at = start - (start - from_s).rem_euclid(step as i64);
            let Accumulated { point, merged, stored_quantiles } = points.entry(at).or_insert_with(|| Accumulated {
                point: empty_point(at),
                merged: None,
                stored_quantiles: Vec::new(),
            });
            point.requests += rollup.total();
            for (sum, n) in point.counts.iter_mut().zip(rollup.counts) {
                *sum += n;
            }
            point.cpu_sum_us += rollup.cpu_sum_us;
            point.instructions += rollup.instructions;
            point.memory_peak_max = point.memory_peak_max.max(rollup.memory_peak_max);
            point.input_bytes += rollup.input_bytes;
            point.output_bytes += rollup.output_bytes;
            // A row with a sketch merges exactly; an older 10 s row has only its quantiles.
            match quantiles.filter(|_| rollup.latency.count() == 0) {
                Some(q) => stored_quantiles.push(q),
                None => match merged {
                    Some(m) => m.merge(&rollup),
                    None => *merged = Some(rollup),
                },
            }
        }
        let points = points
            .into_values()
            .map(|Accumulated { mut point, merged, mut stored_quantiles }| {
                let merged = merged.filter(|m| m.latency.count() > 0);
                match merged {
                    Some(m) if stored_quantiles.is_empty() => {
                        (point.p50, point.p95, point.p99) = (m.quantile(0.5), m.quantile(0.95), m.quantile(0.99));
                        return point;
                    }
                    // Rows with sketches and rows with quantiles only: count the merged sketch as one more.
                    Some(m) => {
                        let q = |p: f64| m.quantile(p).unwrap_or(0.0);
                        stored_quantiles.push([q(0.5), q(0.95), q(0.99), m.latency.max().unwrap_or(0.0)]);
                    }
                    None => {}
                }
                if let [q] = stored_quantiles.as_slice() {
                    // A 10 s bucket read back from the store with its quantiles only.
                    (point.p50, point.p95, point.p99) = (Some(q[0]), Some(q[1]), Some(q[2]));
                } else if !stored_quantiles.is_empty() {
                    // Several such buckets in one point: the worst of each is an upper bound.
                    let worst = |i: usize| stored_quantiles.iter().map(|q| q[i]).reduce(f64::max);
                    (point.p50, point.p95, point.p99) = (worst(0), worst(1), worst(2));
                }
                point
            })
            .collect();
        Ok(SeriesData { step, resolution, points })
    }
}

/// One point being built: its counters, the merged sketch of rows that have one, and the quantiles of
/// stored 10 s rows (which keep quantiles instead of a sketch).
struct Accumulated {
    point: Point,
    merged: Option<Rollup>,
    stored_quantiles: Vec<[f64; 4]>,
}

fn empty_point(start: i64) -> Point {
    Point {
        start,
        requests: 0,
        counts: [0; 9],
        p50: None,
        p95: None,
        p99: None,
        cpu_sum_us: 0,
        instructions: 0,
        memory_peak_max: 0,
        input_bytes: 0,
        output_bytes: 0,
    }
}

/// Whole seconds since the Unix epoch.
pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Registry {
    /// Requests per minute over the `minutes` before `now` for each of `plugins` (all versions and
    /// replicas), oldest first: the stored minute rollups, this replica's replaced by what memory holds of
    /// the same (version, minute).
    pub async fn sparklines(
        &self,
        plugins: &[&str],
        now: SystemTime,
        minutes: usize,
    ) -> Result<std::collections::HashMap<String, Vec<u64>>> {
        let minute = Resolution::Minute.seconds();
        let end = unix(now).div_euclid(minute) * minute;
        let first = end - (minutes as i64 - 1) * minute;
        let from = std::time::UNIX_EPOCH + std::time::Duration::from_secs(first.max(0) as u64);
        let replica = self.inner.store.replica();
        let mut rows: BTreeMap<(String, String, String, i64), u64> = BTreeMap::new();
        for row in self.inner.store.minute_requests(plugins, from).await? {
            rows.insert((row.plugin, row.version, row.replica, row.start), row.requests);
        }
        for plugin in plugins {
            for live in self.inner.telemetry.live(plugin, None, Resolution::Minute, from, now) {
                rows.insert((live.plugin.clone(), live.version.clone(), replica.clone(), live.start), live.total());
            }
        }
        let mut out: std::collections::HashMap<String, Vec<u64>> =
            plugins.iter().map(|p| ((*p).to_owned(), vec![0; minutes])).collect();
        for ((plugin, _, _, start), requests) in rows {
            if let (Some(line), true) = (out.get_mut(&plugin), start >= first && start <= end) {
                line[((start - first) / minute) as usize] += requests;
            }
        }
        Ok(out)
    }
}
