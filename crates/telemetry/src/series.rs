//! One plugin version's live state: open and recent 10 s buckets, the current minute and hour rollups,
//! cumulative counters and the run-log rings, behind small per-series locks.
//!
//! # Sharding
//!
//! A series that one plugin version's traffic hits from several threads at once would make its lock, and the
//! cache lines of everything under it, bounce between cores (measured: 400 ns per record with two threads on
//! one `std` mutex, against 80 ns for one thread). So what [`Series::record`] writes (open buckets, counters,
//! run-log rings) is split into a few shards, one per core up to [`MAX_SHARDS`]. Each thread has a home
//! shard (threads are numbered round-robin on first use); a record takes the first shard it can lock without
//! waiting, starting from its home, and waits for the home shard only when all are busy. Readers (flush,
//! overview, live, recent, metrics) lock each shard in turn and merge, which is exact: bucket rollups and
//! sketches merge without loss, and every ring keeps its own newest entries, so the newest across shards are
//! among them. What only readers write (closed buckets, minute and hour rollups) sits behind one more lock.

use std::cell::Cell;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use plugwatch_model::Invocation;

use crate::names::DURATION_BUCKETS;
use crate::rollup::{Resolution, Rollup};
use crate::runlog::{Ring, Run, RunLogEntry, RunText};
use crate::sketch::Prepared;
use crate::{Flush, TelemetryConfig};

/// The most shards a series has.
const MAX_SHARDS: usize = 8;

/// The live series of one plugin version. Get it from [`Telemetry::series`](crate::Telemetry::series) once and
/// keep the `Arc`: [`Series::record`] is the hot path.
pub struct Series {
    plugin: String,
    version: String,
    /// The bucket length in seconds.
    bucket: i64,
    shards: Box<[Padded<Mutex<Shard>>]>,
    closed: Mutex<Closed>,
    /// The run caps of one flush.
    persist_successes: usize,
    persist_failures: usize,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series").field("plugin", &self.plugin).field("version", &self.version).finish_non_exhaustive()
    }
}

/// Keeps each shard on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// Counters since process start, for the Prometheus exposition.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub counts: [u64; 9],
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub queued_ns: u64,
    pub instructions: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// Invocations per duration bucket (not cumulative); the last entry counts those above the last bound.
    pub histogram: [u64; DURATION_BUCKETS.len() + 1],
}

impl Totals {
    fn merge(&mut self, other: &Totals) {
        let pairs = self.counts.iter_mut().zip(&other.counts).chain(self.histogram.iter_mut().zip(&other.histogram));
        for (a, b) in pairs {
            *a += b;
        }
        self.wall_ns += other.wall_ns;
        self.cpu_ns += other.cpu_ns;
        self.queued_ns += other.queued_ns;
        self.instructions += other.instructions;
        self.input_bytes += other.input_bytes;
        self.output_bytes += other.output_bytes;
    }
}

/// What [`Series::snapshot`] copies out for the Prometheus exposition.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub totals: Totals,
    /// The highest peak memory in the open buckets and the bucket closed last.
    pub memory_peak: u64,
}

/// What records write.
struct Shard {
    /// Every bucket starting before this (unix seconds) is closed; a copy of [`Closed::until`] that a flush
    /// updates under this shard's lock, so that no record can slip into a bucket after it was closed.
    closed_until: i64,
    /// Buckets not closed yet, by start; usually one or two.
    open: Vec<Rollup>,
    totals: Totals,
    last_started: Option<SystemTime>,
    /// Interned hook names; this shard's runs refer to them by index.
    hooks: Vec<Box<str>>,
    recent: Ring<Run>,
    failures: Ring<Run>,
    /// Runs numbered at or below this were handed to a flush (or skipped by one) already.
    flushed: u64,
    /// The number of the last run recorded.
    seq: u64,
}

/// What flushes and seeds write.
struct Closed {
    /// Every bucket starting before this (unix seconds) is closed.
    until: i64,
    live_buckets: usize,
    /// Closed buckets with traffic, oldest first, at most `live_buckets` of them and none older than
    /// `live_buckets` bucket lengths before `until`.
    buckets: VecDeque<Rollup>,
    minute: Option<Rollup>,
    hour: Option<Rollup>,
    /// Whether `minute` / `hour` changed since the last flush returned them.
    minute_dirty: bool,
    hour_dirty: bool,
    /// Minute and hour rollups that became final before a flush returned their last state.
    finished: Vec<Rollup>,
    /// What an earlier process had stored for 10 s buckets that were still open when it stopped (see
    /// [`Series::seed`]): written again with this process's part added, never rolled into the minute and
    /// hour (the seeded minute and hour rows hold it already).
    base: BTreeMap<i64, Rollup>,
}

