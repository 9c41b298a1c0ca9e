//! Several `plugwatch serve` replicas on one PostgreSQL database, as an operator runs them behind a load
//! balancer: the real binary, one database, requests spread over the replicas. Telemetry merged across
//! replicas, registry changes reaching every replica, the leader killed and alerting carrying on, and
//! access (lockout, revoked tokens, disabled users) holding on every replica, and Redis as the shared
//! cache going away and coming back under load.
//!
//! PostgreSQL only: these tests need `PLUGWATCH_TEST_POSTGRES` and fail without it. `cargo xtask test`
//! runs them in its PostgreSQL pass, against the PostgreSQL it starts on loopback; its SQLite pass sets
//! `PLUGWATCH_TEST_CLUSTER=later` so that they return at once there.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// Every replica's key for secrets at rest (they must share one).
const SECRET_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";

/// A database of this test's own on the PostgreSQL server the tests run against; `None` in the SQLite
/// pass of `cargo xtask test`, which runs these tests in its PostgreSQL pass.
fn database(dir: &Path) -> Option<String> {
    if plugwatch_store::testing::postgres_server().is_none()
        && std::env::var("PLUGWATCH_TEST_CLUSTER").as_deref() == Ok("later")
    {
        eprintln!("not run here: the PostgreSQL pass of `cargo xtask test` runs it");
        return None;
    }
    let server = plugwatch_store::testing::postgres_server().unwrap_or_else(|| {
        panic!(
            "the cluster tests need PostgreSQL: set {} (as `cargo xtask test` does)",
            plugwatch_store::testing::POSTGRES_SERVER
        )
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    Some(runtime.block_on(plugwatch_store::testing::postgres_database(&server, dir)).unwrap())
}

/// Starts replica `name` on `url` with its own data directory under `dir`, quick intervals, and waits
/// until it is ready.
fn replica(dir: &Path, url: &str, name: &str) -> Running {
    replica_with(dir, url, name, &[])
}

/// [`replica`] with more settings.
fn replica_with(dir: &Path, url: &str, name: &str, more: &[(&str, &str)]) -> Running {
    let data = dir.join(name);
    let server = serve(
        &["--data-dir", data.to_str().unwrap(), "--replica-id", name],
        &[
            ("PLUGWATCH_DATABASE_URL", url),
            ("PLUGWATCH_SECRET_KEY", SECRET_KEY),
            ("PLUGWATCH_TELEMETRY__FLUSH_INTERVAL_SECS", "1"),
            ("PLUGWATCH_TELEMETRY__HOST_INTERVAL_SECS", "1"),
            ("PLUGWATCH_CLUSTER__PEERS_SECS", "1"),
            ("PLUGWATCH_CLUSTER__LEADER_CHECK_SECS", "1"),
            ("PLUGWATCH_ALERTS__INTERVAL_SECS", "1"),
            ("PLUGWATCH_ALERTS__RETRY_BASE_MS", "200"),
            ("PLUGWATCH_ALERTS__RETRY_MAX_SECS", "1"),
        ]
        .iter()
        .chain(more)
        .copied()
        .collect::<Vec<_>>(),
    );
    server.wait_readyz("ready", |status, _| status == 200);
    server
}

/// Three replicas; the first is started (and creates the admin) before the others.
fn three_replicas(dir: &Path, url: &str) -> Vec<Running> {
    let first = replica(dir, url, "r1");
    vec![first, replica(dir, url, "r2"), replica(dir, url, "r3")]
}

fn get_json(server: &Running, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(&server.token, "GET", &format!("{}{path}", server.addr), None);
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn post_json(server: &Running, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, body) = http(
        &server.token,
        "POST",
        &format!("{}{path}", server.addr),
        Some(("application/json", body.to_string().into())),
    );
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn invoke(server: &Running, plugin: &str) -> u16 {
    post_json(server, &format!("/api/v1/plugins/{plugin}/invoke"), serde_json::json!({"hook": "h", "input": 1})).0
}

/// Polls `check` until it holds; returns how long that took. The deadline only keeps a broken cluster
/// from hanging the test; the callers assert the bound they promise.
fn wait_until(what: &str, within: Duration, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The replicas that say they lead.
fn leaders(replicas: &[&Running]) -> Vec<String> {
    replicas
        .iter()
        .filter_map(|r| {
            let (status, cluster) = get_json(r, "/api/v1/cluster");
            (status == 200 && cluster["leader"] == true).then(|| cluster["replica"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn cluster_replicas_merge_their_telemetry_and_hear_each_others_registry_changes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let replicas = three_replicas(dir.path(), &url);
    let [r1, r2, r3] = [&replicas[0], &replicas[1], &replicas[2]];

    // An upload on one replica: the others fetch the component from the database and serve it.
    upload_echo(r1);
    let seen = wait_until("the upload reached r2 and r3", Duration::from_secs(30), || {
        invoke(r2, "echo") == 200 && invoke(r3, "echo") == 200
    });
    eprintln!("an upload on r1 served by r2 and r3 after {seen:?}");
    assert!(seen < Duration::from_secs(2), "an upload took {seen:?} to reach the other replicas");

    // A disable on one replica stops the plugin on every replica within 2 s, and so does the enable.
    let (status, _) = post_json(r2, "/api/v1/plugins/echo/disable", serde_json::json!({}));
    assert_eq!(status, 204);
    let disabled = wait_until("the disable reached r1 and r3", Duration::from_secs(2), || {
        invoke(r1, "echo") == 409 && invoke(r3, "echo") == 409
    });
    let (status, _) = post_json(r3, "/api/v1/plugins/echo/enable", serde_json::json!({}));
    assert_eq!(status, 204);
    let enabled = wait_until("the enable reached r1 and r2", Duration::from_secs(2), || {
        invoke(r1, "echo") == 200 && invoke(r2, "echo") == 200
    });
    eprintln!("disable seen after {disabled:?}, enable after {enabled:?}");

    // Requests spread over the replicas; count what was answered (the calls above included).
    let mut answered = 0u64;
    for i in 0..90 {
        if invoke(&replicas[i % 3], "echo") == 200 {
            answered += 1;
        }
    }
    assert_eq!(answered, 90);
    // Every successful invocation (the 90, and those of the polls above) is counted once, whichever
    // replica served it: each replica's series and overview are the cluster's once all have flushed.
    let totals = |r: &Running| {
        let (_, series) = get_json(r, "/api/v1/plugins/echo/series?step=60");
        let series: u64 =
            series["points"].as_array().unwrap().iter().map(|p| p["outcomes"]["ok"].as_u64().unwrap_or(0)).sum();
        let (_, overview) = get_json(r, "/api/v1/overview");
        let live = &overview["plugins"][0]["live"];
        (series, live["requests"].as_u64().unwrap_or(0) - live_failures(live))
    };
    let served_ok: u64 = replicas.iter().map(ok_invocations_in_metrics).sum();
    assert!(served_ok >= 90, "the replicas' own /metrics count {served_ok} successful invocations");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown: Vec<(u64, u64)> = replicas.iter().map(totals).collect();
        if shown.iter().all(|t| *t == (served_ok, served_ok)) {
            break;
        }
        assert!(Instant::now() < deadline, "served {served_ok} ok; (series, overview) per replica: {shown:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, cluster) = get_json(r1, "/api/v1/cluster");
    let names: Vec<&str> =
        cluster["replicas"].as_array().unwrap().iter().map(|r| r["replica"].as_str().unwrap()).collect();
    assert_eq!(names, ["r1", "r2", "r3"]);
    assert_eq!(cluster["database"], "postgres");
    wait_until("one leader", Duration::from_secs(10), || leaders(&[r1, r2, r3]).len() == 1);
}

/// Runs `command` with `input` on its stdin.
fn output_with_stdin(command: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Failures in a live window (everything but `ok`).
fn live_failures(live: &serde_json::Value) -> u64 {
    let requests = live["requests"].as_u64().unwrap_or(0);
    let rate = live["error_rate"].as_f64().unwrap_or(0.0);
    (rate * requests as f64).round() as u64
}

/// The successful invocations of `echo` this replica itself served, from its own `/metrics`.
fn ok_invocations_in_metrics(server: &Running) -> u64 {
    let (status, text) = http(&server.token, "GET", &format!("{}/metrics", server.addr), None);
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with("plugwatch_plugin_invocations_total{") && l.contains(r#"plugin="echo""#))
        .filter(|l| l.contains(r#"outcome="ok""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// A one-shot HTTP receiver on loopback that records each request's body and answers 200 (a test double of
/// a webhook consumer, speaking real HTTP).
fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let received = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                let Ok(n) = stream.read(&mut buf) else { break None };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break Some(body.to_owned());
                }
            };
            if let Some(body) = body {
                received.lock().unwrap().push(body);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, bodies)
}

#[test]
fn cluster_a_killed_leader_is_replaced_within_15_s_and_a_failing_plugin_still_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let mut replicas = three_replicas(dir.path(), &url);
    wait_until("one leader", Duration::from_secs(10), || leaders(&replicas.iter().collect::<Vec<_>>()).len() == 1);
    let leader = leaders(&replicas.iter().collect::<Vec<_>>()).remove(0);

    // A quick error-rate rule and a webhook, set up on a replica that is not the leader.
    let follower = replicas.iter().find(|r| !leaders(&[r]).contains(&leader)).unwrap();
    let (hook_url, bodies) = webhook_receiver();
    let (status, channel) = post_json(
        follower,
        "/api/v1/alerts/channels",
        serde_json::json!({"name": "ops webhook", "kind": "webhook", "group_wait_secs": 0, "secrets": {"url": hook_url}}),
    );
    assert_eq!(status, 201, "{channel}");
    let (status, rule) = post_json(
        follower,
        "/api/v1/alerts/rules",
        serde_json::json!({"name": "refuser fails", "metric": "error_rate", "threshold": 0.5, "window_secs": 10,
            "for_secs": 0, "keep_firing_for_secs": 0, "plugins": "refuser", "severity": "critical",
            "summary": "{{plugin}} fails {{value}}"}),
    );
    assert_eq!(status, 201, "{rule}");
    let refuser = wat::parse_str(
        TEMPLATE.replace("{extra}", "").replace("{body}", "(call $err (local.get $input) (local.get $input_len))"),
    )
    .unwrap();
    upload(follower, &serde_json::json!({"name": "refuser", "version": "1.0.0"}), &refuser);

    // Kill the leader outright; another replica takes over within 15 s.
    let index = replicas.iter().position(|r| leaders(&[r]).contains(&leader)).unwrap();
    let mut killed = replicas.remove(index);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let survivors: Vec<&Running> = replicas.iter().collect();
    let took = wait_until("a new leader", Duration::from_secs(15), || leaders(&survivors).len() == 1);
    eprintln!("a new leader after {took:?} ({:?})", leaders(&survivors));

    // The failing plugin, invoked on the survivors, fires the alert and the new leader notifies.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !bodies.lock().unwrap().iter().any(|b| b.contains("refuser") && b.contains("firing")) {
        assert!(Instant::now() < deadline, "no firing notification for refuser; received {:?}", bodies.lock().unwrap());
        let status = invoke(survivors[i % 2], "refuser");
        assert!(status == 422 || status == 200 || status == 503, "invoke answered {status}");
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_lockout_revoked_tokens_and_disabled_users_hold_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let r1 = replica(dir.path(), &url, "r1");
    let r2 = replica(dir.path(), &url, "r2");

    // A token that works on both, revoked on one, stops on the other at once (not after its 5 s cache).
    let (status, created) =
        post_json(&r1, "/api/v1/tokens", serde_json::json!({"name": "host app", "role": "viewer", "service": true}));
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let overview = |r: &Running| http(&secret, "GET", &format!("{}/api/v1/overview", r.addr), None).0;
    assert_eq!((overview(&r1), overview(&r2)), (200, 200), "cached on both now");
    let id = created["token"]["id"].as_i64().unwrap();
    let (status, _) = http(&r1.token, "DELETE", &format!("{}/api/v1/tokens/{id}", r1.addr), None);
    assert!(status == 200 || status == 204, "revoke answered {status}");
    // Within 1 s, well inside the 5 s a cached token would otherwise stay valid.
    let took = wait_until("r2 refuses the revoked token", Duration::from_secs(1), || overview(&r2) == 401);
    eprintln!("a token revoked on r1 refused by r2 after {took:?}");

    // A user disabled on one replica cannot use its token on the other.
    let (status, user) = post_json(
        &r1,
        "/api/v1/users",
        serde_json::json!({"username": "ops", "password": "a long enough password", "role": "operator"}),
    );
    assert_eq!(status, 201, "{user}");
    let ops = user_token(&r1.addr, "ops", "a long enough password", "operator");
    assert_eq!(http(&ops, "GET", &format!("{}/api/v1/overview", r2.addr), None).0, 200, "cached on r2 now");
    let (status, _) = http(
        &r1.token,
        "PATCH",
        &format!("{}/api/v1/users/ops", r1.addr),
        Some(("application/json", br#"{"disabled":true}"#.to_vec())),
    );
    assert_eq!(status, 200);
    let took = wait_until("r2 refuses the disabled user's token", Duration::from_secs(1), || {
        matches!(http(&ops, "GET", &format!("{}/api/v1/overview", r2.addr), None).0, 401 | 403)
    });
    eprintln!("a user disabled on r1 refused by r2 after {took:?}");

    // `plugwatch user` works on the database itself, the replicas running.
    let add = output_with_stdin(
        std::process::Command::new(env!("CARGO_BIN_EXE_plugwatch")).args([
            "user",
            "add",
            "kim",
            "--role",
            "viewer",
            "--password-stdin",
            "--database",
            &url,
        ]),
        b"kim's long password\n",
    );
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let kim = user_token(&r2.addr, "kim", "kim's long password", "viewer");
    assert_eq!(http(&kim, "GET", &format!("{}/api/v1/overview", r1.addr), None).0, 200);

    // Failed sign-ins on one replica lock the username (and the address) out on the other.
    let login = |r: &Running, password: &str| {
        let body = serde_json::json!({"username": "admin", "password": password}).to_string();
        http("", "POST", &format!("{}/api/v1/auth/login", r.addr), Some(("application/json", body.into_bytes()))).0
    };
    let mut refused = 0;
    while login(&r1, "not the password") == 401 {
        refused += 1;
        assert!(refused <= 20, "no lockout after 20 failures");
    }
    assert_eq!(login(&r1, ADMIN_PASSWORD), 429, "locked out on r1");
    assert_eq!(login(&r2, ADMIN_PASSWORD), 429, "and on r2, with the right password");
}

/// A backup of the cluster's database taken through a replica's API (its rows, in the archive format a
/// SQLite server writes, and the components), verified; the in-place restore refused while replicas run;
/// the CLI restore into the stopped cluster brings back what was deleted after the backup, components
/// included, on a replica with an empty data directory.
#[test]
fn cluster_a_backup_of_postgresql_is_verified_and_restored_into_the_stopped_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let mut r1 = replica(dir.path(), &url, "r1");
    let mut r2 = replica(dir.path(), &url, "r2");
    upload_echo(&r1);
    wait_until("r2 serves the upload", Duration::from_secs(30), || invoke(&r2, "echo") == 200);

    let (status, backup) = post_json(&r2, "/api/v1/backups", serde_json::json!({}));
    let errors: Vec<String> = r2.logs.lock().unwrap().iter().filter(|l| l.contains("ERROR")).cloned().collect();
    assert_eq!(status, 201, "{backup}: {errors:#?}");
    let id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(backup["counts"]["plugins"], 1, "{backup}");
    assert_eq!(backup["counts"]["users"], 1, "{backup}");
    let (status, verified) = post_json(&r2, &format!("/api/v1/backups/{id}/verify"), serde_json::json!({}));
    assert_eq!(status, 200, "{verified}");
    let (status, refused) = post_json(&r2, &format!("/api/v1/backups/{id}/restore"), serde_json::json!({}));
    assert_eq!(status, 501, "an in-place restore under running replicas: {refused}");

    // Changed after the backup: the plugin deleted everywhere.
    let (status, _) = http(&r1.token, "DELETE", &format!("{}/api/v1/plugins/echo", r1.addr), None);
    assert_eq!(status, 204);
    wait_until("r2 forgot the plugin", Duration::from_secs(5), || invoke(&r2, "echo") == 404);
    assert!(r1.terminate().0.success() && r2.terminate().0.success());

    let restore = std::process::Command::new(env!("CARGO_BIN_EXE_plugwatch"))
        .args(["backup", "--data-dir", dir.path().join("r2").to_str().unwrap(), "restore", &id])
        .env("PLUGWATCH_DATABASE_URL", &url)
        .env("PLUGWATCH_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&restore.stdout).into_owned() + &String::from_utf8_lossy(&restore.stderr);
    assert!(restore.status.success(), "{said}");
    assert!(said.contains("Restored"), "{said}");

    // A replica with a data directory of its own, empty: the plugin and its component are back.
    let r3 = replica(dir.path(), &url, "r3");
    wait_until("r3 serves the restored plugin", Duration::from_secs(30), || invoke(&r3, "echo") == 200);
}

/// A second process under a running replica's id is refused. `plugwatch secrets rotate` on PostgreSQL:
/// refused while a replica is connected (naming it), then done
/// with every replica stopped; the replicas start with the new key and the plugin still gets its secret,
/// and the old key no longer opens the database.
#[test]
fn cluster_replica_ids_are_unique_and_secrets_rotate_waits_for_every_replica_to_stop() {
    const SECRET: &str = "kitchen-printer-token-77";
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let mut r1 = replica(dir.path(), &url, "r1");
    // A second process under a running replica's name is refused (it would overwrite r1's telemetry).
    let twin = std::process::Command::new(env!("CARGO_BIN_EXE_plugwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--replica-id", "r1"])
        .args(["--data-dir", dir.path().join("twin").to_str().unwrap()])
        .env("PLUGWATCH_DATABASE_URL", &url)
        .env("PLUGWATCH_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&twin.stderr);
    assert_eq!(twin.status.code(), Some(2), "{said}");
    assert!(said.contains("another running plugwatch uses the replica id `r1`"), "{said}");
    upload_prefixer(&r1, SECRET);
    assert_eq!(prefixer_output(&r1), format!("{SECRET}1"));
    let new_key = "3c".repeat(32);
    let key_file = dir.path().join("new.key");
    std::fs::write(&key_file, &new_key).unwrap();
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_plugwatch"))
            .args(["secrets", "rotate", "--data-dir", dir.path().join("cli").to_str().unwrap()])
            .args(["--new-key-file", key_file.to_str().unwrap()])
            .env("PLUGWATCH_DATABASE_URL", &url)
            .env("PLUGWATCH_SECRET_KEY", SECRET_KEY)
            .output()
            .unwrap()
    };
    let refused = rotate();
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{said}");
    let r1_name = format!("plugwatch {}@", r1.child.id());
    assert!(said.contains("stop every replica first") && said.contains(&r1_name), "{said}");
    assert_eq!(prefixer_output(&r1), format!("{SECRET}1"), "nothing changed under the running replica");

    assert!(r1.terminate().0.success());
    let rotated = rotate();
    let said = String::from_utf8_lossy(&rotated.stderr).into_owned();
    assert!(rotated.status.success(), "{said}");
    assert!(said.contains("Re-encrypted 1 secrets"), "{said}");

    let with_new = serve(
        &["--data-dir", dir.path().join("r2").to_str().unwrap(), "--replica-id", "r2"],
        &[("PLUGWATCH_DATABASE_URL", &url), ("PLUGWATCH_SECRET_KEY", &new_key)],
    );
    with_new.wait_readyz("ready", |status, _| status == 200);
    assert_eq!(prefixer_output(&with_new), format!("{SECRET}1"));
    let old = std::process::Command::new(env!("CARGO_BIN_EXE_plugwatch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().join("r3").to_str().unwrap()])
        .env("PLUGWATCH_DATABASE_URL", &url)
        .env("PLUGWATCH_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&old.stderr).contains("the configured key is"));
}

/// A `redis-server` of this test's own on `port`, keeping nothing on disk; stopped when dropped.
struct RedisServer(std::process::Child);

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("this test needs redis-server (Debian's package; `cargo xtask tools` installs it)");
        wait_until("redis-server listens", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        RedisServer(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `cache` part of a replica's `/api/v1/cluster`.
fn cache_stats(server: &Running) -> serde_json::Value {
    let (status, cluster) = get_json(server, "/api/v1/cluster");
    assert_eq!(status, 200);
    cluster["cache"].clone()
}

#[test]
fn cluster_with_redis_answers_every_request_while_redis_goes_away_and_uses_it_again_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(dir.path()) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = RedisServer::start(port);
    let cache = format!("redis://127.0.0.1:{port}");
    // No periodic re-read within the test: every change below travels as an announcement.
    let settings = [
        ("PLUGWATCH_CACHE_URL", cache.as_str()),
        ("PLUGWATCH_CLUSTER__CACHE_TTL_SECS", "1"),
        ("PLUGWATCH_CLUSTER__POLL_SECS", "600"),
    ];
    let first = replica_with(dir.path(), &url, "r1", &settings);
    let replicas =
        [first, replica_with(dir.path(), &url, "r2", &settings), replica_with(dir.path(), &url, "r3", &settings)];
    let [r1, r2, r3] = [&replicas[0], &replicas[1], &replicas[2]];
    upload_echo(r1);
    upload(r1, &serde_json::json!({"name": "spare", "version": "1.0.0"}), &echo_wasm());
    wait_until("the uploads reached r2 and r3", Duration::from_secs(2), || {
        [r2, r3].iter().all(|r| invoke(r, "echo") == 200 && invoke(r, "spare") == 200)
    });
    assert!(cache_stats(r1)["published"].as_u64().unwrap() >= 2, "the uploads were announced through Redis");

    // Clients on every replica, invoking and reading the dashboard, the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (addr, token, stop) = (replicas[i].addr.clone(), replicas[i].token.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut answered, mut refused) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let body = br#"{"hook":"h","input":1}"#.to_vec();
                    let invoke = format!("{addr}/api/v1/plugins/echo/invoke");
                    let (status, text) = http(&token, "POST", &invoke, Some(("application/json", body)));
                    match status {
                        200 => answered += 1,
                        _ => refused.push(format!("invoke: {status} {text}")),
                    }
                    for read in ["/api/v1/overview?sparkline=true", "/api/v1/plugins/echo/series?step=10"] {
                        let (status, text) = http(&token, "GET", &format!("{addr}{read}"), None);
                        if status != 200 {
                            refused.push(format!("{read}: {status} {text}"));
                        }
                    }
                }
                (answered, refused)
            })
        })
        .collect();
    wait_until("dashboard reads answered from Redis", Duration::from_secs(10), || {
        replicas.iter().all(|r| cache_stats(r)["hits"].as_u64().unwrap() > 0)
    });

    // Redis goes away mid-run: nobody is refused, and a change still reaches every replica in 2 s,
    // through the database.
    drop(redis);
    wait_until("every replica noticed", Duration::from_secs(10), || {
        replicas.iter().all(|r| cache_stats(r)["up"] == false)
    });
    let (status, _) = post_json(r2, "/api/v1/plugins/spare/disable", serde_json::json!({}));
    assert_eq!(status, 204);
    let seen = wait_until("the disable reached r1 and r3 without Redis", Duration::from_secs(2), || {
        invoke(r1, "spare") == 409 && invoke(r3, "spare") == 409
    });
    eprintln!("without Redis, a disable on r2 reached r1 and r3 after {seen:?}");

    // Redis comes back: every replica uses it again, for reads and for announcements.
    let hits_before: Vec<u64> = replicas.iter().map(|r| cache_stats(r)["hits"].as_u64().unwrap()).collect();
    let _redis = RedisServer::start(port);
    wait_until("every replica reads from Redis again", Duration::from_secs(15), || {
        replicas.iter().zip(&hits_before).all(|(r, before)| {
            let stats = cache_stats(r);
            stats["up"] == true && stats["hits"].as_u64().unwrap() > *before
        })
    });
    let published = cache_stats(r3)["published"].as_u64().unwrap();
    let (status, _) = post_json(r3, "/api/v1/plugins/spare/enable", serde_json::json!({}));
    assert_eq!(status, 204);
    wait_until("the enable reached r1 and r2", Duration::from_secs(2), || {
        invoke(r1, "spare") == 200 && invoke(r2, "spare") == 200
    });
    assert!(cache_stats(r3)["published"].as_u64().unwrap() > published, "the enable went through Redis again");

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = 0;
    for client in clients {
        let (n, refused) = client.join().unwrap();
        assert!(refused.is_empty(), "requests refused while Redis came and went: {refused:?}");
        answered += n;
    }
    // What the dashboard shows through the cache converges on what was served.
    let served_ok: u64 = replicas.iter().map(ok_invocations_in_metrics).sum();
    assert!(served_ok >= answered, "served {served_ok}, clients got {answered}");
    wait_until("every replica's series shows every invocation", Duration::from_secs(10), || {
        replicas.iter().all(|r| {
            let (_, series) = get_json(r, "/api/v1/plugins/echo/series?step=60");
            let ok: u64 =
                series["points"].as_array().unwrap().iter().map(|p| p["outcomes"]["ok"].as_u64().unwrap_or(0)).sum();
            ok == served_ok
        })
    });
    // Each replica said once that Redis went away and once that it was back.
    for r in &replicas {
        let said = |what: &str| r.logs.lock().unwrap().iter().filter(|l| l.contains(what)).count();
        assert_eq!((said("Redis is unavailable"), said("Redis is back")), (1, 1), "{}", r.addr);
    }
    eprintln!("{answered} invocations answered by the clients while Redis came and went, none refused");
}
