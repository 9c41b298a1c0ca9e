//! Tests of the telemetry as its callers use it: recording, flushing, seeding, the run log, the overview, the
//! live buckets and the Prometheus output.

use std::collections::BTreeMap;
use std::time::Duration;

use plugwatch_model::{Level, LogLine, LogSource, Outcome};

use super::*;
use crate::testutil::{Rng, at, invocation};

const MS: Duration = Duration::from_millis(1);

fn ok(secs: u64, millis: u64, wall: Duration) -> plugwatch_model::Invocation {
    invocation(Outcome::Ok, at(secs, millis), wall)
}

/// Finds the rollup with the given resolution and start.
fn find(rollups: &[Rollup], resolution: Resolution, start: i64) -> &Rollup {
    rollups
        .iter()
        .find(|r| r.resolution == resolution && r.start == start)
        .unwrap_or_else(|| panic!("no {resolution} rollup at {start} in {rollups:#?}"))
}

#[test]
fn flush_closes_buckets_and_rolls_minutes_and_hours() {
    let t = Telemetry::new(TelemetryConfig::default());
    let s = t.series("tax", "1.0.0");
    // 7200 is the start of an hour.
    s.record("order.created", &ok(7201, 0, 2 * MS));
    s.record("order.created", &ok(7209, 999, 4 * MS));

    // The first bucket ends at 7210: nothing is closed before, but what it holds so far is returned as an
    // open bucket and counted in the minute and hour rollups, so a crash loses at most one flush interval.
    let flush = t.flush(at(7209, 999));
    assert!(flush.closed.is_empty());
    assert_eq!(flush.open.iter().map(|b| (b.start, b.total())).collect::<Vec<_>>(), [(7200, 2)]);
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7200).total(), 2);
    assert_eq!(find(&flush.rollups, Resolution::Hour, 7200).total(), 2);

    let flush = t.flush(at(7210, 0));
    assert_eq!(flush.closed.len(), 1);
    assert!(flush.open.is_empty());
    let first = &flush.closed[0];
    assert_eq!((first.plugin.as_str(), first.version.as_str()), ("tax", "1.0.0"));
    assert_eq!((first.resolution, first.start, first.total()), (Resolution::TenSeconds, 7200, 2));
    assert_eq!(first.wall_sum_us, 6000);
    assert_eq!(first.cpu_sum_us, 3000);
    assert_eq!(first.instructions, 2000);
    assert_eq!((first.input_bytes, first.output_bytes, first.memory_peak_max), (200, 4, 65536));
    assert_eq!(flush.rollups.len(), 2);
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7200).total(), 2);
    assert_eq!(find(&flush.rollups, Resolution::Hour, 7200).total(), 2);

    // Flushing again changes nothing.
    assert_eq!(t.flush(at(7212, 0)), Flush::default());

    s.record("order.created", &ok(7215, 0, 8 * MS));
    s.record("order.created", &invocation(Outcome::Timeout, at(7265, 0), Duration::from_secs(1)));
    // One flush closing buckets of two minutes returns the first minute's final state and the new minute.
    let flush = t.flush(at(7280, 0));
    assert_eq!(flush.closed.iter().map(|b| b.start).collect::<Vec<_>>(), [7210, 7260]);
    assert_eq!(flush.rollups.len(), 3);
    let minute = find(&flush.rollups, Resolution::Minute, 7200);
    assert_eq!(minute.total(), 3);
    assert_eq!(minute.quantile(1.0), Some(0.008));
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7260).counts[Outcome::Timeout.index()], 1);
    let hour = find(&flush.rollups, Resolution::Hour, 7200);
    assert_eq!((hour.total(), hour.failures()), (4, 1));
    assert_eq!(hour.latency.count(), 4);

    // A new hour starts a new hour rollup; the old one was returned above and is final.
    s.record("order.created", &ok(10_800, 5, MS));
    let flush = t.flush(at(10_810, 0));
    assert_eq!(flush.rollups.len(), 2);
    assert_eq!(find(&flush.rollups, Resolution::Hour, 10_800).total(), 1);
    assert_eq!(find(&flush.rollups, Resolution::Minute, 10_800).total(), 1);
}

