//! One archive, `plugwatch-backup-<UTC time>.tar.zst`: writing it ([`create`]), reading its manifest
//! ([`inspect`]), and checking or unpacking it whole ([`verify`], [`extract`]).
//!
//! An archive is written under a `.partial` name that carries the writer's process id, fsynced, renamed,
//! and its directory fsynced: a backup that died part-way is never listed as one, and [`sweep`] removes
//! what a dead writer left (a live one's work is left alone).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{BackupError, BackupInfo, DATABASE, FORMAT, MANIFEST, Manifest, Member, PREFIX, Reason, Result, SUFFIX};

/// Takes a backup of the store (and the artifacts it references, from `artifacts_dir`) into `out_dir`,
/// under a name that is neither in `out_dir` nor in `taken` (the names at a remote destination).
pub async fn create(
    store: &plugwatch_store::Store,
    artifacts_dir: &Path,
    out_dir: &Path,
    reason: Reason,
    taken: &[String],
) -> Result<BackupInfo> {
    let destination = |source| BackupError::Destination { path: out_dir.to_owned(), source };
    // Only the directory itself, never its parents: a backup must not recreate a data directory that was
    // deleted under the server (the default destination is `<data_dir>/backups`).
    match std::fs::create_dir(out_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(destination(e)),
        _ => {}
    }
    let pid = std::process::id();
    let work = tempfile::Builder::new().prefix(&format!(".backup-{pid}-")).tempdir_in(out_dir).map_err(destination)?;
    let snapshot = work.path().join(DATABASE);
    let key_id = store.secret_key_id();
    let store = store.clone();
    let dir = artifacts_dir.to_owned();
    let out = out_dir.to_owned();
    let taken = taken.to_vec();
    background(move || -> Result<BackupInfo> {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writing_back = write_back_while(snapshot.clone(), done.clone());
        let snapshotted = store.snapshot_to(&snapshot);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = writing_back.join();
        snapshotted?;
        let created = SystemTime::now();
        // What the snapshot holds, from the snapshot: writes after it are not in it, nor their artifacts.
        let plugwatch_store::SnapshotInfo { schema_version, counts, artifacts } =
            plugwatch_store::describe_snapshot(&snapshot)?;
        // The database is hashed before it is written (the manifest comes first); an artifact is named by
        // its sha256, so its size and name go into the manifest and its content is checked as it is
        // written, in one pass over the (often large) components.
        let (db_size, db_sha) = hash_file(&snapshot)?;
        let mut members = vec![Member { name: DATABASE.to_owned(), size: db_size, sha256: db_sha }];
        let mut files = vec![snapshot];
        for sha in artifacts {
            let path = dir.join(&sha[..2]).join(format!("{sha}.wasm"));
            members.push(Member {
                name: format!("artifacts/{sha}.wasm"),
                size: std::fs::metadata(&path)?.len(),
                sha256: sha,
            });
            files.push(path);
        }
        let manifest = Manifest {
            format: FORMAT,
            product_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            created_at: created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            reason,
            secret_key_id: key_id,
            counts,
            members,
        };
        let id = unused_id(&out, &taken, created);
        let (path, partial) = (out.join(&id), out.join(format!(".{id}.{pid}.partial")));
        let written = write_archive(&partial, &manifest, &files);
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        let size = written?;
        std::fs::rename(&partial, &path)?;
        File::open(&out)?.sync_all()?;
        drop(work);
        Ok(BackupInfo { id, size, manifest })
    })
    .await
}

/// zstd's level: 1 costs about 40 % less CPU than 3 for an archive about 10 % larger (measured on
/// components and a telemetry database); a backup competes with invocations for the CPU.
const ZSTD_LEVEL: i32 = 1;

