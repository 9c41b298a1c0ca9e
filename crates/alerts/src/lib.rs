//! plugwatch's alerting: rules over what plugwatch measures, alert states and history, silences, routing,
//! and notifications delivered through a durable outbox. It knows nothing of HTTP routing or wasmtime:
//! measurements come from telemetry (its windows and the host sample) and the plugins to evaluate from an
//! [`Inventory`]; rules, states, history, silences, channels and the outbox live in the store.
//!
//! [`Alerts::run`] is one background task with two loops under the server's shutdown signal: evaluation
//! every `interval` (see [`eval`] for the state machine) and delivery. Each notification is written to the
//! outbox before anything is sent, and the outbox is written before the transition that caused it, so a
//! crash between the two repeats a notification rather than losing it: delivery is **at least once**, and a
//! receiver can drop duplicates by `X-Plugwatch-Delivery`. Sending never runs on the invocation path.
//!
//! With several replicas on one database only the leader evaluates and delivers (`run`'s `leading`):
//! a replica that becomes the leader first re-reads the alert states and the configuration, as a restart
//! would, so no transition is lost; a notification the old leader was sending when it died is sent again
//! (still at least once). A change to rules, silences or channels is announced to the other replicas,
//! whose [`Alerts::reload`] makes the next evaluation read it.

pub mod channels;
pub mod eval;
pub mod rules;
pub mod silence;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use plugwatch_model::alerts::{
    AlertNotice, AlertRecord, Channel, ChannelSpec, Delivery, HistoryEntry, HistoryFilter, Notification,
    NotificationKind, Rule, RuleSpec, SeriesKey, Severity, Silence, SilenceSpec, State, Transition,
};
use plugwatch_store::{SecretValue, Store, StoreError};
use plugwatch_telemetry::Telemetry;
use tokio::sync::{Mutex, Notify, watch};

pub use channels::{SendError, SettingError};
pub use eval::PluginTarget;

/// How an alerting change is named to the other replicas (see [`Store::announce`]).
pub const ALERTS_CHANGE: &str = "alerts";
pub use rules::{FieldError, backup_rules, default_rules};

/// The plugins to evaluate, from whoever knows them (the registry): the active version of every enabled
/// plugin, with its limits.
pub trait Inventory: Send + Sync + 'static {
    fn targets(&self) -> Vec<PluginTarget>;

    /// Scheduled backups that failed in a row (`None`: backups are not scheduled), for
    /// [`Metric::BackupFailures`](plugwatch_model::alerts::Metric::BackupFailures).
    fn backup_failures(&self) -> Option<u32> {
        None
    }
}

/// How alerting runs.
#[derive(Clone, Debug)]
pub struct AlertsConfig {
    /// How often every rule is evaluated.
    pub interval: Duration,
    /// The dashboard's base URL, for links in notifications.
    pub dashboard_url: Option<String>,
    /// Attempts per notification before it is marked failed.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to `retry_max`, with jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Bound on one delivery attempt.
    pub send_timeout: Duration,
    /// Failed notifications in a row after which a channel is reported failing on the other channels.
    pub failing_after: u32,
    pub history_retention: Duration,
    pub delivery_retention: Duration,
    /// How long ended silences stay listed.
    pub silence_retention: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval: Duration::from_secs(5),
            dashboard_url: None,
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            send_timeout: Duration::from_secs(10),
            failing_after: 3,
            history_retention: Duration::from_secs(90 * 86_400),
            delivery_retention: Duration::from_secs(7 * 86_400),
            silence_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Everything that can go wrong in alerting, for the server to answer with.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SettingError> for AlertsError {
    fn from(e: SettingError) -> Self {
        AlertsError::Invalid(FieldError { field: e.field, reason: e.reason })
    }
}

pub type Result<T, E = AlertsError> = std::result::Result<T, E>;

/// An alert that is pending, firing or without data now, with what a reader needs to show it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertNow {
    pub record: AlertRecord,
    pub rule_name: String,
    pub severity: Severity,
    pub spec_summary: String,
    pub labels: BTreeMap<String, String>,
    pub threshold: f64,
    /// An active silence matches it.
    pub silenced: bool,
}

