//! The database servers the tests need, on loopback: PostgreSQL (the store and API tests run once more
//! on it) and Redis. Each is checked and, when it does not answer, started from the machine's own
//! installation (Debian's `pg_ctlcluster`, `redis-server`), listening on 127.0.0.1 only.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the tests find PostgreSQL unless `PLUGWATCH_TEST_POSTGRES` says otherwise: trust authentication on
/// loopback, as this machine (and CI) has it.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The variable `plugwatch_store::testing::POSTGRES_SERVER` names (xtask does not link the store).
pub const TEST_POSTGRES: &str = "PLUGWATCH_TEST_POSTGRES";

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var(TEST_POSTGRES).ok().filter(|url| !url.is_empty()).unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}
const POSTGRES: &str = "127.0.0.1:5432";
const REDIS: &str = "127.0.0.1:6379";

/// Makes sure PostgreSQL and Redis answer on loopback, starting them if they do not (a server named by
/// `PLUGWATCH_TEST_POSTGRES` is someone else's to run).
pub fn ensure() -> anyhow::Result<()> {
    if std::env::var_os(TEST_POSTGRES).is_none() && !answers(POSTGRES) {
        println!("xtask: PostgreSQL does not answer on {POSTGRES}; starting it");
        let clusters = Command::new("pg_lsclusters").arg("--no-header").output().context(
            "PostgreSQL is needed on 127.0.0.1:5432 (Debian: apt-get install postgresql, trust authentication for \
             local connections)",
        )?;
        for line in String::from_utf8_lossy(&clusters.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [version, cluster, ..] = fields[..] {
                crate::run(Command::new("pg_ctlcluster").args([version, cluster, "start"]))?;
            }
        }
        wait_for(POSTGRES, "PostgreSQL")?;
    }
    if !answers(REDIS) {
        println!("xtask: Redis does not answer on {REDIS}; starting it");
        crate::run(
            Command::new("redis-server")
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "6379",
                    "--daemonize",
                    "yes",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null()),
        )
        .context("Redis is needed on 127.0.0.1:6379 (Debian: apt-get install redis-server)")?;
        wait_for(REDIS, "Redis")?;
    }
    Ok(())
}

fn answers(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn wait_for(addr: &str, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if answers(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} was started but does not answer on {addr}")
}

/// Drops the databases earlier test runs left on the PostgreSQL server (`plugwatch_test_*`).
pub fn drop_test_databases() -> anyhow::Result<()> {
    let listed = psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'plugwatch\\_test\\_%'")?;
    for name in listed.lines().filter(|l| !l.is_empty()) {
        psql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
    }
    Ok(())
}

/// Runs `sql` with `psql` on `database` of the tests' PostgreSQL server; its output, unaligned.
pub fn psql(database: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!("{}/{database}", postgres_url()),
            "-c",
            sql,
        ])
        .output()
        .context("psql is needed (Debian: postgresql-client)")?;
    if !out.status.success() {
        bail!("psql `{sql}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
