//! What a run of `wrk`, the HTTP load generator of the benches, printed: requests/s, requests answered
//! and, with `--latency`, the p99.

use anyhow::{Context, bail};

/// One run's figures.
pub struct Summary {
    pub rps: f64,
    /// Requests answered (`N requests in …`).
    pub requests: u64,
    /// The 99th percentile in milliseconds, when run with `--latency`.
    pub p99_ms: Option<f64>,
    /// wrk counted connect, read, write or timeout errors.
    pub socket_errors: bool,
}

/// Reads wrk's output of a run against `url`; a run with non-2xx answers is an error.
pub fn parse(text: &str, url: &str) -> anyhow::Result<Summary> {
    if text.contains("Non-2xx") {
        bail!("non-2xx responses from {url}:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().to_owned()))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    // The latency distribution: `     99%    3.21ms`.
    let p99_ms = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| millis(v.trim()));
    Ok(Summary { rps, requests, p99_ms, socket_errors: text.contains("Socket errors") })
}

/// wrk's `123.45us`, `3.21ms`, `1.02s` or `1.50m` in milliseconds.
fn millis(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => return None,
    })
}
