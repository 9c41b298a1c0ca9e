//! plugwatch's backups. One archive per backup, `plugwatch-backup-<UTC time>.tar.zst`: a tar stream,
//! compressed with zstd, whose first member is `manifest.json` (format, product and schema versions,
//! creation time, the secret key's id, and the size and sha256 of every other member), then
//! `plugwatch.db` (a consistent snapshot taken while the server keeps serving: `VACUUM INTO`), then
//! `artifacts/<sha256>.wasm` for each component the snapshot references, and only those.
//!
//! An archive is written under a `.partial` name in its directory, fsynced, renamed, and the directory
//! fsynced: a backup that died part-way is never listed as one. [`verify`] checks every member's size and
//! checksum and runs SQLite's integrity check on the database; [`inspect`] reads the manifest only. The
//! secret key is not in the archive (secrets are in it sealed): keep the key's own backup, as the README
//! says; the manifest names the key id the secrets need.
//!
//! It knows nothing of HTTP or wasmtime; the database goes through the store.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The archive layout this code writes and reads.
pub const FORMAT: u32 = 1;
/// What archives are called: `plugwatch-backup-20261201T120000Z.tar.zst`.
pub const PREFIX: &str = "plugwatch-backup-";
pub const SUFFIX: &str = ".tar.zst";
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "plugwatch.db";

/// What a backup holds, written first in its archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub product_version: String,
    /// The newest database migration the snapshot has.
    pub schema_version: i64,
    /// Unix seconds.
    pub created_at: u64,
    /// The id of the key the snapshot's secrets are sealed with (`None`: it holds no sealed secret).
    pub secret_key_id: Option<String>,
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
    pub path: PathBuf,
    /// Compressed size on disk.
    pub size: u64,
    pub manifest: Manifest,
}

/// Why a backup could not be made, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] plugwatch_store::StoreError),
    #[error("{path}: not a plugwatch backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error("{path}: member `{member}` {problem}")]
    Member { path: PathBuf, member: String, problem: String },
    #[error("{path}: the database in it fails SQLite's integrity check: {problem}")]
    Integrity { path: PathBuf, problem: String },
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Takes a backup of the store (and the artifacts it references, from `artifacts_dir`) into `dest_dir`.
pub async fn create(store: &plugwatch_store::Store, artifacts_dir: &Path, dest_dir: &Path) -> Result<BackupInfo> {
    std::fs::create_dir_all(dest_dir)?;
    let work = tempfile::Builder::new().prefix(".backup-").tempdir_in(dest_dir)?;
    let snapshot = work.path().join(DATABASE);
    store.snapshot_to(&snapshot).await?;
    let schema_version = store.schema_version().await?;
    let artifacts = store.referenced_artifacts().await?;
    let created = SystemTime::now();
    let id = format!("{PREFIX}{}{SUFFIX}", stamp(created));
    let path = dest_dir.join(&id);
    let partial = dest_dir.join(format!(".{id}.partial"));
    let key_id = store.secret_key_id();
    let dir = artifacts_dir.to_owned();
    let (final_path, work_dir) = (path.clone(), work);
    let (manifest, size) = tokio::task::spawn_blocking(move || -> Result<(Manifest, u64)> {
        let mut files = vec![(DATABASE.to_owned(), snapshot)];
        for sha in artifacts {
            files.push((format!("artifacts/{sha}.wasm"), dir.join(&sha[..2]).join(format!("{sha}.wasm"))));
        }
        let mut members = Vec::new();
        for (name, file) in &files {
            let (size, sha256) = hash_file(file)?;
            members.push(Member { name: name.clone(), size, sha256 });
        }
        let manifest = Manifest {
            format: FORMAT,
            product_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            created_at: created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            secret_key_id: key_id,
            members,
        };
        let out = File::create(&partial)?;
        let encoder = zstd::Encoder::new(out, 3)?;
        let mut tar = tar::Builder::new(encoder);
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        append(&mut tar, MANIFEST, &mut json.as_slice(), json.len() as u64)?;
        for ((name, file), member) in files.iter().zip(&manifest.members) {
            append(&mut tar, name, &mut File::open(file)?, member.size)?;
        }
        let file = tar.into_inner()?.finish()?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        drop(file);
        std::fs::rename(&partial, &final_path)?;
        File::open(dir_of(&partial))?.sync_all()?;
        drop(work_dir);
        Ok((manifest, size))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(BackupInfo { id, path, size, manifest })
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &mut impl Read, size: u64) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, data.take(size))?;
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// `20261201T120000Z`.
fn stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The complete backups in `dir`, newest first (`.partial` files and anything else are not backups).
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            let manifest = inspect(&entry.path())?;
            out.push(BackupInfo { id: name, path: entry.path(), size: entry.metadata()?.len(), manifest });
        }
    }
    out.sort_by(|a, b| b.manifest.created_at.cmp(&a.manifest.created_at).then(b.id.cmp(&a.id)));
    Ok(out)
}

