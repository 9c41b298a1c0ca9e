//! Retention: how long each kind of telemetry is kept (the pruning that enforces it is in
//! `sql/retention.rs`).

use std::time::Duration;

/// How long each kind of data is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    pub ten_seconds: Duration,
    pub minute: Duration,
    pub hour: Duration,
    /// Successful runs older than this are dropped, and beyond the newest `runs_per_plugin`.
    pub runs: Duration,
    /// Failed runs are kept longer (and counted separately).
    pub failed_runs: Duration,
    pub runs_per_plugin: u32,
    pub host_samples: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            ten_seconds: Duration::from_secs(2 * DAY),
            minute: Duration::from_secs(30 * DAY),
            hour: Duration::from_secs(365 * DAY),
            runs: Duration::from_secs(7 * DAY),
            failed_runs: Duration::from_secs(30 * DAY),
            runs_per_plugin: 1000,
            host_samples: Duration::from_secs(2 * DAY),
        }
    }
}

/// Rows removed by one pruning pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub rollups: u64,
    pub runs: u64,
    pub host_samples: u64,
}