#[test]
fn late_records_go_to_the_open_bucket() {
    let t = Telemetry::new(TelemetryConfig::default());
    let s = t.series("tax", "1.0.0");
    s.record("h", &ok(7201, 0, MS));
    assert_eq!(t.flush(at(7215, 0)).closed.len(), 1);

    // Started in the closed bucket 7200 (and long before): counted in the open bucket 7210.
    s.record("h", &ok(7205, 0, MS));
    s.record("h", &ok(100, 0, MS));
    s.record("h", &ok(7211, 0, MS));
    let flush = t.flush(at(7220, 0));
    assert_eq!(flush.closed.len(), 1);
    assert_eq!((flush.closed[0].start, flush.closed[0].total()), (7210, 3));
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7200).total(), 4);

    // A flush that closed empty buckets moves the open bucket on too.
    t.flush(at(7250, 0));
    s.record("h", &ok(7221, 0, MS));
    let live = t.live("tax", Some("1.0.0"), Resolution::TenSeconds, at(7200, 0), at(7300, 0));
    assert_eq!(live.iter().map(|b| (b.start, b.total())).collect::<Vec<_>>(), [(7200, 1), (7210, 3), (7250, 1)]);
}

/// The persistence a caller would do: upsert every returned rollup by its identity.
#[derive(Default)]
struct Store(BTreeMap<(String, String, Resolution, i64), Rollup>);

impl Store {
    fn apply(&mut self, flush: Flush) {
        for r in flush.closed.into_iter().chain(flush.open).chain(flush.rollups) {
            self.0.insert((r.plugin.clone(), r.version.clone(), r.resolution, r.start), r);
        }
    }

    /// What a restarted process is handed: the 10 s rows of the live window before `now` and the minute and
    /// hour rows of the intervals holding `now` (as `Store::persisted_telemetry` selects them).
    fn persisted(&self, now: u64, window: Duration) -> Persisted {
        let now = now as i64;
        let rollups = self
            .0
            .iter()
            .filter(|((_, _, resolution, start), _)| match resolution {
                Resolution::TenSeconds => *start >= Resolution::TenSeconds.align(now) - window.as_secs() as i64,
                r => *start == r.align(now),
            })
            .map(|(_, r)| r.clone())
            .collect();
        Persisted { rollups, last_started: Vec::new() }
    }
}

/// How a process ends in [`restarts_lose_nothing_that_was_flushed`].
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// `kill -9`: what was recorded since the last flush is lost.
    Kill,
    /// SIGTERM: the shutdown flush writes everything, the open bucket included.
    Term,
}

