//! Alerting's queries: rules and the state of their alerts, the transition history, silences, channels
//! and their outbox (compiled once per database, see `backend.rs`).

use crate::secrets::SecretError;
use crate::{Result, SecretValue, StoreError, unix, unix_ceil};
use plugwatch_model::alerts::{
    AlertNotice, AlertRecord, Channel, ChannelSpec, Delivery, HistoryEntry, HistoryFilter, Notification, Rule,
    RuleSpec, Schedule, SeriesKey, Silence, SilenceSpec, Transition,
};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Conn, Db, DbRow};
#[allow(unused_imports)]
use crate::alerts::*;
use crate::number;

impl Db {
    // ---- Rules ----

    /// Stores a new rule; a name already in use is [`StoreError::Conflict`].
    pub async fn create_rule(&self, spec: &RuleSpec, builtin: bool, now: SystemTime) -> Result<Rule> {
        let mut tx = self.pool.begin().await?;
        let id = insert_rule(&mut tx, spec, builtin, unix(now)).await?.ok_or_else(|| rule_name_taken(&spec.name))?;
        tx.commit().await?;
        self.rule(id).await
    }

    /// Replaces a rule's spec (its `builtin` flag stays). When the spec changed, the rule's alert states are
    /// deleted (the alerts are evaluated afresh) and `updated_at` is `now`; an unchanged spec changes nothing.
    pub async fn update_rule(&self, id: i64, spec: &RuleSpec, now: SystemTime) -> Result<Rule> {
        let mut tx = self.pool.begin().await?;
        // A write first, so the transaction holds the write lock before it reads (SQLite BUSY_SNAPSHOT).
        let touched = sqlx::query("UPDATE alert_rules SET updated_at = updated_at WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "rule", id });
        }
        let old = load_rule(&mut tx, id).await?;
        if old.spec != *spec {
            let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM alert_rules WHERE name = $1 AND id <> $2")
                .bind(&spec.name)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(rule_name_taken(&spec.name));
            }
            sqlx::query(
                "UPDATE alert_rules SET name = $1, enabled = $2, scope = $3, plugins = $4, metric = $5, outcomes = $6,
                    headroom_limit = $7, window_secs = $8, comparison = $9, threshold = $10, for_secs = $11,
                    keep_firing_for_secs = $12, no_data = $13, severity = $14, summary = $15, runbook = $16,
                    updated_at = $17
                 WHERE id = $18",
            )
            .bind(&spec.name)
            .bind(spec.enabled)
            .bind(spec.scope.as_str())
            .bind(&spec.plugins)
            .bind(spec.metric.as_str())
            .bind(outcome_list(spec))
            .bind(spec.limit.map(|l| l.as_str()))
            .bind(i64::from(spec.window_secs))
            .bind(spec.comparison.as_str())
            .bind(number(spec.threshold))
            .bind(i64::from(spec.for_secs))
            .bind(i64::from(spec.keep_firing_for_secs))
            .bind(spec.no_data.as_str())
            .bind(spec.severity.as_str())
            .bind(&spec.summary)
            .bind(&spec.runbook)
            .bind(unix(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM alert_rule_labels WHERE rule_id = $1").bind(id).execute(&mut *tx).await?;
            insert_labels(&mut tx, "alert_rule_labels", "rule_id", id, &spec.labels).await?;
            sqlx::query("DELETE FROM alert_states WHERE rule_id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.rule(id).await
    }

    /// Deletes a rule with its alert states and its place in channels' rule filters; its history stays.
    pub async fn delete_rule(&self, id: i64) -> Result<()> {
        // States, labels and channel rule filters go by ON DELETE CASCADE: one statement.
        let done = sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "rule", id });
        }
        Ok(())
    }

    pub async fn rule(&self, id: i64) -> Result<Rule> {
        let mut conn = self.pool.acquire().await?;
        load_rule(&mut conn, id).await
    }

