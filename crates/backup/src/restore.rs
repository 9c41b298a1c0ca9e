//! Restoring an archive into a data directory: all of it or nothing, whenever the process stops.
//!
//! [`stage`] touches no live data: it checks the versions (a newer archive is refused naming both), unpacks
//! and verifies every member into `<data dir>/.restore/`, and opens the staged database as the server
//! would — which runs the migrations of an older archive and checks the secret key — so a restore that
//! would not start is refused before anything changes. The caller may write to the staged database (the
//! audit entry of the restore belongs in the restored history) and takes its safety backup of the live
//! state; then [`Staged::commit`] closes it, fsyncs it and writes `restore.pending`, the point of no return.
//!
//! [`recover`], run before the database is opened (by `serve` and by the CLI), finishes a committed
//! restore: moves the staged artifacts in (content-addressed, so existing ones stay), removes the old
//! database's WAL files, renames the staged database over the live one, and removes the marker. Each
//! step is redone safely after a crash. Without a marker, a staging directory is an abandoned restore and
//! is removed: the data directory is then exactly the old state.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use plugwatch_store::{KEY_FILE, KeySource, SecretKey, Store};
use serde::{Deserialize, Serialize};

use crate::{BackupError, DATABASE, Manifest, Result};

/// Where a restore is staged, inside the data directory (so that the final renames stay on one file system).
pub const STAGING: &str = ".restore";
/// Written, fsynced, once the staged state is complete: from then on the restore finishes.
pub const PENDING: &str = "restore.pending";

/// What a restore restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The archive's id (its file name).
    pub archive: String,
    /// When the archive was taken (Unix seconds).
    pub created_at: u64,
    /// The schema the archive was at, and the one it was migrated to.
    pub schema_from: i64,
    pub schema_to: i64,
    /// Rows per kind of data in the restored database.
    pub counts: BTreeMap<String, i64>,
    pub artifacts: usize,
    /// The backup of the state it replaced, when there was one.
    pub safety_backup: Option<String>,
}

/// A restore unpacked, verified and opened, not yet committed: dropping it changes nothing live (the
/// staging directory is removed by the next [`stage`] or [`recover`]).
pub struct Staged {
    store: Store,
    data_dir: PathBuf,
    restored: Restored,
}

impl Staged {
    /// The staged (restored) database, open.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// Gives the restore up: closes the staged database and removes the staging directory.
    pub async fn abandon(self) -> Result<()> {
        self.store.close().await;
        remove_staging(&self.data_dir.join(STAGING))
    }

    /// Closes the staged database and commits the restore: once this returns, [`recover`] finishes it.
    pub async fn commit(self, safety_backup: Option<String>) -> Result<Restored> {
        let Staged { store, data_dir, mut restored } = self;
        restored.safety_backup = safety_backup;
        store.close().await;
        let staging = data_dir.join(STAGING);
        File::open(staging.join(DATABASE))?.sync_all()?;
        File::open(&staging)?.sync_all()?;
        let marker = data_dir.join(PENDING);
        let partial = data_dir.join(format!("{PENDING}.partial"));
        let mut file = File::create(&partial)?;
        serde_json::to_writer(&mut file, &restored).map_err(std::io::Error::other)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&partial, &marker)?;
        File::open(&data_dir)?.sync_all()?;
        Ok(restored)
    }
}

/// The product version this build is.
fn product_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Refuses an archive from a newer plugwatch (product or schema), naming both.
pub fn check_compatible(manifest: &Manifest) -> Result<()> {
    let ours = semver::Version::parse(product_version()).expect("the crate version is semver");
    let theirs = semver::Version::parse(&manifest.product_version).ok();
    let newer_product = theirs.as_ref().is_none_or(|v| *v > ours);
    let schema = plugwatch_store::latest_schema_version();
    if newer_product || manifest.schema_version > schema {
        return Err(BackupError::Newer {
            theirs: manifest.product_version.clone(),
            their_schema: manifest.schema_version,
            ours: product_version().to_owned(),
            our_schema: schema,
        });
    }
    Ok(())
}

