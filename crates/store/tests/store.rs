//! The store against a real database (SQLite, or PostgreSQL with `PLUGWATCH_TEST_POSTGRES`, see `support`): plugin versions, telemetry round trips, retention, and how much
//! storage a day of traffic takes.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_model::{Invocation, Level, Limits, LogLine, LogSource, Outcome};
use plugwatch_store::{FailurePolicy, NewVersion, Retention, Store, StoreError, Stored, Subscription};
use plugwatch_telemetry::{Resolution, Telemetry, TelemetryConfig};

fn version(plugin: &str, version: &str, sha: char) -> NewVersion {
    NewVersion {
        plugin: plugin.into(),
        version: version.into(),
        sha256: sha.to_string().repeat(64),
        size: 100,
        description: Some("discounts".into()),
        failure_policy: FailurePolicy::FailClosed,
        limits: Limits { timeout: Duration::from_millis(50), ..Limits::default() },
        hooks: vec![Subscription { hook: "order.pricing".into(), priority: 5 }],
        config: [("region".to_owned(), "kr".to_owned())].into(),
        secrets: [("api_key".to_owned(), "s3cr3t".into())].into(),
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn versions_are_stored_activated_rolled_back_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    assert_eq!(
        store.insert_version(&version("promo", "1.0.0", 'a'), false).await.unwrap(),
        Stored::Created { activated: true }
    );
    assert_eq!(store.insert_version(&version("promo", "1.0.0", 'a'), false).await.unwrap(), Stored::AlreadyPresent);
    assert!(matches!(
        store.insert_version(&version("promo", "1.0.0", 'b'), false).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        store.insert_version(&version("promo", "2.0.0", 'b'), false).await.unwrap(),
        Stored::Created { activated: false }
    );

    let v = store.version("promo", "1.0.0").await.unwrap();
    assert_eq!(v.limits.timeout, Duration::from_millis(50));
    assert_eq!(v.failure_policy, FailurePolicy::FailClosed);
    assert_eq!(v.hooks, vec![Subscription { hook: "order.pricing".into(), priority: 5 }]);
    assert_eq!(v.config["region"], "kr");
    assert_eq!(v.secrets["api_key"].expose(), "s3cr3t");

    assert!(matches!(store.rollback("promo").await, Err(StoreError::NoPreviousVersion(_))));
    store.activate("promo", "2.0.0").await.unwrap();
    let p = store.plugin("promo").await.unwrap();
    assert_eq!((p.active_version.as_deref(), p.previous_version.as_deref()), (Some("2.0.0"), Some("1.0.0")));
    assert_eq!(store.rollback("promo").await.unwrap(), "1.0.0");
    assert_eq!(store.plugin("promo").await.unwrap().active_version.as_deref(), Some("1.0.0"));

    // Storing and activating in one step.
    assert_eq!(
        store.insert_version(&version("promo", "3.0.0", 'c'), true).await.unwrap(),
        Stored::Created { activated: true }
    );
    let p = store.plugin("promo").await.unwrap();
    assert_eq!((p.active_version.as_deref(), p.previous_version.as_deref()), (Some("3.0.0"), Some("1.0.0")));
    assert_eq!(store.insert_version(&version("promo", "2.0.0", 'b'), true).await.unwrap(), Stored::AlreadyPresent);
    assert_eq!(store.plugin("promo").await.unwrap().active_version.as_deref(), Some("2.0.0"));

    store.set_enabled("promo", false).await.unwrap();
    assert!(!store.plugin("promo").await.unwrap().enabled);
    // The same component under another plugin keeps its artifact alive.
    store.insert_version(&version("copy", "1.0.0", 'a'), false).await.unwrap();
    let mut unused = store.delete_plugin("promo").await.unwrap();
    unused.sort();
    assert_eq!(unused, vec!["b".repeat(64), "c".repeat(64)]);
    assert!(matches!(store.plugin("promo").await, Err(StoreError::UnknownPlugin(_))));
    assert!(matches!(store.delete_plugin("promo").await, Err(StoreError::UnknownPlugin(_))));
}

fn invocation(started_at: SystemTime, outcome: Outcome, wall: Duration) -> Invocation {
    Invocation {
        outcome,
        trap_kind: None,
        detail: (outcome != Outcome::Ok).then(|| "promo code expired".to_owned()),
        output: None,
        started_at,
        wall,
        queued: Duration::ZERO,
        instantiate: Duration::ZERO,
        cpu: wall / 2,
        instructions: Some(450_000),
        memory_peak_bytes: 13 << 20,
        input_bytes: 230,
        output_bytes: 310,
        logs: vec![LogLine {
            at: Duration::from_micros(300),
            level: Level::Info,
            source: LogSource::Host,
            message: "order ord-1001: promo WELCOME10 takes 2500 off 25000".into(),
        }],
        concurrency: 1,
        logs_dropped_bytes: 0,
    }
}

#[tokio::test]
async fn telemetry_round_trips_through_the_store_and_restores_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let series = telemetry.series("promo", "1.0.0");
    for i in 0..30u64 {
        let outcome = if i % 10 == 0 { Outcome::PluginError } else { Outcome::Ok };
        series.record("order.pricing", &invocation(at(7200 + i), outcome, Duration::from_micros(500 + i * 10)));
    }
    store.write_flush(&telemetry.flush(at(7260))).await.unwrap();

    let tens = store.rollups("promo", None, Resolution::TenSeconds, at(7200), at(7300)).await.unwrap();
    assert_eq!(tens.iter().map(|r| r.rollup.total()).collect::<Vec<_>>(), [10, 10, 10]);
    let q = tens[0].quantiles.expect("10 s rows keep quantiles");
    assert!((q[0] - 0.000_54).abs() / 0.000_54 < 0.02, "{q:?}");
    let minutes = store.rollups("promo", Some("1.0.0"), Resolution::Minute, at(7200), at(7300)).await.unwrap();
    assert_eq!(minutes.len(), 1);
    let minute = &minutes[0].rollup;
    assert_eq!((minute.total(), minute.failures()), (30, 3));
    assert_eq!(minute.latency.count(), 30, "minute rows keep the sketch");
    assert!((minute.quantile(0.99).unwrap() - 0.000_79).abs() / 0.000_79 < 0.02);
    // A row that starts within the second `to` falls in belongs to the range (`to` is not truncated).
    let within_first_second = at(7200) + Duration::from_millis(400);
    let current = store.rollups("promo", None, Resolution::Minute, at(7100), within_first_second).await.unwrap();
    assert_eq!(current.len(), 1, "the minute that began 0.4 s before `to`");
    assert!(store.rollups("promo", None, Resolution::Minute, at(7100), at(7200)).await.unwrap().is_empty());

    let runs = store.runs("promo", 100, false, None).await.unwrap();
    assert!(!runs.is_empty());
    assert_eq!(runs[0].logs[0].message, "order ord-1001: promo WELCOME10 takes 2500 off 25000");
    assert!(runs.windows(2).all(|w| w[0].started_at >= w[1].started_at), "newest first");
    let failures = store.runs("promo", 100, true, None).await.unwrap();
    assert_eq!(failures.len(), 3);
    assert!(failures.iter().all(|r| r.outcome == Outcome::PluginError));

    // A restart continues from the live window's 10 s rows (with their sketches), the current minute and
    // hour, and the last invocation each series saw.
    let persisted = store.persisted_telemetry(at(7259), Duration::from_secs(900)).await.unwrap();
    assert_eq!(
        persisted.rollups.iter().map(|r| (r.resolution, r.start, r.total(), r.latency.count())).collect::<Vec<_>>(),
        [
            (Resolution::TenSeconds, 7200, 10, 10),
            (Resolution::TenSeconds, 7210, 10, 10),
            (Resolution::TenSeconds, 7220, 10, 10),
            (Resolution::Minute, 7200, 30, 30),
            (Resolution::Hour, 7200, 30, 30)
        ]
    );
    assert_eq!(persisted.last_started, [("promo".to_owned(), "1.0.0".to_owned(), at(7229))]);
    // The window reaches back no further than asked.
    let recent = store.persisted_telemetry(at(7229), Duration::from_secs(10)).await.unwrap();
    let tens: Vec<i64> =
        recent.rollups.iter().filter(|r| r.resolution == Resolution::TenSeconds).map(|r| r.start).collect();
    assert_eq!(tens, [7210, 7220]);
}

#[tokio::test]
async fn retention_prunes_what_is_too_old_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let series = telemetry.series("promo", "1.0.0");
    let day = 86_400;
    for t in [1_000_000, 1_000_000 + 3 * day] {
        series.record("h", &invocation(at(t), Outcome::Ok, Duration::from_millis(1)));
        series.record("h", &invocation(at(t + 1), Outcome::Timeout, Duration::from_millis(100)));
        store.write_flush(&telemetry.flush(at(t + 3600))).await.unwrap();
    }
    let retention = Retention { runs_per_plugin: 1, ..Retention::default() };
    let report = store.prune(&retention, at(1_000_000 + 3 * day + 3600)).await.unwrap();
    assert!(report.rollups >= 1, "{report:?}");
    let all = |r| store.rollups("promo", None, r, at(0), at(u64::MAX / 4));
    let tens = all(Resolution::TenSeconds).await.unwrap();
    assert_eq!(
        tens.iter().map(|r| r.rollup.start).collect::<Vec<_>>(),
        [(1_000_000 + 3 * day) as i64],
        "10 s rows live 2 days"
    );
    assert_eq!(all(Resolution::Minute).await.unwrap().len(), 2, "minute rows live 30 days");
    // One success and one failure kept per plugin (runs_per_plugin = 1), the newest.
    let runs = store.runs("promo", 10, false, None).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.started_at >= at(1_000_000 + 3 * day)));
}

