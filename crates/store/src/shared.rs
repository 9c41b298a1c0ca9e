//! The reads the dashboard repeats on every replica, through a [`SharedCache`] when one is configured:
//! a plugin's rollups over a range, and the overview's sparklines. A cached answer is at most the cache's
//! time to live old: the registry puts this replica's open buckets from memory over what is stored, so
//! what can show up to that much later is another replica's latest flush, and this replica's own rows of
//! a bucket it closed (and dropped from memory) within the last TTL. A value the cache holds that does
//! not decode, or is larger than any answer could be, is a miss. Keys carry the secret key's id, which
//! every replica of one cluster shares, so that two clusters on one Redis never read each other's.
//! Change announcements go through the cache when it takes them, and through the database
//! (`cluster.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plugwatch_model::shared::SharedCache;
use plugwatch_telemetry::{LatencySketch, Resolution, Rollup};
use sha2::Digest;

use crate::backend::Backend;
use crate::{MinuteRequests, Result, Store, StoredRollup, unix, unix_ceil};

/// The cache of a [`Store`] and how long what it holds stays valid.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) cache: Arc<dyn SharedCache>,
    ttl: Duration,
}

/// Bumped when the encoding below changes, so that replicas of two versions never read each other's.
const FORMAT: &str = "v1";
/// The largest value read back: more than any answer of these queries (a range is at most a few thousand
/// rows), so that a value planted in the cache cannot make a replica allocate without bound.
const MAX_VALUE_BYTES: usize = 16 << 20;
/// The fewest bytes an encoded row takes (its fixed-size fields), so that a row count is checked against
/// what is there before anything is allocated for it.
const MIN_ROLLUP_BYTES: usize = 3 * 8 + 8 + 9 * 8 + 8 + 9 * 8 + 8;
const MIN_MINUTE_BYTES: usize = 3 * 8 + 2 * 8;

impl Store {
    /// This store reading the dashboard's repeated queries through `cache` (kept for `ttl`) and sending
    /// change announcements through it.
    pub fn with_cache(mut self, cache: Arc<dyn SharedCache>, ttl: Duration) -> Store {
        self.shared = Some(Shared { cache, ttl });
        self
    }

    /// Rollups of one plugin (one version, or all) at one resolution with `from <= start < to`, by start,
    /// of every replica (each row says whose it is).
    pub async fn rollups(
        &self,
        plugin: &str,
        version: Option<&str>,
        resolution: Resolution,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<StoredRollup>> {
        let read = || async {
            match &self.backend {
                Backend::Sqlite(db) => db.rollups(plugin, version, resolution, from, to).await,
                Backend::Postgres(db) => db.rollups(plugin, version, resolution, from, to).await,
            }
        };
        // Rows start on the resolution's boundaries, so the bounds rounded up to one select the same rows:
        // every request within one interval shares the entry.
        let r = resolution.seconds();
        let (first, end) = (ceil_div(unix(from), r), ceil_div(unix_ceil(to), r));
        let version = version.map_or("*".to_owned(), |v| format!("={v}"));
        let key = || format!("rollups:{r}:{first}:{end}:{}", hash(&[plugin, &version]));
        self.through_cache(key, read, encode_rollups, |bytes| decode_rollups(bytes, resolution)).await
    }

    /// Requests per minute rollup row of each of `plugins` (every version and replica) starting at or after
    /// `from`: the sparklines of a page of the overview, in one query.
    pub async fn minute_requests(&self, plugins: &[&str], from: SystemTime) -> Result<Vec<MinuteRequests>> {
        let read = || async {
            match &self.backend {
                Backend::Sqlite(db) => db.minute_requests(plugins, from).await,
                Backend::Postgres(db) => db.minute_requests(plugins, from).await,
            }
        };
        let key = || format!("minutes:{}:{}", unix(from), hash(plugins));
        self.through_cache(key, read, encode_minutes, decode_minutes).await
    }

    /// `read()`, unless the shared cache holds its answer under `key()`; what is read is stored there.
    async fn through_cache<T, R: Future<Output = Result<T>>>(
        &self,
        key: impl FnOnce() -> String,
        read: impl FnOnce() -> R,
        encode: impl FnOnce(&T) -> Vec<u8>,
        decode: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<T> {
        let Some(shared) = &self.shared else { return read().await };
        let key = format!("{FORMAT}:{}:{}", self.secret_key_id().unwrap_or_default(), key());
        let cached = shared.cache.get(&key).await.filter(|bytes| bytes.len() <= MAX_VALUE_BYTES);
        if let Some(value) = cached.and_then(|bytes| decode(&bytes)) {
            return Ok(value);
        }
        let value = read().await?;
        // Stored in the background: the reader has its answer.
        let (cache, bytes, ttl) = (shared.cache.clone(), encode(&value), shared.ttl);
        tokio::spawn(async move { cache.put(&key, bytes, ttl).await });
        Ok(value)
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) > 0)
}

/// A key part for a list of names: fixed length, and no two lists alike.
fn hash(parts: &[&str]) -> String {
    let mut sha = sha2::Sha256::new();
    for part in parts {
        sha.update((part.len() as u64).to_le_bytes());
        sha.update(part.as_bytes());
    }
    hex::encode(&sha.finalize()[..16])
}

/// Length-prefixed fields, little-endian.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    /// A row count, if that many rows of at least `min_row` bytes fit in what is left (else it is garbage,
    /// not an allocation).
    fn count(&mut self, min_row: usize) -> Option<usize> {
        usize::try_from(self.u64()?).ok().filter(|&n| n.checked_mul(min_row).is_some_and(|b| b <= self.0.len()))
    }
}