/// Writes the archive to `partial` and fsyncs it; returns its size. Every member's content is checked
/// against the manifest as it is written.
fn write_archive(partial: &Path, manifest: &Manifest, files: &[std::path::PathBuf]) -> Result<u64> {
    let file = WriteThrough { file: File::create(partial)?, written: 0, started: 0 };
    let encoder = zstd::Encoder::new(file, ZSTD_LEVEL)?;
    let mut tar = tar::Builder::new(encoder);
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    append(&mut tar, MANIFEST, &mut json.as_slice(), json.len() as u64)?;
    for (file, member) in files.iter().zip(&manifest.members) {
        let mut hashing = HashingReader { inner: BufReader::new(File::open(file)?), hasher: Sha256::new() };
        append(&mut tar, &member.name, &mut hashing, member.size)?;
        let sha256 = hex::encode(hashing.hasher.finalize());
        if sha256 != member.sha256 {
            return Err(BackupError::Member {
                path: file.clone(),
                member: member.name.clone(),
                problem: format!("changed on disk: its content has sha256 {sha256}, not {}", member.sha256),
            });
        }
    }
    let file = tar.into_inner()?.finish()?.file;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// How much of the archive is written back at a time.
const WINDOW: u64 = 8 << 20;

/// A file written through from the writing thread, a window at a time: each window's write-back starts
/// as soon as it is written (`sync_file_range`), the window before is waited for and dropped from the
/// page cache. The backup thread, at idle priority, thereby does the write-back the kernel's flusher
/// threads would otherwise do at normal priority, in bursts, competing with invocations; the archive
/// holds at most two windows of dirty pages and evicts nothing the server caches.
struct WriteThrough {
    file: File,
    written: u64,
    /// Where the window being written began.
    started: u64,
}

impl Write for WriteThrough {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WINDOW {
            self.write_back();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl WriteThrough {
    fn write_back(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            let (start, len) = (self.started as libc::off64_t, (self.written - self.started) as libc::off64_t);
            // SAFETY: plain syscalls on this file's own descriptor; failures only leave the work to the
            // kernel's flusher threads, as without them.
            unsafe {
                libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WRITE);
                if let Some(previous) = start.checked_sub(WINDOW as libc::off64_t).filter(|p| *p >= 0) {
                    libc::sync_file_range(
                        fd,
                        previous,
                        start - previous,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                    libc::posix_fadvise(fd, previous, start - previous, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
        self.started = self.written;
    }
}

/// While a snapshot is being written (by SQLite, which leaves write-back to the kernel), starts the
/// write-back of what it has written so far every quarter second from a thread at idle priority, for the
/// reason [`WriteThrough`] gives. Stops when `done` is set.
fn write_back_while(
    path: std::path::PathBuf,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        idle_priority();
        // Opened once SQLite has created it.
        let mut file = None;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(250));
            if file.is_none() {
                file = File::open(&path).ok();
            }
            #[cfg(target_os = "linux")]
            if let Some(file) = &file {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain syscall on a descriptor this thread owns.
                unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
            }
        }
    })
}

/// A reader that hashes what passes through it.
struct HashingReader<R: Read> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Runs `work` on a thread of its own that gets only the CPU and disk time nothing else wants (Linux's
/// `SCHED_IDLE` and idle I/O class, both per thread): snapshotting, hashing and compressing gigabytes must
/// not take time from invocations, only what they leave. (Not tokio's blocking pool: its threads are
/// reused, and would keep the policy.)
async fn background<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("plugwatch-backup".into()).spawn(move || {
        idle_priority();
        let _ = done.send(work());
    })?;
    result.await.map_err(|_| BackupError::Io(std::io::Error::other("the backup thread panicked")))?
}

/// Puts the calling thread in the idle CPU scheduling class (below every niceness) and the idle I/O
/// class. Failing to is logged and harmless: the work then runs at normal priority.
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; the policy changes only its own scheduling.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(message = "Cannot put the backup thread in the idle scheduling class.", error = %std::io::Error::last_os_error());
        }
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        const IOPRIO_CLASS_SHIFT: u32 = 13;
        // SAFETY: ioprio_set on who 0 (the calling thread) changes only its own I/O priority.
        if unsafe {
            libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)
        } != 0
        {
            tracing::debug!(message = "Cannot put the backup thread in the idle I/O class.", error = %std::io::Error::last_os_error());
        }
    }
}