/// Every row written holds its whole interval, across restarts inside a bucket, a minute and an hour: the
/// rows of a run restarted by SIGTERM equal those of an uninterrupted run, and those of a run killed with
/// `kill -9` lack exactly what was recorded since the last flush.
#[test]
fn restarts_lose_nothing_that_was_flushed() {
    // A workload over 7200..7330 on two versions, with latencies that make the sketches non-trivial.
    let mut rng = Rng::new(1);
    let records: Vec<(&str, plugwatch_model::Invocation)> = (0..600)
        .map(|i| {
            let started = 7200.0 + 130.0 * rng.f64();
            let wall = Duration::from_secs_f64(0.001 * (rng.normal() * 0.5).exp());
            let outcome = if i % 7 == 0 { Outcome::PluginError } else { Outcome::Ok };
            let mut inv = invocation(outcome, at(0, 0) + Duration::from_secs_f64(started), wall);
            inv.memory_peak_bytes = 1000 + i;
            (if i % 3 == 0 { "2.0.0" } else { "1.0.0" }, inv)
        })
        .collect();
    // Flushes every 5 s, so that a restart can fall inside a bucket that is partly stored.
    let flush_times: Vec<u64> = (7205..=7345).step_by(5).collect();
    // Before each flush at `now`, the invocations that started in the 5 s before it are recorded.
    let record_until = |t: &Telemetry, now: u64| {
        let now = now as i64;
        for (version, inv) in records.iter().filter(|(_, r)| (now - 5..now).contains(&unix_secs(r.started_at))) {
            t.series("tax", version).record("h", inv);
        }
    };
    let config = TelemetryConfig::default();
    let mut uninterrupted = Store::default();
    let t = Telemetry::new(config.clone());
    for &now in &flush_times {
        record_until(&t, now);
        uninterrupted.apply(t.flush(at(now, 0)));
    }

    // Restarts in the middle of a bucket (7245), at a bucket's end (7270), and in the next hour's first
    // bucket would be the same again; each is tried with both ways of stopping.
    for stop in [Stop::Term, Stop::Kill] {
        let mut store = Store::default();
        let mut t = Telemetry::new(config.clone());
        let mut lost = Vec::new();
        let mut restarted_overview = None;
        for &now in &flush_times {
            record_until(&t, now);
            if now == 7245 || now == 7270 {
                match stop {
                    Stop::Term => store.apply(t.flush(at(now, 0) + config.bucket)),
                    Stop::Kill => lost.extend(
                        records.iter().filter(|(_, r)| (now as i64 - 5..now as i64).contains(&unix_secs(r.started_at))),
                    ),
                }
                t = Telemetry::new(config.clone());
                t.restore(at(now, 0), store.persisted(now, t.live_window()));
                if now == 7270 {
                    restarted_overview = Some((7270 - 50, t.overview(at(now, 0))));
                }
                continue;
            }
            store.apply(t.flush(at(now, 0)));
        }
        match stop {
            Stop::Term => {
                assert_eq!(store.0.len(), uninterrupted.0.len());
                for (key, want) in &uninterrupted.0 {
                    assert_eq!(store.0.get(key), Some(want), "{stop:?} {key:?}");
                }
            }
            Stop::Kill => {
                for (key @ (_, version, resolution, start), want) in &uninterrupted.0 {
                    let missing = lost
                        .iter()
                        .filter(|(v, r)| v == version && resolution.align(unix_secs(r.started_at)) == *start)
                        .count() as u64;
                    let got = store.0.get(key).map_or(0, Rollup::total);
                    assert_eq!(got, want.total() - missing, "{stop:?} {key:?}");
                }
                assert!(!lost.is_empty());
            }
        }
        // Right after a restart the overview sees the whole last minute, the earlier process's part too.
        let (window_start, overview) = restarted_overview.expect("restarted at 7270");
        let count = |set: &[&(&str, plugwatch_model::Invocation)], v: &str| {
            set.iter().filter(|(version, r)| *version == v && unix_secs(r.started_at) >= window_start).count() as u64
        };
        let all: Vec<_> = records.iter().filter(|(_, r)| unix_secs(r.started_at) < 7270).collect();
        let requests: Vec<u64> = overview.iter().map(|s| s.requests).collect();
        assert_eq!(
            requests,
            [count(&all, "1.0.0") - count(&lost, "1.0.0"), count(&all, "2.0.0") - count(&lost, "2.0.0")],
            "{stop:?}"
        );
        assert!(requests.iter().all(|&n| n > 0));
    }
}