/// A unix time in whole seconds, rounded down (also before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 { -secs - 1 } else { -secs }
        }
    }
}

/// A unix time in seconds as a float.
pub(crate) fn unix_f64(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The histogram bucket of a wall time: the first bound it does not exceed, or the overflow bucket.
fn histogram_index(wall: Duration) -> usize {
    let seconds = wall.as_secs_f64();
    DURATION_BUCKETS.partition_point(|&bound| bound < seconds)
}

/// This thread's number, assigned round-robin on first use; it picks the thread's home shard.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    NUMBER.with(|n| {
        if n.get() == usize::MAX {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

impl Series {
    pub(crate) fn new(plugin: &str, version: &str, config: &TelemetryConfig) -> Series {
        // A power of two, so that picking the home shard is a mask rather than a division.
        let cores = std::thread::available_parallelism().map_or(1, usize::from).min(MAX_SHARDS);
        let shards = 1 << cores.ilog2();
        Series::with_shards(plugin, version, config, shards)
    }

    fn with_shards(plugin: &str, version: &str, config: &TelemetryConfig, shards: usize) -> Series {
        assert!(shards.is_power_of_two());
        let shard = || {
            Padded(Mutex::new(Shard {
                closed_until: i64::MIN,
                open: Vec::new(),
                totals: Totals::default(),
                last_started: None,
                hooks: Vec::new(),
                recent: Ring::new(config.recent_runs),
                failures: Ring::new(config.recent_failures),
                flushed: 0,
                seq: 0,
            }))
        };
        Series {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            bucket: config.bucket.as_secs() as i64,
            shards: (0..shards).map(|_| shard()).collect(),
            closed: Mutex::new(Closed {
                until: i64::MIN,
                live_buckets: config.live_buckets,
                buckets: VecDeque::new(),
                minute: None,
                hour: None,
                minute_dirty: false,
                hour_dirty: false,
                finished: Vec::new(),
                base: BTreeMap::new(),
            }),
            persist_successes: config.persist_successes_per_flush,
            persist_failures: config.persist_failures_per_flush,
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin version's name.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Records one invocation of `hook`: into the 10 s bucket of its `started_at` (or the open bucket when
    /// that one was already closed), the cumulative counters and the run-log rings.
    ///
    /// This is the hot path: it takes one shard lock of this series (see the module documentation), computes
    /// the latency bin and copies any text before taking it, and allocates nothing for a successful invocation
    /// without logs (beyond the first record of a new bucket, a new hook name, or a ring filling up).
    pub fn record(&self, hook: &str, invocation: &Invocation) {
        let started = unix_secs(invocation.started_at).div_euclid(self.bucket) * self.bucket;
        let latency = Prepared::new(invocation.wall.as_secs_f64());
        let histogram = histogram_index(invocation.wall);
        let text = if invocation.trap_kind.is_some() || invocation.detail.is_some() || !invocation.logs.is_empty() {
            RunText::of(invocation)
        } else {
            RunText::default()
        };
        let mut shard = self.lock_any();
        let shard = &mut *shard;

        let start = started.max(shard.closed_until);
        let bucket = match shard.open.iter().rposition(|b| b.start <= start) {
            Some(i) if shard.open[i].start == start => &mut shard.open[i],
            position => {
                let at = position.map_or(0, |i| i + 1);
                shard.open.insert(at, Rollup::new(String::new(), String::new(), Resolution::TenSeconds, start));
                &mut shard.open[at]
            }
        };
        bucket.add(invocation, latency);

        let totals = &mut shard.totals;
        totals.counts[invocation.outcome.index()] += 1;
        totals.wall_ns += nanos(invocation.wall);
        totals.cpu_ns += nanos(invocation.cpu);
        totals.queued_ns += nanos(invocation.queued);
        totals.instructions += invocation.instructions.unwrap_or(0);
        totals.input_bytes += invocation.input_bytes;
        totals.output_bytes += invocation.output_bytes;
        totals.histogram[histogram] += 1;
        if shard.last_started.is_none_or(|last| last < invocation.started_at) {
            shard.last_started = Some(invocation.started_at);
        }

        let hook = match shard.hooks.iter().position(|h| **h == *hook) {
            Some(i) => i as u32,
            None => {
                shard.hooks.push(hook.into());
                (shard.hooks.len() - 1) as u32
            }
        };
        shard.seq += 1;
        let run = Run::new(hook, shard.seq, invocation, text);
        // What to persist is found at flush time by sequence number: no extra copy on this path.
        if !invocation.outcome.is_ok() {
            shard.failures.push(run.clone());
        }
        shard.recent.push(run);
    }

    /// The first shard that is free, starting from this thread's home shard; the home shard when none is.
    fn lock_any(&self) -> MutexGuard<'_, Shard> {
        let mask = self.shards.len() - 1;
        let home = thread_number() & mask;
        for i in 0..self.shards.len() {
            if let Some(guard) = self.shards[(home + i) & mask].0.try_lock() {
                return guard;
            }
        }
        self.shards[home].0.lock()
    }

    fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.0.lock())
    }

    /// Closes the buckets that ended at or before `now` (unix seconds), appending to `out`.
    pub(crate) fn flush(&self, now: i64, out: &mut Flush) {
        let mut closed = self.closed.lock();
        let closed = &mut *closed;
        closed.until = closed.until.max(now.div_euclid(self.bucket) * self.bucket);

        // Take the closing buckets and the runs to persist from every shard.
        let mut closing: BTreeMap<i64, Rollup> = BTreeMap::new();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for mut shard in self.shards() {
            let shard = &mut *shard;
            shard.closed_until = closed.until;
            let n = shard.open.iter().take_while(|b| b.start < closed.until).count();
            for bucket in shard.open.drain(..n) {
                match closing.entry(bucket.start) {
                    Entry::Occupied(mut merged) => merged.get_mut().merge(&bucket),
                    Entry::Vacant(slot) => {
                        slot.insert(bucket);
                    }
                }
            }
            let hooks = &shard.hooks;
            let entry = |run: Run| run.entry(&self.plugin, &self.version, &hooks[run.hook as usize]);
            // The newest unflushed runs: successes from the recent ring, failures from their own (longer) one.
            let flushed = shard.flushed;
            let fresh = |run: &&Run| run.seq > flushed;
            ok.extend(
                shard
                    .recent
                    .iter()
                    .rev()
                    .filter(fresh)
                    .filter(|r| r.outcome.is_ok())
                    .take(self.persist_successes)
                    .map(|r| entry(r.clone())),
            );
            failed.extend(
                shard.failures.iter().rev().filter(fresh).take(self.persist_failures).map(|r| entry(r.clone())),
            );
            shard.flushed = shard.seq;
        }

        for mut bucket in closing.into_values() {
            // The minute and hour take only this process's part; the row and the reads take all of it.
            roll(&mut closed.minute, &mut closed.minute_dirty, &mut closed.finished, Resolution::Minute, &bucket);
            roll(&mut closed.hour, &mut closed.hour_dirty, &mut closed.finished, Resolution::Hour, &bucket);
            if let Some(base) = closed.base.remove(&bucket.start) {
                bucket.merge(&base);
            }
            bucket.latency.compact();
            out.closed.push(bucket.named(&self.plugin, &self.version));
            keep(&mut closed.buckets, bucket);
        }
        // Seeded buckets that ended without traffic from this process: stored already, kept for reads.
        while let Some(entry) = closed.base.first_entry().filter(|e| *e.key() < closed.until) {
            keep(&mut closed.buckets, entry.remove());
        }
        let oldest = closed.until.saturating_sub(closed.live_buckets as i64 * self.bucket);
        while closed.buckets.len() > closed.live_buckets || closed.buckets.front().is_some_and(|b| b.start < oldest) {
            closed.buckets.pop_front();
        }

        // The open buckets' data so far is written too (and rewritten, complete, by later flushes), so that a
        // crash loses at most one flush interval: the minute and hour rows written below include it, computed
        // on copies so that the accumulators only ever take closed buckets.
        let mut open: BTreeMap<i64, Rollup> = BTreeMap::new();
        for shard in self.shards() {
            for bucket in shard.open.iter().filter(|b| b.total() > 0) {
                match open.entry(bucket.start) {
                    Entry::Occupied(mut merged) => merged.get_mut().merge(bucket),
                    Entry::Vacant(slot) => {
                        slot.insert(bucket.clone());
                    }
                }
            }
        }
        let (mut minute, mut hour) = (closed.minute.clone(), closed.hour.clone());
        let (mut minute_dirty, mut hour_dirty) = (closed.minute_dirty, closed.hour_dirty);
        let mut finished = std::mem::take(&mut closed.finished);
        for mut bucket in open.into_values() {
            roll(&mut minute, &mut minute_dirty, &mut finished, Resolution::Minute, &bucket);
            roll(&mut hour, &mut hour_dirty, &mut finished, Resolution::Hour, &bucket);
            if let Some(base) = closed.base.get(&bucket.start) {
                bucket.merge(base);
            }
            bucket.latency.compact();
            out.open.push(bucket.named(&self.plugin, &self.version));
        }
        out.rollups.extend(finished.into_iter().map(|r| r.named(&self.plugin, &self.version)));
        for (slot, dirty) in [(&minute, minute_dirty), (&hour, hour_dirty)] {
            if let Some(rollup) = slot.as_ref().filter(|_| dirty) {
                out.rollups.push(rollup.named(&self.plugin, &self.version));
            }
        }
        closed.minute_dirty = false;
        closed.hour_dirty = false;

        // Each shard kept its newest runs; keep the newest across shards.
        let first = out.runs.len();
        for (mut runs, cap) in [(failed, self.persist_failures), (ok, self.persist_successes)] {
            runs.sort_by_key(|r| r.started_at);
            out.runs.extend(runs.drain(runs.len().saturating_sub(cap)..));
        }
        out.runs[first..].sort_by_key(|r| r.started_at);
    }

    /// Continues from what an earlier process stored (see [`Telemetry::restore`](crate::Telemetry::restore)),
    /// before this process records anything. `until` is the start of the bucket open now: 10 s buckets that
    /// started before it are final and kept for reads; a later one was still open when the earlier process
    /// stopped, and this process's part of it is added to it. Minute and hour rollups continue accumulating.
    pub(crate) fn seed(&self, mut rollup: Rollup, until: i64) {
        rollup.plugin = String::new();
        rollup.version = String::new();
        rollup.start = rollup.resolution.align(rollup.start);
        let mut closed = self.closed.lock();
        let closed = &mut *closed;
        if closed.until < until {
            closed.until = until;
            for mut shard in self.shards() {
                shard.closed_until = shard.closed_until.max(until);
            }
        }
        let (slot, dirty) = match rollup.resolution {
            Resolution::TenSeconds if rollup.start < closed.until => {
                keep(&mut closed.buckets, rollup);
                return;
            }
            Resolution::TenSeconds => {
                match closed.base.entry(rollup.start) {
                    Entry::Occupied(mut base) => base.get_mut().merge(&rollup),
                    Entry::Vacant(slot) => {
                        slot.insert(rollup);
                    }
                }
                return;
            }
            Resolution::Minute => (&mut closed.minute, &mut closed.minute_dirty),
            Resolution::Hour => (&mut closed.hour, &mut closed.hour_dirty),
        };
        match slot {
            None => *slot = Some(rollup),
            Some(current) if current.start == rollup.start => {
                current.merge(&rollup);
                *dirty = true;
            }
            Some(current) if current.start < rollup.start => {
                let old = std::mem::replace(current, rollup);
                if *dirty {
                    closed.finished.push(old);
                }
                *dirty = false;
            }
            // Older than what this process already has: that interval is final.
            Some(_) => {}
        }
    }

    /// Remembers when the earlier process last saw an invocation start, for the overview.
    pub(crate) fn seed_last_started(&self, at: SystemTime) {
        let mut shard = self.shards[0].0.lock();
        if shard.last_started.is_none_or(|last| last < at) {
            shard.last_started = Some(at);
        }
    }

    /// Calls `f` with every 10 s bucket in memory that overlaps `[from, to)` (see [`Series::rollups`]).
    pub(crate) fn buckets(&self, from: i64, to: i64, f: impl FnMut(&Rollup)) {
        self.rollups(Resolution::TenSeconds, from, to, f);
    }

    /// Calls `f` with what this process holds of the intervals of `resolution` that overlap `[from, to)` in
    /// unix seconds, as the next flush would write them: 10 s buckets (closed, the restored part of open
    /// ones, and the open ones of each shard), or the current minute or hour (and any that ended since the
    /// last flush) with the open buckets' data so far. Parts of one interval are passed separately: merge by
    /// start. Each interval passed is whole (what a restart restored included).
    pub(crate) fn rollups(&self, resolution: Resolution, from: i64, to: i64, mut f: impl FnMut(&Rollup)) {
        let overlaps = |start: i64| start.saturating_add(resolution.seconds()) > from && start < to;
        // The flush's lock order (closed, then shards), held throughout: no part is seen twice or missed.
        let closed = self.closed.lock();
        if resolution == Resolution::TenSeconds {
            closed.buckets.iter().chain(closed.base.values()).filter(|r| overlaps(r.start)).for_each(&mut f);
        } else {
            let current = if resolution == Resolution::Minute { &closed.minute } else { &closed.hour };
            let ended = closed.finished.iter().filter(|r| r.resolution == resolution);
            ended.chain(current).filter(|r| overlaps(r.start)).for_each(&mut f);
        }
        for shard in self.shards() {
            for bucket in &shard.open {
                if resolution == Resolution::TenSeconds {
                    if overlaps(bucket.start) {
                        f(bucket);
                    }
                } else if overlaps(resolution.align(bucket.start)) {
                    let mut part = bucket.clone();
                    (part.resolution, part.start) = (resolution, resolution.align(bucket.start));
                    f(&part);
                }
            }
        }
    }

    /// Aggregates the last minute before `now`: the open buckets and the closed ones that started at most
    /// 50 s before the current bucket. Returns the aggregate, the window's start (unix seconds) and the
    /// latest `started_at` ever recorded.
    pub(crate) fn window(&self, now: i64, window_secs: i64) -> (Rollup, i64, Option<SystemTime>) {
        let window_start = window_start(now, window_secs, self.bucket);
        let mut total = Rollup::new(String::new(), String::new(), Resolution::Minute, window_start);
        let mut last_started = None;
        self.buckets(window_start, i64::MAX, |b| {
            if b.start >= window_start {
                total.merge(b);
            }
        });
        for shard in self.shards() {
            last_started = last_started.max(shard.last_started);
        }
        (total, window_start, last_started)
    }

    /// The newest `limit` runs (all, or failures only) of each shard, newest first per shard.
    pub(crate) fn recent(&self, limit: usize, failures_only: bool, out: &mut Vec<RunLogEntry>) {
        for shard in self.shards() {
            let ring = if failures_only { &shard.failures } else { &shard.recent };
            for run in ring.iter().rev().take(limit) {
                out.push(run.entry(&self.plugin, &self.version, &shard.hooks[run.hook as usize]));
            }
        }
    }

    /// The cumulative counters and the memory gauge.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let closed = self.closed.lock();
        let last_closed = closed.buckets.back().filter(|b| b.start.saturating_add(self.bucket) == closed.until);
        let mut memory_peak = last_closed.map_or(0, |b| b.memory_peak_max);
        let mut totals = Totals::default();
        for shard in self.shards() {
            totals.merge(&shard.totals);
            memory_peak = shard.open.iter().map(|b| b.memory_peak_max).fold(memory_peak, u64::max);
        }
        Snapshot { totals, memory_peak }
    }
}

