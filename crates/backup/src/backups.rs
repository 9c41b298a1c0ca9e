//! The backups of one data directory: where they go (a local directory, or S3-compatible storage), the
//! schedule and the retention policy, and what the last scheduled backup did. The server runs the
//! schedule under its shutdown signal and audits; the CLI uses the same calls.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_store::{KeySource, Store};
use serde::{Deserialize, Serialize};

use crate::s3::{S3, S3Config};
use crate::{BackupError, BackupInfo, Reason, Restored, Result, archive, restore};

/// How soon a failed scheduled backup is tried again (sooner if the interval is shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// The `[backup]` settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Take backups on the schedule (on demand ones work either way).
    pub enabled: bool,
    /// Seconds between scheduled backups.
    pub interval_secs: u64,
    /// Seconds after a start before the first scheduled backup, when there is none yet.
    pub first_after_secs: u64,
    /// Retention: keep at least the newest `keep_last` backups…
    pub keep_last: u32,
    /// …and every backup younger than `keep_days` days; delete the rest. Backups taken on demand are kept
    /// until deleted; the newest backup is never deleted by retention.
    pub keep_days: u32,
    /// Where archives go [default: `<data_dir>/backups`]. Ignored when `s3` is set.
    pub dir: Option<PathBuf>,
    /// Keep archives in S3-compatible object storage instead (credentials from the environment).
    pub s3: Option<S3Config>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            enabled: true,
            interval_secs: 86_400,
            first_after_secs: 60,
            keep_last: 7,
            keep_days: 30,
            dir: None,
            s3: None,
        }
    }
}

