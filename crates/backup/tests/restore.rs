//! Restores of real archives into real data directories: a backup taken while writes go on restores into
//! a fresh directory with every row and artifact (compared by query and by hash, not by file bytes); a
//! restore over live data keeps a safety backup; damaged, newer and wrongly keyed archives are refused
//! with the reason and change nothing; an older schema is migrated; an interrupted restore finishes or
//! leaves the old state, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use plugwatch_backup::{BackupConfig, BackupError, Backups, Manifest, Reason, recover, restore};
use plugwatch_store::{Artifacts, KEY_FILE, KeySource, SecretKey, Store};
use sha2::Digest;
use sqlx::Connection;
use support::{repack, version};

mod support;

fn no_audit(
    _: Store,
    _: &plugwatch_backup::Restored,
) -> std::future::Ready<Result<(), Box<dyn std::error::Error + Send + Sync>>> {
    std::future::ready(Ok(()))
}

/// Every table's rows, each rendered by SQLite's `quote()` of every column: the logical content.
async fn dump(db: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for (table,) in tables {
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info($1)").bind(&table).fetch_all(&mut conn).await.unwrap();
        let row = columns.iter().map(|(c,)| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!("SELECT {row} FROM \"{table}\"")).fetch_all(&mut conn).await.unwrap();
        out.insert(table, rows.into_iter().map(|(r,)| r).collect());
    }
    conn.close().await.unwrap();
    out
}

/// The sha256 of every file under `dir` (recursively) by relative path, but the database and its -wal/-shm.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let name = path.to_string_lossy();
                // The database is compared by content (opening and closing it rewrites its header).
                if name.ends_with("plugwatch.db") || name.ends_with("-wal") || name.ends_with("-shm") {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else { continue };
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), hex::encode(sha2::Sha256::digest(bytes)));
            }
        }
    }
    out
}

fn backups_in(dir: &Path) -> Backups {
    Backups::open(dir, BackupConfig::default()).unwrap()
}

