//! The server's configuration: every setting with its default. The binary fills it from a TOML file,
//! `PLUGWATCH_*` environment variables and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plugwatch_store::Retention;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the database, plugin artifacts and compiled-code cache live.
    pub data_dir: PathBuf,
    /// Where compiled plugins are cached [default: `<data_dir>/compiled`].
    pub cache_dir: Option<PathBuf>,
    /// `text` or `json` (one JSON object per line, for ELK-style log shipping).
    pub log_format: LogFormat,
    /// Load the example plugins and drive synthetic restaurant traffic.
    pub demo: bool,
    /// Seconds to let in-flight requests finish on shutdown.
    pub drain_timeout_secs: u64,
    /// The first admin's password, used only when the database has no user yet (usually set with
    /// `PLUGWATCH_ADMIN_PASSWORD`); without it one is generated and logged once.
    #[serde(skip_serializing)]
    pub admin_password: Option<Secret>,
    /// The key that encrypts plugin secrets at rest: 32 bytes as 64 hex digits or base64 (usually set with
    /// `PLUGWATCH_SECRET_KEY`). Takes precedence over `secret_key_file`. Without either, the data directory's
    /// `secret.key` is used, generated on the first start.
    #[serde(skip_serializing)]
    pub secret_key: Option<Secret>,
    /// A file holding that key (`PLUGWATCH_SECRET_KEY_FILE`), e.g. a mounted Kubernetes secret.
    pub secret_key_file: Option<PathBuf>,
    /// PostgreSQL instead of SQLite: `postgres://user:password@host:port/database` (usually set with
    /// `PLUGWATCH_DATABASE_URL`; it holds a password, so it is never shown). Without it the database is
    /// SQLite, `plugwatch.db` in the data directory.
    #[serde(skip_serializing)]
    pub database_url: Option<Secret>,
    /// Redis, shared by the replicas, for the dashboard's repeated reads and the change announcements:
    /// `redis://[:password@]host[:port][/db]` (usually set with `PLUGWATCH_CACHE_URL` or `--cache`; never
    /// shown). Optional: without it, or while it is away, every replica reads the database and announces
    /// through it.
    #[serde(skip_serializing)]
    pub cache_url: Option<Secret>,
    pub http: HttpConfig,
    pub runtime: RuntimeSettings,
    pub telemetry: TelemetrySettings,
    pub access: AccessSettings,
    /// The address operators reach plugwatch at (e.g. `https://plugwatch.example.com`), for links in
    /// notifications [default: `http://<listen>`].
    pub public_url: Option<String>,
    pub alerts: AlertSettings,
    /// Scheduled backups, retention and where archives go.
    pub backup: plugwatch_backup::BackupConfig,
    /// Several replicas on one PostgreSQL database.
    pub cluster: ClusterSettings,
}

/// Several replicas on one PostgreSQL database (ignored on SQLite, which has one process).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// This replica's name, under which it writes its telemetry: each replica needs its own [default:
    /// `<hostname>:<port>`, e.g. a Kubernetes pod's name and the port; with port 0, the process id].
    pub replica_id: Option<String>,
    /// Seconds between checks of which replica leads the singleton work (alerting, retention);
    /// a new leader takes over within about 11 s plus this after the old one dies.
    pub leader_check_secs: u64,
    /// Seconds between reads of what the other replicas flushed, for cluster-wide live figures.
    pub peers_secs: u64,
    /// Seconds between full re-reads of the plugins and the alerting configuration: the fallback for a
    /// change announcement this replica missed (announcements reach the others at once).
    pub poll_secs: u64,
    /// Seconds a dashboard read stays in the shared cache (`cache_url`): how much later another
    /// replica's latest flush may show on the dashboard than without the cache.
    pub cache_ttl_secs: u64,
    /// What this cluster's keys and channel in the shared cache start with: clusters sharing one Redis
    /// need different ones (or different Redis databases, `redis://host/<n>`).
    pub cache_namespace: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            replica_id: None,
            leader_check_secs: 2,
            peers_secs: 5,
            poll_secs: 30,
            cache_ttl_secs: 5,
            cache_namespace: "plugwatch".into(),
        }
    }
}

