//! A mergeable latency quantile sketch (DDSketch) with a compact, validated binary encoding.
//!
//! # What it is
//!
//! [DDSketch](https://arxiv.org/abs/1908.10693) with a logarithmic index mapping: a positive value `v` falls in
//! bin `k = ⌈ln v / ln γ⌉` with `γ = (1 + α) / (1 − α)`, and a bin answers with `γ^k · (1 − α)`, which is within
//! a relative error `α` of every value in it. With `α = 0.99 %` every quantile the sketch answers is within
//! 1 % of the true value of the same rank (`⌊q · (n − 1)⌋`, zero-based), whatever the distribution. Merging
//! adds bin counts, so a merged sketch is exactly the sketch of the union: 10 s buckets merge into minutes and
//! hours, and series into a plugin, without losing accuracy.
//!
//! Values are latencies in seconds. Values at or below 1 ns (and negative ones) count in a zero bin; values
//! above 10⁹ s are clamped to 10⁹ s; NaN is ignored. The key range is therefore bounded (about 2 100 keys),
//! so the store is a plain dense vector that never needs DDSketch's "collapsing" and never loses accuracy.
//!
//! # Why hand-written rather than `sketches-ddsketch`
//!
//! `sketches-ddsketch` 0.4.2 was the candidate, measured against what the store needs:
//!
//! - Its serde form is its in-memory layout: the whole configuration, a positive and a negative store, each a
//!   dense `Vec<u64>` grown in chunks of 128 bins. With `postcard` that is 210 bytes for 1000 samples over a
//!   2× range and still 209 bytes for a single sample. The decoded fields are not checked either: 13 of 840
//!   single-byte corruptions of such an encoding decoded "successfully" and then panicked in `quantile` or
//!   `merge` (index out of bounds).
//! - Its Java-compatible binary format is more compact (154 bytes; 51 for one sample), but its decoder
//!   accumulates bin indexes with unchecked integer arithmetic: 768 of 200 000 random inputs made it panic
//!   (debug build) instead of returning an error.
//!
//! Our needs are narrow (non-negative values, one fixed accuracy, one process) and the algorithm is short,
//! so this module implements it with:
//!
//! - an encoding of one version byte, the zero count, the exact minimum and maximum, the first key and the
//!   bin counts as LEB128 varints with runs of empty bins collapsed to two bytes: 57 bytes for 1000 samples
//!   over a 2× range, 22 for one sample (the `encoded_sizes` test prints more), and
//! - a decoder that checks every field (version, varint overflow and shortest form, key range, canonical
//!   bins and runs, count overflow, `min`/`max` consistent with the bins, no trailing bytes), so that
//!   whatever it accepts is a sketch this module could have written, and never panics.

use std::fmt;

/// The relative accuracy. Kept a little under 1 % so that floating-point rounding at bin edges can never
/// push an answer past 1 %.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.0099;

/// `γ = (1 + α) / (1 − α)`, as `ln γ` (checked against the formula in the tests).
const LN_GAMMA: f64 = 0.019800646904042287;
/// `1 / ln γ`.
const INV_LN_GAMMA: f64 = 50.50340046192384;
/// Values at or below this (one nanosecond) count in the zero bin.
const MIN_VALUE: f64 = 1e-9;
/// Values above this are clamped to it.
const MAX_VALUE: f64 = 1e9;
/// `key(MIN_VALUE)` rounded up: the lowest key a value above `MIN_VALUE` can have.
const MIN_KEY: i32 = -1046;
/// `key(MAX_VALUE)`.
const MAX_KEY: i32 = 1047;
/// The number of distinct keys.
const KEY_SPAN: usize = (MAX_KEY - MIN_KEY + 1) as usize;
/// Spare bins allocated on either side when the store grows, so that a distribution filling in sample by
/// sample does not reallocate on every new extreme.
const GROWTH_PAD: i32 = 8;
/// The first byte of every encoded sketch.
const FORMAT_VERSION: u8 = 1;
/// The key that stands for the zero bin in a [`Prepared`] value.
const ZERO_KEY: i32 = i32::MIN;

/// Why [`LatencySketch::decode`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    #[error("encoded sketch is truncated")]
    Truncated,
    /// The first byte names a format this version does not know.
    #[error("unsupported sketch format version {0}")]
    UnsupportedVersion(u8),
    /// The input is not a sketch this module could have written.
    #[error("invalid encoded sketch: {0}")]
    Invalid(&'static str),
}

/// A value with its bin already computed, so that the logarithm can be taken outside a lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepared {
    key: i32,
    value: f64,
}