fn key_of(dir: &Path) -> KeySource {
    let path = dir.join(KEY_FILE);
    KeySource::Configured { key: SecretKey::read_file(&path).unwrap(), origin: path.display().to_string() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_restores_every_row_and_artifact_into_a_fresh_directory() {
    let source = tempfile::tempdir().unwrap();
    let store = Store::open(source.path()).await.unwrap();
    let artifacts = Artifacts::new(source.path()).unwrap();
    for i in 0..4 {
        version(&store, &artifacts, &format!("plugin-{i}"), 0, true).await;
    }
    version(&store, &artifacts, "busy", 0, true).await;
    let writer = {
        let (store, artifacts) = (store.clone(), Artifacts::new(source.path()).unwrap());
        tokio::spawn(async move {
            for n in 1..60 {
                version(&store, &artifacts, "busy", n, false).await;
            }
        })
    };
    let backups = backups_in(source.path());
    let backup = backups.create(&store, Reason::Manual).await.unwrap();
    writer.await.unwrap();
    store.close().await;

    // Into a fresh directory that holds only the key (which is never in an archive).
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(source.path().join(KEY_FILE), target.path().join(KEY_FILE)).unwrap();
    let archive = source.path().join("backups").join(&backup.id);
    let restored =
        backups_in(target.path()).restore_file(None, &archive, &backup.id, KeySource::DataDir, no_audit).await.unwrap();
    assert!(target.path().join(restore::PENDING).exists(), "committed, not yet finished");
    let finished = recover(target.path()).unwrap().expect("a committed restore is finished");
    assert_eq!(finished, restored);
    assert!(!target.path().join(restore::PENDING).exists() && !target.path().join(restore::STAGING).exists());

    let (before, after) =
        (dump(&source.path().join("plugwatch.db")).await, dump(&target.path().join("plugwatch.db")).await);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "the same tables");
    for (table, rows) in &after {
        // Writes went on after the snapshot: every restored row is a source row, and the tables no write
        // touched are equal.
        assert!(rows.is_subset(&before[table]), "{table}: restored rows the source never had");
        if !["plugin_versions", "plugin_config", "subscriptions"].contains(&table.as_str()) {
            assert_eq!(rows, &before[table], "{table}");
        }
    }
    // The snapshot is one instant: the busy plugin's versions in it are 1.0.0 to 1.0.k, with no gap.
    let reopened = Store::open(target.path()).await.unwrap();
    let versions: Vec<String> = reopened.versions("busy").await.unwrap().into_iter().map(|v| v.version).collect();
    let expected: Vec<String> = (0..versions.len()).map(|n| format!("1.0.{n}")).collect();
    let mut sorted = versions.clone();
    sorted.sort_by_key(|v| v.rsplit('.').next().unwrap().parse::<u32>().unwrap());
    assert_eq!(sorted, expected);
    assert_eq!(restored.counts["plugin_versions"], 4 + versions.len() as i64);
    // Secrets open with the key; every referenced artifact is there and hashes to its name.
    let last = sorted.last().unwrap();
    let v = reopened.version("busy", last).await.unwrap();
    assert_eq!(v.secrets["api_key"].expose(), format!("s3cr3t-busy-{}", last.rsplit('.').next().unwrap()));
    reopened.close().await;
    let referenced = plugwatch_store::describe_snapshot(&target.path().join("plugwatch.db")).unwrap().artifacts;
    let restored_artifacts = Artifacts::new(target.path()).unwrap();
    for sha in &referenced {
        let bytes = restored_artifacts.get(sha).unwrap();
        assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), sha);
    }
    assert_eq!(restored.artifacts, referenced.len(), "the archive carries the artifacts its snapshot references, only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_over_live_data_keeps_a_safety_backup_and_reports_what_it_restored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let artifacts = Artifacts::new(dir.path()).unwrap();
    version(&store, &artifacts, "promo", 0, true).await;
    let backups = backups_in(dir.path());
    let old = backups.create(&store, Reason::Manual).await.unwrap();
    version(&store, &artifacts, "courier", 0, true).await;
    version(&store, &artifacts, "promo", 1, true).await;

    let restored = backups.restore(Some(&store), &old.id, key_of(dir.path()), no_audit).await.unwrap();
    store.close().await;
    recover(dir.path()).unwrap();
    assert_eq!(restored.counts["plugins"], 1);
    assert_eq!(restored.counts["plugin_versions"], 1);
    let safety = restored.safety_backup.clone().expect("a safety backup of the replaced state");
    let listed = backups.list().await.unwrap();
    let safety_info = listed.iter().find(|b| b.id == safety).unwrap();
    assert_eq!(safety_info.manifest.reason, Reason::PreRestore);
    assert_eq!(safety_info.manifest.counts["plugins"], 2);

    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.plugins().await.unwrap().len(), 1, "the backup's state is live");
    // And the safety backup brings the replaced state back.
    let back = backups.restore(Some(&store), &safety, key_of(dir.path()), no_audit).await.unwrap();
    store.close().await;
    recover(dir.path()).unwrap();
    assert_eq!(back.counts["plugins"], 2);
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.version("promo", "1.0.1").await.unwrap().secrets["api_key"].expose(), "s3cr3t-promo-1");
    store.close().await;
}