impl BackupConfig {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.interval_secs < 60 {
            return Err(format!("backup.interval_secs must be at least 60 (got {})", self.interval_secs));
        }
        if self.keep_last == 0 {
            return Err("backup.keep_last must be at least 1".into());
        }
        if let Some(s3) = &self.s3 {
            s3.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Where archives are kept.
enum Destination {
    Local(PathBuf),
    S3 { client: S3, describe: String },
}

/// What the schedule did last, for the API, the dashboard and the "backup failing" alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleStatus {
    pub last_success_at: Option<u64>,
    pub last_failure_at: Option<u64>,
    pub last_error: Option<String>,
    /// Scheduled backups that failed since the last one that succeeded.
    pub consecutive_failures: u32,
    pub next_due_at: Option<u64>,
}

/// The backups of one data directory.
pub struct Backups {
    data_dir: PathBuf,
    config: BackupConfig,
    destination: Destination,
    status: Mutex<ScheduleStatus>,
    /// One backup or restore at a time.
    busy: tokio::sync::Mutex<()>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Backups {
    /// Opens the destination (creating a local one) and removes what a backup that died part-way left.
    pub fn open(data_dir: &Path, config: BackupConfig) -> Result<Backups> {
        let destination = match &config.s3 {
            Some(s3) => Destination::S3 { client: S3::new(s3)?, describe: s3.describe() },
            None => {
                let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("backups"));
                std::fs::create_dir_all(&dir)?;
                Destination::Local(dir)
            }
        };
        let backups = Backups {
            data_dir: data_dir.to_owned(),
            config,
            destination,
            status: Mutex::default(),
            busy: tokio::sync::Mutex::new(()),
        };
        let swept = archive::sweep(&backups.work_dir())?;
        if swept > 0 {
            tracing::info!(message = "Removed what an interrupted backup left.", files = swept);
        }
        Ok(backups)
    }

    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// `local:/path` or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.destination {
            Destination::Local(dir) => format!("local:{}", dir.display()),
            Destination::S3 { describe, .. } => describe.clone(),
        }
    }

    /// Where archives are written before they are complete (the destination itself when local).
    fn work_dir(&self) -> PathBuf {
        match &self.destination {
            Destination::Local(dir) => dir.clone(),
            Destination::S3 { .. } => self.data_dir.join(".backup-upload"),
        }
    }

    /// Takes a backup now.
    pub async fn create(&self, store: &Store, reason: Reason) -> Result<BackupInfo> {
        let _busy = self.busy.lock().await;
        self.create_locked(store, reason).await
    }

    async fn create_locked(&self, store: &Store, reason: Reason) -> Result<BackupInfo> {
        let artifacts = self.data_dir.join("artifacts");
        if store.is_shared() && artifacts.is_dir() {
            // On PostgreSQL another replica may have stored components this data directory lacks; the
            // archive takes them from here.
            store.cache_shared_artifacts(&plugwatch_store::Artifacts::new(&self.data_dir)?).await?;
        }
        let work = self.work_dir();
        let taken = match &self.destination {
            Destination::Local(_) => Vec::new(),
            Destination::S3 { client, .. } => client.list().await?.into_iter().map(|(id, _)| id).collect(),
        };
        let info = archive::create(store, &self.data_dir.join("artifacts"), &work, reason, &taken).await?;
        if let Destination::S3 { client, .. } = &self.destination {
            let local = work.join(&info.id);
            let uploaded = client.upload(&local, &info.id).await;
            std::fs::remove_file(&local)?;
            uploaded?;
        }
        tracing::info!(message = "Took a backup.", id = %info.id, bytes = info.size, reason = reason.as_str());
        Ok(info)
    }

    /// Every complete backup, newest first.
    pub async fn list(&self) -> Result<Vec<BackupInfo>> {
        match &self.destination {
            Destination::Local(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || archive::list(&dir))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?
            }
            Destination::S3 { client, .. } => {
                let mut out = Vec::new();
                for (id, size) in client.list().await? {
                    let head = client.head_bytes(&id, 4 << 20).await?;
                    let manifest = archive::inspect_reader(&head[..], Path::new(&id))?;
                    out.push(BackupInfo { id, size, manifest });
                }
                crate::newest_first(&mut out);
                Ok(out)
            }
        }
    }

    /// One backup, by id.
    pub async fn get(&self, id: &str) -> Result<BackupInfo> {
        check_id(id)?;
        match &self.destination {
            // One manifest read, not every archive's.
            Destination::Local(dir) => {
                let path = dir.join(id);
                let size = match std::fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BackupError::NotFound(id.to_owned()));
                    }
                    other => other?.len(),
                };
                let manifest = tokio::task::spawn_blocking(move || archive::inspect(&path))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                Ok(BackupInfo { id: id.to_owned(), size, manifest })
            }
            Destination::S3 { .. } => {
                self.list().await?.into_iter().find(|b| b.id == id).ok_or_else(|| BackupError::NotFound(id.to_owned()))
            }
        }
    }

    /// A local file holding the archive: the archive itself when local, else a download that is removed
    /// when the returned guard drops.
    pub async fn fetch(&self, id: &str) -> Result<Fetched> {
        check_id(id)?;
        match &self.destination {
            Destination::Local(dir) => {
                let path = dir.join(id);
                if !path.exists() {
                    return Err(BackupError::NotFound(id.to_owned()));
                }
                Ok(Fetched { path, _temp: None })
            }
            Destination::S3 { client, .. } => {
                let dir = self.data_dir.join(".backup-download");
                std::fs::create_dir_all(&dir)?;
                let temp = tempfile::Builder::new().prefix(".download-").tempdir_in(&dir)?;
                let path = temp.path().join(id);
                client.download(id, &path).await.map_err(|e| match e {
                    crate::s3::S3Error::NotFound { .. } => BackupError::NotFound(id.to_owned()),
                    other => other.into(),
                })?;
                Ok(Fetched { path, _temp: Some(temp) })
            }
        }
    }

    /// Checks a backup whole (every checksum, the database's integrity).
    pub async fn verify(&self, id: &str) -> Result<archive::Verified> {
        let fetched = self.fetch(id).await?;
        archive::verify(&fetched.path, &self.data_dir).await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        match &self.destination {
            Destination::Local(dir) => match std::fs::remove_file(dir.join(id)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BackupError::NotFound(id.to_owned())),
                other => {
                    other?;
                    std::fs::File::open(dir)?.sync_all()?;
                    Ok(())
                }
            },
            Destination::S3 { client, .. } => client.delete(id).await.map_err(|e| match e {
                crate::s3::S3Error::NotFound { .. } => BackupError::NotFound(id.to_owned()),
                other => other.into(),
            }),
        }
    }

    /// Deletes what the retention policy says to (see [`retained`]); returns the ids deleted.
    pub async fn prune(&self, now: SystemTime) -> Result<Vec<String>> {
        let all = self.list().await?;
        let (_, delete) = retained(&all, &self.config, now);
        for id in &delete {
            self.delete(id).await?;
            tracing::info!(message = "Deleted a backup past its retention.", id = %id);
        }
        Ok(delete)
    }

    /// When the next scheduled backup is due: one interval after the newest scheduled backup (so the
    /// schedule survives restarts), or `first` when there is none yet; after a failure,
    /// [`RETRY_AFTER_FAILURE`] (or one interval, if shorter) after it.
    pub async fn next_due(&self, first: SystemTime) -> SystemTime {
        // A destination that cannot be listed makes the next backup fail and say why: schedule it anyway.
        let newest =
            self.list().await.ok().and_then(|all| all.into_iter().find(|b| b.manifest.reason == Reason::Scheduled));
        let interval = Duration::from_secs(self.config.interval_secs);
        let mut due = newest.map_or(first, |b| UNIX_EPOCH + Duration::from_secs(b.manifest.created_at) + interval);
        let status = self.status();
        if let Some(failed) = status.last_failure_at.filter(|_| status.consecutive_failures > 0) {
            // The one that failed was due already: retry a while after the failure.
            due = UNIX_EPOCH + Duration::from_secs(failed) + interval.min(RETRY_AFTER_FAILURE);
        }
        self.status.lock().expect("status lock").next_due_at = Some(unix(due));
        due
    }

    /// Takes the scheduled backup and applies retention, recording the outcome in [`Backups::status`].
    pub async fn scheduled(&self, store: &Store, now: SystemTime) -> Result<BackupInfo> {
        let result: Result<BackupInfo> = async {
            let info = self.create(store, Reason::Scheduled).await?;
            self.prune(now).await?;
            Ok(info)
        }
        .await;
        let mut status = self.status.lock().expect("status lock");
        match &result {
            Ok(_) => {
                status.last_success_at = Some(unix(SystemTime::now()));
                status.consecutive_failures = 0;
                status.last_error = None;
            }
            Err(error) => {
                status.last_failure_at = Some(unix(SystemTime::now()));
                status.consecutive_failures += 1;
                status.last_error = Some(error.to_string());
            }
        }
        result
    }

    pub fn status(&self) -> ScheduleStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Restores backup `id` into this data directory, up to the point of no return (see [`restore`]):
    /// stages and checks it, takes a safety backup of `live` (the current state, when there is one),
    /// lets `audit` write to the staged database, and commits. The caller then finishes it with
    /// [`restore::recover`] once the live database is closed (the server restarts; the CLI does it at once).
    pub async fn restore<F, Fut>(&self, live: Option<&Store>, id: &str, keys: KeySource, audit: F) -> Result<Restored>
    where
        F: FnOnce(Store, &Restored) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let fetched = self.fetch(id).await?;
        self.restore_file(live, &fetched.path, id, keys, audit).await
    }

    /// [`Backups::restore`] from an archive file anywhere (`plugwatch backup restore FILE`).
    pub async fn restore_file<F, Fut>(
        &self,
        live: Option<&Store>,
        archive: &Path,
        id: &str,
        keys: KeySource,
        audit: F,
    ) -> Result<Restored>
    where
        F: FnOnce(Store, &Restored) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let _busy = self.busy.lock().await;
        let staged = restore::stage(archive, id, &self.data_dir, keys).await?;
        if let Some(target) = live.filter(|store| store.is_shared()) {
            return self.import_staged(target, staged, audit).await;
        }
        let prepared = async {
            let safety = match live {
                Some(store) => Some(self.create_locked(store, Reason::PreRestore).await?.id),
                None => None,
            };
            audit(staged.store().clone(), staged.restored()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, BackupError>(safety)
        }
        .await;
        match prepared {
            Ok(safety) => staged.commit(safety).await,
            Err(error) => {
                staged.abandon().await?;
                Err(error)
            }
        }
    }
}

