//! Deterministic pseudo-random data and invocation builders shared by the unit tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugwatch_model::{Invocation, Outcome};

/// SplitMix64: tiny, fast and good enough to generate test distributions reproducibly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by the Box–Muller transform.
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The wall-clock time `secs` (plus `millis`) after the Unix epoch.
pub fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
}

/// An invocation as the runtime would report it, with the given outcome, start and wall time.
pub fn invocation(outcome: Outcome, started_at: SystemTime, wall: Duration) -> Invocation {
    Invocation {
        outcome,
        trap_kind: (outcome == Outcome::Trap).then(|| "unreachable_code_reached".to_owned()),
        detail: (!outcome.is_ok()).then(|| format!("{outcome} happened")),
        output: outcome.is_ok().then(|| b"{}".to_vec()),
        started_at,
        wall,
        queued: Duration::from_micros(5),
        instantiate: Duration::ZERO,
        cpu: wall / 2,
        instructions: (outcome != Outcome::Timeout).then_some(1000),
        memory_peak_bytes: 65536,
        input_bytes: 100,
        output_bytes: if outcome.is_ok() { 2 } else { 0 },
        logs: Vec::new(),
        concurrency: 1,
        logs_dropped_bytes: 0,
    }
}
