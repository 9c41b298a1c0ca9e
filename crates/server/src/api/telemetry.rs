//! Reading telemetry: per-plugin series, the run log, the overview of every plugin, and the host.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiErrors;
use crate::AppState;
use crate::dto::{
    HostDto, HostPointDto, HostSeries, InvocationDto, InvocationList, LiveDto, Overview, OverviewPlugin, SeriesPoint,
    SeriesResponse, ms, outcomes, rfc3339,
};
use crate::error::{ApiError, internal};
use crate::extract::{ApiPath, ApiQuery};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// Unix seconds or RFC 3339; default: `to` minus one hour.
    from: Option<String>,
    /// Unix seconds or RFC 3339; default: now.
    to: Option<String>,
    /// Seconds or a duration such as `1m`; default: about 120 points.
    step: Option<String>,
    version: Option<String>,
}

fn parse_time(field: &str, value: &str) -> Result<SystemTime, ApiError> {
    if let Ok(secs) = value.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    humantime::parse_rfc3339_weak(value).map_err(|_| {
        ApiError::bad_request(format!("`{field}` must be unix seconds or an RFC 3339 time, not {value:?}"))
    })
}

struct Range {
    from: SystemTime,
    to: SystemTime,
    step: Duration,
}

fn range(q: &RangeQuery) -> Result<Range, ApiError> {
    let to = q.to.as_deref().map(|v| parse_time("to", v)).transpose()?.unwrap_or_else(SystemTime::now);
    let from = q.from.as_deref().map(|v| parse_time("from", v)).transpose()?.unwrap_or(to - Duration::from_secs(3600));
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    let span = to.duration_since(from).unwrap_or_default();
    let step = match q.step.as_deref() {
        None => Duration::from_secs((span.as_secs() / 120).max(10)),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(v).map_err(|_| {
                ApiError::bad_request(format!("`step` must be seconds or a duration such as 1m, not {v:?}"))
            })?,
        },
    };
    if step.is_zero() {
        return Err(ApiError::bad_request("`step` must be positive"));
    }
    Ok(Range { from, to, step })
}

/// A plugin's time series: latency quantiles, requests/s, error rate, CPU and memory per step.
#[utoipa::path(get, path = "/api/v1/plugins/{name}/series", tag = "telemetry", params(("name" = String, Path), RangeQuery),
    responses((status = 200, body = SeriesResponse), ApiErrors))]
pub async fn series(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let r = range(&q)?;
    let data = state.registry.series(&name, q.version.as_deref(), r.from, r.to, r.step).await?;
    let step = data.step as f64;
    let points: Vec<_> = data
        .points
        .iter()
        .map(|p| SeriesPoint {
            t: p.start,
            requests: p.requests,
            rps: p.requests as f64 / step,
            error_rate: if p.requests == 0 { 0.0 } else { p.failures() as f64 / p.requests as f64 },
            p50_ms: p.p50.map(ms),
            p95_ms: p.p95.map(ms),
            p99_ms: p.p99.map(ms),
            cpu_cores: p.cpu_sum_us as f64 / 1e6 / step,
            instructions: p.instructions,
            memory_peak_bytes: p.memory_peak_max,
            input_bytes: p.input_bytes,
            output_bytes: p.output_bytes,
            outcomes: outcomes(&p.counts),
        })
        .collect();
    Ok(Json(SeriesResponse {
        plugin: name,
        version: q.version,
        step: data.step,
        resolution: data.resolution.as_str(),
        points,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Only failed invocations.
    failures: Option<bool>,
}

/// The run log, newest first: what is in memory, then what was persisted before it.
#[utoipa::path(get, path = "/api/v1/plugins/{name}/invocations", tag = "telemetry", params(("name" = String, Path), RunsQuery),
    responses((status = 200, body = InvocationList), ApiErrors))]
pub async fn invocations(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Response, ApiError> {
    state.registry.plugin(&name)?;
    let limit = match q.limit {
        None => 50,
        Some(n @ 1..=500) => n,
        Some(_) => return Err(ApiError::bad_request("`limit` must be between 1 and 500")),
    };
    let failures = q.failures.unwrap_or(false);
    let mut runs = state.registry.telemetry().recent(&name, limit as usize, failures);
    if runs.len() < limit as usize {
        let oldest =
            runs.last().map(|r| r.started_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as i64);
        let older = state
            .registry
            .store()
            .runs(&name, limit - runs.len() as u32, failures, oldest)
            .await
            .map_err(|e| internal(&e))?;
        runs.extend(older);
    }
    let invocations: Vec<InvocationDto> = runs.iter().map(InvocationDto::from_run).collect();
    Ok(Json(InvocationList { plugin: name, invocations }).into_response())
}

/// Every plugin (enabled, disabled, loading, failed) with its active version's numbers over the last
/// minute: what the overview and the live stream show, in one shape.
pub fn overview_rows(state: &AppState, now: SystemTime) -> Vec<OverviewPlugin> {
    let live = state.registry.telemetry().overview(now);
    let mut by_plugin: std::collections::HashMap<&str, Vec<&plugwatch_telemetry::LiveStats>> = Default::default();
    for s in &live {
        by_plugin.entry(s.plugin.as_str()).or_default().push(s);
    }
    state
        .registry
        .plugins()
        .iter()
        .map(|entry| {
            let active = entry.record.active_version.as_deref();
            let stats = by_plugin
                .get(entry.record.name.as_str())
                .and_then(|v| v.iter().find(|s| Some(s.version.as_str()) == active));
            OverviewPlugin {
                name: entry.record.name.clone(),
                status: entry.status(),
                version: active.map(str::to_owned),
                live: stats.map(|s| LiveDto::new(s)),
                sparkline: None,
            }
        })
        .collect()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    /// Only plugins whose name contains this.
    q: Option<String>,
    /// Only plugins with this status (`running`, `disabled`, `loading`, `failed`, `empty`).
    status: Option<String>,
    /// `name` (default), `rps`, `p95`, `error_rate`, `cpu` or `memory`.
    sort: Option<String>,
    /// `asc` (default for `name`) or `desc` (default for the others).
    order: Option<String>,
    /// From 1 (default).
    page: Option<usize>,
    /// 1 to 1000 (default: every plugin).
    per_page: Option<usize>,
    /// Add each listed plugin's requests per minute over the last hour.
    sparkline: Option<bool>,
}

/// Every plugin's live numbers over the last minute, plus the latest host sample: filtered, sorted and
/// paginated on the server, with sparklines on request.
#[utoipa::path(get, path = "/api/v1/overview", tag = "telemetry", params(OverviewQuery),
    responses((status = 200, body = Overview), ApiErrors))]