fn encode_rollups(rows: &Vec<StoredRollup>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(rows.len() as u64);
    for row in rows {
        let r = &row.rollup;
        w.bytes(r.plugin.as_bytes());
        w.bytes(r.version.as_bytes());
        w.bytes(row.replica.as_bytes());
        w.u64(r.start as u64);
        for count in r.counts {
            w.u64(count);
        }
        w.bytes(&r.latency.encode());
        for v in [r.wall_sum_us, r.cpu_sum_us, r.instructions, r.input_bytes, r.output_bytes, r.memory_peak_max] {
            w.u64(v);
        }
        for v in [r.instructions_max, r.output_bytes_max, u64::from(r.concurrency_max)] {
            w.u64(v);
        }
        match row.quantiles {
            None => w.u64(0),
            Some(q) => {
                w.u64(1);
                for v in q {
                    w.u64(v.to_bits());
                }
            }
        }
    }
    w.0
}

fn decode_rollups(bytes: &[u8], resolution: Resolution) -> Option<Vec<StoredRollup>> {
    let mut r = Reader(bytes);
    let n = r.count(MIN_ROLLUP_BYTES)?;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let (plugin, version, replica) = (r.string()?, r.string()?, r.string()?);
        let start = r.u64()? as i64;
        let mut counts = [0; 9];
        for count in &mut counts {
            *count = r.u64()?;
        }
        let latency = LatencySketch::decode(r.bytes()?).ok()?;
        let mut rollup = Rollup::new(plugin, version, resolution, start);
        rollup.counts = counts;
        rollup.latency = latency;
        for field in [
            &mut rollup.wall_sum_us,
            &mut rollup.cpu_sum_us,
            &mut rollup.instructions,
            &mut rollup.input_bytes,
            &mut rollup.output_bytes,
            &mut rollup.memory_peak_max,
            &mut rollup.instructions_max,
            &mut rollup.output_bytes_max,
        ] {
            *field = r.u64()?;
        }
        rollup.concurrency_max = u32::try_from(r.u64()?).ok()?;
        let quantiles = match r.u64()? {
            0 => None,
            1 => Some([r.u64()?, r.u64()?, r.u64()?, r.u64()?].map(f64::from_bits)),
            _ => return None,
        };
        rows.push(StoredRollup { rollup, quantiles, replica });
    }
    r.0.is_empty().then_some(rows)
}

fn encode_minutes(rows: &Vec<MinuteRequests>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(rows.len() as u64);
    for row in rows {
        w.bytes(row.plugin.as_bytes());
        w.bytes(row.version.as_bytes());
        w.bytes(row.replica.as_bytes());
        w.u64(row.start as u64);
        w.u64(row.requests);
    }
    w.0
}

fn decode_minutes(bytes: &[u8]) -> Option<Vec<MinuteRequests>> {
    let mut r = Reader(bytes);
    let n = r.count(MIN_MINUTE_BYTES)?;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        rows.push(MinuteRequests {
            plugin: r.string()?,
            version: r.string()?,
            replica: r.string()?,
            start: r.u64()? as i64,
            requests: r.u64()?,
        });
    }
    r.0.is_empty().then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollup(start: i64, quantiles: Option<[f64; 4]>) -> StoredRollup {
        let mut rollup = Rollup::new("promo", "1.0.0", Resolution::TenSeconds, start);
        rollup.counts = [5, 1, 0, 0, 2, 0, 0, 0, 3];
        for secs in [0.001, 0.002, 0.050] {
            rollup.latency.add(secs);
        }
        (rollup.wall_sum_us, rollup.cpu_sum_us, rollup.instructions) = (53_000, 40_000, 1 << 40);
        (rollup.input_bytes, rollup.output_bytes, rollup.memory_peak_max) = (10, 20, 18 << 20);
        (rollup.instructions_max, rollup.output_bytes_max, rollup.concurrency_max) = (7, 8, 9);
        StoredRollup { rollup, quantiles, replica: "replica-a".into() }
    }

    #[test]
    fn rollups_and_minutes_survive_the_cache_encoding() {
        let rows = vec![rollup(1_700_000_000, None), rollup(1_700_000_010, Some([0.001, 0.05, 0.05, 0.05]))];
        assert_eq!(decode_rollups(&encode_rollups(&rows), Resolution::TenSeconds), Some(rows));
        let minutes = vec![MinuteRequests {
            plugin: "promo".into(),
            version: "1".into(),
            replica: "".into(),
            start: 60,
            requests: 1234,
        }];
        assert_eq!(decode_minutes(&encode_minutes(&minutes)), Some(minutes));
        assert_eq!(decode_minutes(&encode_minutes(&vec![])), Some(vec![]));
    }

    #[test]
    fn anything_else_in_the_cache_is_a_miss() {
        let bytes = encode_rollups(&vec![rollup(0, None)]);
        for cut in 0..bytes.len() {
            assert_eq!(decode_rollups(&bytes[..cut], Resolution::TenSeconds), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_rollups(&longer, Resolution::TenSeconds), None);
        assert_eq!(decode_minutes(&[0xff; 8]), None);
        // A count of rows that cannot fit in what follows is refused before anything is allocated.
        let mut huge = (1u64 << 40).to_le_bytes().to_vec();
        huge.extend([0; 64]);
        assert_eq!(decode_rollups(&huge, Resolution::TenSeconds), None);
        assert_eq!(decode_minutes(&huge), None);
        assert_eq!(decode_minutes(b"hello"), None);
    }

    #[test]
    fn names_that_run_together_get_different_keys() {
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["a"]), hash(&["a", ""]));
        assert_ne!(hash(&["promo", "*"]), hash(&["promo", "=*"]), "all versions, and a version named `*`");
    }
}
