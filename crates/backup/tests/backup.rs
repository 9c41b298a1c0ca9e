//! Backups of a real data directory: taken while writes go on, complete archives only, each member and
//! the database checked; corrupted, truncated and foreign files refused with the reason.

use plugwatch_backup::{BackupError, Reason, create, inspect, list, verify};
use plugwatch_store::{Artifacts, Store};
use support::version;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_go_on_is_complete_and_verifies() {
    let data = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let artifacts = Artifacts::new(data.path()).unwrap();
    let mut shas = Vec::new();
    for i in 0..5 {
        shas.push(version(&store, &artifacts, &format!("plugin-{i}"), 0, true).await);
    }
    // An orphan artifact (no version references it) is not carried.
    let orphan = artifacts.put(b"nobody uses this").unwrap();
    // Writes go on during the backup.
    let writer = {
        let (store, artifacts) = (store.clone(), Artifacts::new(data.path()).unwrap());
        tokio::spawn(async move {
            for n in 1..40 {
                version(&store, &artifacts, "busy", n, true).await;
            }
        })
    };
    let backup = create(&store, &data.path().join("artifacts"), backups.path(), Reason::Manual, &[]).await.unwrap();
    let backup_path = backups.path().join(&backup.id);
    writer.await.unwrap();
    assert!(backup.id.starts_with("plugwatch-backup-") && backup.id.ends_with(".tar.zst"), "{}", backup.id);
    let names: Vec<&str> = backup.manifest.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names[0], "plugwatch.db");
    for sha in &shas {
        assert!(names.contains(&format!("artifacts/{sha}.wasm").as_str()), "{sha} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains(&orphan)), "only referenced artifacts");
    assert_eq!(backup.manifest.schema_version, store.schema_version().await.unwrap());
    assert!(backup.manifest.secret_key_id.is_some(), "the key the secrets need is named");

    let verified = verify(&backup_path, backups.path()).await.unwrap();
    assert_eq!(verified.members, backup.manifest.members.len());
    assert_eq!(inspect(&backup_path).unwrap(), backup.manifest);
    let listed = list(backups.path()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, backup.id);
    // Nothing else was left in the directory: no partial file, no scratch.
    let entries: Vec<String> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, std::slice::from_ref(&backup.id));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_foreign_archives_are_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let artifacts = Artifacts::new(data.path()).unwrap();
    version(&store, &artifacts, "promo", 0, true).await;
    let backup = create(&store, &data.path().join("artifacts"), backups.path(), Reason::Manual, &[]).await.unwrap();
    let backup_path = backups.path().join(&backup.id);
    let bytes = std::fs::read(&backup_path).unwrap();
    let scratch = backups.path();

    let truncated = scratch.join("plugwatch-backup-truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let error = verify(&truncated, scratch).await.unwrap_err().to_string();
    assert!(error.contains("truncated") || error.contains("missing") || error.contains("corrupt"), "{error}");

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let corrupt = scratch.join("plugwatch-backup-corrupt.tar.zst");
    std::fs::write(&corrupt, &flipped).unwrap();
    assert!(verify(&corrupt, scratch).await.is_err(), "a flipped byte is noticed");

    let foreign = scratch.join("plugwatch-backup-foreign.tar.zst");
    std::fs::write(&foreign, b"just some text").unwrap();
    assert!(matches!(inspect(&foreign), Err(BackupError::NotABackup { .. })));
    assert!(list(scratch).is_err(), "a foreign file named like a backup is reported, not skipped");

    // A member whose content does not match the manifest.
    let tampered = scratch.join("plugwatch-backup-tampered.tar.zst");
    support::repack(&backup_path, &tampered, |_| {}, true);
    let error = verify(&tampered, scratch).await.unwrap_err();
    assert!(matches!(error, BackupError::Member { .. }), "{error}");
    assert!(error.to_string().contains("the manifest says"), "{error}");

    // The good one still verifies; a partial file is never listed.
    std::fs::write(scratch.join(".plugwatch-backup-x.tar.zst.partial"), b"half").unwrap();
    for f in [&truncated, &corrupt, &foreign, &tampered] {
        std::fs::remove_file(f).unwrap();
    }
    verify(&backup_path, scratch).await.unwrap();
    assert_eq!(list(scratch).unwrap().len(), 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_what_the_policy_says_and_the_schedule_survives_a_restart() {
    use plugwatch_backup::{BackupConfig, Backups};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let artifacts = Artifacts::new(data.path()).unwrap();
    version(&store, &artifacts, "promo", 0, true).await;
    let config = BackupConfig { keep_last: 2, keep_days: 0, interval_secs: 3600, ..BackupConfig::default() };
    let backups = Backups::open(data.path(), config.clone()).unwrap();
    let manual = backups.create(&store, Reason::Manual).await.unwrap();
    let mut scheduled = Vec::new();
    for _ in 0..4 {
        scheduled.push(backups.scheduled(&store, SystemTime::now()).await.unwrap().id);
    }
    let mut left: Vec<String> = backups.list().await.unwrap().into_iter().map(|b| b.id).collect();
    left.sort();
    let mut expected = vec![manual.id.clone(), scheduled[2].clone(), scheduled[3].clone()];
    expected.sort();
    assert_eq!(left, expected, "the newest two scheduled ones, and the one taken on demand");
    assert_eq!(backups.status().consecutive_failures, 0);
    assert!(backups.status().last_success_at.is_some());

    // A restart (a new `Backups` over the same destination) schedules one interval after the newest.
    drop(backups);
    let restarted = Backups::open(data.path(), config).unwrap();
    let newest = restarted.get(&scheduled[3]).await.unwrap().manifest.created_at;
    let first = SystemTime::now() + Duration::from_secs(60);
    let due = restarted.next_due(first).await;
    assert_eq!(due, UNIX_EPOCH + Duration::from_secs(newest + 3600));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_changed_on_disk_fails_the_backup_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let artifacts = Artifacts::new(data.path()).unwrap();
    let sha = version(&store, &artifacts, "promo", 0, true).await;
    let file = data.path().join("artifacts").join(&sha[..2]).join(format!("{sha}.wasm"));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let error = create(&store, &data.path().join("artifacts"), backups.path(), Reason::Manual, &[]).await.unwrap_err();
    assert!(matches!(error, BackupError::Member { .. }), "{error}");
    assert!(error.to_string().contains("changed on disk") && error.to_string().contains(&sha), "{error}");
    let left: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "no archive and no partial file: {left:?}");
    store.close().await;
}

/// A backup into `<data_dir>/backups` after the data directory was deleted under the server fails,
/// saying where, and recreates nothing.
#[tokio::test]
async fn a_backup_after_the_data_directory_was_deleted_fails_and_recreates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = Store::open(&data).await.unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let error =
        create(&store, &data.join("artifacts"), &data.join("backups"), Reason::Scheduled, &[]).await.unwrap_err();
    assert!(matches!(error, BackupError::Destination { .. }), "{error}");
    assert!(error.to_string().contains("backups"), "{error}");
    assert!(!data.exists(), "the data directory stays deleted");
    store.close().await;
}