pub async fn overview(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let now = SystemTime::now();
    let mut plugins = overview_rows(&state, now);
    if let Some(text) = q.q.as_deref().filter(|t| !t.is_empty()) {
        plugins.retain(|p| p.name.contains(text));
    }
    if let Some(status) = q.status.as_deref().filter(|t| !t.is_empty()) {
        plugins.retain(|p| p.status == status);
    }
    let sort = q.sort.as_deref().unwrap_or("name");
    let key = |p: &OverviewPlugin| -> f64 {
        let live = p.live.as_ref();
        match sort {
            "rps" => live.map_or(0.0, |l| l.rps),
            "p95" => live.and_then(|l| l.p95_ms).unwrap_or(0.0),
            "error_rate" => live.map_or(0.0, |l| l.error_rate),
            "cpu" => live.map_or(0.0, |l| l.cpu_cores),
            _ => live.map_or(0.0, |l| l.memory_peak_bytes as f64),
        }
    };
    match sort {
        "name" => plugins.sort_by(|a, b| a.name.cmp(&b.name)),
        "rps" | "p95" | "error_rate" | "cpu" | "memory" => {
            plugins.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "`sort` must be name, rps, p95, error_rate, cpu or memory, not {other:?}"
            )));
        }
    }
    match q.order.as_deref() {
        None => {}
        Some(order @ ("asc" | "desc")) => {
            let descending = sort != "name";
            if (order == "desc") != descending {
                plugins.reverse();
            }
        }
        Some(other) => return Err(ApiError::bad_request(format!("`order` must be asc or desc, not {other:?}"))),
    }
    let total = plugins.len();
    let per_page = q.per_page.unwrap_or(total.max(1));
    if !(1..=1000).contains(&per_page) && q.per_page.is_some() {
        return Err(ApiError::bad_request("`per_page` must be 1 to 1000"));
    }
    let page = q.page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::bad_request("`page` starts at 1"));
    }
    let plugins: Vec<OverviewPlugin> =
        plugins.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect();
    let mut plugins = plugins;
    if q.sparkline == Some(true) {
        let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        let mut lines = state.registry.sparklines(&names, now, 60).await?;
        for p in &mut plugins {
            p.sparkline = lines.remove(&p.name);
        }
    }
    let host = state.registry.telemetry().latest_host();
    Ok(Json(Overview { at: rfc3339(now), total, page, per_page, plugins, host: host.as_ref().map(HostDto::new) }))
}

/// Host resources: the latest sample and a series over the range.
#[utoipa::path(get, path = "/api/v1/host", tag = "telemetry", params(RangeQuery), responses((status = 200, body = HostSeries), ApiErrors))]
pub async fn host(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<HostSeries>, ApiError> {
    if q.version.is_some() {
        return Err(ApiError::bad_request("`version` does not apply to host series"));
    }
    let r = range(&q)?;
    let step = r.step.max(Duration::from_secs(5));
    // The host this replica runs on, as `latest` is (with several replicas, each has its own).
    let store = state.registry.store();
    let points = store.host_points(r.from, r.to, step, Some(&store.replica())).await.map_err(|e| internal(&e))?;
    let latest = state.registry.telemetry().latest_host();
    let points: Vec<_> = points
        .iter()
        .map(|p| HostPointDto {
            t: p.at,
            cpu_usage: p.cpu_usage,
            memory_used_bytes: p.memory_used_bytes,
            memory_total_bytes: p.memory_total_bytes,
            disk_used_bytes: p.disk_used_bytes,
            disk_total_bytes: p.disk_total_bytes,
            process_rss_bytes: p.process_rss_bytes,
            process_cpu_usage: p.process_cpu_usage,
        })
        .collect();
    Ok(Json(HostSeries { latest: latest.as_ref().map(HostDto::new), step: step.as_secs(), points }))
}
