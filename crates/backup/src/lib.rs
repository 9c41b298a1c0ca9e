//! plugwatch's backups. One archive per backup, `plugwatch-backup-<UTC time>.tar.zst`: a tar stream,
//! compressed with zstd, whose first member is `manifest.json` (format, product and schema versions,
//! creation time, why it was taken, the secret key's id, rows per kind of data, and the size and sha256
//! of every other member), then `plugwatch.db` (a consistent snapshot taken while the server keeps
//! serving: `VACUUM INTO`), then `artifacts/<sha256>.wasm` for each component the snapshot references,
//! and only those.
//!
//! `archive` writes, reads and checks one archive; `restore` swaps one into a data directory, all or
//! nothing; `backups` is the service over a destination (a local directory or S3-compatible storage, in
//! `s3`), with the schedule and retention. The secret key is not in an archive (secrets are in it sealed):
//! keep the key's own backup, as the README says; the manifest names the key id the secrets need.
//!
//! It knows nothing of HTTP or wasmtime; the database goes through the store.

pub mod archive;
pub mod backups;
pub mod restore;
pub mod s3;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use archive::{Verified, create, extract, inspect, list, verify};
pub use backups::{BackupConfig, Backups, ScheduleStatus};
pub use restore::{DataDirLock, Restored, Staged, lock, recover, stage};

/// The archive layout this code writes and reads.
pub const FORMAT: u32 = 1;
/// What archives are called: `plugwatch-backup-20261201T120000Z.tar.zst`.
pub const PREFIX: &str = "plugwatch-backup-";
pub const SUFFIX: &str = ".tar.zst";
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "plugwatch.db";

/// Why a backup was taken: retention deletes scheduled and safety backups, never those taken on demand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// On demand (API, CLI, dashboard).
    #[default]
    Manual,
    Scheduled,
    /// The state a restore replaced.
    PreRestore,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Manual => "manual",
            Reason::Scheduled => "scheduled",
            Reason::PreRestore => "pre_restore",
        }
    }
}

/// What a backup holds, written first in its archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub product_version: String,
    /// The newest database migration the snapshot has.
    pub schema_version: i64,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub reason: Reason,
    /// The id of the key the snapshot's secrets are sealed with (`None`: it holds no sealed secret).
    pub secret_key_id: Option<String>,
    /// Rows per kind of data in the snapshot.
    #[serde(default)]
    pub counts: BTreeMap<String, i64>,
    pub members: Vec<Member>,
}

/// One file in an archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A backup as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// The file name, which is also its id.
    pub id: String,
    /// Compressed size.
    pub size: u64,
    pub manifest: Manifest,
}

/// The directory a path is in (`.` for a bare name).
fn dir_of(path: &std::path::Path) -> PathBuf {
    path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), std::path::Path::to_owned)
}

/// Newest first, the order every listing uses: by creation time, then (within one second) by the counter
/// that an id of the same second carries (`…Z-2.tar.zst` after `…Z-1.tar.zst` after `…Z.tar.zst`).
fn newest_first(backups: &mut [BackupInfo]) {
    let counter = |id: &str| -> u32 {
        let stem = id.strip_suffix(SUFFIX).unwrap_or(id);
        stem.rsplit_once("Z-").and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
    };
    backups.sort_by(|a, b| {
        (b.manifest.created_at, counter(&b.id), &b.id).cmp(&(a.manifest.created_at, counter(&a.id), &a.id))
    });
}

/// Why a backup could not be made, read, trusted or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] plugwatch_store::StoreError),
    #[error(transparent)]
    Secret(#[from] plugwatch_store::SecretError),
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    #[error("backup destination {path}: {source}")]
    Destination { path: PathBuf, source: std::io::Error },
    #[error("no backup `{0}`")]
    NotFound(String),
    #[error("{path}: not a plugwatch backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error("{path}: member `{member}` {problem}")]
    Member { path: PathBuf, member: String, problem: String },
    #[error("{path}: the database in it fails SQLite's integrity check: {problem}")]
    Integrity { path: PathBuf, problem: String },
    #[error(
        "the backup is from plugwatch {theirs} (schema {their_schema}); this is plugwatch {ours} (schema {our_schema}): \
         restore it with that version or a newer one"
    )]
    Newer { theirs: String, their_schema: i64, ours: String, our_schema: i64 },
    #[error(
        "the backup's secrets are sealed with key {key_id}, and {key_file} does not exist: put that key there (or set \
         PLUGWATCH_SECRET_KEY_FILE) before restoring"
    )]
    NoKey { key_id: String, key_file: PathBuf },
    #[error(
        "{0} is in use by a running plugwatch server: stop it first (a restore can also go through its API or dashboard)"
    )]
    Locked(PathBuf),
    #[error(
        "a restore into {0} is committed and not finished yet: start the server (or run the restore again) to finish it"
    )]
    RestorePending(PathBuf),
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;