/// A realistic day for one plugin: 20 invocations a second with a log line each, 2 % failing, flushed every
/// 10 s and pruned every hour as the server does. The figure is what one day adds to the database.
#[tokio::test]
async fn a_day_of_traffic_takes_at_most_a_megabyte_per_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let telemetry = Telemetry::new(TelemetryConfig::default());
    let series = telemetry.series("promo-discount", "1.0.0");
    let retention = Retention::default();
    let start = 1_800_000_000u64 - 1_800_000_000 % 86_400;
    let mut rng = fastrand::Rng::with_seed(7);
    let empty = store.size_bytes().await.unwrap();
    let mut size_after = Vec::new();
    for day in 0..2u64 {
        for tick in 0..8640u64 {
            let t0 = start + day * 86_400 + tick * 10;
            for i in 0..200u64 {
                // Log-normal-ish latency around 1.3 ms.
                let micros = (1300.0 * (rng.f64() - 0.5).exp() * (1.0 + 0.3 * rng.f64())) as u64;
                let outcome = if rng.u32(..50) == 0 { Outcome::PluginError } else { Outcome::Ok };
                let when = UNIX_EPOCH + Duration::from_secs(t0) + Duration::from_millis(i * 50);
                series.record("order.pricing", &invocation(when, outcome, Duration::from_micros(micros)));
            }
            store.write_flush(&telemetry.flush(at(t0 + 10))).await.unwrap();
            if tick % 360 == 0 {
                store.prune(&retention, at(t0 + 10)).await.unwrap();
            }
        }
        store.prune(&retention, at(start + (day + 1) * 86_400)).await.unwrap();
        size_after.push(store.size_bytes().await.unwrap());
    }
    let first_day = size_after[0] - empty;
    let second_day = size_after[1] - size_after[0];
    println!(
        "storage: empty {empty} B, after day 1 {} B (+{first_day}), after day 2 {} B (+{second_day})",
        size_after[0], size_after[1]
    );
    assert!(second_day <= 1 << 20, "a day of traffic added {second_day} bytes");
    assert!(
        first_day <= (1 << 20) + (512 << 10),
        "the first day (which also fills the run log) added {first_day} bytes"
    );
}

