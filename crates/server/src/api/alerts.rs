//! Alerting endpoints: rules (CRUD, validated field by field), alerts now, the history, silences, channels
//! (secrets write-only: a response says which are set, never what they are), a channel's test and its
//! delivery log; and a plugin's headroom against its own limits.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plugwatch_access::Principal;
use plugwatch_alerts::{AlertNow, FieldError};
use plugwatch_model::Outcome;
use plugwatch_model::alerts::{
    Channel, ChannelKind, ChannelSpec, Comparison, Delivery, HeadroomLimit, HistoryEntry, HistoryFilter, Metric,
    NoData, Rule, RuleSpec, Schedule, Scope, Severity, Silence, SilenceSpec, State as AlertState,
};
use plugwatch_store::SecretValue;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiErrors;
use crate::AppState;
use crate::dto::rfc3339;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

fn parse<T: std::str::FromStr<Err = plugwatch_model::alerts::UnknownName>>(
    field: &str,
    value: &str,
) -> Result<T, ApiError> {
    value.parse().map_err(|e: plugwatch_model::alerts::UnknownName| FieldError::new(field, e.to_string()).into())
}

fn time(field: &str, text: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| FieldError::new(field, format!("`{text}` is not an RFC 3339 time ({e})")).into())
}

// Rules.

/// A rule as written. Omitted fields take the defaults shown.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `plugins` (default) or `host`.
    #[serde(default)]
    pub scope: Option<String>,
    /// For scope `plugins`: a plugin name, or a pattern with `*` and `?`; default `*` (every plugin).
    #[serde(default)]
    pub plugins: Option<String>,
    /// `latency_p50`, `latency_p95`, `latency_p99` (seconds), `error_rate` (0–1), `timeouts`, `rejected`
    /// (counts in the window), `throughput` (requests/s), `cpu_time` (s per invocation), `instructions` (per
    /// invocation), `memory_peak` (bytes), `headroom` (share of a limit), `idle` (seconds since the last
    /// invocation); for scope `host`: `host_cpu`, `host_memory`, `host_disk` (0–1), `backup_failures`
    /// (scheduled backups failed in a row).
    pub metric: String,
    /// For `error_rate`: the outcomes that count (default: every failing outcome).
    #[serde(default)]
    pub outcomes: Vec<String>,
    /// For `headroom`: `wall_time`, `instructions`, `memory`, `output`, `concurrency` or `any`.
    #[serde(default)]
    pub limit: Option<String>,
    /// 10 to 900, a multiple of 10 (default 60).
    #[serde(default = "sixty")]
    pub window_secs: u32,
    /// `>` (default), `>=`, `<`, `<=`.
    #[serde(default)]
    pub comparison: Option<String>,
    pub threshold: f64,
    #[serde(default)]
    pub for_secs: u32,
    #[serde(default)]
    pub keep_firing_for_secs: u32,
    /// `no_data` (default: an alert state of its own), `ok` or `alerting`.
    #[serde(default)]
    pub no_data: Option<String>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// With `{{plugin}}`, `{{version}}`, `{{value}}`, `{{threshold}}`, `{{rule}}`, `{{severity}}`, `{{metric}}`.
    #[serde(default)]
    pub summary: String,
    /// An http(s) link, with the same placeholders.
    #[serde(default)]
    pub runbook: String,
}

fn yes() -> bool {
    true
}

fn sixty() -> u32 {
    60
}

