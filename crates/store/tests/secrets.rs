//! Secrets at rest against real SQLite files: sealed on write and opened on read, refused under a wrong key
//! (naming both key ids, changing nothing), refused when altered or moved to another row, never in the
//! database files in clear — including the clear-text rows of a database made by the previous schema —
//! and rotated to a new key in one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use plugwatch_model::Limits;
use plugwatch_store::{
    FailurePolicy, KEY_FILE, KeySource, NewVersion, SecretError, SecretKey, SecretValue, Store, StoreError,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Pool, Sqlite};

const SECRET: &str = "sk_live_51Hq7pQ2eZvKYlo2C0rder5Courier";
const OTHER_SECRET: &str = "smtp-password-Vq93kDpw0rdL0ng3nough";
const WAL_SECRET: &str = "webhook-token-Zr82LmQx5tWvN0pe";

fn version(plugin: &str, version: &str, secrets: &[(&str, &str)]) -> NewVersion {
    NewVersion {
        plugin: plugin.into(),
        version: version.into(),
        sha256: "a".repeat(64),
        size: 100,
        description: None,
        failure_policy: FailurePolicy::FailOpen,
        limits: Limits::default(),
        hooks: vec![],
        config: [("region".to_owned(), "kr".to_owned())].into(),
        secrets: secrets.iter().map(|(k, v)| (k.to_string(), SecretValue::from(*v))).collect(),
    }
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32])
}

fn configured(byte: u8) -> KeySource {
    KeySource::Configured { key: key(byte), origin: "the test".into() }
}

/// Every file in the directory (the database, its -wal and -shm, the key file), by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// The size and sha256 of the database file and the key file, by name (a byte-for-byte comparison,
/// printable). The -wal and -shm files are left out: opening a connection may rewrite SQLite's own
/// bookkeeping there (see the report on this branch).
fn digests(dir: &Path) -> BTreeMap<String, (usize, String)> {
    use sha2::Digest;
    files(dir)
        .into_iter()
        .filter(|(name, _)| name == "plugwatch.db" || name == KEY_FILE)
        .map(|(name, bytes)| (name, (bytes.len(), hex::encode(sha2::Sha256::digest(&bytes)))))
        .collect()
}

/// The names of the database files in `dir` that contain `needle`, its base64 or its hex.
fn leaks(dir: &Path, needle: &str) -> Vec<String> {
    let forms = [
        needle.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD.encode(needle).into_bytes(),
        hex::encode(needle).into_bytes(),
    ];
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.starts_with("plugwatch.db"))
        .filter(|(_, bytes)| forms.iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice())))
        .map(|(name, _)| name)
        .collect()
}

async fn raw(dir: &Path) -> Pool<Sqlite> {
    let options = SqliteConnectOptions::from_str("sqlite://").unwrap().filename(dir.join("plugwatch.db"));
    SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
}

#[tokio::test]
async fn secrets_round_trip_and_the_database_files_never_hold_them_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .insert_version(&version("promo", "1.0.0", &[("api_key", SECRET), ("smtp", OTHER_SECRET)]), false)
        .await
        .unwrap();
    let v = store.version("promo", "1.0.0").await.unwrap();
    assert_eq!(v.secrets["api_key"].expose(), SECRET);
    assert_eq!(v.secrets["smtp"].expose(), OTHER_SECRET);
    assert_eq!(v.config["region"], "kr");
    assert!(!format!("{v:?}").contains(SECRET), "Debug shows no secret");

    // While the store is open the rows sit in the WAL; read every file as an attacker with the disk would.
    let open_files = files(dir.path());
    assert!(open_files.get("plugwatch.db-wal").is_some_and(|wal| !wal.is_empty()), "the WAL is in use");
    assert!(open_files.contains_key("plugwatch.db-shm"));
    assert_eq!(leaks(dir.path(), SECRET), Vec::<String>::new());
    assert_eq!(leaks(dir.path(), OTHER_SECRET), Vec::<String>::new());
    assert!(!leaks(dir.path(), "promo").is_empty(), "the search itself finds what is stored in clear");
    store.close().await;
    assert_eq!(leaks(dir.path(), SECRET), Vec::<String>::new());

    // The generated key is private to plugwatch and opens the secrets on the next start.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.version("promo", "1.0.0").await.unwrap().secrets["api_key"].expose(), SECRET);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_refused_naming_the_key_ids_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    store.insert_version(&version("promo", "1.0.0", &[("api_key", SECRET)]), false).await.unwrap();
    store.close().await;
    let before = digests(dir.path());

    let error = Store::open_with(dir.path(), configured(2)).await.err().expect("a wrong key is refused").to_string();
    assert!(error.contains(&format!("encrypted with key {}", key(1).id())), "{error}");
    assert!(error.contains(&format!("the configured key is {}", key(2).id())), "{error}");
    assert_eq!(digests(dir.path()), before, "a refused start changes no byte and adds no file");

    // No key configured and no key file: nothing is generated over secrets sealed with another key.
    let error = Store::open(dir.path()).await.err().expect("a missing key is refused");
    assert!(matches!(error, StoreError::Secret(SecretError::MissingKey { ref stored, .. }) if stored == key(1).id()));
    assert!(error.to_string().contains(key(1).id()), "{error}");
    assert!(!dir.path().join(KEY_FILE).exists(), "no key was generated");

    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    assert_eq!(store.version("promo", "1.0.0").await.unwrap().secrets["api_key"].expose(), SECRET);
}