#[test]
fn restore_rules() {
    let t = Telemetry::new(TelemetryConfig::default());
    let mut persisted = Rollup::new("tax", "1.0.0", Resolution::Minute, 7260);
    persisted.counts[0] = 5;
    let mut old = Rollup::new("tax", "1.0.0", Resolution::Minute, 7200);
    old.counts[0] = 100;
    let mut ten = Rollup::new("tax", "1.0.0", Resolution::TenSeconds, 7260);
    ten.counts[0] = 1000;
    let mut open = Rollup::new("tax", "1.0.0", Resolution::TenSeconds, 7270);
    open.counts[0] = 3;
    let last = at(7271, 500);
    let rollups = vec![persisted, old, ten, open];
    t.restore(at(7272, 0), Persisted { rollups, last_started: vec![("tax".into(), "1.0.0".into(), last)] });
    // What was restored alone is not handed back: it is stored already.
    assert_eq!(t.flush(at(7273, 0)), Flush::default());
    // The overview and the live buckets show it.
    let overview = t.overview(at(7275, 0));
    assert_eq!((overview[0].requests, overview[0].last_invocation), (1003, Some(last)));
    t.series("tax", "1.0.0").record("h", &ok(7275, 0, MS));
    // Before any flush, the minute and hour as read are whole too.
    let minutes = t.live("tax", None, Resolution::Minute, at(7200, 0), at(7300, 0));
    assert_eq!(minutes.iter().map(|r| (r.start, r.total())).collect::<Vec<_>>(), [(7260, 6)]);
    let hours = t.live("tax", Some("1.0.0"), Resolution::Hour, at(7200, 0), at(7300, 0));
    assert_eq!(hours.iter().map(|r| (r.start, r.total())).collect::<Vec<_>>(), [(7200, 1)]);
    let flush = t.flush(at(7290, 0));
    // The bucket that was open at the restart is written whole; the minute goes on from its stored state.
    assert_eq!(flush.closed.iter().map(|b| (b.start, b.total())).collect::<Vec<_>>(), [(7270, 4)]);
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7260).total(), 6);
    assert_eq!(find(&flush.rollups, Resolution::Hour, 7200).total(), 1);
    let live = t.live("tax", None, Resolution::TenSeconds, at(7200, 0), at(7300, 0));
    assert_eq!(live.iter().map(|b| (b.start, b.total())).collect::<Vec<_>>(), [(7260, 1000), (7270, 4)]);

    // Restoring after a flush merges minutes into what this process accumulated, and the next flush returns
    // the sum even without new traffic.
    let t = Telemetry::new(TelemetryConfig::default());
    t.series("tax", "1.0.0").record("h", &ok(7265, 0, MS));
    assert_eq!(find(&t.flush(at(7270, 0)).rollups, Resolution::Minute, 7260).total(), 1);
    let mut persisted = Rollup::new("tax", "1.0.0", Resolution::Minute, 7260);
    persisted.counts[0] = 5;
    let mut newer_hour = Rollup::new("tax", "1.0.0", Resolution::Hour, 10_800);
    newer_hour.counts[0] = 7;
    t.restore(at(7270, 0), Persisted { rollups: vec![persisted, newer_hour], last_started: Vec::new() });
    let flush = t.flush(at(7280, 0));
    assert_eq!(flush.rollups.len(), 1);
    assert_eq!(find(&flush.rollups, Resolution::Minute, 7260).total(), 6);
}

#[test]
fn run_log_rings_and_persist_caps() {
    let config = TelemetryConfig {
        recent_runs: 5,
        recent_failures: 3,
        persist_successes_per_flush: 2,
        persist_failures_per_flush: 2,
        ..TelemetryConfig::default()
    };
    let t = Telemetry::new(config);
    let v1 = t.series("tax", "1.0.0");
    let v2 = t.series("tax", "2.0.0");
    let mut traced = invocation(Outcome::Trap, at(7200, 5), MS);
    traced.logs = vec![LogLine { at: MS, level: Level::Warn, source: LogSource::Host, message: "boom".into() }];
    traced.logs_dropped_bytes = 12;
    v1.record("order.created", &traced);
    for i in 1..=3 {
        v2.record("order.paid", &invocation(Outcome::PluginError, at(7200, 10 + i), MS));
    }
    for i in 0..10 {
        v1.record(if i % 2 == 0 { "a" } else { "b" }, &ok(7201, i, MS));
    }

    // All runs: each version's ring keeps its five newest; merged newest first.
    let recent = t.recent("tax", 100, false);
    assert_eq!(recent.len(), 8);
    assert!(recent.windows(2).all(|w| w[0].started_at >= w[1].started_at));
    assert!(recent[..5].iter().all(|r| r.outcome == Outcome::Ok && r.version == "1.0.0"));
    assert!(recent[5..].iter().all(|r| r.outcome == Outcome::PluginError && r.version == "2.0.0"));
    assert_eq!(recent[0].hook, "b");
    assert_eq!(recent[1].hook, "a");
    assert_eq!(t.recent("tax", 2, false).len(), 2);

    // Failures are kept longer: the trap is still there.
    let failures = t.recent("tax", 100, true);
    assert_eq!(failures.len(), 4);
    let trap = failures.last().unwrap();
    assert_eq!((trap.version.as_str(), trap.hook.as_str()), ("1.0.0", "order.created"));
    assert_eq!(trap.trap_kind.as_deref(), Some("unreachable_code_reached"));
    assert_eq!(trap.detail.as_deref(), Some("trap happened"));
    assert_eq!(trap.logs, traced.logs);
    assert_eq!((trap.logs_dropped_bytes, trap.wall_us, trap.cpu_us, trap.queued_us), (12, 1000, 500, 5));
    assert_eq!(trap.instructions, Some(1000));
    assert!(t.recent("nobody", 10, false).is_empty());

    // Persistence: per series the newest two successes and two failures since the last flush.
    let flush = t.flush(at(7210, 0));
    let of = |version: &str, ok: bool| {
        flush.runs.iter().filter(|r| r.version == version && r.outcome.is_ok() == ok).collect::<Vec<_>>()
    };
    assert_eq!(of("1.0.0", false).len(), 1);
    let successes = of("1.0.0", true);
    assert_eq!(successes.iter().map(|r| r.started_at).collect::<Vec<_>>(), [at(7201, 8), at(7201, 9)]);
    assert_eq!(of("2.0.0", false).iter().map(|r| r.started_at).collect::<Vec<_>>(), [at(7200, 12), at(7200, 13)]);
    assert_eq!(flush.runs.len(), 5);
    assert!(t.flush(at(7220, 0)).runs.is_empty());
    // The in-memory rings are not drained by a flush.
    assert_eq!(t.recent("tax", 100, false).len(), 8);
}