impl RuleBody {
    fn spec(self) -> Result<RuleSpec, ApiError> {
        let scope: Scope = parse("scope", self.scope.as_deref().unwrap_or("plugins"))?;
        let outcomes = self
            .outcomes
            .iter()
            .map(|o| {
                o.parse::<Outcome>().map_err(|_| FieldError::new("outcomes", format!("`{o}` is not an outcome")).into())
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(RuleSpec {
            name: self.name,
            enabled: self.enabled,
            scope,
            plugins: self.plugins.unwrap_or_else(|| if scope == Scope::Plugins { "*".into() } else { String::new() }),
            metric: parse::<Metric>("metric", &self.metric)?,
            outcomes,
            limit: self.limit.as_deref().map(|l| parse::<HeadroomLimit>("limit", l)).transpose()?,
            window_secs: self.window_secs,
            comparison: parse::<Comparison>("comparison", self.comparison.as_deref().unwrap_or(">"))?,
            threshold: self.threshold,
            for_secs: self.for_secs,
            keep_firing_for_secs: self.keep_firing_for_secs,
            no_data: parse::<NoData>("no_data", self.no_data.as_deref().unwrap_or("no_data"))?,
            severity: parse::<Severity>("severity", self.severity.as_deref().unwrap_or("warning"))?,
            labels: self.labels,
            summary: self.summary,
            runbook: self.runbook,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleDto {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    /// Shipped with plugwatch (editable; a deleted one is not recreated).
    pub builtin: bool,
    pub scope: &'static str,
    pub plugins: String,
    pub metric: &'static str,
    /// The metric's unit: `seconds`, `ratio`, `count`, `per_second`, `bytes` or `instructions`.
    pub unit: &'static str,
    pub outcomes: Vec<&'static str>,
    pub limit: Option<&'static str>,
    pub window_secs: u32,
    pub comparison: &'static str,
    pub threshold: f64,
    pub for_secs: u32,
    pub keep_firing_for_secs: u32,
    pub no_data: &'static str,
    pub severity: &'static str,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub runbook: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Rule> for RuleDto {
    fn from(r: Rule) -> Self {
        let s = r.spec;
        RuleDto {
            id: r.id,
            name: s.name,
            enabled: s.enabled,
            builtin: r.builtin,
            scope: s.scope.as_str(),
            plugins: s.plugins,
            metric: s.metric.as_str(),
            unit: s.metric.unit(),
            outcomes: s.outcomes.iter().map(|o| o.as_str()).collect(),
            limit: s.limit.map(HeadroomLimit::as_str),
            window_secs: s.window_secs,
            comparison: s.comparison.as_str(),
            threshold: s.threshold,
            for_secs: s.for_secs,
            keep_firing_for_secs: s.keep_firing_for_secs,
            no_data: s.no_data.as_str(),
            severity: s.severity.as_str(),
            labels: s.labels,
            summary: s.summary,
            runbook: s.runbook,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleDto>,
}

/// Every alert rule, the shipped defaults included.
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts", responses((status = 200, body = RuleList), ApiErrors))]
pub async fn list_rules(State(state): State<AppState>) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList { rules: state.alerts.rules().await?.into_iter().map(RuleDto::from).collect() }))
}

/// Creates a rule; a field that is wrong is named in the error (`field`).
#[utoipa::path(post, path = "/api/v1/alerts/rules", tag = "alerts", request_body = RuleBody,
    responses((status = 201, body = RuleDto), ApiErrors))]
pub async fn create_rule(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<Response, ApiError> {
    let rule = state.alerts.create_rule(&body.spec()?).await?;
    Ok((StatusCode::CREATED, Json(RuleDto::from(rule))).into_response())
}

#[utoipa::path(get, path = "/api/v1/alerts/rules/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = RuleDto), ApiErrors))]
pub async fn get_rule(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<RuleDto>, ApiError> {
    Ok(Json(state.alerts.rule(id).await?.into()))
}

/// Replaces a rule (all fields, as on create). Its alerts start over.
#[utoipa::path(put, path = "/api/v1/alerts/rules/{id}", tag = "alerts", params(("id" = i64, Path)), request_body = RuleBody,
    responses((status = 200, body = RuleDto), ApiErrors))]
pub async fn update_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RuleBody>,
) -> Result<Json<RuleDto>, ApiError> {
    Ok(Json(state.alerts.update_rule(id, &body.spec()?).await?.into()))
}

/// Deletes a rule and its alerts; the history keeps its transitions.
#[utoipa::path(delete, path = "/api/v1/alerts/rules/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), ApiErrors))]
pub async fn delete_rule(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    state.alerts.delete_rule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Alerts now and the history.

#[derive(Serialize, ToSchema)]
pub struct AlertDto {
    pub rule_id: i64,
    pub rule: String,
    pub severity: &'static str,
    /// `pending`, `firing` or `no_data`.
    pub state: &'static str,
    /// `null` for host alerts.
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub since: String,
    /// The last value evaluated (`null`: no data).
    pub value: Option<f64>,
    pub threshold: f64,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// An active silence matches it: it notifies nobody.
    pub silenced: bool,
}

impl From<AlertNow> for AlertDto {
    fn from(a: AlertNow) -> Self {
        AlertDto {
            rule_id: a.record.rule_id,
            rule: a.rule_name,
            severity: a.severity.as_str(),
            state: a.record.state.as_str(),
            plugin: a.record.series.plugin,
            version: a.record.series.version,
            since: rfc3339(a.record.since),
            value: a.record.value,
            threshold: a.threshold,
            summary: a.spec_summary,
            labels: a.labels,
            silenced: a.silenced,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertDto>,
}

/// The alerts pending, firing or without data now, most severe first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", responses((status = 200, body = AlertList), ApiErrors))]
pub async fn alerts_now(State(state): State<AppState>) -> Result<Json<AlertList>, ApiError> {
    Ok(Json(AlertList { alerts: state.alerts.alerts_now().await?.into_iter().map(AlertDto::from).collect() }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    rule_id: Option<i64>,
    plugin: Option<String>,
    /// The state entered: `pending`, `firing`, `no_data`, `resolved` or `inactive`.
    state: Option<String>,
    /// Unix seconds.
    from: Option<u64>,
    /// Unix seconds.
    to: Option<u64>,
    /// The `next_before` of the previous page.
    before: Option<i64>,
    /// 1 to 1000 (default 100).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryDto {
    pub id: i64,
    pub at: String,
    pub rule_id: i64,
    pub rule: String,
    pub plugin: Option<String>,
    pub version: Option<String>,
    pub from: &'static str,
    pub to: &'static str,
    /// The value that caused the transition (`null`: no data).
    pub value: Option<f64>,
    pub threshold: f64,
    pub severity: &'static str,
    /// A silence matched: nobody was notified.
    pub silenced: bool,
}

impl From<HistoryEntry> for HistoryDto {
    fn from(e: HistoryEntry) -> Self {
        let t = e.transition;
        HistoryDto {
            id: e.id,
            at: rfc3339(t.at),
            rule_id: t.rule_id,
            rule: t.rule_name,
            plugin: t.series.plugin,
            version: t.series.version,
            from: t.from.as_str(),
            to: t.to.as_str(),
            value: t.value,
            threshold: t.threshold,
            severity: t.severity.as_str(),
            silenced: t.silenced,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub entries: Vec<HistoryDto>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// Every alert transition, newest first, with the value that caused it; filtered and paginated.
#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(HistoryParams),
    responses((status = 200, body = HistoryPage), ApiErrors))]
pub async fn history(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FieldError::new("limit", "must be 1 to 1000").into());
    }
    let secs = |s: u64| UNIX_EPOCH + Duration::from_secs(s.min(253_402_300_799));
    let filter = HistoryFilter {
        rule_id: q.rule_id,
        plugin: q.plugin,
        state: q.state.as_deref().map(|s| parse::<AlertState>("state", s)).transpose()?,
        from: q.from.map(secs),
        to: q.to.map(secs),
        before: q.before,
        limit,
    };
    let entries = state.alerts.history(&filter).await?;
    let next_before = (entries.len() == limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(HistoryPage { entries: entries.into_iter().map(HistoryDto::from).collect(), next_before }))
}

// Silences.

/// A weekly maintenance window, in UTC.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDto {
    /// Days: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub weekdays: Vec<String>,
    /// `HH:MM`, UTC.
    pub start: String,
    pub duration_minutes: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl ScheduleDto {
    fn schedule(&self) -> Result<Schedule, ApiError> {
        let mut weekdays = 0u8;
        for day in &self.weekdays {
            let i = DAYS.iter().position(|d| d == day).ok_or_else(|| {
                FieldError::new("schedule.weekdays", format!("`{day}` is not one of: {}", DAYS.join(", ")))
            })?;
            weekdays |= 1 << i;
        }
        let start = self
            .start
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u16>().ok()?, m.parse::<u16>().ok()?)))
            .filter(|(h, m)| *h < 24 && *m < 60 && self.start.len() == 5)
            .ok_or_else(|| FieldError::new("schedule.start", "must be a time of day as HH:MM (UTC)"))?;
        Ok(Schedule { weekdays, start_minute: start.0 * 60 + start.1, duration_minutes: self.duration_minutes })
    }

    fn from_schedule(s: &Schedule) -> ScheduleDto {
        ScheduleDto {
            weekdays: (0..7).filter(|d| s.weekdays & (1 << d) != 0).map(|d| DAYS[d].to_owned()).collect(),
            start: format!("{:02}:{:02}", s.start_minute / 60, s.start_minute % 60),
            duration_minutes: s.duration_minutes,
        }
    }
}

/// A silence: it matches every alert of `rule_id` (if set) on plugins matching `plugins` (if set) with
/// every label in `labels`, from `starts_at` (default now) to `ends_at` (or for `duration_secs`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    pub rule_id: Option<i64>,
    pub plugins: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: Option<String>,
    /// RFC 3339; or give `duration_secs`.
    pub ends_at: Option<String>,
    pub duration_secs: Option<u64>,
    pub schedule: Option<ScheduleDto>,
    pub comment: String,
}

#[derive(Serialize, ToSchema)]
pub struct SilenceDto {
    pub id: i64,
    pub rule_id: Option<i64>,
    pub plugins: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    pub schedule: Option<ScheduleDto>,
    pub comment: String,
    pub author: String,
    pub created_at: String,
    pub expired_at: Option<String>,
    /// `active` (now), `scheduled` (a maintenance window between occurrences), `pending` (not started) or
    /// `expired`.
    pub status: &'static str,
}

impl From<Silence> for SilenceDto {
    fn from(s: Silence) -> Self {
        let now = SystemTime::now();
        let ends = s.expired_at.map_or(s.spec.ends_at, |e| e.min(s.spec.ends_at));
        let status = if now >= ends {
            "expired"
        } else if now < s.spec.starts_at {
            "pending"
        } else if plugwatch_alerts::silence::active(&s, now) {
            "active"
        } else {
            "scheduled"
        };
        SilenceDto {
            id: s.id,
            rule_id: s.spec.rule_id,
            plugins: s.spec.plugins,
            labels: s.spec.labels,
            starts_at: rfc3339(s.spec.starts_at),
            ends_at: rfc3339(s.spec.ends_at),
            schedule: s.spec.schedule.as_ref().map(ScheduleDto::from_schedule),
            comment: s.spec.comment,
            author: s.author,
            created_at: rfc3339(s.created_at),
            expired_at: s.expired_at.map(rfc3339),
            status,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<SilenceDto>,
}

/// Active, pending and scheduled silences, and those that ended in the last 7 days.
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts", responses((status = 200, body = SilenceList), ApiErrors))]
pub async fn list_silences(State(state): State<AppState>) -> Result<Json<SilenceList>, ApiError> {
    Ok(Json(SilenceList { silences: state.alerts.silences().await?.into_iter().map(SilenceDto::from).collect() }))
}

/// Creates a silence, authored by the caller. Silenced alerts still go into the history.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", request_body = SilenceBody,
    responses((status = 201, body = SilenceDto), ApiErrors))]
pub async fn create_silence(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<SilenceBody>,
) -> Result<Response, ApiError> {
    let now = SystemTime::now();
    let starts_at = body.starts_at.as_deref().map(|t| time("starts_at", t)).transpose()?.unwrap_or(now);
    let ends_at = match (&body.ends_at, body.duration_secs) {
        (Some(t), None) => time("ends_at", t)?,
        (None, Some(secs)) => starts_at
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| FieldError::new("duration_secs", "is too long"))?,
        (Some(_), Some(_)) => {
            return Err(FieldError::new("duration_secs", "give ends_at or duration_secs, not both").into());
        }
        (None, None) => return Err(FieldError::new("ends_at", "give ends_at or duration_secs").into()),
    };
    let spec = SilenceSpec {
        rule_id: body.rule_id,
        plugins: body.plugins,
        labels: body.labels,
        starts_at,
        ends_at,
        schedule: body.schedule.as_ref().map(ScheduleDto::schedule).transpose()?,
        comment: body.comment,
    };
    let silence = state.alerts.create_silence(&spec, &principal.name).await?;
    Ok((StatusCode::CREATED, Json(SilenceDto::from(silence))).into_response())
}

#[utoipa::path(get, path = "/api/v1/alerts/silences/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = SilenceDto), ApiErrors))]
pub async fn get_silence(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SilenceDto>, ApiError> {
    Ok(Json(state.alerts.silence(id).await?.into()))
}

/// Ends a silence now (it stays listed, expired).
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = SilenceDto), ApiErrors))]
pub async fn expire_silence(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SilenceDto>, ApiError> {
    Ok(Json(state.alerts.expire_silence(id).await?.into()))
}

// Channels.

/// A notification channel. `settings` holds the plain settings of its kind; `secrets` the secret ones
/// (write-only: never returned; on update an omitted secret is kept and `null` clears it).
///
/// - `webhook`: secrets `url`, `signing_key` (HMAC-SHA256 `X-Plugwatch-Signature`).
/// - `slack`: secret `url` (an incoming webhook).
/// - `email`: `host`, `port`, `tls` (`none`, `starttls`, `tls`), `username`, `from`, `to` (comma-separated);
///   secret `password`.
/// - `sms` (Twilio-compatible): `base_url`, `account_sid`, `from`, `to` (comma-separated E.164); secret
///   `auth_token`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    pub name: String,
    /// `webhook`, `slack`, `email` or `sms`.
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub secrets: BTreeMap<String, Option<WriteOnly>>,
    /// Routing: the lowest severity sent (default `info`: all).
    pub min_severity: Option<String>,
    /// Routing: only these rules (default: all).
    #[serde(default)]
    pub rule_ids: Vec<i64>,
    /// Routing: only alerts with all these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Alerts of one rule due within this many seconds go out as one message (default 10).
    #[serde(default = "ten")]
    pub group_wait_secs: u32,
    /// Re-notify an alert that stays firing this often (default 14400 = 4 h; 0: never).
    #[serde(default = "four_hours")]
    pub repeat_interval_secs: u32,
}

