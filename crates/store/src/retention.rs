//! Retention: how long each kind of telemetry is kept, and the pruning that enforces it.

use std::time::{Duration, SystemTime};

use plugwatch_telemetry::Resolution;

use crate::{Result, Store, unix};

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

impl Store {
    /// Deletes everything older than its retention (and run-log entries past the per-plugin count), then
    /// returns free pages to the file system.
    pub async fn prune(&self, retention: &Retention, now: SystemTime) -> Result<PruneReport> {
        let now = unix(now);
        let secs = |d: Duration| d.as_secs() as i64;
        let mut report = PruneReport::default();
        for (resolution, keep) in [
            (Resolution::TenSeconds, retention.ten_seconds),
            (Resolution::Minute, retention.minute),
            (Resolution::Hour, retention.hour),
        ] {
            report.rollups += sqlx::query("DELETE FROM rollups WHERE resolution = $1 AND start < $2")
                .bind(resolution.seconds())
                .bind(now - secs(keep))
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        for (failed, keep) in [(false, retention.runs), (true, retention.failed_runs)] {
            report.runs += sqlx::query("DELETE FROM runs WHERE failed = $1 AND started_at_us < $2")
                .bind(failed)
                .bind((now - secs(keep)) * 1_000_000)
                .execute(&self.pool)
                .await?
                .rows_affected();
            report.runs += sqlx::query(
                "DELETE FROM runs WHERE failed = $1 AND id IN (
                    SELECT id FROM (
                        SELECT id, ROW_NUMBER() OVER (PARTITION BY plugin ORDER BY started_at_us DESC) AS newest
                        FROM runs WHERE failed = $1
                    ) WHERE newest > $2)",
            )
            .bind(failed)
            .bind(i64::from(retention.runs_per_plugin))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        // A 10 s rollup's sketch is needed only to restore the live window after a restart.
        sqlx::query("DELETE FROM ten_second_sketches WHERE start < $1")
            .bind(now - secs(crate::telemetry::TEN_SECOND_SKETCHES))
            .execute(&self.pool)
            .await?;
        report.host_samples = sqlx::query("DELETE FROM host_samples WHERE at < $1")
            .bind(now - secs(retention.host_samples))
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("PRAGMA incremental_vacuum").execute(&self.pool).await?;
        Ok(report)
    }
}
