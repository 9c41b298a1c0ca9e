//! One set of queries, two databases. Every file in `sql/` is written once against the names `DB`,
//! `DbRow`, `Conn` and `DIALECT` and compiled twice, by `sqlite.rs` and `postgres.rs`, each with the real
//! driver (no `sqlx::Any`: its type mapping loses SQLite's booleans and PostgreSQL's types). Where the SQL
//! must differ (PRAGMAs, catalogue queries, upserts), the code branches on `DIALECT`, a constant, so each
//! copy keeps only its own branch. [`Store`] holds one of the two and passes every call on, as listed
//! here once (the documentation is at each query, in `sql/`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use plugwatch_model::alerts::{
    AlertRecord, Channel, ChannelSpec, Delivery, HistoryEntry, HistoryFilter, Notification, Rule, RuleSpec, SeriesKey,
    Silence, SilenceSpec, Transition,
};
use plugwatch_telemetry::{Flush, HostSample, Persisted, RunLogEntry};

use crate::{
    AttemptKey, AuditFilter, AuditRow, Guarded, HostPoint, KeyOrigin, NewAuditRow, NewTokenRecord, NewVersion,
    PluginRecord, PruneReport, ReplicaSeen, Result, Retention, Rotated, SecretKey, SecretValue, SessionRecord, Store,
    Stored, StoredRollup, TokenRecord, UserChange, UserRecord, VersionRecord,
};

/// The modules of `sql/`, declared in `sqlite.rs` and `postgres.rs` alike (each first names its `DB`,
/// `DbRow`, `Conn` and `DIALECT`): the one list of what is compiled per database.
macro_rules! query_modules {
    () => {
        #[path = "sql/core.rs"]
        mod core;
        pub(crate) use core::Db;

        #[path = "sql/access.rs"]
        mod access;
        #[path = "sql/alerts.rs"]
        mod alerts;
        #[path = "sql/plugins.rs"]
        mod plugins;
        #[path = "sql/retention.rs"]
        mod retention;
        #[path = "sql/secrets.rs"]
        mod secrets;
        #[path = "sql/snapshot.rs"]
        mod snapshot;
        #[path = "sql/telemetry.rs"]
        mod telemetry;

        pub(crate) use secrets::stored_key_ids;
    };
}
pub(crate) use query_modules;

/// Which database a copy of the queries is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The database behind a [`Store`].
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(crate::sqlite::Db),
    Postgres(crate::postgres::Db),
}

/// `Store::name(args)` → the same query on whichever database the store has, one method per entry.
macro_rules! delegate {
    () => {};
    (async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        impl Store {
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match &self.backend {
                    Backend::Sqlite(db) => db.$name($($arg),*).await,
                    Backend::Postgres(db) => db.$name($($arg),*).await,
                }
            }
        }
        delegate!($($rest)*);
    };
    (fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        impl Store {
            pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                match &self.backend {
                    Backend::Sqlite(db) => db.$name($($arg),*),
                    Backend::Postgres(db) => db.$name($($arg),*),
                }
            }
        }
        delegate!($($rest)*);
    };
}

