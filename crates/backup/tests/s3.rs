//! The S3 destination against a real S3-compatible server: moto (from tests/requirements.txt), started
//! on a free loopback port for each test, with its own bucket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugwatch_backup::s3::{PART_SIZE, S3, S3Config, S3Error};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

mod support;

/// How long a test waits for the server to start before it fails.
const WAIT: Duration = Duration::from_secs(30);
const KEY_ID: &str = "testing";
/// A secret no message may show.
const SECRET: &str = "s3cret-Access-Key-4f9a1c";
const BUCKET: &str = "plugwatch-backups";

const MOTO_SERVER: &str = r#"
import json, logging, sys
from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(json.dumps({"port": server.get_host_and_port()[1]}), flush=True)
# Runs until the test closes stdin (or kills it).
sys.stdin.read()
"#;

/// A moto server; killed when dropped.
struct Moto {
    endpoint: String,
    _child: tokio::process::Child,
}

impl Moto {
    /// Starts moto and creates [`BUCKET`] in it.
    async fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join("target/tools/venv/bin/python");
        assert!(python.exists(), "{} is missing: run `cargo xtask tools` (tests/requirements.txt)", python.display());
        let mut child = tokio::process::Command::new(&python)
            .arg("-c")
            .arg(MOTO_SERVER)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starts moto");
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("waited {WAIT:?} for moto's port"))
            .expect("reads moto's output")
            .unwrap_or_else(|| panic!("moto exited before it told its port (is moto installed? `cargo xtask tools`)"));
        let port: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("moto's port: `{line}` is not JSON: {e}"));
        let port = port["port"].as_u64().expect("a port");
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), _child: child };
        moto.put(&format!("/{BUCKET}"), Vec::new()).await;
        moto
    }

    /// A plain (unsigned) PUT, which moto accepts: to make a bucket, or an object S3 does not write.
    async fn put(&self, path: &str, body: Vec<u8>) {
        let response = reqwest::Client::new()
            .put(format!("{}{path}", self.endpoint))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
        assert!(response.status().is_success(), "PUT {path}: {}", response.status());
    }

    /// A configuration for the bucket at no endpoint yet.
    fn unstarted_config() -> S3Config {
        S3Config { bucket: BUCKET.to_owned(), prefix: String::new(), region: "us-east-1".to_owned(), endpoint: None }
    }

    fn config(&self, prefix: &str) -> S3Config {
        S3Config {
            bucket: BUCKET.to_owned(),
            prefix: prefix.to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: Some(self.endpoint.clone()),
        }
    }

    fn s3(&self, prefix: &str) -> S3 {
        S3::with_credentials(&self.config(prefix), KEY_ID, SECRET).expect("an S3 client for moto")
    }
}

/// `len` bytes that do not compress and do not repeat within a part (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("reads the file")))
}

const OLD: &str = "plugwatch-backup-20261201T120000Z.tar.zst";
const NEW: &str = "plugwatch-backup-20261202T120000Z.tar.zst";