#[tokio::test]
async fn an_altered_value_or_one_moved_to_another_row_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    store
        .insert_version(&version("promo", "1.0.0", &[("api_key", SECRET), ("smtp", OTHER_SECRET)]), false)
        .await
        .unwrap();
    store.insert_version(&version("courier", "1.0.0", &[("api_key", OTHER_SECRET)]), false).await.unwrap();
    store.close().await;

    // Copy promo's api_key ciphertext over courier's: same key name, same key, another row.
    let db = raw(dir.path()).await;
    sqlx::query(
        "UPDATE plugin_config SET value = (SELECT c.value FROM plugin_config c JOIN plugin_versions v ON v.id = c.version_id
            JOIN plugins p ON p.id = v.plugin_id WHERE p.name = 'promo' AND c.key = 'api_key')
         WHERE key = 'api_key' AND version_id = (SELECT v.id FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id
            WHERE p.name = 'courier')",
    )
    .execute(&db)
    .await
    .unwrap();
    // Swap promo's two values with each other.
    sqlx::query(
        "UPDATE plugin_config SET value = CASE key WHEN 'api_key' THEN (SELECT value FROM plugin_config x WHERE x.version_id = plugin_config.version_id AND x.key = 'smtp')
            ELSE (SELECT value FROM plugin_config x WHERE x.version_id = plugin_config.version_id AND x.key = 'api_key') END
         WHERE secret = 1 AND version_id = (SELECT v.id FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id WHERE p.name = 'promo')",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;

    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    let moved = store.version("courier", "1.0.0").await.unwrap_err().to_string();
    assert!(moved.contains("plugin_config/courier/1.0.0/api_key") && moved.contains("altered"), "{moved}");
    let swapped = store.version("promo", "1.0.0").await.unwrap_err().to_string();
    assert!(swapped.contains("plugin_config/promo/1.0.0/") && swapped.contains("altered"), "{swapped}");
    store.close().await;

    // One flipped bit in a ciphertext.
    let db = raw(dir.path()).await;
    let (value,): (String,) =
        sqlx::query_as("SELECT value FROM plugin_config WHERE secret = 1 LIMIT 1").fetch_one(&db).await.unwrap();
    let (prefix, body) = value.rsplit_once(':').unwrap();
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    bytes[30] ^= 0x01;
    let tampered = format!("{prefix}:{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    sqlx::query("UPDATE plugin_config SET value = $1 WHERE value = $2")
        .bind(tampered)
        .bind(&value)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    let mut errors = Vec::new();
    for plugin in ["promo", "courier"] {
        if let Err(e) = store.version(plugin, "1.0.0").await {
            errors.push(e.to_string());
        }
    }
    assert!(errors.iter().all(|e| e.contains("altered")), "{errors:?}");
}

/// A database as the previous schema (migrations 0001 and 0002) wrote it: secrets in clear, one of them
/// in a plugin deleted since, and the newest rows still in the WAL.
async fn legacy_database(dir: &Path) -> Pool<Sqlite> {
    let migrations = tempfile::tempdir().unwrap();
    for (name, sql) in [
        ("0001_init.sql", include_str!("../migrations/sqlite/0001_init.sql")),
        ("0002_access.sql", include_str!("../migrations/sqlite/0002_access.sql")),
    ] {
        std::fs::write(migrations.path().join(name), sql).unwrap();
    }
    let options = SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(dir.join("plugwatch.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .auto_vacuum(sqlx::sqlite::SqliteAutoVacuum::Incremental);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(migrations.path()).await.unwrap().run(&pool).await.unwrap();
    for (id, name, secret) in [(1, "promo", SECRET), (2, "gone", OTHER_SECRET)] {
        sqlx::query(
            "INSERT INTO plugins (id, name, created_at, updated_at, active_version_id) VALUES ($1, $2, 0, 0, $1)",
        )
        .bind(id)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO plugin_versions (id, plugin_id, version, sha256, size, failure_policy, timeout_us, memory_bytes,
                max_input_bytes, max_output_bytes, max_log_bytes, max_concurrency, max_queue, created_at)
             VALUES ($1, $1, '1.0.0', $2, 1, 'fail_open', 100000, 65536, 1024, 1024, 1024, 1, 1, 0)",
        )
        .bind(id)
        .bind("b".repeat(64))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO plugin_config (version_id, key, value, secret) VALUES ($1, 'api_key', $2, 1), ($1, 'region', 'kr', 0)")
            .bind(id)
            .bind(secret)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    // Deleted without secure delete: its plaintext stays in the page's free space.
    sqlx::query("DELETE FROM plugins WHERE name = 'gone'").execute(&pool).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    // Written since the last checkpoint: this one is in the WAL.
    sqlx::query("INSERT INTO plugin_config (version_id, key, value, secret) VALUES (1, 'webhook', $1, 1)")
        .bind(WAL_SECRET)
        .execute(&pool)
        .await
        .unwrap();
    pool
}

#[tokio::test]
async fn clear_text_secrets_of_an_older_database_are_sealed_and_scrubbed_from_its_files() {
    let old = tempfile::tempdir().unwrap();
    let pool = legacy_database(old.path()).await;
    // What a crash leaves: the database with its WAL, copied while the old process has it open.
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files(old.path()) {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    pool.close().await;
    assert!(leaks(dir.path(), SECRET).contains(&"plugwatch.db".to_owned()), "the old database holds it in clear");
    assert!(leaks(dir.path(), WAL_SECRET).contains(&"plugwatch.db-wal".to_owned()), "and its WAL");
    let deleted = leaks(dir.path(), OTHER_SECRET);
    assert!(deleted.contains(&"plugwatch.db".to_owned()), "the deleted plugin's secret is still there: {deleted:?}");

    let store = Store::open_with(dir.path(), configured(3)).await.unwrap();
    let v = store.version("promo", "1.0.0").await.unwrap();
    assert_eq!((v.secrets["api_key"].expose(), v.secrets["webhook"].expose()), (SECRET, WAL_SECRET));
    for secret in [SECRET, WAL_SECRET, OTHER_SECRET] {
        assert_eq!(leaks(dir.path(), secret), Vec::<String>::new(), "no file holds {secret} in clear while open");
    }
    store.close().await;
    for secret in [SECRET, WAL_SECRET, OTHER_SECRET] {
        assert_eq!(leaks(dir.path(), secret), Vec::<String>::new(), "nor after closing");
    }

    let db = raw(dir.path()).await;
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT value, sealed FROM plugin_config WHERE secret = 1").fetch_all(&db).await.unwrap();
    db.close().await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(value, sealed)| *sealed && value.starts_with(&format!("pw1:{}:", key(3).id()))));
}

#[tokio::test]
async fn rotation_re_encrypts_every_secret_at_once_and_leaves_no_old_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), configured(1)).await.unwrap();
    store.insert_version(&version("promo", "1.0.0", &[("api_key", SECRET)]), false).await.unwrap();
    store
        .insert_version(&version("promo", "2.0.0", &[("api_key", SECRET), ("smtp", OTHER_SECRET)]), false)
        .await
        .unwrap();
    let db = raw(dir.path()).await;
    let old: Vec<(String,)> =
        sqlx::query_as("SELECT value FROM plugin_config WHERE secret = 1").fetch_all(&db).await.unwrap();
    db.close().await;
    assert_eq!(old.len(), 3);

    let same = store.rotate_secret_key(&key(1)).await.unwrap_err();
    assert!(matches!(same, StoreError::Secret(SecretError::SameKey(_))), "{same}");
    let rotated = store.rotate_secret_key(&key(2)).await.unwrap();
    assert_eq!(
        (rotated.old_key_id.as_str(), rotated.new_key_id.as_str(), rotated.values),
        (key(1).id(), key(2).id(), 3)
    );
    // The open store uses the new key at once.
    assert_eq!(store.version("promo", "2.0.0").await.unwrap().secrets["smtp"].expose(), OTHER_SECRET);
    for (value,) in &old {
        assert_eq!(leaks(dir.path(), value), Vec::<String>::new(), "an old ciphertext is left in the files");
    }
    store.close().await;

    let error = Store::open_with(dir.path(), configured(1)).await.err().unwrap().to_string();
    assert!(error.contains(key(2).id()) && error.contains(key(1).id()), "{error}");
    let store = Store::open_with(dir.path(), configured(2)).await.unwrap();
    assert_eq!(store.version("promo", "1.0.0").await.unwrap().secrets["api_key"].expose(), SECRET);
    store.close().await;

    // A rotation that fails half-way (one value was altered) changes nothing: every value stays under key 2.
    let db = raw(dir.path()).await;
    sqlx::query("UPDATE plugin_config SET value = substr(value, 1, length(value) - 4) || 'AAA=' WHERE key = 'smtp'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let store = Store::open_with(dir.path(), configured(2)).await.unwrap();
    let error = store.rotate_secret_key(&key(3)).await.unwrap_err();
    assert!(error.to_string().contains("plugin_config/promo/2.0.0/smtp"), "{error}");
    assert_eq!(store.version("promo", "1.0.0").await.unwrap().secrets["api_key"].expose(), SECRET);
    assert_eq!(store.secret_key_id().as_deref(), Some(key(2).id()));
}

#[tokio::test]
async fn without_a_key_secrets_can_be_neither_stored_nor_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), KeySource::None).await.unwrap();
    let error = store.insert_version(&version("promo", "1.0.0", &[("api_key", SECRET)]), false).await.unwrap_err();
    assert!(matches!(error, StoreError::Secret(SecretError::NoKey { .. })), "{error}");
    assert!(store.plugins().await.unwrap().is_empty(), "nothing was stored");
    assert!(!dir.path().join(KEY_FILE).exists(), "no key is generated");
}