impl Prepared {
    /// Computes the bin of `v`; `None` for NaN, which a sketch ignores.
    pub(crate) fn new(v: f64) -> Option<Prepared> {
        if v.is_nan() {
            return None;
        }
        if v <= MIN_VALUE {
            return Some(Prepared { key: ZERO_KEY, value: v.max(0.0) });
        }
        let value = v.min(MAX_VALUE);
        Some(Prepared { key: key(value), value })
    }
}

/// The bin of a value in `(MIN_VALUE, MAX_VALUE]`.
fn key(v: f64) -> i32 {
    // The product is within [MIN_KEY - 1, MAX_KEY] for the values allowed here, so the cast is exact; the
    // clamp guards against rounding at the two ends.
    ((v.ln() * INV_LN_GAMMA).ceil() as i32).clamp(MIN_KEY, MAX_KEY)
}

/// The value a bin answers with: `γ^k · (1 − α)`, within `α` of every value in `(γ^(k−1), γ^k]`.
fn bin_value(key: i32) -> f64 {
    (f64::from(key) * LN_GAMMA).exp() * (1.0 - RELATIVE_ACCURACY)
}

/// A DDSketch of latencies in seconds: see the module documentation.
#[derive(Clone)]
pub struct LatencySketch {
    /// Counts of consecutive keys starting at `offset`; may have empty bins at either end.
    bins: Vec<u64>,
    /// The key of `bins[0]`.
    offset: i32,
    /// Values at or below [`MIN_VALUE`].
    zero_count: u64,
    /// All values, the zero bin included.
    count: u64,
    min: f64,
    max: f64,
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencySketch {
    /// An empty sketch (allocates nothing until the first value).
    pub const fn new() -> Self {
        LatencySketch { bins: Vec::new(), offset: 0, zero_count: 0, count: 0, min: f64::INFINITY, max: 0.0 }
    }

    /// Adds one value (seconds). NaN is ignored; see the module documentation for the range.
    pub fn add(&mut self, v: f64) {
        if let Some(prepared) = Prepared::new(v) {
            self.add_prepared(prepared);
        }
    }

    /// Adds a value whose bin was computed by [`Prepared::new`].
    pub(crate) fn add_prepared(&mut self, p: Prepared) {
        if p.key == ZERO_KEY {
            self.zero_count += 1;
        } else {
            let index = self.index_for(p.key, p.key);
            self.bins[index] += 1;
        }
        self.count += 1;
        self.min = self.min.min(p.value);
        self.max = self.max.max(p.value);
    }

    /// Makes the store cover `low..=high` and returns the index of `low`.
    fn index_for(&mut self, low: i32, high: i32) -> usize {
        let len = self.bins.len() as i32;
        if len == 0 {
            let start = (low - GROWTH_PAD).max(MIN_KEY);
            let end = (high + GROWTH_PAD).min(MAX_KEY);
            self.bins.resize((end - start + 1) as usize, 0);
            self.offset = start;
        } else if low < self.offset || high >= self.offset + len {
            let start = if low < self.offset { (low - GROWTH_PAD).max(MIN_KEY) } else { self.offset };
            let old_end = self.offset + len - 1;
            let end = if high > old_end { (high + GROWTH_PAD).min(MAX_KEY) } else { old_end };
            let mut bins = vec![0; (end - start + 1) as usize];
            let shift = (self.offset - start) as usize;
            bins[shift..shift + self.bins.len()].copy_from_slice(&self.bins);
            self.bins = bins;
            self.offset = start;
        }
        (low - self.offset) as usize
    }

    /// Adds every value of `other` to this sketch; the result is the sketch of the union.
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.count == 0 {
            return;
        }
        if let Some((first, counts)) = other.nonzero_bins() {
            let last = first + counts.len() as i32 - 1;
            let index = self.index_for(first, last);
            for (bin, count) in self.bins[index..index + counts.len()].iter_mut().zip(counts) {
                *bin += count;
            }
        }
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Releases the spare bins at either end (for sketches kept for a while but no longer added to).
    pub(crate) fn compact(&mut self) {
        match self.nonzero_bins() {
            Some((first, counts)) => {
                let (start, len) = ((first - self.offset) as usize, counts.len());
                self.bins.drain(..start);
                self.bins.truncate(len);
                self.bins.shrink_to_fit();
                self.offset = first;
            }
            None => self.bins = Vec::new(),
        }
    }

    /// The first non-empty key and the counts from it to the last non-empty bin, when any bin is non-empty.
    fn nonzero_bins(&self) -> Option<(i32, &[u64])> {
        let first = self.bins.iter().position(|&c| c != 0)?;
        let last = self.bins.iter().rposition(|&c| c != 0)?;
        Some((self.offset + first as i32, &self.bins[first..=last]))
    }

    /// The value of rank `⌊q · (n − 1)⌋` (zero-based) within 1 %, or `None` when the sketch is empty or `q` is
    /// NaN; `q` is clamped to `[0, 1]`. The answer is always within `[min, max]`, and exactly `min` or `max`
    /// for `q` = 0 or 1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = (q * (self.count - 1) as f64) as u64;
        let estimate = if rank < self.zero_count {
            0.0
        } else {
            let mut remaining = rank - self.zero_count;
            let mut found = self.max;
            for (i, &c) in self.bins.iter().enumerate() {
                if remaining < c {
                    found = bin_value(self.offset + i as i32);
                    break;
                }
                remaining -= c;
            }
            found
        };
        Some(estimate.clamp(self.min, self.max))
    }