delegate! {
    // sql/access.rs
    async fn insert_user(&self, username: &str, password_hash: &str, role: &str, now: SystemTime) -> Result<Option<UserRecord>>;
    async fn insert_first_user(&self, username: &str, password_hash: &str, role: &str, now: SystemTime) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;
    async fn user(&self, username: &str) -> Result<Option<UserRecord>>;
    async fn update_user(&self, username: &str, change: &UserChange<'_>, now: SystemTime) -> Result<Guarded<UserRecord>>;
    async fn delete_user(&self, username: &str, now: SystemTime) -> Result<Guarded<()>>;
    async fn insert_session(&self, id_hash: &str, user_id: i64, csrf_token: &str, now: SystemTime, expires_at: SystemTime) -> Result<()>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    async fn touch_session(&self, id_hash: &str, now: SystemTime) -> Result<()>;
    async fn delete_session(&self, id_hash: &str) -> Result<bool>;
    async fn insert_token(&self, t: &NewTokenRecord) -> Result<TokenRecord>;
    async fn token(&self, id: i64) -> Result<Option<TokenRecord>>;
    async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>>;
    async fn all_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn tokens_of(&self, owner_id: i64) -> Result<Vec<TokenRecord>>;
    async fn touch_token(&self, id: i64, now: SystemTime) -> Result<()>;
    async fn revoke_token(&self, id: i64, now: SystemTime) -> Result<Option<TokenRecord>>;
    async fn insert_login_attempt(&self, at: SystemTime, username: &str, source: &str, success: bool) -> Result<i64>;
    async fn mark_login_success(&self, id: i64) -> Result<()>;
    async fn login_failures(&self, key: AttemptKey<'_>, since: SystemTime, limit: u32) -> Result<Vec<SystemTime>>;
    async fn insert_audit(&self, e: &NewAuditRow) -> Result<i64>;
    async fn count_refused_login(&self, key: AttemptKey<'_>, started_at: SystemTime, entry: &NewAuditRow) -> Result<i64>;
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;
    async fn prune_audit(&self, older_than: SystemTime) -> Result<u64>;
    async fn prune_login_attempts(&self, older_than: SystemTime) -> Result<u64>;
    async fn prune_sessions(&self, now: SystemTime, idle_since: SystemTime) -> Result<u64>;
    // sql/alerts.rs
    async fn create_rule(&self, spec: &RuleSpec, builtin: bool, now: SystemTime) -> Result<Rule>;
    async fn update_rule(&self, id: i64, spec: &RuleSpec, now: SystemTime) -> Result<Rule>;
    async fn delete_rule(&self, id: i64) -> Result<()>;
    async fn rule(&self, id: i64) -> Result<Rule>;
    async fn rules(&self) -> Result<Vec<Rule>>;
    async fn install_default_rules(&self, set: &str, specs: &[RuleSpec], now: SystemTime) -> Result<usize>;
    async fn alert_records(&self) -> Result<Vec<AlertRecord>>;
    async fn apply_alert_changes(&self, upserts: &[AlertRecord], removed: &[(i64, SeriesKey)], transitions: &[Transition]) -> Result<()>;
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>>;
    async fn create_silence(&self, spec: &SilenceSpec, author: &str, now: SystemTime) -> Result<Silence>;
    async fn expire_silence(&self, id: i64, now: SystemTime) -> Result<Silence>;
    async fn silence(&self, id: i64) -> Result<Silence>;
    async fn silences(&self, ended_after: SystemTime) -> Result<Vec<Silence>>;
    async fn create_channel(&self, spec: &ChannelSpec, secrets: &BTreeMap<String, SecretValue>, now: SystemTime) -> Result<Channel>;
    async fn update_channel(&self, id: i64, spec: &ChannelSpec, secrets: &BTreeMap<String, Option<SecretValue>>, now: SystemTime) -> Result<Channel>;
    async fn delete_channel(&self, id: i64) -> Result<()>;
    async fn channel(&self, id: i64) -> Result<Channel>;
    async fn channels(&self) -> Result<Vec<Channel>>;
    async fn channel_secrets(&self, id: i64) -> Result<BTreeMap<String, SecretValue>>;
    async fn enqueue_notification(&self, channel_id: i64, notification: &Notification, not_before: SystemTime, now: SystemTime) -> Result<i64>;
    async fn due_deliveries(&self, now: SystemTime, limit: u32) -> Result<Vec<Delivery>>;
    async fn next_delivery_at(&self) -> Result<Option<SystemTime>>;
    async fn delivery_sent(&self, id: i64, response: &str, now: SystemTime) -> Result<()>;
    async fn delivery_failed(&self, id: i64, error: &str, response: Option<&str>, retry_at: Option<SystemTime>) -> Result<()>;
    async fn delivery(&self, id: i64) -> Result<Delivery>;
    async fn deliveries(&self, channel_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<Delivery>>;
    async fn consecutive_failures(&self, channel_id: i64) -> Result<u32>;
    async fn prune_alerting(&self, history_before: SystemTime, deliveries_before: SystemTime, silences_before: SystemTime) -> Result<u64>;
    // sql/core.rs
    async fn ping(&self) -> Result<()>;
    async fn size_bytes(&self) -> Result<u64>;
    async fn close(&self) -> ();
    // sql/plugins.rs
    async fn insert_version(&self, v: &NewVersion, activate: bool) -> Result<Stored>;
    async fn plugins(&self) -> Result<Vec<PluginRecord>>;
    async fn plugin(&self, name: &str) -> Result<PluginRecord>;
    async fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>>;
    async fn version(&self, plugin: &str, version: &str) -> Result<VersionRecord>;
    async fn activate(&self, plugin: &str, version: &str) -> Result<()>;
    async fn rollback(&self, plugin: &str) -> Result<String>;
    async fn set_enabled(&self, plugin: &str, enabled: bool) -> Result<()>;
    async fn delete_plugin(&self, plugin: &str) -> Result<Vec<String>>;
    // sql/retention.rs
    async fn prune(&self, retention: &Retention, now: SystemTime) -> Result<PruneReport>;
    // sql/secrets.rs
    fn secret_key_id(&self) -> Option<String>;
    fn secret_key_origin(&self) -> KeyOrigin;
    async fn rotate_secret_key(&self, new: &SecretKey) -> Result<Rotated>;
    // sql/snapshot.rs
    async fn schema_version(&self) -> Result<i64>;
    async fn counts(&self) -> Result<BTreeMap<String, i64>>;
    // sql/telemetry.rs
    async fn write_flush(&self, flush: &Flush) -> Result<()>;
    // (rollups and minute_requests: shared.rs, through the shared cache)
    async fn persisted_telemetry(&self, now: SystemTime, window: Duration) -> Result<Persisted>;
    async fn peer_rollups(&self, since: SystemTime) -> Result<Vec<StoredRollup>>;
    async fn runs(&self, plugin: &str, limit: u32, failures_only: bool, before_us: Option<i64>) -> Result<Vec<RunLogEntry>>;
    async fn write_host_sample(&self, s: &HostSample) -> Result<()>;
    async fn host_points(&self, from: SystemTime, to: SystemTime, step: Duration, replica: Option<&str>) -> Result<Vec<HostPoint>>;
    async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaSeen>>;
    fn replica(&self) -> String;
}
