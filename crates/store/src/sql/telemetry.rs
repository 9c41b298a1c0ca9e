//! Persisting telemetry: rollups at every resolution, the sampled run log, and host samples (compiled
//! once per database, see `backend.rs`).

use crate::{Result, StoreError, unix, unix_ceil};
use plugwatch_model::{Level, LogLine, LogSource, Outcome};
use plugwatch_telemetry::{Flush, HostSample, LatencySketch, Persisted, Resolution, Rollup, RunLogEntry};
use sqlx::{Row, Transaction};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{DB, Db, DbRow};
#[allow(unused_imports)]
use crate::telemetry::*;

impl Db {
    /// Writes what one telemetry flush produced, in one transaction: 10 s buckets (closed, and the open
    /// ones so far), the current minute and hour rollups (each replacing the earlier state of its row), and
    /// run-log entries.
    pub async fn write_flush(&self, flush: &Flush) -> Result<()> {
        let Flush { closed, open, rollups, runs } = flush;
        if closed.is_empty() && open.is_empty() && rollups.is_empty() && runs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for rollup in closed.iter().chain(open).chain(rollups) {
            let series = self.series_id(&mut tx, &rollup.plugin, &rollup.version).await?;
            write_rollup(&mut tx, series, &self.replica, rollup).await?;
        }
        for run in runs {
            write_run(&mut tx, run).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn series_id(&self, tx: &mut Transaction<'_, DB>, plugin: &str, version: &str) -> Result<i64> {
        let key = (plugin.to_owned(), version.to_owned());
        if let Some(id) = self.series.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*id);
        }
        sqlx::query("INSERT INTO series (plugin, version) VALUES ($1, $2) ON CONFLICT (plugin, version) DO NOTHING")
            .bind(plugin)
            .bind(version)
            .execute(&mut **tx)
            .await?;
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM series WHERE plugin = $1 AND version = $2")
            .bind(plugin)
            .bind(version)
            .fetch_one(&mut **tx)
            .await?;
        self.series.lock().unwrap_or_else(|e| e.into_inner()).insert(key, id);
        Ok(id)
    }