    /// The number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value added (exact), if any.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value added (exact, after clamping to 10⁹ s), if any.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The compact binary form: see the module documentation. Equal sketches encode to equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let bins = self.nonzero_bins();
        let mut out = Vec::with_capacity(24 + bins.map_or(0, |(_, b)| b.len()));
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.zero_count);
        put_varint(&mut out, bins.map_or(0, |(_, b)| b.len() as u64));
        if self.count > 0 {
            out.extend_from_slice(&self.min.to_le_bytes());
            out.extend_from_slice(&self.max.to_le_bytes());
        }
        if let Some((first, counts)) = bins {
            put_varint(&mut out, zigzag(first));
            let mut i = 0;
            while i < counts.len() {
                if counts[i] == 0 {
                    let run = counts[i..].iter().take_while(|&&c| c == 0).count();
                    out.push(0);
                    put_varint(&mut out, run as u64);
                    i += run;
                } else {
                    put_varint(&mut out, counts[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// Parses what [`LatencySketch::encode`] wrote, refusing anything else with an error.
    pub fn decode(bytes: &[u8]) -> Result<LatencySketch, DecodeError> {
        let mut input = Reader(bytes);
        let version = input.byte()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let zero_count = input.varint()?;
        let span = input.varint()?;
        if span > KEY_SPAN as u64 {
            return Err(DecodeError::Invalid("more bins than keys"));
        }
        let span = span as usize;
        let mut sketch = LatencySketch { zero_count, count: zero_count, ..LatencySketch::new() };
        if zero_count == 0 && span == 0 {
            return input.finish().map(|()| sketch);
        }
        let min = input.f64()?;
        let max = input.f64()?;
        if !(min.is_finite() && max.is_finite() && 0.0 <= min && min <= max && max <= MAX_VALUE) {
            return Err(DecodeError::Invalid("minimum or maximum out of range"));
        }
        if span > 0 {
            let first = unzigzag(input.varint()?)?;
            if first < MIN_KEY || first > MAX_KEY - (span as i32 - 1) {
                return Err(DecodeError::Invalid("key out of range"));
            }
            let mut bins = Vec::with_capacity(span);
            let mut after_run = false;
            while bins.len() < span {
                match input.varint()? {
                    0 => {
                        let run = input.varint()?;
                        if after_run || run == 0 || run > (span - bins.len()) as u64 {
                            return Err(DecodeError::Invalid("bad run of empty bins"));
                        }
                        bins.resize(bins.len() + run as usize, 0);
                        after_run = true;
                    }
                    count => {
                        after_run = false;
                        sketch.count = sketch.count.checked_add(count).ok_or(DecodeError::Invalid("count overflow"))?;
                        bins.push(count);
                    }
                }
            }
            if bins[0] == 0 || bins[span - 1] == 0 {
                return Err(DecodeError::Invalid("empty first or last bin"));
            }
            let last = first + span as i32 - 1;
            if max <= MIN_VALUE || key(max) != last {
                return Err(DecodeError::Invalid("maximum does not match the bins"));
            }
            if zero_count == 0 && (min <= MIN_VALUE || key(min) != first) {
                return Err(DecodeError::Invalid("minimum does not match the bins"));
            }
            sketch.bins = bins;
            sketch.offset = first;
        } else if max > MIN_VALUE {
            return Err(DecodeError::Invalid("maximum does not match the bins"));
        }
        if zero_count > 0 && min > MIN_VALUE {
            return Err(DecodeError::Invalid("minimum does not match the zero bin"));
        }
        sketch.min = min;
        sketch.max = max;
        input.finish().map(|()| sketch)
    }
}

impl PartialEq for LatencySketch {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count
            && self.zero_count == other.zero_count
            && self.min() == other.min()
            && self.max() == other.max()
            && self.nonzero_bins() == other.nonzero_bins()
    }
}

impl fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencySketch")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

fn zigzag(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn unzigzag(v: u64) -> Result<i32, DecodeError> {
    let v = u32::try_from(v).map_err(|_| DecodeError::Invalid("key out of range"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over the encoded bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most 64 bits, in its shortest form.
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Invalid("varint overflow"));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError::Invalid("varint not in shortest form"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid("varint overflow"))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<8>().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(f64::from_le_bytes(*head))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() { Ok(()) } else { Err(DecodeError::Invalid("trailing bytes")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// The true value of rank `⌊q · (n − 1)⌋`, the rank the sketch answers for.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64) as usize]
    }

    fn sketch_of(values: &[f64]) -> LatencySketch {
        let mut s = LatencySketch::new();
        values.iter().for_each(|&v| s.add(v));
        s
    }

    fn assert_accurate(name: &str, values: &[f64]) {
        let sketch = sketch_of(values);
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99] {
            let want = exact(&sorted, q);
            let got = sketch.quantile(q).unwrap();
            let error = (got - want).abs() / want;
            assert!(error <= 0.01, "{name} p{}: sketch {got}, exact {want}, error {error}", q * 100.0);
        }
        assert_eq!(sketch.count(), values.len() as u64);
        assert_eq!(sketch.min(), Some(sorted[0]));
        assert_eq!(sketch.max(), Some(sorted[sorted.len() - 1]));
    }

    fn uniform(rng: &mut Rng, n: usize, low: f64, high: f64) -> Vec<f64> {
        (0..n).map(|_| low + rng.f64() * (high - low)).collect()
    }

    fn log_normal(rng: &mut Rng, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n).map(|_| median * (sigma * rng.normal()).exp()).collect()
    }

    fn bimodal(rng: &mut Rng, n: usize) -> Vec<f64> {
        // A fast path around 2 ms and a slow path around 400 ms (a cache miss), one in five calls.
        (0..n)
            .map(
                |_| if rng.f64() < 0.8 { 0.002 * (0.2 * rng.normal()).exp() } else { 0.4 * (0.3 * rng.normal()).exp() },
            )
            .collect()
    }

    #[test]
    fn constants_match_the_formula() {
        let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
        assert!((gamma.ln() - LN_GAMMA).abs() < 1e-15);
        assert!((1.0 / gamma.ln() - INV_LN_GAMMA).abs() < 1e-12);
        assert_eq!(MIN_KEY, (MIN_VALUE.ln() * INV_LN_GAMMA).ceil() as i32);
        assert_eq!(MAX_KEY, key(MAX_VALUE));
        assert!(key(MIN_VALUE * 1.000_001) >= MIN_KEY);
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut rng = Rng::new(7);
        assert_accurate("uniform", &uniform(&mut rng, 5000, 0.001, 0.050));
        assert_accurate("uniform wide", &uniform(&mut rng, 5000, 0.000_01, 10.0));
        assert_accurate("log-normal", &log_normal(&mut rng, 8000, 0.003, 1.0));
        assert_accurate("log-normal heavy tail", &log_normal(&mut rng, 8000, 0.0005, 2.5));
        assert_accurate("bimodal", &bimodal(&mut rng, 6000));
    }

    #[test]
    fn every_value_is_answered_within_one_percent() {
        // The bound holds for single values anywhere in the range, bin edges included.
        let mut v = MIN_VALUE * 1.5;
        while v < MAX_VALUE {
            let s = sketch_of(&[v, v * 1.000_001]);
            let got = s.quantile(0.0).unwrap();
            assert!((got - v).abs() / v <= 0.01, "{v}: {got}");
            let got = bin_value(key(v));
            assert!((got - v).abs() / v <= RELATIVE_ACCURACY * (1.0 + 1e-12), "{v}: bin value {got}");
            v *= 1.013;
        }
    }

    #[test]
    fn merge_equals_the_sketch_of_the_union() {
        let mut rng = Rng::new(11);
        let a = log_normal(&mut rng, 3000, 0.002, 0.8);
        let b = bimodal(&mut rng, 2000);
        let c = vec![0.0, 1e-12, 5e9, 0.5];
        let mut merged = sketch_of(&a);
        merged.merge(&sketch_of(&b));
        merged.merge(&sketch_of(&c));
        merged.merge(&LatencySketch::new());
        let union: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        let direct = sketch_of(&union);
        assert_eq!(merged, direct);
        assert_eq!(merged.encode(), direct.encode());
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), direct.quantile(q));
        }
        // Merging into an empty sketch copies.
        let mut empty = LatencySketch::new();
        empty.merge(&direct);
        assert_eq!(empty, direct);
    }

    #[test]
    fn edge_values() {
        let mut s = LatencySketch::new();
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.min(), None);
        s.add(f64::NAN);
        assert_eq!(s.count(), 0);
        s.add(-1.0);
        s.add(0.0);
        s.add(f64::INFINITY);
        assert_eq!(s.count(), 3);
        assert_eq!(s.min(), Some(0.0));
        assert_eq!(s.max(), Some(MAX_VALUE));
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(MAX_VALUE));
        assert_eq!(s.quantile(f64::NAN), None);
        assert_eq!(LatencySketch::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut rng = Rng::new(3);
        let cases = [
            vec![],
            vec![0.0],
            vec![0.004],
            vec![0.0, 0.004, 7.0],
            uniform(&mut rng, 1000, 0.005, 0.010),
            log_normal(&mut rng, 5000, 0.001, 2.0),
            bimodal(&mut rng, 1000),
        ];
        for values in cases {
            let s = sketch_of(&values);
            let bytes = s.encode();
            let back = LatencySketch::decode(&bytes).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.encode(), bytes);
            for q in [0.0, 0.5, 0.99, 1.0] {
                assert_eq!(back.quantile(q), s.quantile(q));
            }
        }
    }

    #[test]
    fn encoded_sizes() {
        // The store keeps one sketch per minute and per hour per series, so the size matters. Run with
        // `--nocapture` to see the figures.
        let mut rng = Rng::new(5);
        let cases: Vec<(&str, Vec<f64>, usize)> = vec![
            ("empty", vec![], 8),
            ("1 sample", vec![0.003], 32),
            ("1000 uniform over 2x (5-10 ms)", uniform(&mut rng, 1000, 0.005, 0.010), 200),
            ("1000 log-normal sigma 0.3 (2 ms)", log_normal(&mut rng, 1000, 0.002, 0.3), 200),
            ("1000 bimodal 2 ms / 400 ms", bimodal(&mut rng, 1000), 300),
            ("60000 log-normal sigma 0.5 (1 h, 1 rps)", log_normal(&mut rng, 60_000, 0.002, 0.5), 600),
            ("100000 log-normal sigma 2.5 (heavy tail)", log_normal(&mut rng, 100_000, 0.0005, 2.5), 2000),
        ];
        for (name, values, limit) in cases {
            let size = sketch_of(&values).encode().len();
            println!("encoded size: {name}: {size} bytes");
            assert!(size <= limit, "{name}: {size} bytes");
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        let good = sketch_of(&[0.0, 0.001, 0.002, 0.004, 0.5]).encode();
        // Every truncation fails.
        for len in 0..good.len() {
            assert!(LatencySketch::decode(&good[..len]).is_err(), "truncated to {len}");
        }
        // Trailing bytes fail.
        let mut long = good.clone();
        long.push(0);
        assert!(LatencySketch::decode(&long).is_err());
        // Known-bad inputs.
        assert_eq!(LatencySketch::decode(&[9]).unwrap_err(), DecodeError::UnsupportedVersion(9));
        assert!(LatencySketch::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(LatencySketch::decode(&[1, 0, 0xff, 0xff, 0x03]).is_err());
        // Single-byte corruptions and random bytes either fail or decode to something that encodes back to the
        // same bytes (never a panic, never an inconsistent sketch).
        let mut rng = Rng::new(99);
        for i in 0..good.len() {
            for _ in 0..64 {
                let mut bad = good.clone();
                bad[i] = rng.next() as u8;
                if let Ok(s) = LatencySketch::decode(&bad) {
                    assert_eq!(s.encode(), bad);
                    s.quantile(0.5);
                }
            }
        }
        for _ in 0..20_000 {
            let len = (rng.next() % 40) as usize;
            let mut bad: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if !bad.is_empty() && rng.next().is_multiple_of(2) {
                bad[0] = FORMAT_VERSION;
            }
            if let Ok(s) = LatencySketch::decode(&bad) {
                assert_eq!(s.encode(), bad);
                let mut m = s.clone();
                m.merge(&s);
                m.quantile(0.99);
            }
        }
    }
}