    /// Every rule, by id.
    pub async fn rules(&self) -> Result<Vec<Rule>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query("SELECT * FROM alert_rules ORDER BY id").fetch_all(&mut *conn).await?;
        let ids = ids_of(&rows)?;
        let mut labels = labels_of(&mut conn, "alert_rule_labels", "rule_id", &ids).await?;
        rows.iter().map(|row| rule_from_row(row, labels.remove(&row.try_get("id")?).unwrap_or_default())).collect()
    }

    /// Inserts `specs` as builtin rules, once per database and `set`: if `alert_meta.<set>` is absent, in
    /// one transaction insert them (skipping a name that exists) and set the flag; returns how many were
    /// inserted (0 on later calls, even if the user deleted them).
    pub async fn install_default_rules(&self, set: &str, specs: &[RuleSpec], now: SystemTime) -> Result<usize> {
        let now = unix(now);
        let mut tx = self.pool.begin().await?;
        // Setting the flag is the first statement: it takes the write lock and says whether this is the first time.
        let flagged = sqlx::query("INSERT INTO alert_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(set)
            .bind(now.to_string())
            .execute(&mut *tx)
            .await?;
        if flagged.rows_affected() == 0 {
            return Ok(0);
        }
        let mut inserted = 0;
        for spec in specs {
            if insert_rule(&mut tx, spec, true, now).await?.is_some() {
                inserted += 1;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    // ---- Alert states and history ----

    /// Every stored alert state (the alerts that are not inactive), by rule id and series.
    pub async fn alert_records(&self) -> Result<Vec<AlertRecord>> {
        let rows = sqlx::query(
            "SELECT rule_id, plugin, version, state, since, last_true, value, notified_at FROM alert_states
             ORDER BY rule_id, plugin, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let plugin: String = row.try_get("plugin")?;
                let version: String = row.try_get("version")?;
                Ok(AlertRecord {
                    rule_id: row.try_get("rule_id")?,
                    series: SeriesKey {
                        plugin: Some(plugin).filter(|p| !p.is_empty()),
                        version: Some(version).filter(|v| !v.is_empty()),
                    },
                    state: named(row, "alert_states", "state")?,
                    since: time(row.try_get("since")?),
                    last_true: row.try_get::<Option<i64>, _>("last_true")?.map(time),
                    value: row.try_get("value")?,
                    notified_at: row.try_get::<Option<i64>, _>("notified_at")?.map(time),
                })
            })
            .collect()
    }

    /// One transaction: upsert each record of `upserts` (by rule_id + series), delete the states in
    /// `removed`, append `transitions` to the history. A record of a rule deleted meanwhile is skipped (its
    /// transitions are still recorded: the history outlives rules).
    pub async fn apply_alert_changes(
        &self,
        upserts: &[AlertRecord],
        removed: &[(i64, SeriesKey)],
        transitions: &[Transition],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for r in upserts {
            sqlx::query(
                "INSERT INTO alert_states (rule_id, plugin, version, state, since, last_true, value, notified_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM alert_rules WHERE id = $1)
                 ON CONFLICT (rule_id, plugin, version) DO UPDATE SET state = excluded.state, since = excluded.since,
                    last_true = excluded.last_true, value = excluded.value, notified_at = excluded.notified_at",
            )
            .bind(r.rule_id)
            .bind(r.series.plugin.as_deref().unwrap_or(""))
            .bind(r.series.version.as_deref().unwrap_or(""))
            .bind(r.state.as_str())
            .bind(unix(r.since))
            .bind(r.last_true.map(unix))
            .bind(r.value.and_then(number))
            .bind(r.notified_at.map(unix))
            .execute(&mut *tx)
            .await?;
        }
        for (rule_id, series) in removed {
            sqlx::query("DELETE FROM alert_states WHERE rule_id = $1 AND plugin = $2 AND version = $3")
                .bind(rule_id)
                .bind(series.plugin.as_deref().unwrap_or(""))
                .bind(series.version.as_deref().unwrap_or(""))
                .execute(&mut *tx)
                .await?;
        }
        for t in transitions {
            sqlx::query(
                "INSERT INTO alert_history (at, rule_id, rule_name, plugin, version, from_state, to_state, value,
                    threshold, severity, silenced)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(unix(t.at))
            .bind(t.rule_id)
            .bind(&t.rule_name)
            .bind(&t.series.plugin)
            .bind(&t.series.version)
            .bind(t.from.as_str())
            .bind(t.to.as_str())
            .bind(t.value.and_then(number))
            .bind(number(t.threshold))
            .bind(t.severity.as_str())
            .bind(t.silenced)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// History entries matching every set field of `filter` (`state` is the state entered, `from..to` the
    /// time, `before` an id cursor), newest first; `limit` is clamped to 1..=1000.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM alert_history
             WHERE ($1 IS NULL OR rule_id = $1)
               AND ($2 IS NULL OR plugin = $2)
               AND ($3 IS NULL OR to_state = $3)
               AND at >= $4 AND at < $5 AND id < $6
             ORDER BY id DESC LIMIT $7",
        )
        .bind(filter.rule_id)
        .bind(&filter.plugin)
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.from.map_or(i64::MIN, unix_ceil))
        .bind(filter.to.map_or(i64::MAX, unix_ceil))
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(i64::from(filter.limit.clamp(1, MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    id: row.try_get("id")?,
                    transition: Transition {
                        at: time(row.try_get("at")?),
                        rule_id: row.try_get("rule_id")?,
                        rule_name: row.try_get("rule_name")?,
                        series: SeriesKey { plugin: row.try_get("plugin")?, version: row.try_get("version")? },
                        from: named(row, "alert_history", "from_state")?,
                        to: named(row, "alert_history", "to_state")?,
                        value: row.try_get("value")?,
                        threshold: row.try_get("threshold")?,
                        severity: named(row, "alert_history", "severity")?,
                        silenced: row.try_get("silenced")?,
                    },
                })
            })
            .collect()
    }

    // ---- Silences ----

    pub async fn create_silence(&self, spec: &SilenceSpec, author: &str, now: SystemTime) -> Result<Silence> {
        let mut tx = self.pool.begin().await?;
        let schedule = spec.schedule.as_ref();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO silences (rule_id, plugins, starts_at, ends_at, schedule_weekdays, schedule_start_minute,
                schedule_duration_minutes, comment, author, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(spec.rule_id)
        .bind(&spec.plugins)
        .bind(unix(spec.starts_at))
        .bind(unix(spec.ends_at))
        .bind(schedule.map(|s| i64::from(s.weekdays)))
        .bind(schedule.map(|s| i64::from(s.start_minute)))
        .bind(schedule.map(|s| i64::from(s.duration_minutes)))
        .bind(&spec.comment)
        .bind(author)
        .bind(unix(now))
        .fetch_one(&mut *tx)
        .await?;
        insert_labels(&mut tx, "silence_labels", "silence_id", id, &spec.labels).await?;
        tx.commit().await?;
        self.silence(id).await
    }

    /// Ends a silence early: sets `expired_at` and `ends_at = min(ends_at, now)`. One already expired is
    /// returned unchanged.
    pub async fn expire_silence(&self, id: i64, now: SystemTime) -> Result<Silence> {
        sqlx::query(
            "UPDATE silences SET expired_at = $1, ends_at = CASE WHEN ends_at < $1 THEN ends_at ELSE $1 END
             WHERE id = $2 AND expired_at IS NULL",
        )
        .bind(unix(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.silence(id).await
    }

    pub async fn silence(&self, id: i64) -> Result<Silence> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT * FROM silences WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound { kind: "silence", id })?;
        let mut labels = labels_of(&mut conn, "silence_labels", "silence_id", &[id]).await?;
        silence_from_row(&row, labels.remove(&id).unwrap_or_default())
    }

    /// Silences not ended before `ended_after` (ends_at or expired_at ≥ it), newest first: active, future, and
    /// recently expired ones.
    pub async fn silences(&self, ended_after: SystemTime) -> Result<Vec<Silence>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query("SELECT * FROM silences WHERE ends_at >= $1 OR expired_at >= $1 ORDER BY id DESC")
            .bind(unix_ceil(ended_after))
            .fetch_all(&mut *conn)
            .await?;
        let ids = ids_of(&rows)?;
        let mut labels = labels_of(&mut conn, "silence_labels", "silence_id", &ids).await?;
        rows.iter().map(|row| silence_from_row(row, labels.remove(&row.try_get("id")?).unwrap_or_default())).collect()
    }

    // ---- Channels ----

    /// Stores a new channel with its secret settings sealed. A name in use, or a setting given both plain
    /// and secret, is [`StoreError::Conflict`]; a rule id that names no rule is [`StoreError::NotFound`].
    pub async fn create_channel(
        &self,
        spec: &ChannelSpec,
        secrets: &BTreeMap<String, SecretValue>,
        now: SystemTime,
    ) -> Result<Channel> {
        if let Some(key) = spec.settings.keys().find(|k| secrets.contains_key(*k)) {
            return Err(both_plain_and_secret(key));
        }
        let now = unix(now);
        let mut tx = self.pool.begin().await?;
        let id: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO alert_channels (name, kind, enabled, min_severity, group_wait_secs, repeat_interval_secs,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&spec.name)
        .bind(spec.kind.as_str())
        .bind(spec.enabled)
        .bind(spec.min_severity.as_str())
        .bind(i64::from(spec.group_wait_secs))
        .bind(i64::from(spec.repeat_interval_secs))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let (id,) = id.ok_or_else(|| channel_name_taken(&spec.name))?;
        for (key, value) in secrets {
            self.put_channel_secret(&mut tx, id, key, value).await?;
        }
        write_channel_children(&mut tx, id, spec).await?;
        tx.commit().await?;
        self.channel(id).await
    }

    /// Replaces a channel's spec. `secrets`: `Some(v)` sets, `None` clears; names not in the map are kept.
    /// The spec's plain settings replace the old ones (a plain setting may not share a name with a secret
    /// that stays: [`StoreError::Conflict`]).
    pub async fn update_channel(
        &self,
        id: i64,
        spec: &ChannelSpec,
        secrets: &BTreeMap<String, Option<SecretValue>>,
        now: SystemTime,
    ) -> Result<Channel> {
        if let Some(key) = spec.settings.keys().find(|k| matches!(secrets.get(*k), Some(Some(_)))) {
            return Err(both_plain_and_secret(key));
        }
        let mut tx = self.pool.begin().await?;
        // A write first, so the transaction holds the write lock before it reads (SQLite BUSY_SNAPSHOT).
        let done = sqlx::query(
            "UPDATE alert_channels SET kind = $1, enabled = $2, min_severity = $3, group_wait_secs = $4,
                repeat_interval_secs = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(spec.kind.as_str())
        .bind(spec.enabled)
        .bind(spec.min_severity.as_str())
        .bind(i64::from(spec.group_wait_secs))
        .bind(i64::from(spec.repeat_interval_secs))
        .bind(unix(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "channel", id });
        }
        let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM alert_channels WHERE name = $1 AND id <> $2")
            .bind(&spec.name)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(channel_name_taken(&spec.name));
        }
        sqlx::query("UPDATE alert_channels SET name = $1 WHERE id = $2")
            .bind(&spec.name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for (key, value) in secrets {
            match value {
                Some(value) => self.put_channel_secret(&mut tx, id, key, value).await?,
                None => {
                    sqlx::query(
                        "DELETE FROM alert_channel_settings WHERE channel_id = $1 AND key = $2 AND secret = TRUE",
                    )
                    .bind(id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let kept: Vec<(String,)> =
            sqlx::query_as("SELECT key FROM alert_channel_settings WHERE channel_id = $1 AND secret = TRUE")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        if let Some((key,)) = kept.iter().find(|(k,)| spec.settings.contains_key(k)) {
            return Err(both_plain_and_secret(key));
        }
        for table in ["alert_channel_rules", "alert_channel_labels"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE channel_id = $1")).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM alert_channel_settings WHERE channel_id = $1 AND secret = FALSE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_channel_children(&mut tx, id, spec).await?;
        tx.commit().await?;
        self.channel(id).await
    }

    /// Deletes a channel with its settings, routing and outbox.
    pub async fn delete_channel(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM alert_channels WHERE id = $1").bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "channel", id });
        }
        Ok(())
    }

    /// A channel; its secrets by name only (sorted), its rule filter by id (ascending).
    pub async fn channel(&self, id: i64) -> Result<Channel> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query("SELECT * FROM alert_channels WHERE id = $1").bind(id).fetch_all(&mut *conn).await?;
        channels_from_rows(&mut conn, rows).await?.pop().ok_or(StoreError::NotFound { kind: "channel", id })
    }

    /// Every channel, by id.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query("SELECT * FROM alert_channels ORDER BY id").fetch_all(&mut *conn).await?;
        channels_from_rows(&mut conn, rows).await
    }

    /// A channel's secret settings, opened, by name.
    pub async fn channel_secrets(&self, id: i64) -> Result<BTreeMap<String, SecretValue>> {
        let mut conn = self.pool.acquire().await?;
        let exists: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM alert_channels WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
        if exists.is_none() {
            return Err(StoreError::NotFound { kind: "channel", id });
        }
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT key, value, sealed FROM alert_channel_settings WHERE channel_id = $1 AND secret = TRUE ORDER BY key",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = BTreeMap::new();
        for (key, value, sealed) in rows {
            let context = channel_context(id, &key);
            if !sealed {
                // Sealed on open; a clear row now was written behind the store's back.
                return Err(SecretError::Malformed { context, reason: "it is stored in clear" }.into());
            }
            let value = self.unseal(&context, &value)?;
            out.insert(key, value);
        }
        Ok(out)
    }

    /// Stores one secret setting of a channel, sealed, replacing the one of that name.
    async fn put_channel_secret(&self, conn: &mut Conn, channel_id: i64, key: &str, value: &SecretValue) -> Result<()> {
        let sealed = self.seal(&channel_context(channel_id, key), value)?;
        sqlx::query(
            "INSERT INTO alert_channel_settings (channel_id, key, value, secret, sealed) VALUES ($1, $2, $3, TRUE, TRUE)
             ON CONFLICT (channel_id, key) DO UPDATE SET value = excluded.value, secret = TRUE, sealed = TRUE",
        )
        .bind(channel_id)
        .bind(key)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    // ---- Outbox ----

    /// Adds `notification` to the channel's outbox. Grouping: if the channel has a delivery of the same kind
    /// and group_key that is `pending`, has 0 attempts and whose next_attempt_at > now, merge into it (an
    /// alert with the same rule_id and series replaces the old one in place, others are appended; `text`
    /// replaced if Some) and return its id; otherwise insert a new pending delivery with next_attempt_at =
    /// not_before. One transaction.
    pub async fn enqueue_notification(
        &self,
        channel_id: i64,
        notification: &Notification,
        not_before: SystemTime,
        now: SystemTime,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        // A write first (it takes the write lock), which also finds the delivery still open for the group.
        let open: Option<(i64,)> = sqlx::query_as(
            "UPDATE alert_outbox SET text = COALESCE($1, text)
             WHERE id = (SELECT o.id FROM alert_outbox o
                         WHERE o.channel_id = $2 AND o.kind = $3 AND o.group_key = $4 AND o.status = 'pending'
                           AND o.attempts = 0 AND o.next_attempt_at > $5
                         ORDER BY o.id DESC LIMIT 1)
             RETURNING id",
        )
        .bind(&notification.text)
        .bind(channel_id)
        .bind(notification.kind.as_str())
        .bind(&notification.group)
        .bind(unix(now))
        .fetch_optional(&mut *tx)
        .await?;
        let id = match open {
            Some((id,)) => {
                let rows: Vec<(i64, i64, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT position, rule_id, plugin, version FROM alert_outbox_alerts WHERE delivery_id = $1",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                let mut positions: HashMap<(i64, SeriesKey), i64> = rows
                    .into_iter()
                    .map(|(position, rule_id, plugin, version)| ((rule_id, SeriesKey { plugin, version }), position))
                    .collect();
                let mut next = positions.values().max().map_or(0, |p| p + 1);
                for alert in &notification.alerts {
                    let key = (alert.rule_id, alert.series.clone());
                    let position = match positions.get(&key) {
                        Some(&position) => {
                            sqlx::query("DELETE FROM alert_outbox_alerts WHERE delivery_id = $1 AND position = $2")
                                .bind(id)
                                .bind(position)
                                .execute(&mut *tx)
                                .await?;
                            position
                        }
                        None => {
                            let position = next;
                            next += 1;
                            positions.insert(key, position);
                            position
                        }
                    };
                    insert_notice(&mut tx, id, position, alert).await?;
                }
                id
            }
            None => {
                let inserted: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO alert_outbox (channel_id, kind, group_key, text, notification_at, created_at, status,
                        attempts, next_attempt_at)
                     SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, $7
                     WHERE EXISTS (SELECT 1 FROM alert_channels WHERE id = $1)
                     RETURNING id",
                )
                .bind(channel_id)
                .bind(notification.kind.as_str())
                .bind(&notification.group)
                .bind(&notification.text)
                .bind(unix(notification.created_at))
                .bind(unix(now))
                .bind(unix_ceil(not_before))
                .fetch_optional(&mut *tx)
                .await?;
                let (id,) = inserted.ok_or(StoreError::NotFound { kind: "channel", id: channel_id })?;
                // Two alerts of one series in one notification: the later one counts, as in a merge.
                let mut positions: HashMap<(i64, &SeriesKey), i64> = HashMap::new();
                for alert in &notification.alerts {
                    let next = positions.len() as i64;
                    let position = *positions.entry((alert.rule_id, &alert.series)).or_insert(next);
                    if position != next {
                        sqlx::query("DELETE FROM alert_outbox_alerts WHERE delivery_id = $1 AND position = $2")
                            .bind(id)
                            .bind(position)
                            .execute(&mut *tx)
                            .await?;
                    }
                    insert_notice(&mut tx, id, position, alert).await?;
                }
                id
            }
        };
        tx.commit().await?;
        Ok(id)
    }

    /// Pending deliveries with next_attempt_at <= now, oldest (lowest id) first, at most `limit`, with their
    /// notification (alerts in position order, labels).
    pub async fn due_deliveries(&self, now: SystemTime, limit: u32) -> Result<Vec<Delivery>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT * FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(unix(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        deliveries_from_rows(&mut conn, &rows).await
    }

    /// The earliest next_attempt_at of a pending delivery, if any (so the sender can sleep until then).
    pub async fn next_delivery_at(&self) -> Result<Option<SystemTime>> {
        let (at,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(next_attempt_at) FROM alert_outbox WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(at.map(time))
    }

    /// A pending delivery went out: status sent, attempts + 1, sent_at and the receiver's answer. A delivery
    /// that is not pending is [`StoreError::Conflict`].
    pub async fn delivery_sent(&self, id: i64, response: &str, now: SystemTime) -> Result<()> {
        let done = sqlx::query(
            "UPDATE alert_outbox SET status = 'sent', attempts = attempts + 1, last_response = $1, sent_at = $2,
                finished_seq = (SELECT COALESCE(MAX(f.finished_seq), 0) + 1 FROM alert_outbox f)
             WHERE id = $3 AND status = 'pending'",
        )
        .bind(response)
        .bind(unix(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.not_pending(id).await);
        }
        Ok(())
    }

    /// An attempt failed: attempts + 1, last_error and last_response set; `retry_at` Some → stays pending
    /// with next_attempt_at = it; None → status failed. A delivery that is not pending is
    /// [`StoreError::Conflict`].
    pub async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        response: Option<&str>,
        retry_at: Option<SystemTime>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $1, last_response = $2,
                status = CASE WHEN $3 IS NULL THEN 'failed' ELSE 'pending' END,
                next_attempt_at = COALESCE($3, next_attempt_at),
                finished_seq = CASE WHEN $3 IS NULL
                    THEN (SELECT COALESCE(MAX(f.finished_seq), 0) + 1 FROM alert_outbox f) ELSE NULL END
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(error)
        .bind(response)
        .bind(retry_at.map(unix_ceil))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.not_pending(id).await);
        }
        Ok(())
    }

    /// Why a delivery matched no pending row.
    async fn not_pending(&self, id: i64) -> StoreError {
        let status: std::result::Result<Option<(String,)>, _> =
            sqlx::query_as("SELECT status FROM alert_outbox WHERE id = $1").bind(id).fetch_optional(&self.pool).await;
        match status {
            Ok(Some((status,))) => StoreError::Conflict(format!("delivery {id} is {status}, not pending")),
            Ok(None) => StoreError::NotFound { kind: "delivery", id },
            Err(e) => e.into(),
        }
    }

    pub async fn delivery(&self, id: i64) -> Result<Delivery> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query("SELECT * FROM alert_outbox WHERE id = $1").bind(id).fetch_all(&mut *conn).await?;
        deliveries_from_rows(&mut conn, &rows).await?.pop().ok_or(StoreError::NotFound { kind: "delivery", id })
    }

    /// A channel's delivery log, newest first: deliveries with an id below `before`, `limit` clamped to
    /// 1..=1000.
    pub async fn deliveries(&self, channel_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<Delivery>> {
        let mut conn = self.pool.acquire().await?;
        let rows =
            sqlx::query("SELECT * FROM alert_outbox WHERE channel_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
                .bind(channel_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit.clamp(1, MAX_PAGE)))
                .fetch_all(&mut *conn)
                .await?;
        deliveries_from_rows(&mut conn, &rows).await
    }

    /// Deliveries of the channel that failed for good since its last sent one, in the order they finished
    /// (0 if none failed).
    pub async fn consecutive_failures(&self, channel_id: i64) -> Result<u32> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM alert_outbox
             WHERE channel_id = $1 AND status = 'failed'
               AND finished_seq > COALESCE((SELECT MAX(s.finished_seq) FROM alert_outbox s
                                            WHERE s.channel_id = $1 AND s.status = 'sent'), 0)",
        )
        .bind(channel_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Deletes history older than `history_before`, sent/failed deliveries created before
    /// `deliveries_before`, silences ended (ends_at or expired_at) before `silences_before`; one transaction.
    /// Returns the history entries, deliveries and silences deleted.
    pub async fn prune_alerting(
        &self,
        history_before: SystemTime,
        deliveries_before: SystemTime,
        silences_before: SystemTime,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let history = sqlx::query("DELETE FROM alert_history WHERE at < $1")
            .bind(unix_ceil(history_before))
            .execute(&mut *tx)
            .await?;
        let deliveries = sqlx::query("DELETE FROM alert_outbox WHERE status IN ('sent', 'failed') AND created_at < $1")
            .bind(unix_ceil(deliveries_before))
            .execute(&mut *tx)
            .await?;
        let silences =
            sqlx::query("DELETE FROM silences WHERE ends_at < $1 AND (expired_at IS NULL OR expired_at < $1)")
                .bind(unix_ceil(silences_before))
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(history.rows_affected() + deliveries.rows_affected() + silences.rows_affected())
    }
}

fn rule_name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!("a rule named `{name}` already exists"))
}