/// Where a window of `window_secs` before `now` starts: the open bucket's start, less the closed buckets
/// that fit in the window after it.
pub(crate) fn window_start(now: i64, window_secs: i64, bucket: i64) -> i64 {
    now.div_euclid(bucket) * bucket - (window_secs.max(bucket) - bucket)
}

/// Keeps a closed bucket for reads, in order of start (merged with one of the same start).
fn keep(buckets: &mut VecDeque<Rollup>, bucket: Rollup) {
    let at = buckets.partition_point(|b| b.start < bucket.start);
    match buckets.get_mut(at) {
        Some(same) if same.start == bucket.start => same.merge(&bucket),
        _ => buckets.insert(at, bucket),
    }
}

/// Merges a closed bucket into the minute or hour rollup holding it. When the bucket belongs to a later
/// interval, the current rollup is final: it is queued for the flush if its last state was not returned yet,
/// and a new one starts. A bucket older than the current rollup (the wall clock stepped back) is counted in
/// the current one rather than lost.
fn roll(
    slot: &mut Option<Rollup>,
    dirty: &mut bool,
    finished: &mut Vec<Rollup>,
    resolution: Resolution,
    bucket: &Rollup,
) {
    let start = resolution.align(bucket.start);
    match slot {
        Some(current) if current.start >= start => current.merge(bucket),
        _ => {
            if let Some(old) = slot.take().filter(|_| *dirty) {
                finished.push(old);
            }
            let mut rollup = Rollup::new(String::new(), String::new(), resolution, start);
            rollup.merge(bucket);
            *slot = Some(rollup);
        }
    }
    *dirty = true;
}