fn ten() -> u32 {
    10
}

fn four_hours() -> u32 {
    4 * 3600
}

/// A secret as it arrives: kept out of `Debug`.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct WriteOnly(String);

impl std::fmt::Debug for WriteOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl ChannelBody {
    fn spec(&self) -> Result<ChannelSpec, ApiError> {
        Ok(ChannelSpec {
            name: self.name.clone(),
            kind: parse::<ChannelKind>("kind", &self.kind)?,
            enabled: self.enabled,
            settings: self.settings.clone(),
            min_severity: parse::<Severity>("min_severity", self.min_severity.as_deref().unwrap_or("info"))?,
            rule_ids: self.rule_ids.clone(),
            labels: self.labels.clone(),
            group_wait_secs: self.group_wait_secs,
            repeat_interval_secs: self.repeat_interval_secs,
        })
    }

    fn secrets(&self) -> BTreeMap<String, Option<SecretValue>> {
        self.secrets.iter().map(|(k, v)| (k.clone(), v.as_ref().map(|v| SecretValue::new(v.0.clone())))).collect()
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelDto {
    pub id: i64,
    pub name: String,
    pub kind: &'static str,
    pub enabled: bool,
    pub settings: BTreeMap<String, String>,
    /// Each secret setting of the kind: `set` or `unset`. Values are never returned.
    pub secrets: BTreeMap<String, &'static str>,
    pub min_severity: &'static str,
    pub rule_ids: Vec<i64>,
    pub labels: BTreeMap<String, String>,
    pub group_wait_secs: u32,
    pub repeat_interval_secs: u32,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Channel> for ChannelDto {
    fn from(c: Channel) -> Self {
        let secrets = plugwatch_alerts::channels::secret_settings(c.spec.kind)
            .iter()
            .map(|name| ((*name).to_owned(), if c.secrets_set.iter().any(|s| s == name) { "set" } else { "unset" }))
            .collect();
        ChannelDto {
            id: c.id,
            name: c.spec.name,
            kind: c.spec.kind.as_str(),
            enabled: c.spec.enabled,
            settings: c.spec.settings,
            secrets,
            min_severity: c.spec.min_severity.as_str(),
            rule_ids: c.spec.rule_ids,
            labels: c.spec.labels,
            group_wait_secs: c.spec.group_wait_secs,
            repeat_interval_secs: c.spec.repeat_interval_secs,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelDto>,
}

#[utoipa::path(get, path = "/api/v1/alerts/channels", tag = "alerts", responses((status = 200, body = ChannelList), ApiErrors))]
pub async fn list_channels(State(state): State<AppState>) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList { channels: state.alerts.channels().await?.into_iter().map(ChannelDto::from).collect() }))
}

/// Creates a channel; its secrets are stored encrypted and never shown again.
#[utoipa::path(post, path = "/api/v1/alerts/channels", tag = "alerts", request_body = ChannelBody,
    responses((status = 201, body = ChannelDto), ApiErrors))]