fn not_a_backup(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::NotABackup { path: path.to_owned(), reason: reason.into() }
}

/// Reads an archive's manifest (its first member) without reading the rest.
pub fn inspect(path: &Path) -> Result<Manifest> {
    let decoder = zstd::Decoder::new(File::open(path)?).map_err(|e| not_a_backup(path, e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(|e| not_a_backup(path, e.to_string()))?;
    let mut first = entries
        .next()
        .ok_or_else(|| not_a_backup(path, "it is empty"))?
        .map_err(|e| not_a_backup(path, format!("it is not a zstd-compressed tar archive ({e})")))?;
    if first.path().ok().as_deref() != Some(Path::new(MANIFEST)) {
        return Err(not_a_backup(path, "its first member is not manifest.json"));
    }
    let mut json = Vec::new();
    first.by_ref().take(1 << 20).read_to_end(&mut json).map_err(|e| not_a_backup(path, e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| not_a_backup(path, format!("its manifest is invalid: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(path, format!("archive format {} (this plugwatch reads {FORMAT})", manifest.format)));
    }
    Ok(manifest)
}

/// What [`verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    pub members: usize,
    pub bytes: u64,
}

/// Checks an archive whole: the manifest, every member's size and sha256 (none missing, none extra), and
/// SQLite's integrity check on the database. `scratch` holds the extracted database meanwhile.
pub async fn verify(path: &Path, scratch: &Path) -> Result<Verified> {
    let owned = path.to_owned();
    let work = tempfile::Builder::new().prefix(".verify-").tempdir_in(scratch)?;
    let db = work.path().join(DATABASE);
    let extracted = db.clone();
    let verified = tokio::task::spawn_blocking(move || verify_members(&owned, &extracted))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    if let Err(problem) = plugwatch_store::check_database_file(&db).await? {
        return Err(BackupError::Integrity { path: path.to_owned(), problem });
    }
    Ok(verified)
}

fn verify_members(path: &Path, db: &Path) -> Result<Verified> {
    let manifest = inspect(path)?;
    let decoder = zstd::Decoder::new(File::open(path)?).map_err(|e| not_a_backup(path, e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let member_error = |member: &str, problem: String| BackupError::Member {
        path: path.to_owned(),
        member: member.to_owned(),
        problem,
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut bytes = 0;
    for entry in archive.entries().map_err(|e| not_a_backup(path, e.to_string()))?.skip(1) {
        let mut entry = entry.map_err(|e| not_a_backup(path, format!("it is truncated or corrupt ({e})")))?;
        let name = entry.path().map_err(|e| not_a_backup(path, e.to_string()))?.to_string_lossy().into_owned();
        let Some(expected) = manifest.members.iter().find(|m| m.name == name) else {
            return Err(member_error(&name, "is not in the manifest".into()));
        };
        if !seen.insert(name.clone()) {
            return Err(member_error(&name, "appears twice".into()));
        }
        let mut hasher = Sha256::new();
        let size = if name == DATABASE {
            let mut out = File::create(db)?;
            let mut tee = TeeWriter { a: &mut hasher, b: &mut out };
            let n =
                std::io::copy(&mut entry, &mut tee).map_err(|e| member_error(&name, format!("cannot be read: {e}")))?;
            out.sync_all()?;
            n
        } else {
            std::io::copy(&mut entry, &mut hasher).map_err(|e| member_error(&name, format!("cannot be read: {e}")))?
        };
        let sha256 = hex::encode(hasher.finalize());
        if size != expected.size || sha256 != expected.sha256 {
            return Err(member_error(
                &name,
                format!(
                    "has {size} bytes with sha256 {sha256}; the manifest says {} bytes, {}",
                    expected.size, expected.sha256
                ),
            ));
        }
        bytes += size;
    }
    if let Some(missing) = manifest.members.iter().find(|m| !seen.contains(&m.name)) {
        return Err(member_error(&missing.name, "is missing (the archive is truncated?)".into()));
    }
    Ok(Verified { members: seen.len(), bytes, manifest })
}

struct TeeWriter<'a, A: Write, B: Write> {
    a: &'a mut A,
    b: &'a mut B,
}

impl<A: Write, B: Write> Write for TeeWriter<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.write_all(buf)?;
        self.b.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.a.flush()?;
        self.b.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_are_utc_calendar_times() {
        let at = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(super::stamp(at(0)), "19700101T000000Z");
        assert_eq!(super::stamp(at(1_796_083_200 + 3_723)), "20261201T010203Z");
        assert_eq!(super::stamp(at(951_782_400)), "20000229T000000Z");
    }
}