/// The archive name for `t`; within a second that has backups already, with a counter above theirs (so
/// that names sort in the order they were taken, even after some of them were deleted).
fn unused_id(dir: &Path, taken: &[String], t: SystemTime) -> String {
    let first = format!("{PREFIX}{}", stamp(t));
    let mut names: Vec<String> = taken.to_vec();
    if let Ok(entries) = std::fs::read_dir(dir) {
        // An archive still being written by another process counts under its final name.
        let finished = |name: String| match name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
            Some(inner) => inner.rsplit_once('.').map_or(name.clone(), |(id, _pid)| id.to_owned()),
            None => name,
        };
        names.extend(entries.filter_map(|e| e.ok()).map(|e| finished(e.file_name().to_string_lossy().into_owned())));
    }
    let counters: Vec<u32> = names
        .iter()
        .filter_map(|n| n.strip_suffix(SUFFIX)?.strip_prefix(first.as_str()))
        .map(|rest| rest.strip_prefix('-').and_then(|n| n.parse().ok()).unwrap_or(0))
        .collect();
    match counters.iter().max() {
        None => format!("{first}{SUFFIX}"),
        Some(n) => format!("{first}-{}{SUFFIX}", n + 1),
    }
}

/// Removes what a backup that died part-way left in `dir` (its `.partial` file and work directory),
/// when the process that wrote it is gone. Returns how many it removed.
pub fn sweep(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = if let Some(rest) = name.strip_suffix(".partial") {
            rest.rsplit('.').next().and_then(|p| p.parse::<u32>().ok())
        } else if let Some(rest) = name.strip_prefix(".backup-") {
            rest.split('-').next().and_then(|p| p.parse::<u32>().ok())
        } else {
            None
        };
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && alive(pid) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    Ok(removed)
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
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

/// Whether `name` is an archive's name (and so a safe file name: no separator, no dot-dot).
pub fn is_archive_name(name: &str) -> bool {
    name.starts_with(PREFIX)
        && name.ends_with(SUFFIX)
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.contains("..")
}

/// The complete backups in `dir`, newest first (`.partial` files and anything else are not backups).
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(BackupError::Destination { path: dir.to_owned(), source }),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_archive_name(&name) {
            let manifest = inspect(&entry.path())?;
            out.push(BackupInfo { id: name, size: entry.metadata()?.len(), manifest });
        }
    }
    crate::newest_first(&mut out);
    Ok(out)
}

fn not_a_backup(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::NotABackup { path: path.to_owned(), reason: reason.into() }
}

/// Reads an archive's manifest (its first member) without reading the rest.
pub fn inspect(path: &Path) -> Result<Manifest> {
    inspect_reader(File::open(path)?, path)
}

/// Reads the manifest from the start of an archive (the whole archive or only its first bytes); `path`
/// names it in errors.
pub fn inspect_reader(reader: impl Read, path: &Path) -> Result<Manifest> {
    let decoder = zstd::Decoder::new(reader).map_err(|e| not_a_backup(path, e.to_string()))?;
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
    first.by_ref().take(16 << 20).read_to_end(&mut json).map_err(|e| not_a_backup(path, e.to_string()))?;
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
    std::fs::create_dir_all(scratch)?;
    let work = tempfile::Builder::new().prefix(".verify-").tempdir_in(scratch)?;
    extract_checked(path, work.path(), false).await
}

/// [`verify`], leaving the database (`plugwatch.db`) and the artifacts (`artifacts/<sha256>.wasm`) in
/// `out_dir`, fsynced: what a restore swaps in. On an error, `out_dir` may hold part of it.
pub async fn extract(path: &Path, out_dir: &Path) -> Result<Verified> {
    std::fs::create_dir_all(out_dir.join("artifacts"))?;
    extract_checked(path, out_dir, true).await
}

async fn extract_checked(path: &Path, out_dir: &Path, artifacts: bool) -> Result<Verified> {
    let (owned, out) = (path.to_owned(), out_dir.to_owned());
    background(move || {
        let verified = unpack(&owned, &out, artifacts)?;
        if let Err(problem) = plugwatch_store::check_database_file(&out.join(DATABASE))? {
            return Err(BackupError::Integrity { path: owned, problem });
        }
        Ok(verified)
    })
    .await
}

