//! What the access tests share: a real SQLite store in a temporary directory, a clock the test moves, and
//! raw looks at the database files.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_access::{Access, AccessConfig, Principal, Role};
use plugwatch_store::Store;

pub const ADMIN_PASSWORD: &str = "admin-password-0123";
pub const ALICE_PASSWORD: &str = "alice-password-4567";
pub const BOB_PASSWORD: &str = "bob-password-89ab";

/// A clock that stands still until the test moves it.
#[derive(Clone)]
pub struct Clock(Arc<Mutex<SystemTime>>);

impl Clock {
    pub fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub access: Access,
    pub clock: Clock,
}

pub async fn fixture() -> Fixture {
    fixture_with(AccessConfig::default()).await
}

pub async fn fixture_with(config: AccessConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let clock = Clock(Arc::new(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_750_000_000))));
    let now = clock.clone();
    let access = Access::with_clock(store.clone(), config, move || now.now());
    Fixture { dir, store, access, clock }
}

impl Fixture {
    /// `admin` (from bootstrap), `alice` (operator) and `bob` (viewer).
    pub async fn with_users(self) -> Self {
        self.access.bootstrap_admin(Some(ADMIN_PASSWORD)).await.unwrap();
        self.access.create_user("alice", Role::Operator, ALICE_PASSWORD).await.unwrap();
        self.access.create_user("bob", Role::Viewer, BOB_PASSWORD).await.unwrap();
        self
    }

    /// The principal of a fresh session of `username`.
    pub async fn sign_in(&self, username: &str, password: &str) -> Principal {
        self.access.login(username, password, "127.0.0.1").await.unwrap().0
    }

    /// Every byte of the database (main file, WAL and shared memory), to search for secrets.
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let path: PathBuf = self.dir.path().join(format!("plugwatch.db{suffix}"));
            if let Ok(b) = std::fs::read(path) {
                bytes.extend(b);
            }
        }
        bytes
    }

    /// A separate connection to the database, for reading tables directly.
    pub async fn raw(&self) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}", self.dir.path().join("plugwatch.db").display());
        sqlx::SqlitePool::connect(&url).await.unwrap()
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

pub const MINUTE: Duration = Duration::from_secs(60);