#[tokio::test]
async fn an_archive_goes_up_lists_reads_comes_back_and_goes() {
    let moto = Moto::start().await;
    let s3 = moto.s3("plugwatch");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join(OLD);
    std::fs::write(&local, noise(300_000, 1)).expect("writes the archive");
    assert_eq!(s3.list().await.expect("lists"), vec![]);

    s3.upload(&local, OLD).await.expect("uploads");
    assert_eq!(s3.list().await.expect("lists"), vec![(OLD.to_owned(), 300_000)]);

    let original = std::fs::read(&local).expect("reads the archive");
    let head = s3.head_bytes(OLD, 1000).await.expect("reads the head");
    assert_eq!(&head[..], &original[..1000]);
    let whole = s3.head_bytes(OLD, 1 << 20).await.expect("reads more than there is");
    assert_eq!(whole.len(), original.len(), "a head longer than the object is the whole object");

    let back = dir.path().join("restored").join(OLD);
    std::fs::create_dir_all(back.parent().expect("a parent")).expect("makes the restore directory");
    assert_eq!(s3.download(OLD, &back).await.expect("downloads"), 300_000);
    assert_eq!(sha256(&back), sha256(&local));
    let leftovers: Vec<_> = std::fs::read_dir(back.parent().expect("a parent"))
        .expect("lists the restore directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![OLD], "no .partial file is left");

    s3.delete(OLD).await.expect("deletes");
    assert_eq!(s3.list().await.expect("lists"), vec![]);
    let missing = dir.path().join("missing.tar.zst");
    let e = s3.download(OLD, &missing).await.expect_err("the archive is gone");
    assert!(matches!(&e, S3Error::NotFound { id } if id == OLD), "{e:?}");
    assert!(!missing.exists() && !dir.path().join("missing.tar.zst.partial").exists());
    let e = s3.delete(OLD).await.expect_err("it is already gone");
    assert!(matches!(&e, S3Error::NotFound { id } if id == OLD), "{e:?}");
    let e = s3.head_bytes(OLD, 10).await.expect_err("it is gone");
    assert!(matches!(&e, S3Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn only_archives_directly_under_the_prefix_are_listed_newest_first() {
    let moto = Moto::start().await;
    let s3 = moto.s3("team/plugwatch/");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join("archive");
    std::fs::write(&local, b"an archive").expect("writes the archive");
    s3.upload(&local, OLD).await.expect("uploads the old one");
    s3.upload(&local, NEW).await.expect("uploads the new one");
    for other in [
        "team/plugwatch/notes.txt",
        "team/plugwatch/plugwatch-backup-x.tar.zst.partial",
        "team/plugwatch/sub/plugwatch-backup-20261203T120000Z.tar.zst",
        "team/other/plugwatch-backup-20261204T120000Z.tar.zst",
        "team/plugwatch-backup-20261205T120000Z.tar.zst",
        "plugwatch-backup-20261206T120000Z.tar.zst",
    ] {
        moto.put(&format!("/{BUCKET}/{other}"), b"not ours".to_vec()).await;
    }
    let listed = s3.list().await.expect("lists");
    assert_eq!(listed, vec![(NEW.to_owned(), 10), (OLD.to_owned(), 10)]);

    // With no prefix, only the one at the top of the bucket.
    let top = moto.s3("").list().await.expect("lists the top");
    assert_eq!(top, vec![("plugwatch-backup-20261206T120000Z.tar.zst".to_owned(), 8)]);

    for bad in ["notes.txt", "../plugwatch-backup-x.tar.zst", "plugwatch-backup-a/b.tar.zst", ""] {
        let e = s3.upload(&local, bad).await.expect_err(bad);
        assert!(matches!(e, S3Error::InvalidId { .. }), "{bad}: {e:?}");
        let e = s3.download(bad, &dir.path().join("x")).await.expect_err(bad);
        assert!(matches!(e, S3Error::InvalidId { .. }), "{bad}: {e:?}");
    }
}

#[tokio::test]
async fn an_archive_of_several_parts_round_trips_intact() {
    let moto = Moto::start().await;
    let s3 = moto.s3("plugwatch/");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join(NEW);
    let size = 12 << 20;
    assert!(size > PART_SIZE, "the archive needs more than one part");
    std::fs::write(&local, noise(size, 7)).expect("writes the archive");

    s3.upload(&local, NEW).await.expect("uploads in parts");
    assert_eq!(s3.list().await.expect("lists"), vec![(NEW.to_owned(), size as u64)]);
    let back = dir.path().join("restored.tar.zst");
    assert_eq!(s3.download(NEW, &back).await.expect("downloads"), size as u64);
    assert_eq!(sha256(&back), sha256(&local));
}

#[tokio::test]
async fn bad_configurations_and_unreachable_endpoints_say_what_is_wrong_without_the_secret() {
    let good =
        S3Config { bucket: BUCKET.to_owned(), prefix: String::new(), region: "us-east-1".to_owned(), endpoint: None };
    let field_of = |config: &S3Config| match S3::with_credentials(config, KEY_ID, SECRET) {
        Err(S3Error::InvalidConfig { field, .. }) => field,
        Err(e) => panic!("{config:?}: {e}"),
        Ok(s3) => panic!("{config:?} was accepted: {s3:?}"),
    };
    assert_eq!(field_of(&S3Config { bucket: String::new(), ..good.clone() }), "bucket");
    assert_eq!(field_of(&S3Config { bucket: "Not_A_Bucket".into(), ..good.clone() }), "bucket");
    assert_eq!(field_of(&S3Config { endpoint: Some("ftp://x".into()), ..good.clone() }), "endpoint");
    assert_eq!(field_of(&S3Config { prefix: "a//b".into(), ..good.clone() }), "prefix");
    let e = S3Config { endpoint: Some("ftp://x".into()), ..good.clone() }.validate().expect_err("ftp");
    assert!(e.to_string().contains("endpoint"), "{e}");

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("an address").port();
    let closed = S3Config { endpoint: Some(format!("http://127.0.0.1:{port}")), ..good };
    let s3 = S3::with_credentials(&closed, KEY_ID, SECRET).expect("a client (it connects only when used)");
    assert!(!format!("{s3:?}").contains(SECRET), "{s3:?}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join(OLD);
    std::fs::write(&local, b"an archive").expect("writes the archive");
    let errors = [
        s3.list().await.expect_err("nothing answers"),
        s3.upload(&local, OLD).await.expect_err("nothing answers"),
        s3.download(OLD, &dir.path().join("back")).await.expect_err("nothing answers"),
    ];
    for e in errors {
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(matches!(e, S3Error::Store { .. }), "{debug}");
        assert!(shown.contains(BUCKET), "{shown}");
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(shown.contains("Connection refused"), "the root cause is shown: {shown}");
        assert!(!shown.contains(SECRET) && !debug.contains(SECRET), "{debug}");
    }
}

/// A data directory with two plugin versions (artifacts and a sealed secret).
async fn data_dir() -> (tempfile::TempDir, plugwatch_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = plugwatch_store::Store::open(dir.path()).await.unwrap();
    let artifacts = plugwatch_store::Artifacts::new(dir.path()).unwrap();
    for n in 0..2 {
        support::version(&store, &artifacts, "promo", n, true).await;
    }
    (dir, store)
}

#[tokio::test]
async fn backups_kept_in_s3_are_taken_listed_verified_restored_and_deleted() {
    // `Backups` reads credentials from the environment, as in production; every test here that reads
    // them sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
    }
    let moto = Moto::start().await;
    let (dir, store) = data_dir().await;
    let config = plugwatch_backup::BackupConfig { s3: Some(moto.config("plugwatch/")), ..Default::default() };
    let backups = plugwatch_backup::Backups::open(dir.path(), config).unwrap();
    assert_eq!(backups.describe(), format!("s3://{BUCKET}/plugwatch/"));
    let taken = backups.create(&store, plugwatch_backup::Reason::Manual).await.unwrap();
    assert!(moto.s3("plugwatch/").list().await.unwrap().iter().any(|(id, _)| *id == taken.id), "it is in the bucket");
    let listed = backups.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].manifest, taken.manifest, "the manifest is read from the object's first bytes");
    assert_eq!(backups.verify(&taken.id).await.unwrap().members, taken.manifest.members.len());

    // A restore from S3: the second version is gone from the live state, and comes back.
    store.delete_plugin("promo").await.unwrap();
    let keys = plugwatch_store::KeySource::Configured {
        key: plugwatch_store::SecretKey::read_file(&dir.path().join(plugwatch_store::KEY_FILE)).unwrap(),
        origin: "the data directory".into(),
    };
    let no_audit = |_, _: &plugwatch_backup::Restored| async { Ok(()) };
    let restored = backups.restore(Some(&store), &taken.id, keys, no_audit).await.unwrap();
    store.close().await;
    plugwatch_backup::recover(dir.path()).unwrap();
    assert_eq!(restored.counts["plugin_versions"], 2);
    let store = plugwatch_store::Store::open(dir.path()).await.unwrap();
    assert_eq!(store.version("promo", "1.0.1").await.unwrap().secrets["api_key"].expose(), "s3cr3t-promo-1");
    let safety = restored.safety_backup.unwrap();
    assert_eq!(backups.list().await.unwrap().len(), 2, "the safety backup went to S3 too");

    backups.delete(&safety).await.unwrap();
    backups.delete(&taken.id).await.unwrap();
    assert!(backups.list().await.unwrap().is_empty());
    assert!(matches!(backups.delete(&taken.id).await, Err(plugwatch_backup::BackupError::NotFound(_))));
    // Nothing stays behind locally: uploads and downloads are removed once done.
    for leftover in [".backup-upload", ".backup-download"] {
        let files = std::fs::read_dir(dir.path().join(leftover)).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "{leftover}");
    }

    // A scheduled backup that cannot reach the bucket is a failure the status counts (the alert reads it).
    drop(moto);
    let unreachable = plugwatch_backup::BackupConfig {
        s3: Some(S3Config { endpoint: Some("http://127.0.0.1:9".into()), ..Moto::unstarted_config() }),
        ..Default::default()
    };
    let broken = plugwatch_backup::Backups::open(dir.path(), unreachable).unwrap();
    let error = broken.scheduled(&store, std::time::SystemTime::now()).await.unwrap_err().to_string();
    assert!(error.contains(BUCKET) && !error.contains(SECRET), "{error}");
    let status = broken.status();
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.last_error.as_deref(), Some(error.as_str()));
    store.close().await;
}