#[test]
fn overview_of_a_known_workload() {
    let t = Telemetry::new(TelemetryConfig::default());
    let s = t.series("tax", "1.0.0");
    t.series("idle", "0.1.0");
    // Outside the window: the bucket at 7190.
    s.record("h", &ok(7195, 0, Duration::from_secs(3)));
    // Ten invocations in each bucket 7200..=7250, one in ten failing; 10 ms wall, 5 ms CPU.
    for bucket in 0..6 {
        for i in 0..10 {
            let outcome = if i == 0 { Outcome::Rejected } else { Outcome::Ok };
            let mut inv = invocation(outcome, at(7200 + bucket * 10, i * 100), 10 * MS);
            inv.memory_peak_bytes = 1000 * (bucket + 1);
            s.record("h", &inv);
        }
    }
    t.flush(at(7250, 0));
    let overview = t.overview(at(7255, 0));
    assert_eq!(overview.len(), 2);
    let idle = &overview[0];
    assert_eq!((idle.plugin.as_str(), idle.requests, idle.rps, idle.p50), ("idle", 0, 0.0, None));
    assert_eq!((idle.error_rate, idle.last_invocation), (0.0, None));

    let stats = &overview[1];
    assert_eq!(stats.window_secs, 55.0);
    assert_eq!(stats.requests, 60);
    assert!((stats.rps - 60.0 / 55.0).abs() < 1e-12);
    for p in [stats.p50, stats.p95, stats.p99] {
        assert!((p.unwrap() - 0.010).abs() <= 0.0001, "{p:?}");
    }
    assert!((stats.error_rate - 0.1).abs() < 1e-12);
    assert!((stats.cpu_cores - 60.0 * 0.005 / 55.0).abs() < 1e-12);
    assert_eq!(stats.memory_peak_bytes, 6000);
    assert_eq!(stats.counts[Outcome::Ok.index()], 54);
    assert_eq!(stats.counts[Outcome::Rejected.index()], 6);
    assert_eq!(stats.last_invocation, Some(at(7250, 900)));
}