pub async fn create_channel(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChannelBody>,
) -> Result<Response, ApiError> {
    let spec = body.spec()?;
    let mut secrets = BTreeMap::new();
    for (name, value) in body.secrets() {
        match value {
            Some(value) => _ = secrets.insert(name, value),
            None => {
                return Err(
                    FieldError::new(format!("secrets.{name}"), "null clears a secret on update; omit it here").into()
                );
            }
        }
    }
    let channel = state.alerts.create_channel(&spec, &secrets).await?;
    Ok((StatusCode::CREATED, Json(ChannelDto::from(channel))).into_response())
}

#[utoipa::path(get, path = "/api/v1/alerts/channels/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = ChannelDto), ApiErrors))]
pub async fn get_channel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ChannelDto>, ApiError> {
    Ok(Json(state.alerts.channel(id).await?.into()))
}

/// Replaces a channel's settings and routing; secrets omitted are kept, `null` clears one.
#[utoipa::path(put, path = "/api/v1/alerts/channels/{id}", tag = "alerts", params(("id" = i64, Path)), request_body = ChannelBody,
    responses((status = 200, body = ChannelDto), ApiErrors))]
pub async fn update_channel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ChannelBody>,
) -> Result<Json<ChannelDto>, ApiError> {
    Ok(Json(state.alerts.update_channel(id, &body.spec()?, &body.secrets()).await?.into()))
}