/// What a refused restore's error must show.
type Expected<'a> = dyn Fn(&BackupError) -> bool + 'a;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_newer_and_wrongly_keyed_archives_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let artifacts = Artifacts::new(dir.path()).unwrap();
    version(&store, &artifacts, "promo", 0, true).await;
    let backups = backups_in(dir.path());
    let good = backups.create(&store, Reason::Manual).await.unwrap();
    version(&store, &artifacts, "courier", 0, true).await;
    store.close().await;
    let good_path = dir.path().join("backups").join(&good.id);
    let bytes = std::fs::read(&good_path).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = |name: &str| elsewhere.path().join(format!("plugwatch-backup-{name}.tar.zst"));

    std::fs::write(file("truncated"), &bytes[..bytes.len() / 2]).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(file("corrupt"), &flipped).unwrap();
    repack(&good_path, &file("checksum"), |_| {}, true);
    repack(&good_path, &file("schema"), |m| m.schema_version += 1, false);
    repack(&good_path, &file("product"), |m| m.product_version = "99.0.0".into(), false);

    let before = (tree(dir.path()), dump(&dir.path().join("plugwatch.db")).await);
    let cases: [(&str, KeySource, &Expected<'_>); 6] = [
        ("truncated", key_of(dir.path()), &|e| {
            matches!(e, BackupError::NotABackup { .. } | BackupError::Member { .. })
        }),
        ("corrupt", key_of(dir.path()), &|e| !matches!(e, BackupError::Newer { .. })),
        ("checksum", key_of(dir.path()), &|e| {
            matches!(e, BackupError::Member { .. }) && e.to_string().contains("the manifest says")
        }),
        ("schema", key_of(dir.path()), &|e| {
            matches!(e, BackupError::Newer { .. })
                && e.to_string().contains(&format!("schema {}", plugwatch_store::latest_schema_version() + 1))
        }),
        ("product", key_of(dir.path()), &|e| {
            matches!(e, BackupError::Newer { .. })
                && e.to_string().contains("99.0.0")
                && e.to_string().contains(env!("CARGO_PKG_VERSION"))
        }),
        ("wrong-key", KeySource::Configured { key: SecretKey::from_bytes([9; 32]), origin: "a test".into() }, &|e| {
            e.to_string().contains(good.manifest.secret_key_id.as_deref().unwrap())
        }),
    ];
    for (name, keys, expected) in cases {
        let path = if name == "wrong-key" { good_path.clone() } else { file(name) };
        let store = Store::open(dir.path()).await.unwrap();
        let error = backups
            .restore_file(Some(&store), &path, name, keys, no_audit)
            .await
            .expect_err(&format!("{name} is refused"));
        store.close().await;
        assert!(expected(&error), "{name}: {error}");
        assert_eq!(recover(dir.path()).unwrap(), None, "{name}: nothing was committed");
        let after = (tree(dir.path()), dump(&dir.path().join("plugwatch.db")).await);
        assert_eq!(after, before, "{name}: a refused restore changes nothing and adds nothing");
    }
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.plugins().await.unwrap().len(), 2, "the live data is as it was");
    store.close().await;
}