/// Other replicas' flushed buckets add to this process's windows (exactly: sketches merge), a series only
/// they have appears, buckets outside the window do not count, and `live` stays this process's own.
#[test]
fn windows_add_the_other_replicas_buckets() {
    let config = TelemetryConfig::default();
    let here = Telemetry::new(config.clone());
    let there = Telemetry::new(config);
    for i in 0..10 {
        here.series("tax", "1.0.0").record("h", &ok(7250, i * 10, 10 * MS));
        there.series("tax", "1.0.0").record("h", &ok(7250, i * 10, 30 * MS));
        there.series("tax", "1.0.0").record("h", &ok(7100, i * 10, 30 * MS)); // long before the minute
        there.series("loyalty", "2.0.0").record("h", &invocation(Outcome::Timeout, at(7240, i * 10), 50 * MS));
    }
    let flushed = there.flush(at(7255, 0));
    let peer_rows: Vec<Rollup> = flushed.closed.into_iter().chain(flushed.open).collect();
    assert_eq!(peer_rows.iter().map(Rollup::total).sum::<u64>(), 30);
    let alone = here.overview(at(7255, 0));
    here.set_peers(peer_rows);
    let overview = here.overview(at(7255, 0));
    assert_eq!(
        overview.iter().map(|s| (s.plugin.as_str(), s.requests)).collect::<Vec<_>>(),
        [("loyalty", 10), ("tax", 20)],
        "the minute holds both replicas' buckets of it, and nothing older"
    );
    let tax = &overview[1];
    assert_eq!((alone[0].requests, alone[0].p99.map(|p| (p * 1000.0).round())), (10, Some(10.0)));
    assert!((tax.p50.unwrap() - 0.010).abs() < 0.001 && (tax.p99.unwrap() - 0.030).abs() < 0.001, "{tax:?}");
    assert_eq!(tax.last_invocation, Some(at(7250, 90)), "this process's own last invocation is the latest");
    let loyalty = &overview[0];
    assert_eq!((loyalty.error_rate, loyalty.last_invocation), (1.0, Some(at(7240, 0))));
    assert_eq!(here.plugin_window("loyalty", at(7255, 0), Duration::from_secs(60)).len(), 1);
    assert!(here.plugin_window("nothing", at(7255, 0), Duration::from_secs(60)).is_empty());
    let live = here.live("tax", None, Resolution::TenSeconds, at(7200, 0), at(7260, 0));
    assert_eq!(live.iter().map(Rollup::total).sum::<u64>(), 10, "live is this process's own");
    // New peer rows replace the old ones.
    here.set_peers(Vec::new());
    assert_eq!(here.overview(at(7255, 0)).len(), 1);
}

#[test]
fn live_buckets_per_version_expire() {
    let config = TelemetryConfig { live_buckets: 3, ..TelemetryConfig::default() };
    let t = Telemetry::new(config);
    for (version, n) in [("1.0.0", 1), ("2.0.0", 2)] {
        let s = t.series("tax", version);
        for b in 0..6 {
            for _ in 0..n {
                s.record("h", &ok(7200 + b * 10, 0, MS));
            }
        }
    }
    t.flush(at(7250, 0));
    // Three closed buckets are kept (7220..7240) plus the open one (7250).
    let each = t.live("tax", None, Resolution::TenSeconds, at(7000, 0), at(8000, 0));
    assert_eq!(
        each.iter().map(|b| (b.start, b.version.as_str(), b.total())).collect::<Vec<_>>(),
        [7220, 7230, 7240, 7250].iter().flat_map(|&s| [(s, "1.0.0", 1), (s, "2.0.0", 2)]).collect::<Vec<_>>()
    );
    assert!(each.iter().all(|b| b.plugin == "tax"));
    let one = t.live("tax", Some("2.0.0"), Resolution::TenSeconds, at(7235, 0), at(7250, 0));
    assert_eq!(one.iter().map(|b| (b.start, b.total())).collect::<Vec<_>>(), [(7230, 2), (7240, 2)]);
    assert_eq!(one[0].version, "2.0.0");
    assert!(t.live("tax", Some("3.0.0"), Resolution::TenSeconds, at(7000, 0), at(8000, 0)).is_empty());

    t.remove_plugin("tax");
    assert!(t.live("tax", None, Resolution::TenSeconds, at(7000, 0), at(8000, 0)).is_empty());
    assert!(t.overview(at(7255, 0)).is_empty());
}