impl ServeConfig {
    /// The name this replica writes its telemetry under: `cluster.replica_id`, else `<hostname>:<port>`.
    /// SQLite has one process, the replica `""`.
    pub fn replica_id(&self) -> String {
        if self.database_url.is_none() {
            return String::new();
        }
        self.cluster.replica_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "plugwatch".into());
            match self.listen.port() {
                // Any port: the process id tells replicas on one machine apart.
                0 => format!("{host}:pid{}", std::process::id()),
                port => format!("{host}:{port}"),
            }
        })
    }
}

/// Alert evaluation and notification delivery.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Evaluate the rules and deliver notifications.
    pub enabled: bool,
    /// Seconds between evaluations of every rule.
    pub interval_secs: u64,
    /// Attempts per notification before it is marked failed.
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each next one doubles (with jitter) up to `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// Milliseconds one delivery attempt may take.
    pub send_timeout_ms: u64,
    /// Notifications failed in a row after which a channel is reported failing on the other channels.
    pub failing_after: u32,
    pub history_retention_days: u64,
    pub delivery_retention_days: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            interval_secs: 5,
            max_attempts: 8,
            retry_base_ms: 2000,
            retry_max_secs: 600,
            send_timeout_ms: 10_000,
            failing_after: 3,
            history_retention_days: 90,
            delivery_retention_days: 7,
        }
    }
}

impl ServeConfig {
    /// The alerting configuration these settings describe, for a server listening on `bound`.
    pub fn alerts_config(&self, bound: SocketAddr) -> plugwatch_alerts::AlertsConfig {
        let a = &self.alerts;
        plugwatch_alerts::AlertsConfig {
            interval: Duration::from_secs(a.interval_secs),
            dashboard_url: Some(
                self.public_url.clone().unwrap_or_else(|| format!("http://{bound}")).trim_end_matches('/').to_owned(),
            ),
            max_attempts: a.max_attempts,
            retry_base: Duration::from_millis(a.retry_base_ms),
            retry_max: Duration::from_secs(a.retry_max_secs),
            send_timeout: Duration::from_millis(a.send_timeout_ms),
            failing_after: a.failing_after,
            history_retention: Duration::from_secs(a.history_retention_days * 86_400),
            delivery_retention: Duration::from_secs(a.delivery_retention_days * 86_400),
            ..plugwatch_alerts::AlertsConfig::default()
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            data_dir: PathBuf::from("plugwatch-data"),
            cache_dir: None,
            database_url: None,
            cache_url: None,
            log_format: LogFormat::Text,
            demo: false,
            drain_timeout_secs: 30,
            admin_password: None,
            secret_key: None,
            secret_key_file: None,
            http: HttpConfig::default(),
            runtime: RuntimeSettings::default(),
            telemetry: TelemetrySettings::default(),
            access: AccessSettings::default(),
            public_url: None,
            alerts: AlertSettings::default(),
            backup: plugwatch_backup::BackupConfig::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Largest plugin upload (manifest plus component).
    pub max_upload_bytes: usize,
    /// Mark the session cookie `Secure` (set it when plugwatch is served over HTTPS, e.g. behind the Ingress).
    pub secure_cookies: bool,
    /// Seconds a client has to send a complete request head, from connecting or from the end of its
    /// previous response; then the connection is closed.
    pub header_timeout_secs: u64,
    /// Seconds a request body may take to arrive, in total (a body trickling in is cut off, answered 408).
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request (at most `header_timeout_secs`).
    pub keep_alive_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 4 << 20,
            max_upload_bytes: 80 << 20,
            secure_cookies: false,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            keep_alive_secs: 5,
            max_connections: 1024,
        }
    }
}

/// Sessions, sign-in lockout and the audit log.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// A session ends after this long without a request.
    pub session_idle_minutes: u64,
    /// A session ends this long after sign-in, however active.
    pub session_absolute_hours: u64,
    /// Failed sign-ins (per user or per address) within the window that lock further attempts out.
    pub lockout_threshold: u32,
    pub lockout_window_secs: u64,
    pub lockout_duration_secs: u64,
    pub audit_retention_days: u64,
    pub min_password_len: usize,
}

impl Default for AccessSettings {
    fn default() -> Self {
        let d = plugwatch_access::AccessConfig::default();
        AccessSettings {
            session_idle_minutes: d.session_idle.as_secs() / 60,
            session_absolute_hours: d.session_absolute.as_secs() / 3600,
            lockout_threshold: d.lockout_threshold,
            lockout_window_secs: d.lockout_window.as_secs(),
            lockout_duration_secs: d.lockout_duration.as_secs(),
            audit_retention_days: d.audit_retention.as_secs() / 86_400,
            min_password_len: d.min_password_len,
        }
    }
}

impl AccessSettings {
    pub fn access_config(&self) -> plugwatch_access::AccessConfig {
        plugwatch_access::AccessConfig {
            session_idle: Duration::from_secs(self.session_idle_minutes * 60),
            session_absolute: Duration::from_secs(self.session_absolute_hours * 3600),
            lockout_threshold: self.lockout_threshold,
            lockout_window: Duration::from_secs(self.lockout_window_secs),
            lockout_duration: Duration::from_secs(self.lockout_duration_secs),
            audit_retention: Duration::from_secs(self.audit_retention_days * 86_400),
            min_password_len: self.min_password_len,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    pub meter_instructions: bool,
    pub max_instances: u32,
    pub max_in_flight: u32,
    pub max_memory_bytes: u64,
    pub max_plugin_bytes: usize,
    /// The most pre-instantiated instances a plugin slow to instantiate keeps ready (it follows demand).
    pub prewarm_instances: usize,
    /// A pool no invocation has drawn from for this long gives its instances back.
    pub pool_idle_after_secs: u64,
    /// The memory all plugins' pre-instantiated instances may hold.
    pub pool_memory_budget_bytes: u64,
    /// How much of an instance slot's memory is reset in place (kept resident) rather than given back.
    pub keep_resident_bytes: usize,
    /// Within `keep_resident_bytes`, reset only the pages the instance wrote (`PAGEMAP_SCAN`).
    pub reset_dirty_pages_only: bool,
    /// Threads that run invocations outlasting one epoch tick (default: the number of cores).
    pub guest_threads: usize,
    /// Niceness of those threads (0–19): higher leaves the cores to HTTP first.
    pub guest_nice: i32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let d = plugwatch_runtime::RuntimeConfig::default();
        RuntimeSettings {
            meter_instructions: d.meter_instructions,
            max_instances: d.max_instances,
            max_in_flight: d.max_in_flight,
            max_memory_bytes: d.max_memory_bytes,
            max_plugin_bytes: d.max_plugin_bytes,
            prewarm_instances: d.prewarm_instances,
            pool_idle_after_secs: d.pool_idle_after.as_secs(),
            pool_memory_budget_bytes: d.pool_memory_budget_bytes,
            keep_resident_bytes: d.keep_resident_bytes,
            reset_dirty_pages_only: d.reset_dirty_pages_only,
            guest_threads: d.guest_threads,
            guest_nice: d.guest_nice,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// How often aggregates are written to the database (at most this much is lost on a crash).
    pub flush_interval_secs: u64,
    /// How often the host is sampled.
    pub host_interval_secs: u64,
    /// How often retention is enforced.
    pub prune_interval_secs: u64,
    pub retention: RetentionSettings,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            flush_interval_secs: 10,
            host_interval_secs: 5,
            prune_interval_secs: 3600,
            retention: RetentionSettings::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    pub ten_second_hours: u64,
    pub minute_days: u64,
    pub hour_days: u64,
    pub run_days: u64,
    pub failed_run_days: u64,
    pub runs_per_plugin: u32,
    pub host_sample_hours: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let d = Retention::default();
        RetentionSettings {
            ten_second_hours: d.ten_seconds.as_secs() / 3600,
            minute_days: d.minute.as_secs() / 86_400,
            hour_days: d.hour.as_secs() / 86_400,
            run_days: d.runs.as_secs() / 86_400,
            failed_run_days: d.failed_runs.as_secs() / 86_400,
            runs_per_plugin: d.runs_per_plugin,
            host_sample_hours: d.host_samples.as_secs() / 3600,
        }
    }
}

impl RetentionSettings {
    pub fn retention(&self) -> Retention {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let days = |d: u64| Duration::from_secs(d * 86_400);
        Retention {
            ten_seconds: hours(self.ten_second_hours),
            minute: days(self.minute_days),
            hour: days(self.hour_days),
            runs: days(self.run_days),
            failed_runs: days(self.failed_run_days),
            runs_per_plugin: self.runs_per_plugin,
            host_samples: hours(self.host_sample_hours),
        }
    }
}

impl ServeConfig {
    /// Refuses values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.backup.validate()?;
        if let Some(id) = &self.cluster.replica_id
            && (id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(format!(
                "`cluster.replica_id` must be 1 to 128 visible ASCII characters without spaces, not {id:?}"
            ));
        }
        let namespace = &self.cluster.cache_namespace;
        if namespace.is_empty() || namespace.len() > 64 || !namespace.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "`cluster.cache_namespace` must be 1 to 64 visible ASCII characters without spaces, not {namespace:?}"
            ));
        }
        if self.cache_url.is_some() && self.database_url.is_none() {
            return Err("`cache_url` (PLUGWATCH_CACHE_URL, --cache) needs `database_url`: Redis is shared by the \
                        replicas of one PostgreSQL database, and SQLite has one process"
                .into());
        }
        self.shared_cache()?;
        let t = &self.telemetry;
        for (name, value) in [
            ("telemetry.flush_interval_secs", t.flush_interval_secs),
            ("telemetry.host_interval_secs", t.host_interval_secs),
            ("telemetry.prune_interval_secs", t.prune_interval_secs),
            ("cluster.leader_check_secs", self.cluster.leader_check_secs),
            ("cluster.peers_secs", self.cluster.peers_secs),
            ("cluster.poll_secs", self.cluster.poll_secs),
            ("cluster.cache_ttl_secs", self.cluster.cache_ttl_secs),
        ] {
            if value == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        if self.http.max_body_bytes < 1024 || self.http.max_upload_bytes < 1024 {
            return Err("`http.max_body_bytes` and `http.max_upload_bytes` must be at least 1024".into());
        }
        let h = &self.http;
        for (name, value) in [
            ("http.header_timeout_secs", h.header_timeout_secs),
            ("http.body_timeout_secs", h.body_timeout_secs),
            ("http.keep_alive_secs", h.keep_alive_secs),
            ("http.max_connections", h.max_connections as u64),
        ] {
            if value == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        if h.keep_alive_secs > h.header_timeout_secs {
            return Err(
                "`http.keep_alive_secs` must be at most `http.header_timeout_secs` (the header timer also runs \
                        while a connection waits for its next request)"
                    .into(),
            );
        }
        if h.max_connections > 1 << 20 {
            return Err("`http.max_connections` must be at most 1048576".into());
        }
        if self.runtime.max_instances == 0 || self.runtime.max_in_flight == 0 {
            return Err("`runtime.max_instances` and `runtime.max_in_flight` must be at least 1".into());
        }
        let a = &self.access;
        if a.session_idle_minutes == 0 || a.session_absolute_hours == 0 || a.lockout_threshold == 0 {
            return Err("`access.session_idle_minutes`, `access.session_absolute_hours` and `access.lockout_threshold` must be at least 1".into());
        }
        if self.runtime.guest_threads == 0 {
            return Err("`runtime.guest_threads` must be at least 1".into());
        }
        if self.runtime.pool_idle_after_secs == 0 {
            return Err("`runtime.pool_idle_after_secs` must be at least 1 (seconds without an invocation before a plugin's pool empties)".into());
        }
        if self.runtime.keep_resident_bytes as u64 > self.runtime.max_memory_bytes {
            return Err(format!(
                "`runtime.keep_resident_bytes` ({}) must not exceed `runtime.max_memory_bytes` ({}): no slot is larger",
                self.runtime.keep_resident_bytes, self.runtime.max_memory_bytes
            ));
        }
        if !(0..=19).contains(&self.runtime.guest_nice) {
            return Err("`runtime.guest_nice` must be between 0 and 19".into());
        }
        if self.runtime.max_memory_bytes < 64 << 10 {
            return Err("`runtime.max_memory_bytes` must be at least 65536 (one page)".into());
        }
        let al = &self.alerts;
        for (name, value) in [
            ("alerts.interval_secs", al.interval_secs),
            ("alerts.max_attempts", u64::from(al.max_attempts)),
            ("alerts.retry_base_ms", al.retry_base_ms),
            ("alerts.retry_max_secs", al.retry_max_secs),
            ("alerts.send_timeout_ms", al.send_timeout_ms),
            ("alerts.failing_after", u64::from(al.failing_after)),
            ("alerts.history_retention_days", al.history_retention_days),
            ("alerts.delivery_retention_days", al.delivery_retention_days),
        ] {
            if value == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        if al.interval_secs > 3600 {
            return Err("`alerts.interval_secs` must be at most 3600".into());
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("`public_url` must start with http:// or https://, not `{url}`"));
        }
        self.key_source()?;
        Ok(())
    }

    /// Opens the configured database: PostgreSQL at `database_url`, else SQLite in the data directory;
    /// reading through `cache`, if given.
    pub async fn open_store(
        &self,
        cache: Option<&Arc<plugwatch_cache::Redis>>,
    ) -> Result<plugwatch_store::Store, crate::ServerError> {
        let keys = self.key_source().map_err(crate::ServerError::Config)?;
        let store = match &self.database_url {
            Some(url) => plugwatch_store::Store::connect(url.expose(), &self.data_dir, keys)
                .await?
                .with_replica(&self.replica_id()),
            None => plugwatch_store::Store::open_with(&self.data_dir, keys).await?,
        };
        Ok(match cache {
            Some(cache) => store.with_cache(cache.clone(), Duration::from_secs(self.cluster.cache_ttl_secs)),
            None => store,
        })
    }

    /// The shared cache at `cache_url`, if one is configured (it connects on first use). A URL that is not
    /// Redis's is refused, saying what is expected.
    pub fn shared_cache(&self) -> Result<Option<Arc<plugwatch_cache::Redis>>, String> {
        let Some(url) = &self.cache_url else { return Ok(None) };
        let cache = plugwatch_cache::Redis::new(url.expose(), &self.cluster.cache_namespace)
            .map_err(|e| format!("`cache_url` (PLUGWATCH_CACHE_URL, --cache): {e}"))?;
        Ok(Some(Arc::new(cache)))
    }

    /// The key that encrypts secrets at rest: `secret_key`, else the key in `secret_key_file`, else the
    /// data directory's own key file. A malformed key is refused, naming the setting and what is wrong.
    pub fn key_source(&self) -> Result<plugwatch_store::KeySource, String> {
        use plugwatch_store::{KeySource, SecretKey};
        if let Some(key) = &self.secret_key {
            let key = SecretKey::parse(key.expose())
                .map_err(|reason| format!("`secret_key` (PLUGWATCH_SECRET_KEY) is not a valid key: {reason}"))?;
            return Ok(KeySource::Configured { key, origin: "secret_key (PLUGWATCH_SECRET_KEY)".into() });
        }
        if let Some(path) = &self.secret_key_file {
            let key = SecretKey::read_file(path)
                .map_err(|e| format!("`secret_key_file` (PLUGWATCH_SECRET_KEY_FILE): {e}"))?;
            return Ok(KeySource::Configured { key, origin: format!("secret_key_file {}", path.display()) });
        }
        Ok(KeySource::DataDir)
    }

    pub fn runtime_config(&self) -> plugwatch_runtime::RuntimeConfig {
        let r = &self.runtime;
        plugwatch_runtime::RuntimeConfig {
            meter_instructions: r.meter_instructions,
            max_instances: r.max_instances,
            max_in_flight: r.max_in_flight,
            max_memory_bytes: r.max_memory_bytes,
            max_plugin_bytes: r.max_plugin_bytes,
            prewarm_instances: r.prewarm_instances,
            pool_idle_after: std::time::Duration::from_secs(r.pool_idle_after_secs),
            pool_memory_budget_bytes: r.pool_memory_budget_bytes,
            keep_resident_bytes: r.keep_resident_bytes,
            reset_dirty_pages_only: r.reset_dirty_pages_only,
            guest_threads: r.guest_threads,
            guest_nice: r.guest_nice,
            cache_dir: Some(self.cache_dir.clone().unwrap_or_else(|| self.data_dir.join("compiled"))),
            ..plugwatch_runtime::RuntimeConfig::default()
        }
    }
}

/// A setting that must never be printed: its `Debug` says only whether it is set.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