/// Deletes a channel and its outbox.
#[utoipa::path(delete, path = "/api/v1/alerts/channels/{id}", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), ApiErrors))]
pub async fn delete_channel(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, ApiError> {
    state.alerts.delete_channel(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TestResult {
    /// The receiver took the message.
    pub delivered: bool,
    /// What the receiver answered (HTTP status and body, SMTP reply), bounded.
    pub response: Option<String>,
    /// Why it was not delivered.
    pub error: Option<String>,
}

/// Sends a test message through the channel now and reports what the receiver answered.
#[utoipa::path(post, path = "/api/v1/alerts/channels/{id}/test", tag = "alerts", params(("id" = i64, Path)),
    responses((status = 200, body = TestResult), ApiErrors))]
pub async fn test_channel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TestResult>, ApiError> {
    Ok(Json(match state.alerts.test_channel(id).await? {
        Ok(answer) => TestResult { delivered: true, response: Some(answer), error: None },
        Err(e) => TestResult { delivered: false, response: e.response, error: Some(e.message) },
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    before: Option<i64>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDto {
    pub id: i64,
    /// `alerts`, `test` or `channel_failing`.
    pub kind: &'static str,
    pub group: String,
    /// `pending`, `sent` or `failed`.
    pub status: &'static str,
    pub attempts: u32,
    /// The alerts it carries: `state rule plugin version` each.
    pub alerts: Vec<String>,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
    pub last_response: Option<String>,
}

impl From<Delivery> for DeliveryDto {
    fn from(d: Delivery) -> Self {
        let pending = d.status == plugwatch_model::alerts::DeliveryStatus::Pending;
        DeliveryDto {
            id: d.id,
            kind: d.notification.kind.as_str(),
            group: d.notification.group,
            status: d.status.as_str(),
            attempts: d.attempts,
            alerts: d
                .notification
                .alerts
                .iter()
                .map(|a| {
                    let series =
                        a.series.plugin.as_deref().map_or("host".to_owned(), |p| {
                            format!("{p} {}", a.series.version.as_deref().unwrap_or(""))
                        });
                    format!("{} {}: {}", a.state, a.rule_name, series.trim_end())
                })
                .collect(),
            created_at: rfc3339(d.created_at),
            next_attempt_at: pending.then(|| rfc3339(d.next_attempt_at)),
            sent_at: d.sent_at.map(rfc3339),
            last_error: d.last_error,
            last_response: d.last_response,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryDto>,
    pub next_before: Option<i64>,
}

/// A channel's delivery log, newest first: every notification, its attempts and the last error.
#[utoipa::path(get, path = "/api/v1/alerts/channels/{id}/deliveries", tag = "alerts", params(("id" = i64, Path), DeliveryParams),
    responses((status = 200, body = DeliveryPage), ApiErrors))]
pub async fn deliveries(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(FieldError::new("limit", "must be 1 to 500").into());
    }
    let page = state.alerts.deliveries(id, q.before, limit).await?;
    let next_before = (page.len() == limit as usize).then(|| page.last().map(|d| d.id)).flatten();
    Ok(Json(DeliveryPage { deliveries: page.into_iter().map(DeliveryDto::from).collect(), next_before }))
}

// Headroom.

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HeadroomParams {
    /// 10 to 900, a multiple of 10 (default 300).
    window_secs: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct LimitUse {
    /// `wall_time`, `instructions`, `memory`, `output` or `concurrency`.
    pub limit: &'static str,
    /// The plugin's limit (seconds, instructions, bytes, bytes, invocations); `null`: unlimited.
    pub allowed: Option<f64>,
    /// The most it used in the window (p99 wall seconds, most instructions, highest peak memory, largest
    /// output, most at once).
    pub used: Option<f64>,
    /// `used / allowed`; `null` without data.
    pub share: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct HeadroomDto {
    pub plugin: String,
    pub version: String,
    pub window_secs: u32,
    pub requests: u64,
    pub limits: Vec<LimitUse>,
    /// The highest share.
    pub max_share: Option<f64>,
}

/// How much of each of its own limits the plugin's active version used over the window: p99 wall time of
/// the timeout, the most instructions of the fuel budget, peak memory of the cap, the largest output of
/// `max_output_bytes`, the most concurrent invocations of `max_concurrency`.
#[utoipa::path(get, path = "/api/v1/plugins/{name}/headroom", tag = "telemetry", params(("name" = String, Path), HeadroomParams),
    responses((status = 200, body = HeadroomDto), ApiErrors))]
pub async fn headroom(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HeadroomParams>,
) -> Result<Json<HeadroomDto>, ApiError> {
    let window_secs = q.window_secs.unwrap_or(300);
    if !(10..=900).contains(&window_secs) || !window_secs.is_multiple_of(10) {
        return Err(FieldError::new("window_secs", "must be a multiple of 10 from 10 to 900").into());
    }
    let entry = state.registry.plugin(&name)?;
    let Some(active) = &entry.active else {
        return Err(ApiError::not_found(format!("plugin `{name}` has no active version")));
    };
    let limits = &active.version.limits;
    let stats = state
        .registry
        .telemetry()
        .plugin_window(&name, SystemTime::now(), Duration::from_secs(u64::from(window_secs)))
        .into_iter()
        .find(|s| s.version == active.version.version);
    let uses = plugwatch_telemetry::limit_uses(stats.as_ref(), limits);
    let shares = stats.as_ref().map(|s| s.headroom(limits)).unwrap_or_default();
    Ok(Json(HeadroomDto {
        plugin: name,
        version: active.version.version.clone(),
        window_secs,
        requests: stats.as_ref().map_or(0, |s| s.requests),
        limits: uses
            .into_iter()
            .map(|u| LimitUse { limit: u.limit, allowed: u.allowed, used: u.used, share: u.share() })
            .collect(),
        max_share: shares.max(),
    }))
}