/// Undoes the text format's label-value escaping.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => panic!("dangling escape in {s:?}"),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[test]
fn prometheus_output_parses_with_the_right_values() {
    use prom_text_format_parser::{Scrape, Type, ValueType};

    let t = Telemetry::new(TelemetryConfig::default());
    let mut empty = String::new();
    t.encode_prometheus(None, &mut empty);
    assert_eq!(empty, "");

    let weird = "we\"ird\\plug,in=x\nline";
    let s = t.series(weird, "1.0.0");
    let walls = [Duration::from_micros(50), Duration::from_micros(100), 3 * MS, Duration::from_secs(30)];
    for wall in walls {
        s.record("h", &ok(7201, 0, wall));
    }
    let mut failed = invocation(Outcome::MemoryLimit, at(7211, 0), MS);
    failed.memory_peak_bytes = 1 << 24;
    failed.instructions = None;
    s.record("h", &failed);
    t.series("plain", "2.0.0").record("h", &ok(7201, 0, MS));
    // Counters survive flushes; the memory gauge follows the current and last closed bucket.
    t.flush(at(7215, 0));

    let host = HostSample {
        at: at(7215, 0),
        cpu_usage: 0.25,
        cpu_cores: 2,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 1 << 32,
        disk_used_bytes: 5 << 30,
        disk_total_bytes: 10 << 30,
        process_rss_bytes: 50 << 20,
        process_cpu_seconds: 12.5,
        process_cpu_usage: 0.5,
    };
    let mut text = String::new();
    t.encode_prometheus(Some(&host), &mut text);
    let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));

    let family = |name: &str| scrape.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}"));
    for f in names::ALL {
        let m = family(f.name);
        assert_eq!(m.help_desc.as_deref(), Some(f.help));
        let kind = match f.kind {
            MetricKind::Counter => Type::Counter,
            MetricKind::Gauge => Type::Gauge,
            MetricKind::Histogram => Type::Histogram,
            MetricKind::Summary => Type::Summary,
            MetricKind::Untyped => Type::Untyped,
        };
        assert_eq!(m.kind, kind, "{}", f.name);
    }
    assert_eq!(scrape.metrics.len(), names::ALL.len());

    // The value of the sample of `name` whose labels are exactly `labels` (after unescaping).
    let value = |name: &str, value_type: ValueType, labels: &[(&str, &str)]| -> f64 {
        let matching: Vec<f64> = family(name)
            .samples
            .iter()
            .filter(|sample| sample.value.value_type == value_type)
            .filter(|sample| {
                let got: Vec<(String, String)> =
                    sample.labels.iter().map(|l| (l.key.clone(), unescape(&l.value))).collect();
                let want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                got == want
            })
            .map(|sample| sample.value.value.as_f64())
            .collect();
        assert_eq!(matching.len(), 1, "{name} {labels:?}");
        matching[0]
    };
    let series = [("plugin", weird), ("version", "1.0.0")];
    let with = |extra: (&'static str, &'static str)| [series[0], series[1], extra];

    let invocations = names::PLUGIN_INVOCATIONS.name;
    assert_eq!(value(invocations, ValueType::Sample, &with(("outcome", "ok"))), 4.0);
    assert_eq!(value(invocations, ValueType::Sample, &with(("outcome", "memory_limit"))), 1.0);
    assert_eq!(value(invocations, ValueType::Sample, &with(("outcome", "timeout"))), 0.0);
    assert_eq!(
        value(invocations, ValueType::Sample, &[("plugin", "plain"), ("version", "2.0.0"), ("outcome", "ok")]),
        1.0
    );

    let duration = names::PLUGIN_DURATION.name;
    for (le, want) in [("0.0001", 2.0), ("0.001", 3.0), ("0.0025", 3.0), ("0.005", 4.0), ("10", 4.0), ("+Inf", 5.0)] {
        assert_eq!(value(duration, ValueType::Sample, &with(("le", le))), want, "le {le}");
    }
    let sum = value(duration, ValueType::Sum, &series);
    assert!((sum - (0.000_05 + 0.0001 + 0.003 + 30.0 + 0.001)).abs() < 1e-9, "{sum}");
    assert_eq!(value(duration, ValueType::Count, &series), 5.0);

    let cpu = value(names::PLUGIN_CPU.name, ValueType::Sample, &series);
    assert!((cpu - (0.000_025 + 0.000_05 + 0.0015 + 15.0 + 0.0005)).abs() < 1e-9, "{cpu}");
    let queued = value(names::PLUGIN_QUEUE.name, ValueType::Sample, &series);
    assert!((queued - 5.0 * 0.000_005).abs() < 1e-12, "five invocations waited 5 µs each: {queued}");
    assert_eq!(value(names::PLUGIN_INSTRUCTIONS.name, ValueType::Sample, &series), 4000.0);
    assert_eq!(value(names::PLUGIN_MEMORY_PEAK.name, ValueType::Sample, &series), (1 << 24) as f64);
    assert_eq!(
        value(names::PLUGIN_MEMORY_PEAK.name, ValueType::Sample, &[("plugin", "plain"), ("version", "2.0.0")]),
        65536.0
    );
    assert_eq!(value(names::PLUGIN_INPUT_BYTES.name, ValueType::Sample, &series), 500.0);
    assert_eq!(value(names::PLUGIN_OUTPUT_BYTES.name, ValueType::Sample, &series), 8.0);

    assert_eq!(value(names::HOST_CPU_USAGE.name, ValueType::Sample, &[]), 0.25);
    assert_eq!(value(names::HOST_MEMORY_USED.name, ValueType::Sample, &[]), (1u64 << 30) as f64);
    assert_eq!(value(names::HOST_MEMORY_TOTAL.name, ValueType::Sample, &[]), (1u64 << 32) as f64);
    assert_eq!(value(names::HOST_DISK_USED.name, ValueType::Sample, &[]), (5u64 << 30) as f64);
    assert_eq!(value(names::HOST_DISK_TOTAL.name, ValueType::Sample, &[]), (10u64 << 30) as f64);
    assert_eq!(value(names::PROCESS_RESIDENT_MEMORY.name, ValueType::Sample, &[]), (50u64 << 20) as f64);
    assert_eq!(value(names::PROCESS_CPU_SECONDS.name, ValueType::Sample, &[]), 12.5);

    // Once both buckets are closed and a later one too, the gauge falls back to zero; counters stay.
    t.flush(at(7300, 0));
    let mut later = String::new();
    t.encode_prometheus(None, &mut later);
    let scrape = Scrape::parse(&later).unwrap();
    let gauge = scrape.metrics.iter().find(|m| m.name == names::PLUGIN_MEMORY_PEAK.name).unwrap();
    assert!(gauge.samples.iter().all(|s| s.value.value.as_f64() == 0.0));
    assert!(later.contains("outcome=\"ok\"} 4\n"));
}