/// Two replicas on one database (two stores; on SQLite two pools on one file) each write their own rows;
/// readers see every replica's, a restart restores only its own, and the peers' live window is the others'.
#[tokio::test]
async fn replicas_write_their_own_telemetry_and_readers_merge_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::open(dir.path()).await.with_replica("a");
    let b = support::open(dir.path()).await.with_replica("b");
    for (store, n) in [(&a, 7u64), (&b, 5)] {
        let telemetry = Telemetry::new(TelemetryConfig::default());
        let series = telemetry.series("promo", "1.0.0");
        for i in 0..n {
            series.record("order.pricing", &invocation(at(7200 + i), Outcome::Ok, Duration::from_millis(1 + i)));
        }
        store.write_flush(&telemetry.flush(at(7260))).await.unwrap();
        let sample = plugwatch_telemetry::HostSampler::new(dir.path()).sample();
        store.write_host_sample(&sample).await.unwrap();
    }

    // The same bucket and minute, once per replica, and the store knows whose is whose.
    let tens = a.rollups("promo", None, Resolution::TenSeconds, at(7200), at(7300)).await.unwrap();
    assert_eq!(
        tens.iter().map(|r| (r.replica.as_str(), r.rollup.start, r.rollup.total())).collect::<Vec<_>>(),
        [("a", 7200, 7), ("b", 7200, 5)]
    );
    let minutes = b.rollups("promo", None, Resolution::Minute, at(7200), at(7300)).await.unwrap();
    assert_eq!(minutes.iter().map(|r| r.rollup.total()).sum::<u64>(), 12, "neither overwrote the other");
    let sparkline = a.minute_requests(&["promo"], at(7200)).await.unwrap();
    assert_eq!(sparkline.iter().map(|r| (r.replica.as_str(), r.requests)).collect::<Vec<_>>(), [("a", 7), ("b", 5)]);

    // A restarted replica continues from its own rows only.
    let own = a.persisted_telemetry(at(7205), Duration::from_secs(900)).await.unwrap();
    assert_eq!(own.rollups.iter().map(|r| r.total()).collect::<Vec<_>>(), [7, 7, 7], "10 s, minute, hour");

    // Each sees the other's live window, with the latency sketch to merge exactly.
    let peers = a.peer_rollups(at(7000)).await.unwrap();
    assert_eq!(
        peers
            .iter()
            .map(|r| (r.replica.as_str(), r.rollup.start, r.rollup.total(), r.rollup.latency.count()))
            .collect::<Vec<_>>(),
        [("b", 7200, 5, 5)]
    );
    let peers = b.peer_rollups(at(7000)).await.unwrap();
    assert_eq!(peers.iter().map(|r| (r.replica.as_str(), r.rollup.total())).collect::<Vec<_>>(), [("a", 7)]);
    assert!(b.peer_rollups(at(7210)).await.unwrap().is_empty(), "nothing of a starts at or after 7210");

    // Host samples per replica.
    let seen = a.replicas(UNIX_EPOCH).await.unwrap();
    assert_eq!(seen.iter().map(|r| r.replica.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let now = SystemTime::now();
    let step = Duration::from_secs(3600);
    let one = a.host_points(now - step, now + step, step, Some("b")).await.unwrap();
    let all = a.host_points(now - step, now + step, step, None).await.unwrap();
    assert_eq!((one.len(), all.len()), (1, 1));
    assert!(a.host_points(now - step, now + step, step, Some("c")).await.unwrap().is_empty());
}

/// One leader at a time: on PostgreSQL whoever holds the lock, and another takes over once it is given up;
/// on SQLite the one process always leads.
#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::open(dir.path()).await.with_replica("a");
    let b = support::open(dir.path()).await.with_replica("b");
    let (mut la, mut lb) = (a.leadership(), b.leadership());
    if !a.is_shared() {
        assert!(la.check().await && lb.check().await, "SQLite: one process, always the leader");
        return;
    }
    assert!(la.check().await, "the first to try leads");
    assert!(!lb.check().await, "the lock is held");
    assert!(la.check().await && la.is_leader(), "the leader keeps it");
    assert!(!lb.check().await);
    la.release().await;
    assert!(!la.is_leader());
    assert!(lb.check().await, "another replica takes over once the leader gave it up");
    assert!(!la.check().await, "and the old leader does not get it back");
    // A leader whose process ends (its connection closed) frees the lock too.
    drop(lb);
    let mut lc = a.leadership();
    let mut taken = false;
    for _ in 0..50 {
        if lc.check().await {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken, "the lock of a dropped connection is released");
}

/// What one replica announces, the others hear (not itself); SQLite has nobody to tell.
#[tokio::test]
async fn announcements_reach_the_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let a = support::open(dir.path()).await.with_replica("a");
    let b = support::open(dir.path()).await.with_replica("b");
    let Some(mut heard_by_b) = b.listen().await.unwrap() else {
        assert!(!a.is_shared());
        a.announce("registry:promo").await.unwrap();
        return;
    };
    let mut heard_by_a = a.listen().await.unwrap().expect("PostgreSQL listens");
    a.announce("registry:promo").await.unwrap();
    b.announce("access").await.unwrap();
    let within = Duration::from_secs(5);
    let got = tokio::time::timeout(within, heard_by_b.recv()).await.expect("b hears a").unwrap();
    assert_eq!(got, plugwatch_store::Change::Changed("registry:promo".into()));
    let got = tokio::time::timeout(within, heard_by_a.recv()).await.expect("a hears b").unwrap();
    assert_eq!(got, plugwatch_store::Change::Changed("access".into()), "a skipped its own announcement");
}