fn channel_name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!("a channel named `{name}` already exists"))
}

fn both_plain_and_secret(key: &str) -> StoreError {
    StoreError::Conflict(format!("setting `{key}` is given both as a plain and as a secret setting"))
}

/// A rule's outcomes as stored: names joined by `,` ('' for every failing outcome).
fn outcome_list(spec: &RuleSpec) -> String {
    spec.outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(",")
}

/// Inserts a rule and its labels; `None` if the name is taken (nothing inserted).
async fn insert_rule(conn: &mut Conn, spec: &RuleSpec, builtin: bool, now: i64) -> Result<Option<i64>> {
    let id: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO alert_rules (name, enabled, builtin, scope, plugins, metric, outcomes, headroom_limit, window_secs,
            comparison, threshold, for_secs, keep_firing_for_secs, no_data, severity, summary, runbook, created_at,
            updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(&spec.name)
    .bind(spec.enabled)
    .bind(builtin)
    .bind(spec.scope.as_str())
    .bind(&spec.plugins)
    .bind(spec.metric.as_str())
    .bind(outcome_list(spec))
    .bind(spec.limit.map(|l| l.as_str()))
    .bind(i64::from(spec.window_secs))
    .bind(spec.comparison.as_str())
    .bind(number(spec.threshold))
    .bind(i64::from(spec.for_secs))
    .bind(i64::from(spec.keep_firing_for_secs))
    .bind(spec.no_data.as_str())
    .bind(spec.severity.as_str())
    .bind(&spec.summary)
    .bind(&spec.runbook)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id,)) = id else { return Ok(None) };
    insert_labels(conn, "alert_rule_labels", "rule_id", id, &spec.labels).await?;
    Ok(Some(id))
}