/// What one evaluation did, for logs and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleReport {
    pub rules: usize,
    pub series: usize,
    pub transitions: usize,
    pub notifications: usize,
    pub elapsed: Duration,
}

/// Alerting for one process. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    telemetry: Arc<Telemetry>,
    inventory: Arc<dyn Inventory>,
    config: AlertsConfig,
    http: reqwest::Client,
    state: Mutex<EvalState>,
    /// Wakes the delivery loop when something was queued.
    queued: Notify,
}

#[derive(Default)]
struct EvalState {
    /// What the store holds (rules, silences, channels), reloaded after a change.
    config: Option<Arc<Loaded>>,
    /// Every alert not inactive, by rule and series.
    records: HashMap<(i64, SeriesKey), AlertRecord>,
    /// When each channel was last sent each firing alert (for the repeat interval). After a restart it
    /// starts from the alert's `notified_at`, which is never earlier, so a restart never repeats early.
    last_sent: HashMap<(i64, i64, SeriesKey), SystemTime>,
    /// Channels reported failing (reported once until one of their notifications is sent again).
    failing: HashSet<i64>,
}

struct Loaded {
    rules: Vec<(Rule, Option<rules::Pattern>)>,
    silences: Vec<Silence>,
    channels: Vec<Channel>,
}

impl Alerts {
    /// Installs the default rules on a new database and continues from the stored alert states.
    pub async fn open(
        store: Store,
        telemetry: Arc<Telemetry>,
        inventory: Arc<dyn Inventory>,
        config: AlertsConfig,
    ) -> Result<Alerts> {
        let now = SystemTime::now();
        // Each set once per database, so that a set added by a later version reaches existing databases.
        let mut installed = store.install_default_rules("defaults_installed", &default_rules(), now).await?;
        installed += store.install_default_rules("defaults_installed_backup", &backup_rules(), now).await?;
        if installed > 0 {
            tracing::info!(message = "Default alert rules installed.", rules = installed);
        }
        let records = store.alert_records().await?;
        let state = EvalState {
            records: records.into_iter().map(|r| ((r.rule_id, r.series.clone()), r)).collect(),
            ..EvalState::default()
        };
        let inner = Inner {
            store,
            telemetry,
            inventory,
            config,
            http: channels::http_client(),
            state: Mutex::new(state),
            queued: Notify::new(),
        };
        Ok(Alerts { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.inner.config
    }

    // Rules.

    pub async fn rules(&self) -> Result<Vec<Rule>> {
        Ok(self.inner.store.rules().await?)
    }

    pub async fn rule(&self, id: i64) -> Result<Rule> {
        Ok(self.inner.store.rule(id).await?)
    }

    pub async fn create_rule(&self, spec: &RuleSpec) -> Result<Rule> {
        rules::validate(spec)?;
        let rule = self.inner.store.create_rule(spec, false, SystemTime::now()).await?;
        self.changed().await;
        Ok(rule)
    }

    /// Replaces a rule; its alerts start over (the store drops their states), evaluated afresh next cycle.
    pub async fn update_rule(&self, id: i64, spec: &RuleSpec) -> Result<Rule> {
        rules::validate(spec)?;
        let before = self.inner.store.rule(id).await?;
        let rule = self.inner.store.update_rule(id, spec, SystemTime::now()).await?;
        if before.spec != rule.spec {
            self.inner.state.lock().await.records.retain(|(rule_id, _), _| *rule_id != id);
        }
        self.changed().await;
        Ok(rule)
    }

    /// Deletes a rule and its alerts (the history keeps its transitions, under its name).
    /// Refused while a channel routes this rule only (deleting it would widen that channel to every rule).
    pub async fn delete_rule(&self, id: i64) -> Result<()> {
        self.inner.store.rule(id).await?;
        if let Some(channel) = self.inner.store.channels().await?.iter().find(|c| c.spec.rule_ids == [id]) {
            return Err(StoreError::Conflict(format!(
                "channel `{}` routes only this rule: change its rule_ids first",
                channel.spec.name
            ))
            .into());
        }
        self.inner.store.delete_rule(id).await?;
        self.inner.state.lock().await.records.retain(|(rule_id, _), _| *rule_id != id);
        self.changed().await;
        Ok(())
    }

    // Alerts and history.

    /// Alerts pending, firing or without data, most severe first, then oldest first: as stored, so that
    /// a replica that does not evaluate (another leads) shows the leader's.
    pub async fn alerts_now(&self) -> Result<Vec<AlertNow>> {
        let loaded = self.loaded().await?;
        let now = SystemTime::now();
        let records = self.inner.store.alert_records().await?;
        let mut out: Vec<AlertNow> = records
            .iter()
            .filter_map(|record| {
                let (rule, _) = loaded.rules.iter().find(|(r, _)| r.id == record.rule_id)?;
                let labels = alert_labels(rule, &record.series);
                let silenced = silenced(&loaded.silences, rule.id, &record.series, &labels, now);
                Some(AlertNow {
                    record: record.clone(),
                    rule_name: rule.spec.name.clone(),
                    severity: rule.spec.severity,
                    spec_summary: summary(rule, &record.series, record.value),
                    labels,
                    threshold: rule.spec.threshold,
                    silenced,
                })
            })
            .collect();
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.record.since.cmp(&b.record.since)));
        Ok(out)
    }

    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>> {
        Ok(self.inner.store.history(filter).await?)
    }

