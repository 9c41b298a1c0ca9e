//! Plugin secrets through the real server: the plugin reads them, the API never returns them, the database
//! files never hold them in clear, and a start with the wrong key is refused without touching the files.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use plugwatch_server::{ServeConfig, Server};
use serde_json::json;

use crate::support::*;

const SECRET: &str = "sk_live_51Hq7pQ2eZvKYlo2C0rder5Courier";

/// Waits until a stopped server's last database connection has closed: it removes the WAL files as it
/// goes, so reading the directory before then races with it.
async fn closed(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ["plugwatch.db-wal", "plugwatch.db-shm"].iter().any(|f| dir.join(f).exists())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// The database files (plugwatch.db, -wal, -shm) holding the secret or its base64.
fn leaks(dir: &Path) -> Vec<String> {
    let forms = [SECRET.as_bytes().to_vec(), base64::engine::general_purpose::STANDARD.encode(SECRET).into_bytes()];
    files(dir)
        .into_iter()
        .filter(|(name, bytes)| {
            name.starts_with("plugwatch.db") && forms.iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice()))
        })
        .map(|(name, _)| name)
        .collect()
}

/// The prefixer puts its `prefix` before the input: here the secret, so the output proves the plugin read it.
async fn plugin_output(server: &TestServer) -> String {
    let (status, body) = server.invoke("vault", "h", json!(1)).await;
    assert_eq!(status, 200, "{body}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(body["output_base64"].as_str().unwrap()).unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_secret_reaches_the_plugin_but_never_the_api_or_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path().to_owned(), |_| {}).await;
    let manifest = json!({"name": "vault", "version": "1.0.0", "secrets": {"prefix": SECRET}});
    let (status, body) = server.upload(manifest, prefixer()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(plugin_output(&server).await, format!("{SECRET}1"));
    let (_, detail) = server.get("/api/v1/plugins/vault").await;
    assert!(!detail.to_string().contains(SECRET), "{detail}");

    let open = files(dir.path());
    assert!(open.get("plugwatch.db-wal").is_some_and(|wal| !wal.is_empty()), "the WAL is in use");
    assert_eq!(leaks(dir.path()), Vec::<String>::new(), "a database file holds the secret in clear");
    server.stop().await;
    closed(dir.path()).await;
    assert_eq!(leaks(dir.path()), Vec::<String>::new());

    // The data directory's generated key opens it again after a restart.
    let server = TestServer::start_in(dir.path().to_owned(), |_| {}).await;
    assert_eq!(plugin_output(&server).await, format!("{SECRET}1"));
    server.stop().await;
    closed(dir.path()).await;

    // Another key: refused, naming both, and not one byte of the data directory changes.
    let generated = plugwatch_store::SecretKey::read_file(&dir.path().join("secret.key")).unwrap();
    let other = "ab".repeat(32);
    let other_id = plugwatch_store::SecretKey::parse(&other).unwrap().id().to_owned();
    let before = files(dir.path());
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        secret_key: Some(plugwatch_server::config::Secret(other.clone())),
        ..ServeConfig::default()
    };
    let error = Server::bind(config.clone()).await.err().expect("the wrong key is refused").to_string();
    assert!(
        error.contains(&format!("encrypted with key {}; the configured key is {other_id}", generated.id())),
        "{error}"
    );
    assert_eq!(files(dir.path()), before, "a refused start writes nothing");

    // The same key given by the operator works, and takes precedence over the key file.
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), std::fs::read(dir.path().join("secret.key")).unwrap()).unwrap();
    let server = TestServer::start_in(dir.path().to_owned(), |c| {
        c.secret_key_file = Some(key_file.path().to_owned());
    })
    .await;
    assert_eq!(plugin_output(&server).await, format!("{SECRET}1"));
    server.stop().await;
    closed(dir.path()).await;
}

#[tokio::test]
async fn a_malformed_key_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |configure: &dyn Fn(&mut ServeConfig)| {
        let mut config = ServeConfig { data_dir: dir.path().to_owned(), ..ServeConfig::default() };
        configure(&mut config);
        config.validate().unwrap_err()
    };
    let short = bad(&|c| c.secret_key = Some(plugwatch_server::config::Secret("abcd".repeat(15))));
    assert!(short.contains("`secret_key`") && short.contains("64 hexadecimal digits"), "{short}");
    assert!(!short.contains(&"abcd".repeat(15)), "the error never repeats the key: {short}");
    let file = dir.path().join("key");
    std::fs::write(&file, base64::engine::general_purpose::STANDARD.encode([1u8; 16])).unwrap();
    let wrong_length = bad(&|c| c.secret_key_file = Some(file.clone()));
    assert!(wrong_length.contains("`secret_key_file`") && wrong_length.contains("16 bytes"), "{wrong_length}");
    let missing = bad(&|c| c.secret_key_file = Some(dir.path().join("nope")));
    assert!(missing.contains("`secret_key_file`") && missing.contains("nope"), "{missing}");
    assert!(files(dir.path()).keys().all(|name| name == "key"), "nothing was created");
}
