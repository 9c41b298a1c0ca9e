//! The plugin registry: which plugins exist, which version of each is active and enabled, which hooks they
//! subscribe to; loading them into the runtime; running one plugin or a whole hook (a filter chain or a set
//! of actions) and recording every invocation into telemetry.
//!
//! Reads (every invocation) go through an immutable snapshot swapped atomically on change, so the hot path
//! takes no lock; changes are serialised and written to the store before they become visible.
//!
//! Opening the registry reads the store only; the stored plugins are then compiled and loaded by
//! [`Registry::load_all`] while the server already answers (an entry is [`Loaded::Loading`] until then, and
//! invoking it is [`RegistryError::Loading`], not "unknown").
//!
//! With several replicas on one database, each change is announced to the others, which re-read the
//! plugin ([`Registry::sync`]); a component another replica uploaded is fetched from the database once and
//! kept in the data directory.

mod dispatch;
mod manifest;
mod persist;
mod series;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use plugwatch_runtime::{Invocation, LoadError, LoadOptions, Plugin, Runtime};
use plugwatch_store::{Artifacts, FailurePolicy, PluginRecord, SecretValue, Store, StoreError, Stored, VersionRecord};
use plugwatch_telemetry::{Series, Telemetry};

pub use dispatch::{HookMode, HookOutcome, HookRun};
pub use manifest::{Manifest, validate_hook_name, validate_plugin_name};
pub use series::{MAX_POINTS, Point, SeriesData};

/// Why a registry operation failed. The HTTP layer maps each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no plugin named `{0}`")]
    UnknownPlugin(String),
    #[error("plugin `{plugin}` has no version `{version}`")]
    UnknownVersion { plugin: String, version: String },
    #[error("plugin `{0}` is disabled")]
    Disabled(String),
    #[error("plugin `{name}` could not be loaded: {reason}")]
    NotLoaded { name: String, reason: String },
    #[error("plugin `{0}` is still loading; retry shortly")]
    Loading(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid hook: {0}")]
    InvalidHook(String),
    #[error("the component was refused: {0}")]
    Rejected(#[from] LoadError),
    #[error("plugin `{plugin}` version `{version}` already exists with a different component (sha256 {existing})")]
    VersionConflict { plugin: String, version: String, existing: String },
    #[error("plugin `{0}` has no previous version to roll back to")]
    NoPreviousVersion(String),
    #[error("the server is shutting down")]
    Draining,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownPlugin(name) => RegistryError::UnknownPlugin(name),
            StoreError::UnknownVersion { plugin, version } => RegistryError::UnknownVersion { plugin, version },
            StoreError::VersionConflict { plugin, version, existing } => {
                RegistryError::VersionConflict { plugin, version, existing }
            }
            StoreError::NoPreviousVersion(name) => RegistryError::NoPreviousVersion(name),
            other => RegistryError::Store(other),
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How a plugin change is named to the other replicas (`registry:<plugin>`, see [`Store::announce`]).
pub const REGISTRY_CHANGE: &str = "registry:";

/// How a replica tells the others it flushed telemetry, so that they read it at once rather than at
/// their next periodic read: the live figures on every replica follow within moments of each flush.
pub const TELEMETRY_CHANGE: &str = "telemetry";

/// A plugin as the registry sees it now.
#[derive(Clone)]
pub struct Entry {
    pub record: PluginRecord,
    /// The active version, when there is one.
    pub active: Option<Active>,
}

/// The active version of a plugin and its loaded component (or why it could not be loaded).
#[derive(Clone)]
pub struct Active {
    pub version: VersionRecord,
    pub loaded: Loaded,
    pub series: Arc<Series>,
}

impl Active {
    /// Runs the loaded component once and records the invocation into this version's series: the one
    /// path every invocation takes (a direct invoke, a filter chain, actions), so every outcome is recorded
    /// exactly once. `None` when the component is not loaded.
    pub async fn invoke(&self, hook: &str, input: &[u8]) -> Option<Invocation> {
        let record = self.loaded.plugin()?.invoke(hook, input).await;
        self.series.record(hook, &record);
        Some(record)
    }
}

/// Where an active version's component stands.
#[derive(Clone)]
pub enum Loaded {
    /// Stored, not compiled and loaded yet (the server is starting).
    Loading,
    Ready(Plugin),
    /// It could not be loaded; why.
    Failed(String),
}

impl Loaded {
    pub fn plugin(&self) -> Option<&Plugin> {
        match self {
            Loaded::Ready(plugin) => Some(plugin),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Loaded::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    fn from_result(result: std::result::Result<Plugin, String>) -> Self {
        result.map_or_else(Loaded::Failed, Loaded::Ready)
    }
}

impl Entry {
    /// `running`, `disabled`, `loading` (at startup), `failed` (could not load) or `empty` (no version).
    pub fn status(&self) -> &'static str {
        match &self.active {
            None => "empty",
            Some(a) if matches!(a.loaded, Loaded::Loading) => "loading",
            Some(a) if a.loaded.error().is_some() => "failed",
            Some(_) if !self.record.enabled => "disabled",
            Some(_) => "running",
        }
    }
}

#[derive(Default)]
struct Snapshot {
    plugins: BTreeMap<String, Arc<Entry>>,
    /// Enabled subscribers per hook that are loaded or still loading, in run order (priority, then name).
    hooks: HashMap<String, Vec<(i32, Arc<Entry>)>>,
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    store: Store,
    artifacts: Artifacts,
    telemetry: Arc<Telemetry>,
    snapshot: ArcSwap<Snapshot>,
    changes: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    /// What a failed telemetry flush did not write, for the next one.
    unwritten: tokio::sync::Mutex<Option<plugwatch_telemetry::Flush>>,
    /// Plugins whose component is being compiled and loaded right now (by name, with how many loads).
    in_progress: Mutex<BTreeMap<String, usize>>,
    /// What the other replicas flushed of the live window (`persist.rs`).
    peers: tokio::sync::Mutex<persist::PeerRows>,
}

/// Marks a plugin as being loaded for as long as it lives (a cancelled load unmarks it too).
struct InProgress<'a> {
    registry: &'a Registry,
    name: String,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut loads = self.registry.inner.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = loads.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                loads.remove(&self.name);
            }
        }
    }
}