/// A duration in whole nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use plugwatch_model::Outcome;

    use super::*;
    use crate::testutil::{at, invocation};

    /// Records spread over several shards merge exactly: one closed bucket per start, counters summed, the
    /// newest runs across shards, hook names resolved per shard.
    #[test]
    fn shards_merge() {
        let config = TelemetryConfig {
            recent_runs: 4,
            persist_successes_per_flush: 3,
            persist_failures_per_flush: 2,
            ..TelemetryConfig::default()
        };
        let series = Series::with_shards("tax", "1.0.0", &config, 4);
        for i in 0..30u64 {
            // Hold all shards but one, so that this record lands in shard `i % 3` (shard 3 stays empty).
            let held: Vec<_> = (0..4).filter(|&k| k != i % 3).map(|k| series.shards[k as usize].0.lock()).collect();
            let outcome = if i % 5 == 0 { Outcome::Trap } else { Outcome::Ok };
            series.record(
                if i % 2 == 0 { "even" } else { "odd" },
                &invocation(outcome, at(7200 + i, 0), Duration::from_millis(i + 1)),
            );
            drop(held);
        }
        let per_shard: Vec<u64> = series.shards.iter().map(|s| s.0.lock().totals.counts.iter().sum()).collect();
        assert_eq!(per_shard, [10, 10, 10, 0]);

        let mut flush = Flush::default();
        series.flush(7230, &mut flush);
        assert_eq!(
            flush.closed.iter().map(|b| (b.start, b.total(), b.failures())).collect::<Vec<_>>(),
            [(7200, 10, 2), (7210, 10, 2), (7220, 10, 2)]
        );
        assert_eq!(flush.closed[2].latency.quantile(1.0), Some(0.030));
        let runs: Vec<(u64, &str, bool)> = flush
            .runs
            .iter()
            .map(|r| (unix_secs(r.started_at) as u64 - 7200, r.hook.as_str(), r.outcome.is_ok()))
            .collect();
        assert_eq!(
            runs,
            [(20, "even", false), (25, "odd", false), (27, "odd", true), (28, "even", true), (29, "odd", true)]
        );

        let mut recent = Vec::new();
        series.recent(2, false, &mut recent);
        recent.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        assert_eq!(recent.iter().map(|r| unix_secs(r.started_at) - 7200).collect::<Vec<_>>(), [29, 28, 27, 26, 25, 24]);

        let snapshot = series.snapshot();
        assert_eq!(snapshot.totals.counts[Outcome::Ok.index()], 24);
        assert_eq!(snapshot.totals.wall_ns, (1..=30).sum::<u64>() * 1_000_000);
        let (window, _, last) = series.window(7235, 60);
        assert_eq!(window.total(), 30);
        assert_eq!(last, Some(at(7229, 0)));
    }

    #[test]
    fn unix_secs_rounds_down() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
    }

    #[test]
    fn histogram_bounds_are_inclusive() {
        assert_eq!(histogram_index(Duration::ZERO), 0);
        assert_eq!(histogram_index(Duration::from_micros(100)), 0);
        assert_eq!(histogram_index(Duration::from_nanos(100_001)), 1);
        assert_eq!(histogram_index(Duration::from_secs(10)), DURATION_BUCKETS.len() - 1);
        assert_eq!(histogram_index(Duration::from_secs(11)), DURATION_BUCKETS.len());
    }
}