fn unpack(path: &Path, out_dir: &Path, artifacts: bool) -> Result<Verified> {
    let manifest = inspect(path)?;
    let decoder = zstd::Decoder::new(File::open(path)?).map_err(|e| not_a_backup(path, e.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let member_error = |member: &str, problem: String| BackupError::Member {
        path: path.to_owned(),
        member: member.to_owned(),
        problem,
    };
    let expected: BTreeMap<&str, &Member> = manifest.members.iter().map(|m| (m.name.as_str(), m)).collect();
    if !expected.contains_key(DATABASE) {
        return Err(member_error(DATABASE, "is not in the manifest".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut bytes = 0;
    for entry in archive.entries().map_err(|e| not_a_backup(path, e.to_string()))?.skip(1) {
        let mut entry = entry.map_err(|e| not_a_backup(path, format!("it is truncated or corrupt ({e})")))?;
        let name = entry.path().map_err(|e| not_a_backup(path, e.to_string()))?.to_string_lossy().into_owned();
        let Some(expected) = expected.get(name.as_str()) else {
            return Err(member_error(&name, "is not in the manifest".into()));
        };
        if !seen.insert(name.clone()) {
            return Err(member_error(&name, "appears twice".into()));
        }
        // Only the database and well-formed artifact names are ever written out.
        let target = if name == DATABASE {
            Some(out_dir.join(DATABASE))
        } else if artifacts {
            let sha = artifact_sha(&name).ok_or_else(|| member_error(&name, "is not an artifact name".into()))?;
            Some(out_dir.join("artifacts").join(format!("{sha}.wasm")))
        } else {
            None
        };
        let mut hasher = Sha256::new();
        let read_error = |e: std::io::Error| member_error(&name, format!("cannot be read: {e}"));
        let size = match &target {
            Some(target) => {
                let mut out = File::create(target)?;
                let n = std::io::copy(&mut entry, &mut Tee { a: &mut hasher, b: &mut out }).map_err(read_error)?;
                out.sync_all()?;
                n
            }
            None => std::io::copy(&mut entry, &mut hasher).map_err(read_error)?,
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
    if artifacts {
        File::open(out_dir.join("artifacts"))?.sync_all()?;
        File::open(out_dir)?.sync_all()?;
    }
    Ok(Verified { members: seen.len(), bytes, manifest })
}

/// `artifacts/<64 hex>.wasm` → the hash.
fn artifact_sha(name: &str) -> Option<&str> {
    let sha = name.strip_prefix("artifacts/")?.strip_suffix(".wasm")?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(sha)
}

struct Tee<'a, A: Write, B: Write> {
    a: &'a mut A,
    b: &'a mut B,
}

impl<A: Write, B: Write> Write for Tee<'_, A, B> {
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

    #[test]
    fn only_archive_names_are_accepted_as_ids() {
        assert!(super::is_archive_name("plugwatch-backup-20261201T010203Z.tar.zst"));
        assert!(super::is_archive_name("plugwatch-backup-20261201T010203Z-2.tar.zst"));
        for bad in
            ["../plugwatch-backup-x.tar.zst", "plugwatch-backup-a/b.tar.zst", "x.tar.zst", "plugwatch-backup-..tar.zst"]
        {
            assert!(!super::is_archive_name(bad), "{bad}");
        }
    }

    /// The work a backup does runs in the idle scheduling and I/O classes, on a thread of its own, while the
    /// caller's thread keeps its own.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_work_runs_in_the_idle_classes() {
        fn classes() -> (libc::c_int, libc::c_long) {
            // SAFETY: both only read the calling thread's own scheduling.
            unsafe { (libc::sched_getscheduler(0), libc::syscall(libc::SYS_ioprio_get, 1, 0) >> 13) }
        }
        let caller = classes();
        let (worker, name) =
            super::background(|| Ok((classes(), std::thread::current().name().map(str::to_owned)))).await.unwrap();
        assert_eq!(worker, (libc::SCHED_IDLE, 3), "policy and I/O class of the backup thread");
        assert_eq!(name.as_deref(), Some("plugwatch-backup"));
        assert_ne!(caller.0, libc::SCHED_IDLE, "the caller's thread is left alone");
    }
}