/// On PostgreSQL a component is kept in the database, in chunks, for every replica; SQLite keeps none.
#[tokio::test]
async fn plugin_components_are_shared_through_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::open(dir.path()).await;
    let bytes: Vec<u8> = (0..(5u32 << 19)).map(|i| (i * 7 % 251) as u8).collect(); // 2.5 MiB: 3 chunks
    let sha = "ab".repeat(32);
    store.put_shared_artifact(&sha, &bytes).await.unwrap();
    if !store.is_shared() {
        assert_eq!(store.shared_artifact(&sha).await.unwrap(), None);
        return;
    }
    assert_eq!(support::count(dir.path(), "SELECT COUNT(*) FROM artifact_chunks").await, 3);
    store.put_shared_artifact(&sha, &bytes).await.unwrap();
    assert_eq!(support::count(dir.path(), "SELECT COUNT(*) FROM artifact_chunks").await, 3, "stored once");
    let other = support::open(dir.path()).await.with_replica("other");
    assert_eq!(other.shared_artifact(&sha).await.unwrap().as_deref(), Some(&bytes[..]));
    assert_eq!(other.shared_artifact(&"cd".repeat(32)).await.unwrap(), None);
    store.remove_shared_artifact(&sha).await.unwrap();
    assert_eq!(other.shared_artifact(&sha).await.unwrap(), None);
}