async fn load_rule(conn: &mut Conn, id: i64) -> Result<Rule> {
    let row = sqlx::query("SELECT * FROM alert_rules WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound { kind: "rule", id })?;
    let mut labels = labels_of(conn, "alert_rule_labels", "rule_id", &[id]).await?;
    rule_from_row(&row, labels.remove(&id).unwrap_or_default())
}

fn rule_from_row(row: &DbRow, labels: BTreeMap<String, String>) -> Result<Rule> {
    let outcomes: String = row.try_get("outcomes")?;
    let outcomes = if outcomes.is_empty() {
        Vec::new()
    } else {
        outcomes.split(',').map(|o| parse("alert_rules.outcomes", o)).collect::<Result<_>>()?
    };
    let limit: Option<String> = row.try_get("headroom_limit")?;
    Ok(Rule {
        id: row.try_get("id")?,
        spec: RuleSpec {
            name: row.try_get("name")?,
            enabled: row.try_get("enabled")?,
            scope: named(row, "alert_rules", "scope")?,
            plugins: row.try_get("plugins")?,
            metric: named(row, "alert_rules", "metric")?,
            outcomes,
            limit: limit.map(|l| parse("alert_rules.headroom_limit", &l)).transpose()?,
            window_secs: small(row, "alert_rules", "window_secs")?,
            comparison: named(row, "alert_rules", "comparison")?,
            threshold: row.try_get("threshold")?,
            for_secs: small(row, "alert_rules", "for_secs")?,
            keep_firing_for_secs: small(row, "alert_rules", "keep_firing_for_secs")?,
            no_data: named(row, "alert_rules", "no_data")?,
            severity: named(row, "alert_rules", "severity")?,
            labels,
            summary: row.try_get("summary")?,
            runbook: row.try_get("runbook")?,
        },
        builtin: row.try_get("builtin")?,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

fn silence_from_row(row: &DbRow, labels: BTreeMap<String, String>) -> Result<Silence> {
    let weekdays: Option<i64> = row.try_get("schedule_weekdays")?;
    let schedule = match weekdays {
        None => None,
        Some(weekdays) => Some(Schedule {
            weekdays: in_range("silences.schedule_weekdays", weekdays)?,
            start_minute: in_range("silences.schedule_start_minute", row.try_get("schedule_start_minute")?)?,
            duration_minutes: in_range(
                "silences.schedule_duration_minutes",
                row.try_get("schedule_duration_minutes")?,
            )?,
        }),
    };
    Ok(Silence {
        id: row.try_get("id")?,
        spec: SilenceSpec {
            rule_id: row.try_get("rule_id")?,
            plugins: row.try_get("plugins")?,
            labels,
            starts_at: time(row.try_get("starts_at")?),
            ends_at: time(row.try_get("ends_at")?),
            schedule,
            comment: row.try_get("comment")?,
        },
        author: row.try_get("author")?,
        created_at: time(row.try_get("created_at")?),
        expired_at: row.try_get::<Option<i64>, _>("expired_at")?.map(time),
    })
}

/// Writes a channel's plain settings, rule filter and labels (the old ones are already gone).
async fn write_channel_children(conn: &mut Conn, id: i64, spec: &ChannelSpec) -> Result<()> {
    for (key, value) in &spec.settings {
        sqlx::query(
            "INSERT INTO alert_channel_settings (channel_id, key, value, secret, sealed) VALUES ($1, $2, $3, FALSE, FALSE)",
        )
        .bind(id)
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    }
    for rule_id in spec.rule_ids.iter().collect::<BTreeSet<_>>() {
        let done = sqlx::query(
            "INSERT INTO alert_channel_rules (channel_id, rule_id)
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM alert_rules WHERE id = $2)",
        )
        .bind(id)
        .bind(rule_id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { kind: "rule", id: *rule_id });
        }
    }
    insert_labels(conn, "alert_channel_labels", "channel_id", id, &spec.labels).await
}

async fn channels_from_rows(conn: &mut Conn, rows: Vec<DbRow>) -> Result<Vec<Channel>> {
    let ids = ids_of(&rows)?;
    let mut labels = labels_of(conn, "alert_channel_labels", "channel_id", &ids).await?;
    // Secret values are not even read: a channel names its secrets only.
    let mut settings: HashMap<i64, (BTreeMap<String, String>, Vec<String>)> = HashMap::new();
    let mut rules: HashMap<i64, Vec<i64>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT channel_id, key, CASE WHEN secret THEN '' ELSE value END AS value, secret
             FROM alert_channel_settings WHERE channel_id IN ({}) ORDER BY channel_id, key",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String, String, bool)>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for (channel, key, value, secret) in query.fetch_all(&mut *conn).await? {
            let (plain, secrets) = settings.entry(channel).or_default();
            if secret {
                secrets.push(key);
            } else {
                plain.insert(key, value);
            }
        }
        let sql = format!(
            "SELECT channel_id, rule_id FROM alert_channel_rules WHERE channel_id IN ({}) ORDER BY channel_id, rule_id",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for (channel, rule) in query.fetch_all(&mut *conn).await? {
            rules.entry(channel).or_default().push(rule);
        }
    }
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("id")?;
            let (plain, secrets_set) = settings.remove(&id).unwrap_or_default();
            Ok(Channel {
                id,
                spec: ChannelSpec {
                    name: row.try_get("name")?,
                    kind: named(row, "alert_channels", "kind")?,
                    enabled: row.try_get("enabled")?,
                    settings: plain,
                    min_severity: named(row, "alert_channels", "min_severity")?,
                    rule_ids: rules.remove(&id).unwrap_or_default(),
                    labels: labels.remove(&id).unwrap_or_default(),
                    group_wait_secs: small(row, "alert_channels", "group_wait_secs")?,
                    repeat_interval_secs: small(row, "alert_channels", "repeat_interval_secs")?,
                },
                secrets_set,
                created_at: time(row.try_get("created_at")?),
                updated_at: time(row.try_get("updated_at")?),
            })
        })
        .collect()
}