    /// Rollups of one plugin (one version, or all) at one resolution with `from <= start < to`, by start,
    /// of every replica (each row says whose it is).
    pub async fn rollups(
        &self,
        plugin: &str,
        version: Option<&str>,
        resolution: Resolution,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<StoredRollup>> {
        let rows = sqlx::query(
            "SELECT s.plugin, s.version, r.* FROM rollups r JOIN series s ON s.id = r.series_id
             WHERE r.resolution = $1 AND s.plugin = $2 AND ($3 IS NULL OR s.version = $3)
               AND r.start >= $4 AND r.start < $5
             ORDER BY r.start, s.version, r.replica",
        )
        .bind(resolution.seconds())
        .bind(plugin)
        .bind(version)
        .bind(unix(from))
        .bind(unix_ceil(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| read_rollup(row, resolution)).collect()
    }

    /// Requests per minute rollup row of each of `plugins` (every version and replica) starting at or after
    /// `from`: the sparklines of a page of the overview, in one query.
    pub async fn minute_requests(&self, plugins: &[&str], from: SystemTime) -> Result<Vec<MinuteRequests>> {
        if plugins.is_empty() {
            return Ok(Vec::new());
        }
        let total = OUTCOME_COLUMNS.replace(", ", " + r.");
        let names = (0..plugins.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT s.plugin, s.version, r.replica, r.start, (r.{total}) AS requests FROM rollups r JOIN series s ON s.id = r.series_id
             WHERE r.resolution = $1 AND r.start >= $2 AND s.plugin IN ({names})
             ORDER BY r.start, s.plugin, s.version, r.replica"
        );
        let mut query =
            sqlx::query_as::<_, (String, String, String, i64, i64)>(&sql).bind(Resolution::Minute.seconds()).bind(unix(from));
        for plugin in plugins {
            query = query.bind(*plugin);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(plugin, version, replica, start, n)| MinuteRequests { plugin, version, replica, start, requests: n as u64 })
            .collect())
    }

    /// What a restarted process continues from (see [`Telemetry::restore`](plugwatch_telemetry::Telemetry::restore)):
    /// this replica's 10 s rows of the `window` before `now`, its minute and hour rows of the intervals
    /// holding `now`, and when each series last saw an invocation start (from the run log, which always
    /// keeps the newest).
    pub async fn persisted_telemetry(&self, now: SystemTime, window: Duration) -> Result<Persisted> {
        let now = unix(now);
        let mut rollups = Vec::new();
        for resolution in Resolution::ALL {
            let (from, to) = match resolution {
                Resolution::TenSeconds => (resolution.align(now) - window.as_secs() as i64, i64::MAX),
                _ => (resolution.align(now), resolution.align(now) + 1),
            };
            let rows = sqlx::query(
                "SELECT s.plugin, s.version, r.*, k.sketch AS recent_sketch FROM rollups r
                 JOIN series s ON s.id = r.series_id
                 LEFT JOIN ten_second_sketches k
                   ON r.resolution = 10 AND k.series_id = r.series_id AND k.start = r.start AND k.replica = r.replica
                 WHERE r.resolution = $1 AND r.start >= $2 AND r.start < $3 AND r.replica = $4
                 ORDER BY r.start, s.plugin, s.version",
            )
            .bind(resolution.seconds())
            .bind(from)
            .bind(to)
            .bind(&*self.replica)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                let mut rollup = read_rollup(row, resolution)?.rollup;
                if let Some(bytes) = row.get::<Option<Vec<u8>>, _>("recent_sketch") {
                    rollup.latency = decode_sketch(&bytes)?;
                }
                rollups.push(rollup);
            }
        }
        let last: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT plugin, version, MAX(started_at_us) FROM runs GROUP BY plugin, version")
                .fetch_all(&self.pool)
                .await?;
        let last_started = last
            .into_iter()
            .map(|(plugin, version, us)| (plugin, version, UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)))
            .collect();
        Ok(Persisted { rollups, last_started })
    }

    /// The 10 s rows of every other replica that start at or after `since`, with their latency sketches:
    /// what the others have flushed of the live window, which this replica adds to its own.
    pub async fn peer_rollups(&self, since: SystemTime) -> Result<Vec<StoredRollup>> {
        let rows = sqlx::query(
            "SELECT s.plugin, s.version, r.*, k.sketch AS recent_sketch FROM rollups r
             JOIN series s ON s.id = r.series_id
             LEFT JOIN ten_second_sketches k ON k.series_id = r.series_id AND k.start = r.start AND k.replica = r.replica
             WHERE r.resolution = $1 AND r.start >= $2 AND r.replica <> $3",
        )
        .bind(Resolution::TenSeconds.seconds())
        .bind(unix(since))
        .bind(&*self.replica)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut stored = read_rollup(row, Resolution::TenSeconds)?;
                if let Some(bytes) = row.get::<Option<Vec<u8>>, _>("recent_sketch") {
                    stored.rollup.latency = decode_sketch(&bytes)?;
                }
                Ok(stored)
            })
            .collect()
    }

    /// The persisted run log of a plugin, newest first; `before_us` pages backwards.
    pub async fn runs(
        &self,
        plugin: &str,
        limit: u32,
        failures_only: bool,
        before_us: Option<i64>,
    ) -> Result<Vec<RunLogEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE plugin = $1 AND (NOT $2 OR failed) AND started_at_us < $3
             ORDER BY started_at_us DESC LIMIT $4",
        )
        .bind(plugin)
        .bind(failures_only)
        .bind(before_us.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_run).collect()
    }

    pub async fn write_host_sample(&self, s: &HostSample) -> Result<()> {
        sqlx::query(
            "INSERT INTO host_samples (at, cpu_usage, cpu_cores, memory_used_bytes, memory_total_bytes,
                disk_used_bytes, disk_total_bytes, process_rss_bytes, process_cpu_usage, replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (replica, at) DO UPDATE SET cpu_usage = excluded.cpu_usage, process_cpu_usage = excluded.process_cpu_usage",
        )
        .bind(unix(s.at))
        .bind(s.cpu_usage)
        .bind(s.cpu_cores as i64)
        .bind(s.memory_used_bytes as i64)
        .bind(s.memory_total_bytes as i64)
        .bind(s.disk_used_bytes as i64)
        .bind(s.disk_total_bytes as i64)
        .bind(s.process_rss_bytes as i64)
        .bind(s.process_cpu_usage)
        .bind(&*self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Host samples with `from <= at < to` of one replica (or of every replica: each figure their mean),
    /// averaged per `step` (aligned to multiples of `step`).
    pub async fn host_points(
        &self,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
        replica: Option<&str>,
    ) -> Result<Vec<HostPoint>> {
        let step = step.as_secs().max(1) as i64;
        let rows = sqlx::query(
            "SELECT (at / $3) * $3 AS bucket, CAST(AVG(cpu_usage) AS DOUBLE PRECISION) AS cpu_usage, MAX(cpu_cores) AS cpu_cores,
                    CAST(AVG(memory_used_bytes) AS DOUBLE PRECISION) AS memory_used_bytes, MAX(memory_total_bytes) AS memory_total_bytes,
                    CAST(AVG(disk_used_bytes) AS DOUBLE PRECISION) AS disk_used_bytes, MAX(disk_total_bytes) AS disk_total_bytes,
                    CAST(AVG(process_rss_bytes) AS DOUBLE PRECISION) AS process_rss_bytes, CAST(AVG(process_cpu_usage) AS DOUBLE PRECISION) AS process_cpu_usage
             FROM host_samples WHERE at >= $1 AND at < $2 AND ($4 IS NULL OR replica = $4)
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(unix(from))
        .bind(unix_ceil(to))
        .bind(step)
        .bind(replica)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| HostPoint {
                at: r.get("bucket"),
                cpu_usage: r.get("cpu_usage"),
                cpu_cores: r.get::<i64, _>("cpu_cores") as u64,
                memory_used_bytes: r.get::<f64, _>("memory_used_bytes") as u64,
                memory_total_bytes: r.get::<i64, _>("memory_total_bytes") as u64,
                disk_used_bytes: r.get::<f64, _>("disk_used_bytes") as u64,
                disk_total_bytes: r.get::<i64, _>("disk_total_bytes") as u64,
                process_rss_bytes: r.get::<f64, _>("process_rss_bytes") as u64,
                process_cpu_usage: r.get("process_cpu_usage"),
            })
            .collect())
    }
}