/// A test double of the shared cache (Redis in production, `plugwatch-cache`): a map in memory that
/// counts what it is asked. Keeps values until told to forget them (the TTL is not modelled).
#[derive(Default)]
struct MemoryCache {
    values: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    hits: std::sync::atomic::AtomicUsize,
}

impl plugwatch_model::shared::SharedCache for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> plugwatch_model::shared::CacheFuture<'a, Option<Vec<u8>>> {
        let value = self.values.lock().unwrap().get(key).cloned();
        if value.is_some() {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Box::pin(async move { value })
    }
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, _ttl: Duration) -> plugwatch_model::shared::CacheFuture<'a, ()> {
        self.values.lock().unwrap().insert(key.to_owned(), value);
        Box::pin(async {})
    }
    fn publish<'a>(&'a self, _message: &'a str) -> plugwatch_model::shared::CacheFuture<'a, bool> {
        Box::pin(async { false })
    }
}

/// Lets the cache writes a read spawned run (the test runtime has one thread).
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Reads through the shared cache answer what the database answers; requests within one interval share
/// an entry (the same rows), and a changed range, plugin or version never reuses another's.
#[tokio::test]
async fn reads_through_a_shared_cache_answer_what_the_database_answers() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let plain = support::open(dir.path()).await;
    let cache = Arc::new(MemoryCache::default());
    let cached = plain.clone().with_cache(cache.clone(), Duration::from_secs(5));
    let telemetry = Telemetry::new(TelemetryConfig::default());
    for (i, version) in (0..40u64).zip(["1.0.0", "2.0.0"].into_iter().cycle()) {
        let series = telemetry.series("promo", version);
        series.record("order.pricing", &invocation(at(7200 + i), Outcome::Ok, Duration::from_micros(500 + i * 10)));
    }
    telemetry
        .series("loyalty", "1.0.0")
        .record("order.completed", &invocation(at(7201), Outcome::Ok, Duration::from_millis(1)));
    plain.write_flush(&telemetry.flush(at(7260))).await.unwrap();

    let ranges = [(7200, 7240), (7195, 7231), (7201, 7239), (7200, 7300), (7100, 7200)];
    for resolution in [Resolution::TenSeconds, Resolution::Minute] {
        for version in [None, Some("1.0.0"), Some("2.0.0")] {
            for plugin in ["promo", "loyalty"] {
                for (from, to) in ranges {
                    let truth = plain.rollups(plugin, version, resolution, at(from), at(to)).await.unwrap();
                    let first = cached.rollups(plugin, version, resolution, at(from), at(to)).await.unwrap();
                    settle().await;
                    let again = cached.rollups(plugin, version, resolution, at(from), at(to)).await.unwrap();
                    assert_eq!((&first, &again), (&truth, &truth), "{plugin} {version:?} {resolution:?} {from}..{to}");
                }
            }
        }
    }
    // Every second read hit; so did the first read of (7195, 7231), which selects the same rows as
    // (7200, 7240) at both resolutions (10 s: 7200 to 7230; minute: 7200), and no other first read.
    let second_reads = 2 * 3 * 2 * ranges.len();
    assert_eq!(cache.hits.load(Ordering::SeqCst), second_reads + 2 * 3 * 2);
    for from in [at(7200), at(7140)] {
        for plugins in [&["promo"][..], &["promo", "loyalty"], &["loyalty"]] {
            let truth = plain.minute_requests(plugins, from).await.unwrap();
            assert_eq!(cached.minute_requests(plugins, from).await.unwrap(), truth, "{plugins:?}");
            settle().await;
            let hits = cache.hits.load(Ordering::SeqCst);
            assert_eq!(cached.minute_requests(plugins, from).await.unwrap(), truth, "{plugins:?} again");
            assert_eq!(cache.hits.load(Ordering::SeqCst), hits + 1, "{plugins:?} again, from the cache");
        }
    }
    // A value that is not what this version wrote is a miss, read from the database again.
    settle().await;
    for value in cache.values.lock().unwrap().values_mut() {
        *value = b"garbage".to_vec();
    }
    let truth = plain.rollups("promo", None, Resolution::TenSeconds, at(7200), at(7240)).await.unwrap();
    assert_eq!(cached.rollups("promo", None, Resolution::TenSeconds, at(7200), at(7240)).await.unwrap(), truth);
    assert_eq!(truth.iter().map(|r| r.rollup.total()).sum::<u64>(), 40);
}