/// Inserts one alert of a notification, with its labels, at `position`.
async fn insert_notice(conn: &mut Conn, delivery_id: i64, position: i64, a: &AlertNotice) -> Result<()> {
    sqlx::query(
        "INSERT INTO alert_outbox_alerts (delivery_id, position, rule_id, rule_name, plugin, version, state, severity,
            metric, comparison, threshold, value, since, summary, runbook)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(delivery_id)
    .bind(position)
    .bind(a.rule_id)
    .bind(&a.rule_name)
    .bind(&a.series.plugin)
    .bind(&a.series.version)
    .bind(a.state.as_str())
    .bind(a.severity.as_str())
    .bind(a.metric.as_str())
    .bind(a.comparison.as_str())
    .bind(number(a.threshold))
    .bind(a.value.and_then(number))
    .bind(unix(a.since))
    .bind(&a.summary)
    .bind(&a.runbook)
    .execute(&mut *conn)
    .await?;
    for (key, value) in &a.labels {
        sqlx::query("INSERT INTO alert_outbox_labels (delivery_id, position, key, value) VALUES ($1, $2, $3, $4)")
            .bind(delivery_id)
            .bind(position)
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Deliveries read back with their notifications, in the order of `rows`.
async fn deliveries_from_rows(conn: &mut Conn, rows: &[DbRow]) -> Result<Vec<Delivery>> {
    let ids = ids_of(rows)?;
    let mut alerts: HashMap<i64, Vec<AlertNotice>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT delivery_id, position, key, value FROM alert_outbox_labels WHERE delivery_id IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, i64, String, String)>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        let mut labels: HashMap<(i64, i64), BTreeMap<String, String>> = HashMap::new();
        for (delivery, position, key, value) in query.fetch_all(&mut *conn).await? {
            labels.entry((delivery, position)).or_default().insert(key, value);
        }
        let sql = format!(
            "SELECT * FROM alert_outbox_alerts WHERE delivery_id IN ({}) ORDER BY delivery_id, position",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let delivery: i64 = row.try_get("delivery_id")?;
            let position: i64 = row.try_get("position")?;
            let t = "alert_outbox_alerts";
            alerts.entry(delivery).or_default().push(AlertNotice {
                rule_id: row.try_get("rule_id")?,
                rule_name: row.try_get("rule_name")?,
                series: SeriesKey { plugin: row.try_get("plugin")?, version: row.try_get("version")? },
                state: named(&row, t, "state")?,
                severity: named(&row, t, "severity")?,
                metric: named(&row, t, "metric")?,
                comparison: named(&row, t, "comparison")?,
                threshold: row.try_get("threshold")?,
                value: row.try_get("value")?,
                since: time(row.try_get("since")?),
                summary: row.try_get("summary")?,
                runbook: row.try_get("runbook")?,
                labels: labels.remove(&(delivery, position)).unwrap_or_default(),
            });
        }
    }
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("id")?;
            let t = "alert_outbox";
            Ok(Delivery {
                id,
                channel_id: row.try_get("channel_id")?,
                notification: Notification {
                    kind: named(row, t, "kind")?,
                    group: row.try_get("group_key")?,
                    alerts: alerts.remove(&id).unwrap_or_default(),
                    text: row.try_get("text")?,
                    created_at: time(row.try_get("notification_at")?),
                },
                status: named(row, t, "status")?,
                attempts: small(row, t, "attempts")?,
                next_attempt_at: time(row.try_get("next_attempt_at")?),
                last_error: row.try_get("last_error")?,
                last_response: row.try_get("last_response")?,
                sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(time),
                created_at: time(row.try_get("created_at")?),
            })
        })
        .collect()
}

