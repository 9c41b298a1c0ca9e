//! Rollups: what one series did during one aligned time interval (10 s, a minute or an hour), mergeable.

use std::fmt;
use std::str::FromStr;

use plugwatch_model::{Invocation, Outcome};

use crate::sketch::{LatencySketch, Prepared};

/// The length of a rollup's interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// The live bucket ([`TelemetryConfig::bucket`](crate::TelemetryConfig::bucket), 10 s by default).
    TenSeconds,
    Minute,
    Hour,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 3] = [Resolution::TenSeconds, Resolution::Minute, Resolution::Hour];

    /// The interval in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::TenSeconds => 10,
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }

    /// The stable name (`10s`, `1m`, `1h`), used in storage and API parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::TenSeconds => "10s",
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
        }
    }

    /// The start of the interval holding the unix time `secs`.
    pub fn align(self, secs: i64) -> i64 {
        secs.div_euclid(self.seconds()) * self.seconds()
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a string names no [`Resolution`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resolution `{0}` (expected 10s, 1m or 1h)")]
pub struct UnknownResolution(pub String);

impl FromStr for Resolution {
    type Err = UnknownResolution;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownResolution(s.to_owned()))
    }
}

/// Aggregates of one series over one aligned interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    pub plugin: String,
    pub version: String,
    pub resolution: Resolution,
    /// Unix seconds, aligned to the resolution.
    pub start: i64,
    /// Invocations by [`Outcome::index`].
    pub counts: [u64; 9],
    /// Wall time of every invocation, in seconds.
    pub latency: LatencySketch,
    pub wall_sum_us: u64,
    pub cpu_sum_us: u64,
    /// Instructions of the invocations that report them.
    pub instructions: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// The highest peak linear memory of any invocation.
    pub memory_peak_max: u64,
    /// The most instructions any invocation reported.
    pub instructions_max: u64,
    /// The largest output of any invocation.
    pub output_bytes_max: u64,
    /// The most invocations executing at once, as any invocation saw at its admission.
    pub concurrency_max: u32,
}

impl Rollup {
    /// An empty rollup.
    pub fn new(plugin: impl Into<String>, version: impl Into<String>, resolution: Resolution, start: i64) -> Self {
        Rollup {
            plugin: plugin.into(),
            version: version.into(),
            resolution,
            start,
            counts: [0; 9],
            latency: LatencySketch::new(),
            wall_sum_us: 0,
            cpu_sum_us: 0,
            instructions: 0,
            input_bytes: 0,
            output_bytes: 0,
            memory_peak_max: 0,
            instructions_max: 0,
            output_bytes_max: 0,
            concurrency_max: 0,
        }
    }

    /// Adds one invocation whose latency bin was computed beforehand.
    pub(crate) fn add(&mut self, invocation: &Invocation, latency: Option<Prepared>) {
        self.counts[invocation.outcome.index()] += 1;
        if let Some(latency) = latency {
            self.latency.add_prepared(latency);
        }
        self.wall_sum_us += micros(invocation.wall);
        self.cpu_sum_us += micros(invocation.cpu);
        self.instructions += invocation.instructions.unwrap_or(0);
        self.input_bytes += invocation.input_bytes;
        self.output_bytes += invocation.output_bytes;
        self.memory_peak_max = self.memory_peak_max.max(invocation.memory_peak_bytes);
        self.instructions_max = self.instructions_max.max(invocation.instructions.unwrap_or(0));
        self.output_bytes_max = self.output_bytes_max.max(invocation.output_bytes);
        self.concurrency_max = self.concurrency_max.max(invocation.concurrency);
    }

    /// Adds `other`'s aggregates to this one; the identity (plugin, version, resolution, start) is kept.
    pub fn merge(&mut self, other: &Rollup) {
        for (count, other) in self.counts.iter_mut().zip(other.counts) {
            *count += other;
        }
        self.latency.merge(&other.latency);
        self.wall_sum_us += other.wall_sum_us;
        self.cpu_sum_us += other.cpu_sum_us;
        self.instructions += other.instructions;
        self.input_bytes += other.input_bytes;
        self.output_bytes += other.output_bytes;
        self.memory_peak_max = self.memory_peak_max.max(other.memory_peak_max);
        self.instructions_max = self.instructions_max.max(other.instructions_max);
        self.output_bytes_max = self.output_bytes_max.max(other.output_bytes_max);
        self.concurrency_max = self.concurrency_max.max(other.concurrency_max);
    }

    /// All invocations.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Invocations that did not end [`Outcome::Ok`].
    pub fn failures(&self) -> u64 {
        self.total() - self.counts[Outcome::Ok.index()]
    }

    /// A wall-time quantile in seconds (see [`LatencySketch::quantile`]).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q)
    }

    /// A copy carrying the given identity.
    pub(crate) fn named(&self, plugin: &str, version: &str) -> Rollup {
        Rollup { plugin: plugin.to_owned(), version: version.to_owned(), ..self.clone() }
    }
}

/// A duration in whole microseconds, saturating.
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_names_round_trip() {
        for r in Resolution::ALL {
            assert_eq!(r.as_str().parse::<Resolution>().unwrap(), r);
        }
        assert!("5m".parse::<Resolution>().is_err());
        assert_eq!(Resolution::Minute.align(119), 60);
        assert_eq!(Resolution::Hour.align(-1), -3600);
    }
}
