//! Pruning: deletes what is older than its retention (compiled once per database, see `backend.rs`).

use crate::{Result, unix};
use plugwatch_telemetry::Resolution;
use std::time::{Duration, SystemTime};

use super::{DIALECT, Db};
use crate::backend::Dialect;
#[allow(unused_imports)]
use crate::retention::*;

impl Db {
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
                    ) ranked WHERE newest > $2)",
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
        if DIALECT == Dialect::Sqlite {
            // Gives the freed pages back to the file system (PostgreSQL's autovacuum does its own).
            sqlx::query("PRAGMA incremental_vacuum").execute(&self.pool).await?;
        }
        Ok(report)
    }
}