    // Silences.

    pub async fn create_silence(&self, spec: &SilenceSpec, author: &str) -> Result<Silence> {
        if let Some(id) = spec.rule_id {
            self.inner.store.rule(id).await.map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    AlertsError::Invalid(FieldError::new("rule_id", format!("no rule {id}")))
                }
                e => e.into(),
            })?;
        }
        silence::validate(spec, SystemTime::now())?;
        let silence = self.inner.store.create_silence(spec, author, SystemTime::now()).await?;
        self.changed().await;
        Ok(silence)
    }

    pub async fn expire_silence(&self, id: i64) -> Result<Silence> {
        let silence = self.inner.store.expire_silence(id, SystemTime::now()).await?;
        self.changed().await;
        Ok(silence)
    }

    /// Active and future silences, and those that ended within the silence retention.
    pub async fn silences(&self) -> Result<Vec<Silence>> {
        let since = SystemTime::now() - self.inner.config.silence_retention;
        Ok(self.inner.store.silences(since).await?)
    }

    pub async fn silence(&self, id: i64) -> Result<Silence> {
        Ok(self.inner.store.silence(id).await?)
    }

    // Channels.

    pub async fn channels(&self) -> Result<Vec<Channel>> {
        Ok(self.inner.store.channels().await?)
    }

    pub async fn channel(&self, id: i64) -> Result<Channel> {
        Ok(self.inner.store.channel(id).await?)
    }

    pub async fn create_channel(&self, spec: &ChannelSpec, secrets: &BTreeMap<String, SecretValue>) -> Result<Channel> {
        self.check_channel(spec, &secrets.keys().cloned().collect()).await?;
        for (name, value) in secrets {
            channels::check_secret(spec.kind, name, value)?;
        }
        let channel = self.inner.store.create_channel(spec, secrets, SystemTime::now()).await?;
        self.changed().await;
        Ok(channel)
    }

    /// Replaces a channel's plain settings and routing; `secrets` sets (`Some`) or clears (`None`) the named
    /// secrets and keeps the others.
    pub async fn update_channel(
        &self,
        id: i64,
        spec: &ChannelSpec,
        secrets: &BTreeMap<String, Option<SecretValue>>,
    ) -> Result<Channel> {
        let before = self.inner.store.channel(id).await?;
        if before.spec.kind != spec.kind {
            return Err(FieldError::new("kind", "a channel's kind cannot change: create a new channel").into());
        }
        let mut set: BTreeSet<String> = before.secrets_set.into_iter().collect();
        for (name, value) in secrets {
            match value {
                Some(value) => {
                    channels::check_secret(spec.kind, name, value)?;
                    set.insert(name.clone());
                }
                None => {
                    set.remove(name);
                }
            }
        }
        self.check_channel(spec, &set).await?;
        let channel = self.inner.store.update_channel(id, spec, secrets, SystemTime::now()).await?;
        self.changed().await;
        Ok(channel)
    }

    pub async fn delete_channel(&self, id: i64) -> Result<()> {
        self.inner.store.delete_channel(id).await?;
        self.changed().await;
        Ok(())
    }

    async fn check_channel(&self, spec: &ChannelSpec, secrets_set: &BTreeSet<String>) -> Result<()> {
        let name = spec.name.trim();
        if name.is_empty() || name.len() > 100 || name != spec.name {
            return Err(
                FieldError::new("name", "must be 1 to 100 characters without leading or trailing spaces").into()
            );
        }
        channels::check_settings(spec.kind, &spec.settings, secrets_set)?;
        rules::check_labels("labels", &spec.labels)?;
        if spec.group_wait_secs > 3600 {
            return Err(FieldError::new("group_wait_secs", "must be at most 3600 seconds").into());
        }
        if spec.repeat_interval_secs != 0 && !(60..=7 * 86_400).contains(&spec.repeat_interval_secs) {
            return Err(FieldError::new("repeat_interval_secs", "must be 0 (never) or 60 seconds to 7 days").into());
        }
        for id in &spec.rule_ids {
            if let Err(StoreError::NotFound { .. }) = self.inner.store.rule(*id).await {
                return Err(FieldError::new("rule_ids", format!("no rule {id}")).into());
            }
        }
        Ok(())
    }

    /// Sends a test message through a channel now (not through the outbox): what the receiver answered, or
    /// why it did not take it.
    pub async fn test_channel(&self, id: i64) -> Result<std::result::Result<String, SendError>> {
        let channel = self.inner.store.channel(id).await?;
        let secrets = self.inner.store.channel_secrets(id).await?;
        let now = SystemTime::now();
        let notification = Notification {
            kind: NotificationKind::Test,
            group: format!("test:{id}"),
            alerts: Vec::new(),
            text: Some(format!(
                "A test of channel `{}` from plugwatch: if you read this, it works.",
                channel.spec.name
            )),
            created_at: now,
        };
        let context = self.context(0, now);
        Ok(channels::send(&channel.spec, &secrets, &notification, &context).await)
    }

    /// A channel's delivery log, newest first.
    pub async fn deliveries(&self, channel_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<Delivery>> {
        self.inner.store.channel(channel_id).await?;
        Ok(self.inner.store.deliveries(channel_id, before, limit).await?)
    }

    fn context(&self, delivery_id: i64, now: SystemTime) -> channels::SendContext<'_> {
        channels::SendContext {
            http: &self.inner.http,
            timeout: self.inner.config.send_timeout,
            dashboard_url: self.inner.config.dashboard_url.as_deref(),
            delivery_id,
            now,
        }
    }

    /// Forgets the loaded rules, silences and channels (the next reader loads them again), and tells the
    /// other replicas to do the same.
    async fn changed(&self) {
        self.inner.state.lock().await.config = None;
        if let Err(error) = self.inner.store.announce(ALERTS_CHANGE).await {
            tracing::warn!(message = "Could not tell the other replicas of an alerting change.", %error);
        }
    }

    /// Forgets the loaded rules, silences and channels and re-reads the alert states: another replica
    /// changed them (a rule's change or deletion also removes its stored states).
    pub async fn reload(&self) {
        // Read under the lock: an evaluation holds it until its states are stored.
        let mut state = self.inner.state.lock().await;
        let records = self.inner.store.alert_records().await;
        state.config = None;
        match records {
            Ok(records) => state.records = records.into_iter().map(|r| ((r.rule_id, r.series.clone()), r)).collect(),
            Err(error) => tracing::warn!(message = "Cannot re-read the alert states.", %error),
        }
    }

    /// Continues from what the store holds, as after a restart: the alert states and configuration
    /// re-read, the repeat timers and failing channels forgotten. When this process becomes the leader.
    async fn resume(&self) -> Result<()> {
        let records = self.inner.store.alert_records().await?;
        *self.inner.state.lock().await = EvalState {
            records: records.into_iter().map(|r| ((r.rule_id, r.series.clone()), r)).collect(),
            ..EvalState::default()
        };
        Ok(())
    }

    async fn loaded(&self) -> Result<Arc<Loaded>> {
        if let Some(loaded) = &self.inner.state.lock().await.config {
            return Ok(loaded.clone());
        }
        let store = &self.inner.store;
        let rules = store
            .rules()
            .await?
            .into_iter()
            .map(|rule| {
                let pattern = (rule.spec.scope == plugwatch_model::alerts::Scope::Plugins)
                    .then(|| rules::Pattern::new(&rule.spec.plugins));
                (rule, pattern)
            })
            .collect();
        let silences = store.silences(SystemTime::now()).await?;
        let channels = store.channels().await?;
        let loaded = Arc::new(Loaded { rules, silences, channels });
        self.inner.state.lock().await.config = Some(loaded.clone());
        Ok(loaded)
    }

    // Evaluation.

    /// Evaluates every enabled rule at `now`: moves each alert, queues the notifications, records the
    /// transitions.
    pub async fn evaluate(&self, now: SystemTime) -> Result<CycleReport> {
        let started = Instant::now();
        let loaded = self.loaded().await?;
        let targets = self.inner.inventory.targets();
        let mut windows: HashMap<u32, eval::Window> = HashMap::new();
        for (rule, _) in loaded.rules.iter().filter(|(r, _)| r.spec.enabled) {
            if rule.spec.scope == plugwatch_model::alerts::Scope::Plugins
                && !windows.contains_key(&rule.spec.window_secs)
            {
                let stats = self.inner.telemetry.window(now, Duration::from_secs(u64::from(rule.spec.window_secs)));
                windows.insert(rule.spec.window_secs, eval::window(stats));
            }
        }
        let host = self.inner.telemetry.latest_host();
        let inputs = eval::Inputs {
            now,
            targets: &targets,
            windows: &windows,
            host: host.as_ref(),
            backup_failures: self.inner.inventory.backup_failures(),
        };

        let mut state = self.inner.state.lock().await;
        let mut report = CycleReport { rules: 0, ..CycleReport::default() };
        let mut next: HashMap<(i64, SeriesKey), AlertRecord> = HashMap::new();
        let mut transitions = Vec::new();
        let mut notices: Vec<(&Rule, AlertNotice, bool)> = Vec::new();
        for (rule, pattern) in &loaded.rules {
            let measured =
                if rule.spec.enabled { eval::measure(&rule.spec, pattern.as_ref(), &inputs) } else { Vec::new() };
            report.rules += usize::from(rule.spec.enabled);
            report.series += measured.len();
            // Alerts whose series is no longer selected (the plugin was disabled or deleted, the rule
            // disabled) end as if their condition stopped holding, without keep_firing_for.
            let gone: Vec<(SeriesKey, Option<f64>)> = if state.records.keys().any(|(id, _)| *id == rule.id) {
                let selected: HashSet<&SeriesKey> = measured.iter().map(|(k, _)| k).collect();
                state
                    .records
                    .keys()
                    .filter(|(id, key)| *id == rule.id && !selected.contains(key))
                    .map(|(_, key)| (key.clone(), None))
                    .collect()
            } else {
                Vec::new()
            };
            for (key, value, is_gone) in
                measured.into_iter().map(|(k, v)| (k, v, false)).chain(gone.into_iter().map(|(k, v)| (k, v, true)))
            {
                let previous = if state.records.is_empty() { None } else { state.records.get(&(rule.id, key.clone())) };
                let step = if is_gone {
                    let spec = RuleSpec {
                        keep_firing_for_secs: 0,
                        no_data: plugwatch_model::alerts::NoData::Ok,
                        ..rule.spec.clone()
                    };
                    eval::step(rule.id, &spec, &key, previous, None, now)
                } else {
                    eval::step(rule.id, &rule.spec, &key, previous, value, now)
                };
                if step.record.is_none() && step.transition.is_none() {
                    // Inactive and staying so: the common case, which costs nothing more.
                    continue;
                }
                let labels = alert_labels(rule, &key);
                let is_silenced = silenced(&loaded.silences, rule.id, &key, &labels, now);
                let was_notified = previous.is_some_and(|r| r.notified_at.is_some());
                if let Some((from, to)) = step.transition {
                    transitions.push(Transition {
                        at: now,
                        rule_id: rule.id,
                        rule_name: rule.spec.name.clone(),
                        series: key.clone(),
                        from,
                        to,
                        value,
                        threshold: rule.spec.threshold,
                        severity: rule.spec.severity,
                        silenced: is_silenced,
                    });
                }
                match &step.record {
                    Some(record) if matches!(record.state, State::Firing | State::NoData) && !is_silenced => {
                        // Newly firing, or firing unnotified (a silence ended), or due for a repeat (per channel).
                        let fresh = record.notified_at.is_none();
                        notices.push((rule, notice(rule, &key, record.state, value, record.since, labels), fresh));
                    }
                    None if step.transition.is_some_and(|(_, to)| to == State::Resolved) && was_notified => {
                        notices.push((rule, notice(rule, &key, State::Resolved, value, now, labels), true));
                    }
                    _ => {}
                }
                if let Some(record) = step.record {
                    next.insert((rule.id, key), record);
                }
            }
        }
        // Queue the notifications first: a crash before the transitions are stored repeats them.
        let mut queued_for: HashSet<(i64, SeriesKey)> = HashSet::new();
        for (rule, alert, fresh) in notices {
            let series = alert.series.clone();
            for channel in
                loaded.channels.iter().filter(|c| silence::routed(c, rule.id, rule.spec.severity, &alert.labels))
            {
                let sent_key = (channel.id, rule.id, series.clone());
                if !fresh {
                    let repeat = Duration::from_secs(u64::from(channel.spec.repeat_interval_secs));
                    let last = state
                        .last_sent
                        .get(&sent_key)
                        .copied()
                        .or_else(|| next.get(&(rule.id, series.clone())).and_then(|r| r.notified_at));
                    let due =
                        !repeat.is_zero() && last.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= repeat);
                    if !due {
                        continue;
                    }
                }
                let notification = Notification {
                    kind: NotificationKind::Alerts,
                    group: format!("rule:{}", rule.id),
                    alerts: vec![alert.clone()],
                    text: None,
                    created_at: now,
                };
                let not_before = now + Duration::from_secs(u64::from(channel.spec.group_wait_secs));
                self.inner.store.enqueue_notification(channel.id, &notification, not_before, now).await?;
                report.notifications += 1;
                if alert.state == State::Resolved {
                    state.last_sent.remove(&sent_key);
                } else {
                    state.last_sent.insert(sent_key, now);
                }
                queued_for.insert((rule.id, series.clone()));
            }
        }
        for key in &queued_for {
            if let Some(record) = next.get_mut(key) {
                record.notified_at = Some(now);
            }
        }
        if report.notifications > 0 {
            self.inner.queued.notify_one();
        }

        // Store what changed: records whose state or notification time moved, and the ones now inactive.
        let upserts: Vec<AlertRecord> = next
            .iter()
            .filter(|(key, record)| {
                state.records.get(*key).is_none_or(|old| {
                    old.state != record.state || old.notified_at != record.notified_at || old.since != record.since
                })
            })
            .map(|(_, r)| r.clone())
            .collect();
        let valid_rules: HashSet<i64> = loaded.rules.iter().map(|(r, _)| r.id).collect();
        let removed: Vec<(i64, SeriesKey)> =
            state.records.keys().filter(|key| !next.contains_key(*key)).cloned().collect();
        if !upserts.is_empty() || !removed.is_empty() || !transitions.is_empty() {
            self.inner.store.apply_alert_changes(&upserts, &removed, &transitions).await?;
        }
        report.transitions = transitions.len();
        state.records = next.into_iter().filter(|((id, _), _)| valid_rules.contains(id)).collect();
        let EvalState { records, last_sent, .. } = &mut *state;
        last_sent.retain(|(_, rule, series), _| records.contains_key(&(*rule, series.clone())));
        report.elapsed = started.elapsed();
        for t in &transitions {
            tracing::info!(
                message = "Alert changed state.",
                rule = %t.rule_name,
                plugin = t.series.plugin.as_deref().unwrap_or("(host)"),
                version = t.series.version.as_deref().unwrap_or(""),
                from = %t.from,
                to = %t.to,
                value = ?t.value,
                silenced = t.silenced
            );
        }
        Ok(report)
    }

    // Delivery.

    /// Sends every notification due at `now` (channels in parallel, each channel's in order); returns how
    /// many were attempted.
    pub async fn deliver_due(&self, now: SystemTime) -> Result<usize> {
        let due = self.inner.store.due_deliveries(now, 200).await?;
        let attempted = due.len();
        let mut by_channel: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
        for delivery in due {
            by_channel.entry(delivery.channel_id).or_default().push(delivery);
        }
        let sends = by_channel.into_iter().map(|(channel_id, deliveries)| self.deliver_channel(channel_id, deliveries));
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(attempted)
    }

    async fn deliver_channel(&self, channel_id: i64, deliveries: Vec<Delivery>) -> Result<()> {
        let store = &self.inner.store;
        let channel = match store.channel(channel_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let secrets = store.channel_secrets(channel_id).await?;
        for delivery in deliveries {
            let now = SystemTime::now();
            let attempt = delivery.attempts + 1;
            let result = if channel.spec.enabled {
                channels::send(&channel.spec, &secrets, &delivery.notification, &self.context(delivery.id, now)).await
            } else {
                Err(SendError { message: "the channel is disabled".into(), retryable: false, response: None })
            };
            match result {
                Ok(answer) => {
                    store.delivery_sent(delivery.id, &answer, SystemTime::now()).await?;
                    self.inner.state.lock().await.failing.remove(&channel_id);
                }
                Err(error) => {
                    let retry = (error.retryable && attempt < self.inner.config.max_attempts)
                        .then(|| SystemTime::now() + backoff(&self.inner.config, attempt));
                    tracing::warn!(
                        message = "Notification not delivered.",
                        channel = %channel.spec.name,
                        delivery = delivery.id,
                        attempt,
                        retry = retry.is_some(),
                        %error
                    );
                    store.delivery_failed(delivery.id, &error.message, error.response.as_deref(), retry).await?;
                    if retry.is_none() {
                        self.channel_failed(&channel, &error.message).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// After a notification failed for good: once a channel failed `failing_after` in a row, say so on the
    /// other channels (once, until it delivers again).
    async fn channel_failed(&self, channel: &Channel, error: &str) -> Result<()> {
        let failures = self.inner.store.consecutive_failures(channel.id).await?;
        if failures < self.inner.config.failing_after || !self.inner.state.lock().await.failing.insert(channel.id) {
            return Ok(());
        }
        let now = SystemTime::now();
        let notification = Notification {
            kind: NotificationKind::ChannelFailing,
            group: format!("channel:{}", channel.id),
            alerts: Vec::new(),
            text: Some(format!(
                "Alert channel `{}` ({}) failed {failures} notifications in a row; the last error: {error}",
                channel.spec.name, channel.spec.kind
            )),
            created_at: now,
        };
        tracing::error!(message = "Alert channel failing.", channel = %channel.spec.name, failures);
        for other in self.inner.store.channels().await?.iter().filter(|c| c.id != channel.id && c.spec.enabled) {
            self.inner.store.enqueue_notification(other.id, &notification, now, now).await?;
        }
        self.inner.queued.notify_one();
        Ok(())
    }

    /// Runs evaluation and delivery while `leading` is true, until `stop` turns true, and prunes old
    /// history and deliveries hourly. Each time `leading` turns true, first continues from the store.
    pub async fn run(self, mut stop: watch::Receiver<bool>, mut leading: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                led = leading.wait_for(|l| *l) => if led.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(error) = self.resume().await {
                tracing::error!(message = "Cannot read the alert states; retrying.", %error);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            tokio::select! {
                () = self.clone().evaluate_and_deliver(stop.clone()) => return,
                _ = leading.wait_for(|l| !*l) => {
                    tracing::info!(message = "No longer the leader: alert evaluation and delivery paused.");
                }
            }
        }
    }

    async fn evaluate_and_deliver(self, stop: watch::Receiver<bool>) {
        let evaluate = {
            let (this, mut stop) = (self.clone(), stop.clone());
            async move {
                let mut pruned = Instant::now() - Duration::from_secs(3600);
                loop {
                    match this.evaluate(SystemTime::now()).await {
                        Ok(report) => tracing::debug!(message = "Alert rules evaluated.", ?report),
                        Err(error) => tracing::error!(message = "Alert evaluation failed.", %error),
                    }
                    if pruned.elapsed() >= Duration::from_secs(3600) {
                        pruned = Instant::now();
                        this.prune().await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(this.inner.config.interval) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        };
        let deliver = {
            let (this, mut stop) = (self.clone(), stop);
            async move {
                loop {
                    if let Err(error) = this.deliver_due(SystemTime::now()).await {
                        tracing::error!(message = "Notification delivery failed.", %error);
                    }
                    let wait = match this.inner.store.next_delivery_at().await {
                        Ok(Some(at)) => {
                            at.duration_since(SystemTime::now()).unwrap_or_default().min(Duration::from_secs(5))
                        }
                        _ => Duration::from_secs(5),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                        _ = this.inner.queued.notified() => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        };
        tokio::join!(evaluate, deliver);
    }

    async fn prune(&self) {
        let now = SystemTime::now();
        let c = &self.inner.config;
        match self
            .inner
            .store
            .prune_alerting(now - c.history_retention, now - c.delivery_retention, now - c.silence_retention)
            .await
        {
            Ok(rows) => tracing::debug!(message = "Alert history and deliveries pruned.", rows),
            Err(error) => tracing::error!(message = "Pruning alert history failed.", %error),
        }
    }
}

/// The delay before attempt `attempt + 1`: `retry_base × 2^(attempt-1)`, capped at `retry_max`, then
/// drawn uniformly from its upper half (jitter, so that receivers coming back are not hit all at once).
pub fn backoff(config: &AlertsConfig, attempt: u32) -> Duration {
    let full = config.retry_base.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(config.retry_max);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

/// An alert's labels: the rule's, and `rule`, `severity`, `plugin`, `version`.
fn alert_labels(rule: &Rule, series: &SeriesKey) -> BTreeMap<String, String> {
    let mut labels = rule.spec.labels.clone();
    labels.insert("rule".into(), rule.spec.name.clone());
    labels.insert("severity".into(), rule.spec.severity.to_string());
    if let Some(plugin) = &series.plugin {
        labels.insert("plugin".into(), plugin.clone());
    }
    if let Some(version) = &series.version {
        labels.insert("version".into(), version.clone());
    }
    labels
}

fn silenced(
    silences: &[Silence],
    rule_id: i64,
    series: &SeriesKey,
    labels: &BTreeMap<String, String>,
    now: SystemTime,
) -> bool {
    silences
        .iter()
        .any(|s| silence::active(s, now) && silence::matches(&s.spec, rule_id, series.plugin.as_deref(), labels))
}

fn placeholders(rule: &Rule, series: &SeriesKey, value: Option<f64>) -> Vec<(&'static str, String)> {
    vec![
        ("plugin", series.plugin.clone().unwrap_or_else(|| "host".into())),
        ("version", series.version.clone().unwrap_or_default()),
        ("value", value.map_or_else(|| "no data".into(), |v| channels::format::value(rule.spec.metric, v))),
        ("threshold", channels::format::value(rule.spec.metric, rule.spec.threshold)),
        ("rule", rule.spec.name.clone()),
        ("severity", rule.spec.severity.to_string()),
        ("metric", rule.spec.metric.to_string()),
    ]
}

fn summary(rule: &Rule, series: &SeriesKey, value: Option<f64>) -> String {
    let values = placeholders(rule, series, value);
    if rule.spec.summary.is_empty() {
        let who = series
            .plugin
            .as_deref()
            .map_or("host".to_owned(), |p| format!("{p} {}", series.version.as_deref().unwrap_or("")));
        format!("{}: {} {} {} {}", who.trim_end(), rule.spec.metric, values[2].1, rule.spec.comparison, values[3].1)
    } else {
        rules::render(&rule.spec.summary, &values)
    }
}

fn notice(
    rule: &Rule,
    series: &SeriesKey,
    state: State,
    value: Option<f64>,
    since: SystemTime,
    labels: BTreeMap<String, String>,
) -> AlertNotice {
    AlertNotice {
        rule_id: rule.id,
        rule_name: rule.spec.name.clone(),
        series: series.clone(),
        state,
        severity: rule.spec.severity,
        metric: rule.spec.metric,
        comparison: rule.spec.comparison,
        threshold: rule.spec.threshold,
        value,
        since,
        summary: summary(rule, series, value),
        runbook: rules::render(&rule.spec.runbook, &placeholders(rule, series, value)),
        labels,
    }
}