#[test]
fn exposition_lets_other_crates_add_families() {
    let t = Telemetry::new(TelemetryConfig::default());
    t.series("tax", "1.0.0").record("h", &ok(7201, 0, MS));
    let mut text = String::new();
    t.encode_prometheus(None, &mut text);
    let mut e = Exposition::new(&mut text);
    e.family("plugwatch_http_requests_total", "HTTP requests served.", MetricKind::Counter);
    e.sample("plugwatch_http_requests_total", &[("route", "/metrics"), ("status", "200")], 7.0);
    let scrape = prom_text_format_parser::Scrape::parse(&text).unwrap();
    assert!(scrape.metrics.iter().any(|m| m.name == "plugwatch_http_requests_total"));
}

#[test]
fn telemetry_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Telemetry>();
    assert_send_sync::<Series>();
    assert_send_sync::<HostSampler>();
    // Records from several threads on one series all count.
    let t = Arc::new(Telemetry::new(TelemetryConfig::default()));
    let s = t.series("tax", "1.0.0");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| (0..1000).for_each(|i| s.record("h", &ok(7200 + i % 20, 0, MS))));
        }
    });
    let flush = t.flush(at(7300, 0));
    assert_eq!(flush.closed.iter().map(Rollup::total).sum::<u64>(), 4000);
}