/// What an upload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    /// False when the same name, version and component were already stored.
    pub created: bool,
    pub active: bool,
}

impl Registry {
    /// Reads every plugin from the store, without compiling anything: a plugin with an active version is
    /// [`Loaded::Loading`] until [`Registry::load_all`] has loaded it.
    pub async fn open(runtime: Runtime, store: Store, artifacts: Artifacts, telemetry: Arc<Telemetry>) -> Result<Self> {
        let registry = Registry {
            inner: Arc::new(Inner {
                runtime,
                store,
                artifacts,
                telemetry,
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                changes: tokio::sync::Mutex::new(()),
                draining: AtomicBool::new(false),
                unwritten: tokio::sync::Mutex::new(None),
                in_progress: Mutex::new(BTreeMap::new()),
                peers: Default::default(),
            }),
        };
        let mut plugins = BTreeMap::new();
        for record in registry.inner.store.plugins().await? {
            let active = match &record.active_version {
                Some(version) => {
                    let version = registry.inner.store.version(&record.name, version).await?;
                    let series = registry.inner.telemetry.series(&record.name, &version.version);
                    Some(Active { version, loaded: Loaded::Loading, series })
                }
                None => None,
            };
            plugins.insert(record.name.clone(), Arc::new(Entry { record, active }));
        }
        registry.publish(plugins);
        Ok(registry)
    }

    /// Compiles and loads, one after the other, every plugin that is still [`Loaded::Loading`]. A plugin
    /// whose component no longer loads is kept with status `failed` and the reason, rather than stopping the
    /// server. A plugin changed meanwhile (another version activated) keeps the change. Cancel-safe: dropping
    /// the future leaves the remaining plugins loading.
    pub async fn load_all(&self) {
        let waiting: Vec<(String, VersionRecord)> = self
            .inner
            .snapshot
            .load()
            .plugins
            .values()
            .filter_map(|e| match &e.active {
                Some(Active { loaded: Loaded::Loading, version, .. }) => Some((e.record.name.clone(), version.clone())),
                _ => None,
            })
            .collect();
        for (name, version) in waiting {
            let loaded = {
                let _loading = self.mark_in_progress(&name);
                self.load_version(&name, &version).await
            };
            let _guard = self.inner.changes.lock().await;
            let mut plugins = self.inner.snapshot.load().plugins.clone();
            let Some(current) = plugins.get(&name) else { continue };
            let Some(active) = current
                .active
                .as_ref()
                .filter(|a| matches!(a.loaded, Loaded::Loading) && a.version.version == version.version)
            else {
                continue;
            };
            let active = Active { loaded: Loaded::from_result(loaded), ..active.clone() };
            let entry = Entry { record: current.record.clone(), active: Some(active) };
            plugins.insert(name, Arc::new(entry));
            self.publish(plugins);
        }
    }