async fn insert_labels(
    conn: &mut Conn,
    table: &str,
    owner: &str,
    id: i64,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    let sql = format!("INSERT INTO {table} ({owner}, key, value) VALUES ($1, $2, $3)");
    for (key, value) in labels {
        sqlx::query(&sql).bind(id).bind(key).bind(value).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The labels of the rows `ids` of a `(owner, key, value)` table, by owner.
async fn labels_of(
    conn: &mut Conn,
    table: &str,
    owner: &str,
    ids: &[i64],
) -> Result<HashMap<i64, BTreeMap<String, String>>> {
    let mut out: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!("SELECT {owner}, key, value FROM {table} WHERE {owner} IN ({})", placeholders(chunk.len()));
        let mut query = sqlx::query_as::<_, (i64, String, String)>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for (owner, key, value) in query.fetch_all(&mut *conn).await? {
            out.entry(owner).or_default().insert(key, value);
        }
    }
    Ok(out)
}

/// `$1, $2, … $n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn ids_of(rows: &[DbRow]) -> Result<Vec<i64>> {
    rows.iter().map(|row| Ok(row.try_get::<i64, _>("id")?)).collect()
}

/// Parses a stored name; one that is not a value of `T` is a corrupt row, naming the column and the value.
fn parse<T: FromStr>(column: &str, value: &str) -> Result<T>
where
    T::Err: Display,
{
    value.parse().map_err(|e: T::Err| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A text column holding an enum's name.
fn named<T: FromStr>(row: &DbRow, table: &str, column: &str) -> Result<T>
where
    T::Err: Display,
{
    let value: String = row.try_get(column)?;
    parse(&format!("{table}.{column}"), &value)
}

/// An integer column holding a `u32` (seconds, counts).
fn small(row: &DbRow, table: &str, column: &str) -> Result<u32> {
    in_range(&format!("{table}.{column}"), row.try_get(column)?)
}

fn in_range<T: TryFrom<i64>>(column: &str, value: i64) -> Result<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

/// Unix seconds as a time (0 for anything before the epoch, which `unix` never writes).
fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}