/// Unpacks, verifies and opens `archive` (named `id`) for a restore into `data_dir`, whose live state is
/// not touched. `keys` is the key configuration the server runs with.
pub async fn stage(archive: &Path, id: &str, data_dir: &Path, keys: KeySource) -> Result<Staged> {
    if data_dir.join(PENDING).exists() {
        return Err(BackupError::RestorePending(data_dir.to_owned()));
    }
    let manifest = crate::archive::inspect(archive)?;
    check_compatible(&manifest)?;
    let staging = data_dir.join(STAGING);
    remove_staging(&staging)?;
    std::fs::create_dir_all(&staging)?;
    let staged = stage_into(archive, id, data_dir, &staging, manifest, keys).await;
    if staged.is_err() {
        remove_staging(&staging)?;
    }
    staged
}

async fn stage_into(
    archive: &Path,
    id: &str,
    data_dir: &Path,
    staging: &Path,
    manifest: Manifest,
    keys: KeySource,
) -> Result<Staged> {
    let verified = crate::archive::extract(archive, staging).await?;
    let keys = match keys {
        KeySource::DataDir => match (data_dir.join(KEY_FILE), &manifest.secret_key_id) {
            (file, _) if file.exists() => {
                KeySource::Configured { key: SecretKey::read_file(&file)?, origin: file.display().to_string() }
            }
            (file, Some(id)) => return Err(BackupError::NoKey { key_id: id.clone(), key_file: file }),
            (_, None) => KeySource::None,
        },
        other => other,
    };
    let store = Store::open_with(staging, keys).await?;
    let counts = match store.counts().await {
        Ok(counts) => counts,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    let restored = Restored {
        archive: id.to_owned(),
        created_at: manifest.created_at,
        schema_from: manifest.schema_version,
        schema_to: plugwatch_store::latest_schema_version(),
        counts,
        artifacts: verified.manifest.members.len().saturating_sub(1),
        safety_backup: None,
    };
    Ok(Staged { store, data_dir: data_dir.to_owned(), restored })
}

fn remove_staging(staging: &Path) -> Result<()> {
    match std::fs::remove_dir_all(staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Finishes a committed restore, or removes an abandoned one. Run it with the database closed, before
/// opening it. Returns what a finished restore restored.
pub fn recover(data_dir: &Path) -> Result<Option<Restored>> {
    let staging = data_dir.join(STAGING);
    let marker = data_dir.join(PENDING);
    let _ = std::fs::remove_file(data_dir.join(format!("{PENDING}.partial")));
    if !marker.exists() {
        remove_staging(&staging)?;
        return Ok(None);
    }
    let restored: Restored = serde_json::from_slice(&std::fs::read(&marker)?)
        .map_err(|e| BackupError::Io(std::io::Error::other(format!("{}: {e}", marker.display()))))?;
    // Artifacts first: the restored database references them.
    let artifacts = data_dir.join("artifacts");
    if let Ok(entries) = std::fs::read_dir(staging.join("artifacts")) {
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let shard = artifacts.join(name.get(..2).unwrap_or("__"));
            std::fs::create_dir_all(&shard)?;
            let target = shard.join(&name);
            if target.exists() {
                std::fs::remove_file(entry.path())?;
            } else {
                std::fs::rename(entry.path(), &target)?;
            }
            File::open(&shard)?.sync_all()?;
        }
    }
    let staged_db = staging.join(DATABASE);
    if staged_db.exists() {
        // The old database's WAL would otherwise be read as the new one's.
        for suffix in ["-wal", "-shm"] {
            match std::fs::remove_file(data_dir.join(format!("{DATABASE}{suffix}"))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        std::fs::rename(&staged_db, data_dir.join(DATABASE))?;
        File::open(data_dir)?.sync_all()?;
    }
    remove_staging(&staging)?;
    std::fs::remove_file(&marker)?;
    File::open(data_dir)?.sync_all()?;
    Ok(Some(restored))
}

/// The data directory's lock file: held by `serve` for as long as it runs, so that a restore from the
/// command line cannot swap a database out from under a running server.
pub const LOCK: &str = "plugwatch.lock";

/// A data directory held by this process (released when dropped, or when the process dies).
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] File);

/// Takes the data directory's lock, or fails with [`BackupError::Locked`] when another process holds it.
pub fn lock(data_dir: &Path) -> Result<DataDirLock> {
    std::fs::create_dir_all(data_dir)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join(LOCK))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Locked(data_dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}