    /// Plugins being loaded right now, or waiting to be: at startup every stored plugin until it is loaded,
    /// later an upload's plugin while its component compiles.
    pub fn loading(&self) -> Vec<String> {
        let mut names: BTreeSet<String> =
            self.inner.in_progress.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for entry in self.inner.snapshot.load().plugins.values() {
            if entry.active.as_ref().is_some_and(|a| matches!(a.loaded, Loaded::Loading)) {
                names.insert(entry.record.name.clone());
            }
        }
        names.into_iter().collect()
    }

    fn mark_in_progress(&self, name: &str) -> InProgress<'_> {
        *self.inner.in_progress.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_default() += 1;
        InProgress { registry: self, name: name.to_owned() }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// From now on, refuse new invocations (in-flight ones finish).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Every plugin, by name.
    pub fn plugins(&self) -> Vec<Arc<Entry>> {
        self.inner.snapshot.load().plugins.values().cloned().collect()
    }

    pub fn plugin(&self, name: &str) -> Result<Arc<Entry>> {
        self.inner.snapshot.load().plugins.get(name).cloned().ok_or_else(|| RegistryError::UnknownPlugin(name.into()))
    }

    /// A plugin's stored versions, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        self.plugin(name)?;
        Ok(self.inner.store.versions(name).await?)
    }

    /// Validates and stores a new version. With `activate`, it becomes the active version (its plugin's
    /// first version always does).
    pub async fn upload(&self, manifest: Manifest, component: Vec<u8>, activate: bool) -> Result<Uploaded> {
        let new = manifest.validate(self.inner.runtime.config().max_memory_bytes)?;
        // Loading proves the component is acceptable before anything is stored.
        let options = LoadOptions {
            limits: new.limits.clone(),
            config: merged_config(&new.config, &new.secrets),
            expected_sha256: manifest.sha256.clone(),
            ..LoadOptions::default()
        };
        let plugin = {
            let _loading = self.mark_in_progress(&new.plugin);
            self.inner.runtime.load(component.clone(), options).await?
        };
        let _guard = self.inner.changes.lock().await;
        let sha256 = self.inner.artifacts.put(&component)?;
        debug_assert_eq!(sha256, plugin.sha256());
        // Where other replicas fetch it from, before any of them can hear of the version.
        self.inner.store.put_shared_artifact(&sha256, &component).await?;
        let new = plugwatch_store::NewVersion { sha256: sha256.clone(), size: component.len() as u64, ..new };
        // Storing and activating are one transaction: an upload is stored whole or not at all.
        let created = matches!(self.inner.store.insert_version(&new, activate).await?, Stored::Created { .. });
        self.reload(&new.plugin).await?;
        self.announce(&new.plugin).await;
        let entry = self.plugin(&new.plugin)?;
        let active = entry.active.as_ref().is_some_and(|a| a.version.version == new.version);
        Ok(Uploaded { plugin: new.plugin, version: new.version, sha256, created, active })
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let _guard = self.inner.changes.lock().await;
        self.inner.store.set_enabled(name, enabled).await?;
        self.reload(name).await?;
        self.announce(name).await;
        Ok(())
    }

    pub async fn activate(&self, name: &str, version: &str) -> Result<()> {
        let _guard = self.inner.changes.lock().await;
        self.inner.store.activate(name, version).await?;
        self.reload(name).await?;
        self.announce(name).await;
        Ok(())
    }

    /// Makes the previous version active again; returns it.
    pub async fn rollback(&self, name: &str) -> Result<String> {
        let _guard = self.inner.changes.lock().await;
        let version = self.inner.store.rollback(name).await?;
        self.reload(name).await?;
        self.announce(name).await;
        Ok(version)
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let _guard = self.inner.changes.lock().await;
        let unused = self.inner.store.delete_plugin(name).await?;
        for sha256 in unused {
            self.inner.artifacts.remove(&sha256)?;
            self.inner.store.remove_shared_artifact(&sha256).await?;
        }
        self.forget(name);
        self.announce(name).await;
        Ok(())
    }

    /// Drops a deleted plugin from memory: its entry and its telemetry.
    fn forget(&self, name: &str) {
        self.inner.telemetry.remove_plugin(name);
        let mut plugins = self.inner.snapshot.load().plugins.clone();
        plugins.remove(name);
        self.publish(plugins);
    }

    /// Tells the other replicas on the same database that a plugin changed. A lost announcement is not an
    /// error: they also re-read the registry periodically ([`Registry::sync`]).
    async fn announce(&self, name: &str) {
        if let Err(error) = self.inner.store.announce(&format!("{REGISTRY_CHANGE}{name}")).await {
            tracing::warn!(message = "Could not tell the other replicas of a plugin change.", plugin = %name, %error);
        }
    }

    /// Brings memory up to what the store holds, for changes another replica made: the plugin `only`
    /// (or every plugin) re-read, a changed one reloaded (its component compiled if its active version
    /// changed), a deleted one forgotten, a new one loaded. Returns the plugins that changed.
    pub async fn sync(&self, only: Option<&str>) -> Result<Vec<String>> {
        // The whole comparison under the changes lock: a local upload cannot publish between the reads.
        let _guard = self.inner.changes.lock().await;
        let stored: BTreeMap<String, PluginRecord> = match only {
            Some(name) => match self.inner.store.plugin(name).await {
                Ok(record) => BTreeMap::from([(record.name.clone(), record)]),
                Err(StoreError::UnknownPlugin(_)) => BTreeMap::new(),
                Err(error) => return Err(error.into()),
            },
            None => self.inner.store.plugins().await?.into_iter().map(|r| (r.name.clone(), r)).collect(),
        };
        let current = self.inner.snapshot.load().plugins.clone();
        let mut changed = Vec::new();
        let known: Vec<&String> = match only {
            Some(name) => current.keys().filter(|k| k.as_str() == name).collect(),
            None => current.keys().collect(),
        };
        for name in known {
            if !stored.contains_key(name) {
                self.forget(name);
                changed.push(name.clone());
            }
        }
        for (name, record) in &stored {
            if current.get(name).is_some_and(|entry| &entry.record == record) {
                continue;
            }
            self.reload(name).await?;
            changed.push(name.clone());
        }
        Ok(changed)
    }

    /// Runs one plugin's active version once and records the invocation.
    pub async fn invoke(&self, name: &str, hook: &str, input: &[u8]) -> Result<(Arc<Entry>, Invocation)> {
        if self.is_draining() {
            return Err(RegistryError::Draining);
        }
        let entry = self.plugin(name).map_err(|e| match e {
            RegistryError::UnknownPlugin(_) if self.is_in_progress(name) => RegistryError::Loading(name.into()),
            e => e,
        })?;
        let active = entry
            .active
            .as_ref()
            .ok_or_else(|| RegistryError::NotLoaded { name: name.into(), reason: "it has no version".into() })?;
        if !entry.record.enabled {
            return Err(RegistryError::Disabled(name.into()));
        }
        let record = match &active.loaded {
            Loaded::Ready(_) => active.invoke(hook, input).await.expect("a ready version runs"),
            Loaded::Loading => return Err(RegistryError::Loading(name.into())),
            Loaded::Failed(reason) => {
                return Err(RegistryError::NotLoaded { name: name.into(), reason: reason.clone() });
            }
        };
        Ok((entry.clone(), record))
    }

    /// Re-reads one plugin from the store, (re)loads its active version if it changed, and publishes.
    async fn reload(&self, name: &str) -> Result<()> {
        let record = self.inner.store.plugin(name).await?;
        let current = self.inner.snapshot.load().plugins.get(name).cloned();
        let entry = match current.as_deref() {
            // Same active version: keep the loaded component, update the flags.
            Some(Entry { active: Some(active), .. })
                if record.active_version.as_deref() == Some(active.version.version.as_str()) =>
            {
                Entry { record, active: Some(active.clone()) }
            }
            _ => self.build_entry(record).await?,
        };
        let mut plugins = self.inner.snapshot.load().plugins.clone();
        plugins.insert(name.to_owned(), Arc::new(entry));
        self.publish(plugins);
        Ok(())
    }

    fn is_in_progress(&self, name: &str) -> bool {
        self.inner.in_progress.lock().unwrap_or_else(|e| e.into_inner()).contains_key(name)
    }

    async fn build_entry(&self, record: PluginRecord) -> Result<Entry> {
        let Some(version) = record.active_version.clone() else {
            return Ok(Entry { record, active: None });
        };
        let version = self.inner.store.version(&record.name, &version).await?;
        let loaded = Loaded::from_result(self.load_version(&record.name, &version).await);
        let series = self.inner.telemetry.series(&record.name, &version.version);
        Ok(Entry { record, active: Some(Active { version, loaded, series }) })
    }

    /// Loads a stored version's component; a failure is logged and returned as the reason.
    async fn load_version(&self, name: &str, version: &VersionRecord) -> std::result::Result<Plugin, String> {
        let loaded = match self.artifact(&version.sha256).await {
            Ok(bytes) => {
                let options = LoadOptions {
                    limits: version.limits.clone(),
                    config: merged_config(&version.config, &version.secrets),
                    expected_sha256: Some(version.sha256.clone()),
                    ..LoadOptions::default()
                };
                self.inner.runtime.load(bytes, options).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = &loaded {
            tracing::error!(message = "Plugin failed to load.", plugin = %name, version = %version.version, %reason);
        }
        loaded
    }

    /// A component from the data directory or, when another replica stored it, from the database (then
    /// kept in the data directory, its hash checked).
    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>> {
        let local = self.inner.artifacts.get(sha256);
        if local.is_ok() || !self.inner.store.is_shared() {
            return Ok(local?);
        }
        let Some(bytes) = self.inner.store.shared_artifact(sha256).await? else { return Ok(local?) };
        if self.inner.artifacts.put(&bytes)? != sha256 {
            return Err(StoreError::BadArtifact(sha256.to_owned()).into());
        }
        Ok(bytes)
    }

    fn publish(&self, plugins: BTreeMap<String, Arc<Entry>>) {
        let mut hooks: HashMap<String, Vec<(i32, Arc<Entry>)>> = HashMap::new();
        for entry in plugins.values() {
            let Some(active) = &entry.active else { continue };
            if !entry.record.enabled || active.loaded.error().is_some() {
                continue;
            }
            for sub in &active.version.hooks {
                hooks.entry(sub.hook.clone()).or_default().push((sub.priority, entry.clone()));
            }
        }
        for subscribers in hooks.values_mut() {
            subscribers.sort_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| a.record.name.cmp(&b.record.name)));
        }
        self.inner.snapshot.store(Arc::new(Snapshot { plugins, hooks }));
    }

    fn subscribers(&self, hook: &str) -> Vec<(i32, Arc<Entry>)> {
        self.inner.snapshot.load().hooks.get(hook).cloned().unwrap_or_default()
    }

    /// Hooks with at least one enabled subscriber, with their subscriber count.
    pub fn hooks(&self) -> Vec<(String, usize)> {
        let snapshot = self.inner.snapshot.load();
        let mut hooks: Vec<_> = snapshot.hooks.iter().map(|(h, s)| (h.clone(), s.len())).collect();
        hooks.sort();
        hooks
    }
}

/// A plugin's failure policy, for callers that only hold an entry.
pub fn failure_policy(entry: &Entry) -> FailurePolicy {
    entry.active.as_ref().map(|a| a.version.failure_policy).unwrap_or_default()
}

/// What the plugin reads with `host.config`: its config and its secrets, opened.
fn merged_config(
    config: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretValue>,
) -> BTreeMap<String, String> {
    let secrets = secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_owned()));
    config.iter().map(|(k, v)| (k.clone(), v.clone())).chain(secrets).collect()
}