impl Backups {
    /// A staged restore written into a PostgreSQL database (every replica stopped): a safety backup of
    /// what it holds, the audit entry into the staged copy, then every row and component replaced in one
    /// transaction. The staged copy went through the same checks as for SQLite (checksums, integrity,
    /// versions, the key, the migrations).
    async fn import_staged<F, Fut>(&self, target: &Store, staged: restore::Staged, audit: F) -> Result<Restored>
    where
        F: FnOnce(Store, &Restored) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let imported = async {
            let safety = self.create_locked(target, Reason::PreRestore).await?.id;
            audit(staged.store().clone(), staged.restored()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
            // Closing checkpoints the staged file: the import reads the file alone.
            staged.store().close().await;
            let file = self.data_dir.join(restore::STAGING).join(crate::DATABASE);
            target.import_backup(&file, &self.data_dir.join(restore::STAGING).join("artifacts")).await?;
            Ok::<_, BackupError>(Restored { safety_backup: Some(safety), ..staged.restored().clone() })
        }
        .await;
        staged.abandon().await?;
        imported
    }
}

/// A local copy of an archive.
pub struct Fetched {
    pub path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

fn check_id(id: &str) -> Result<()> {
    if archive::is_archive_name(id) { Ok(()) } else { Err(BackupError::NotFound(id.to_owned())) }
}

/// Splits `all` (newest first) into the ids retention keeps and those it deletes. Backups taken on
/// demand are always kept; of the others, a backup is kept when it is among the newest `keep_last` or
/// younger than `keep_days`; the newest backup is always kept.
pub fn retained(all: &[BackupInfo], config: &BackupConfig, now: SystemTime) -> (Vec<String>, Vec<String>) {
    let max_age = u64::from(config.keep_days) * 86_400;
    let now = unix(now);
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    let mut counted = 0;
    for (i, backup) in all.iter().enumerate() {
        let on_demand = backup.manifest.reason == Reason::Manual;
        let young = now.saturating_sub(backup.manifest.created_at) < max_age;
        let within_count = !on_demand && counted < config.keep_last;
        if !on_demand {
            counted += 1;
        }
        if i == 0 || on_demand || within_count || young {
            keep.push(backup.id.clone());
        } else {
            delete.push(backup.id.clone());
        }
    }
    (keep, delete)
}