impl Db {
    /// Every replica with a host sample at or after `since`, with its last, by name.
    pub async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaSeen>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT replica, MAX(at) FROM host_samples WHERE at >= $1 GROUP BY replica ORDER BY replica",
        )
        .bind(unix(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(replica, last_sample)| ReplicaSeen { replica, last_sample }).collect())
    }

    /// The replica this store writes telemetry as.
    pub fn replica(&self) -> String {
        self.replica.to_string()
    }
}

/// A rollup row's columns after its key and outcome counts, in the order `write_rollup` binds them.
const ROLLUP_VALUES: &str = "wall_sum_us, cpu_sum_us, instructions, input_bytes, output_bytes, memory_peak_max, \
    p50_us, p95_us, p99_us, max_us, sketch, instructions_max, output_bytes_max, concurrency_max";

async fn write_rollup(tx: &mut Transaction<'_, DB>, series: i64, replica: &str, r: &Rollup) -> Result<()> {
    let ten_seconds = r.resolution == Resolution::TenSeconds;
    let us = |q: f64| r.quantile(q).map(|s| (s * 1e6).round() as i64);
    let (p50, p95, p99, max) = if ten_seconds {
        (us(0.5), us(0.95), us(0.99), r.latency.max().map(|s| (s * 1e6).round() as i64))
    } else {
        (None, None, None, None)
    };
    let sketch = (!ten_seconds).then(|| r.latency.encode());
    let sql = format!(
        "INSERT INTO rollups (resolution, series_id, start, replica, {OUTCOME_COLUMNS}, {ROLLUP_VALUES})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
            $24, $25, $26, $27)
         ON CONFLICT (resolution, series_id, start, replica) DO UPDATE SET {}",
        OUTCOME_COLUMNS.split(", ").chain(ROLLUP_VALUES.split(", ")).map(|c| format!("{c} = excluded.{c}")).collect::<Vec<_>>().join(", ")
    );
    let mut query = sqlx::query(&sql).bind(r.resolution.seconds()).bind(series).bind(r.start).bind(replica);
    for count in r.counts {
        query = query.bind(count as i64);
    }
    query
        .bind(r.wall_sum_us as i64)
        .bind(r.cpu_sum_us as i64)
        .bind(r.instructions as i64)
        .bind(r.input_bytes as i64)
        .bind(r.output_bytes as i64)
        .bind(r.memory_peak_max as i64)
        .bind(p50)
        .bind(p95)
        .bind(p99)
        .bind(max)
        .bind(sketch)
        .bind(r.instructions_max as i64)
        .bind(r.output_bytes_max as i64)
        .bind(i64::from(r.concurrency_max))
        .execute(&mut **tx)
        .await?;
    if ten_seconds {
        sqlx::query(
            "INSERT INTO ten_second_sketches (series_id, start, replica, sketch) VALUES ($1, $2, $3, $4)
             ON CONFLICT (series_id, start, replica) DO UPDATE SET sketch = excluded.sketch",
        )
        .bind(series)
        .bind(r.start)
        .bind(replica)
        .bind(r.latency.encode())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn read_rollup(row: &DbRow, resolution: Resolution) -> Result<StoredRollup> {
    let mut counts = [0u64; Outcome::ALL.len()];
    for (i, outcome) in Outcome::ALL.iter().enumerate() {
        counts[i] = row.get::<i64, _>(outcome.as_str()) as u64;
    }
    let latency = match row.get::<Option<Vec<u8>>, _>("sketch") {
        Some(bytes) => decode_sketch(&bytes)?,
        None => LatencySketch::default(),
    };
    let seconds = |column: &str| row.get::<Option<i64>, _>(column).map(|us| us as f64 / 1e6);
    let quantiles = match (seconds("p50_us"), seconds("p95_us"), seconds("p99_us"), seconds("max_us")) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    Ok(StoredRollup {
        rollup: Rollup {
            plugin: row.get("plugin"),
            version: row.get("version"),
            resolution,
            start: row.get("start"),
            counts,
            latency,
            wall_sum_us: row.get::<i64, _>("wall_sum_us") as u64,
            cpu_sum_us: row.get::<i64, _>("cpu_sum_us") as u64,
            instructions: row.get::<i64, _>("instructions") as u64,
            input_bytes: row.get::<i64, _>("input_bytes") as u64,
            output_bytes: row.get::<i64, _>("output_bytes") as u64,
            memory_peak_max: row.get::<i64, _>("memory_peak_max") as u64,
            instructions_max: row.get::<i64, _>("instructions_max") as u64,
            output_bytes_max: row.get::<i64, _>("output_bytes_max") as u64,
            concurrency_max: row.get::<i64, _>("concurrency_max") as u32,
        },
        quantiles,
        replica: row.get("replica"),
    })
}

fn decode_sketch(bytes: &[u8]) -> Result<LatencySketch> {
    LatencySketch::decode(bytes).map_err(|e| StoreError::Corrupt(format!("latency sketch: {e}")))
}

async fn write_run(tx: &mut Transaction<'_, DB>, run: &RunLogEntry) -> Result<()> {
    let logs = serde_json::Value::Array(
        run.logs
            .iter()
            .map(|l| serde_json::json!([l.at.as_micros() as u64, l.level.as_str(), l.source.as_str(), l.message]))
            .collect(),
    );
    sqlx::query(
        "INSERT INTO runs (plugin, version, hook, started_at_us, outcome, failed, trap_kind, detail, wall_us, queued_us,
            instantiate_us, cpu_us, instructions, memory_peak_bytes, input_bytes, output_bytes, logs, logs_dropped_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&run.plugin)
    .bind(&run.version)
    .bind(&run.hook)
    .bind(micros_since_epoch(run.started_at))
    .bind(run.outcome.as_str())
    .bind(!run.outcome.is_ok())
    .bind(&run.trap_kind)
    .bind(&run.detail)
    .bind(run.wall_us as i64)
    .bind(run.queued_us as i64)
    .bind(run.instantiate_us as i64)
    .bind(run.cpu_us as i64)
    .bind(run.instructions.map(|n| n as i64))
    .bind(run.memory_peak_bytes as i64)
    .bind(run.input_bytes as i64)
    .bind(run.output_bytes as i64)
    .bind(logs.to_string())
    .bind(run.logs_dropped_bytes as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn read_run(row: &DbRow) -> Result<RunLogEntry> {
    let outcome: String = row.get("outcome");
    let logs: String = row.get("logs");
    let corrupt = |what: &str| StoreError::Corrupt(format!("run log {what}"));
    let lines: Vec<(u64, String, String, String)> = serde_json::from_str(&logs).map_err(|_| corrupt("lines"))?;
    let logs = lines
        .into_iter()
        .map(|(at, level, source, message)| {
            Ok(LogLine {
                at: Duration::from_micros(at),
                level: level_from(&level).ok_or_else(|| corrupt("level"))?,
                source: source_from(&source).ok_or_else(|| corrupt("source"))?,
                message,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunLogEntry {
        plugin: row.get("plugin"),
        version: row.get("version"),
        hook: row.get("hook"),
        started_at: UNIX_EPOCH + Duration::from_micros(row.get::<i64, _>("started_at_us").max(0) as u64),
        outcome: outcome.parse().map_err(|_| corrupt("outcome"))?,
        trap_kind: row.get("trap_kind"),
        detail: row.get("detail"),
        wall_us: row.get::<i64, _>("wall_us") as u64,
        queued_us: row.get::<i64, _>("queued_us") as u64,
        instantiate_us: row.get::<i64, _>("instantiate_us") as u64,
        cpu_us: row.get::<i64, _>("cpu_us") as u64,
        instructions: row.get::<Option<i64>, _>("instructions").map(|n| n as u64),
        memory_peak_bytes: row.get::<i64, _>("memory_peak_bytes") as u64,
        input_bytes: row.get::<i64, _>("input_bytes") as u64,
        output_bytes: row.get::<i64, _>("output_bytes") as u64,
        logs,
        logs_dropped_bytes: row.get::<i64, _>("logs_dropped_bytes") as u64,
    })
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn level_from(s: &str) -> Option<Level> {
    [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error].into_iter().find(|l| l.as_str() == s)
}

fn source_from(s: &str) -> Option<LogSource> {
    [LogSource::Host, LogSource::Stdout, LogSource::Stderr].into_iter().find(|l| l.as_str() == s)
}
