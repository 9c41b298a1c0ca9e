//! Persisted telemetry's shapes: rollups read back, host points, and the column lists the queries
//! share (the queries are in `sql/telemetry.rs`).

use std::time::Duration;

use plugwatch_telemetry::Rollup;

/// A rollup read back. Ten-second rows keep quantiles instead of a sketch (see the schema), so
/// `rollup.latency` is empty for them and `quantiles` holds p50, p95, p99 and max, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRollup {
    pub rollup: Rollup,
    pub quantiles: Option<[f64; 4]>,
    /// The replica that wrote the row (`""` on SQLite): rows of different replicas add up.
    pub replica: String,
}

/// Requests of one minute rollup row: a sparkline's point, per replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteRequests {
    pub plugin: String,
    pub version: String,
    pub replica: String,
    pub start: i64,
    pub requests: u64,
}

/// A replica that wrote host samples, and when it wrote its last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSeen {
    pub replica: String,
    pub last_sample: i64,
}

/// One host sample point (averaged when a query's step spans several samples).
#[derive(Clone, Debug, PartialEq)]
pub struct HostPoint {
    pub at: i64,
    pub cpu_usage: f64,
    pub cpu_cores: u64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub process_rss_bytes: u64,
    pub process_cpu_usage: f64,
}

/// How long the sketch of a 10 s rollup is kept beside it (in `ten_second_sketches`): longer than the live
/// window a restart restores, short enough that the sketches add little to the database.
pub(crate) const TEN_SECOND_SKETCHES: Duration = Duration::from_secs(3600);

pub(crate) const OUTCOME_COLUMNS: &str =
    "ok, plugin_error, trap, timeout, fuel_exhausted, memory_limit, output_too_large, input_too_large, rejected";