/// A database at schema `version` (the migrations up to it), holding one plugin.
async fn older_database(dir: &Path, version: i64) -> PathBuf {
    let db = dir.join("plugwatch.db");
    let options =
        sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://").unwrap().filename(&db).create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/migrations/sqlite");
    let mut migrator = sqlx::migrate::Migrator::new(root).await.unwrap();
    migrator.migrations =
        migrator.migrations.iter().filter(|m| m.version <= version).cloned().collect::<Vec<_>>().into();
    migrator.run(&mut conn).await.unwrap();
    sqlx::query("INSERT INTO plugins (name, created_at, updated_at) VALUES ('legacy', 1, 1)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    db
}

/// An archive holding `db` alone, written as an older plugwatch would have.
fn pack(db: &Path, schema_version: i64, out: &Path) {
    let content = std::fs::read(db).unwrap();
    let manifest = Manifest {
        format: plugwatch_backup::FORMAT,
        product_version: "0.0.9".into(),
        schema_version,
        created_at: 1_790_000_000,
        reason: Reason::Scheduled,
        secret_key_id: None,
        counts: BTreeMap::new(),
        members: vec![plugwatch_backup::Member {
            name: "plugwatch.db".into(),
            size: content.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&content)),
        }],
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut builder = tar::Builder::new(zstd::Encoder::new(std::fs::File::create(out).unwrap(), 3).unwrap());
    for (name, bytes) in [("manifest.json", &json), ("plugwatch.db", &content)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_from_an_older_schema_is_migrated_on_restore() {
    let old = tempfile::tempdir().unwrap();
    let db = older_database(old.path(), 4).await;
    let archive = old.path().join("plugwatch-backup-19700101T000000Z.tar.zst");
    pack(&db, 4, &archive);

    let target = tempfile::tempdir().unwrap();
    let restored =
        backups_in(target.path()).restore_file(None, &archive, "old", KeySource::DataDir, no_audit).await.unwrap();
    recover(target.path()).unwrap();
    assert_eq!((restored.schema_from, restored.schema_to), (4, plugwatch_store::latest_schema_version()));
    let store = Store::open(target.path()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), plugwatch_store::latest_schema_version());
    assert_eq!(store.plugins().await.unwrap().iter().map(|p| p.name.clone()).collect::<Vec<_>>(), ["legacy"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_finishes_once_committed_and_leaves_the_old_state_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let artifacts = Artifacts::new(dir.path()).unwrap();
    version(&store, &artifacts, "promo", 0, true).await;
    let backups = backups_in(dir.path());
    let one_plugin = backups.create(&store, Reason::Manual).await.unwrap();
    version(&store, &artifacts, "courier", 0, true).await;
    store.close().await;
    let plugins = |dir: PathBuf| async move {
        let store = Store::open(&dir).await.unwrap();
        let n = store.plugins().await.unwrap().len();
        store.close().await;
        n
    };

    // Staged but not committed (the process died before the marker): the old state, staging removed.
    let staged = plugwatch_backup::stage(
        &dir.path().join("backups").join(&one_plugin.id),
        &one_plugin.id,
        dir.path(),
        key_of(dir.path()),
    )
    .await
    .unwrap();
    drop(staged);
    assert!(dir.path().join(restore::STAGING).exists());
    assert_eq!(recover(dir.path()).unwrap(), None);
    assert!(!dir.path().join(restore::STAGING).exists());
    assert_eq!(plugins(dir.path().to_owned()).await, 2);

    // Committed, then stopped at each point of the swap: finishing it gives the new state every time.
    for stop_after in 0..3 {
        let store = Store::open(dir.path()).await.unwrap();
        backups.restore(Some(&store), &one_plugin.id, key_of(dir.path()), no_audit).await.unwrap();
        store.close().await;
        let staging = dir.path().join(restore::STAGING);
        if stop_after >= 1 {
            // The old WAL files removed…
            let _ = std::fs::remove_file(dir.path().join("plugwatch.db-wal"));
        }
        if stop_after >= 2 {
            // …and the database renamed, the marker still there.
            std::fs::rename(staging.join("plugwatch.db"), dir.path().join("plugwatch.db")).unwrap();
        }
        assert!(recover(dir.path()).unwrap().is_some(), "step {stop_after}");
        assert_eq!(plugins(dir.path().to_owned()).await, 1, "step {stop_after}");
        // Back to two plugins for the next round.
        let store = Store::open(dir.path()).await.unwrap();
        version(&store, &artifacts, &format!("extra-{stop_after}"), 0, true).await;
        store.close().await;
        assert_eq!(plugins(dir.path().to_owned()).await, 2);
    }
    // A second restore while one is committed is refused.
    let store = Store::open(dir.path()).await.unwrap();
    backups.restore(Some(&store), &one_plugin.id, key_of(dir.path()), no_audit).await.unwrap();
    let error = backups.restore(Some(&store), &one_plugin.id, key_of(dir.path()), no_audit).await.unwrap_err();
    assert!(matches!(error, BackupError::RestorePending(_)), "{error}");
    store.close().await;
    recover(dir.path()).unwrap();
}

#[test]
fn retention_keeps_the_newest_by_count_and_age_and_never_what_was_taken_on_demand() {
    let day = 86_400;
    let now = 1_800_000_000u64;
    let info = |id: &str, age_days: u64, reason: Reason| plugwatch_backup::BackupInfo {
        id: id.to_owned(),
        size: 1,
        manifest: Manifest {
            format: 1,
            product_version: "0.1.0".into(),
            schema_version: 7,
            created_at: now - age_days * day,
            reason,
            secret_key_id: None,
            counts: BTreeMap::new(),
            members: vec![],
        },
    };
    let config = BackupConfig { keep_last: 2, keep_days: 10, ..BackupConfig::default() };
    // Newest first, as listed.
    let all = [
        info("s1", 1, Reason::Scheduled),
        info("m1", 2, Reason::Manual),
        info("s2", 5, Reason::Scheduled),
        info("s3", 9, Reason::PreRestore),
        info("s4", 11, Reason::Scheduled),
        info("m2", 40, Reason::Manual),
        info("s5", 50, Reason::Scheduled),
    ];
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
    let (keep, delete) = plugwatch_backup::backups::retained(&all, &config, at);
    assert_eq!(keep, ["s1", "m1", "s2", "s3", "m2"]);
    assert_eq!(delete, ["s4", "s5"]);
    // When every backup is old, the newest is still kept, with the count.
    let old = [info("a", 100, Reason::Scheduled), info("b", 101, Reason::Scheduled), info("c", 102, Reason::Scheduled)];
    let (keep, delete) = plugwatch_backup::backups::retained(&old, &config, at);
    assert_eq!((keep, delete), (vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]));
    let one = BackupConfig { keep_last: 1, keep_days: 0, ..BackupConfig::default() };
    assert_eq!(plugwatch_backup::backups::retained(&old, &one, at).0, ["a"]);
}
