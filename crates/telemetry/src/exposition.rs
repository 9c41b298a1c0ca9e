//! A small writer of the Prometheus text exposition format (version 0.0.4), shared by every crate that adds
//! metric families to plugwatch's `/metrics` output.

use std::fmt::Write as _;

use crate::names::Family;

/// The content type of the text this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as its `# TYPE` line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricKind {
    /// The name the `# TYPE` line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Untyped => "untyped",
        }
    }
}

/// Appends families and samples to a string in the text format.
///
/// Declare each family once with [`Exposition::family`], then write its samples (a histogram's `_bucket`,
/// `_sum` and `_count` samples follow its family line). Label values and help text are escaped here; names are
/// the caller's and must be valid Prometheus names.
///
/// ```
/// use plugwatch_telemetry::{Exposition, MetricKind};
/// let mut out = String::new();
/// let mut exposition = Exposition::new(&mut out);
/// exposition.family("plugwatch_http_requests_total", "HTTP requests served.", MetricKind::Counter);
/// exposition.sample("plugwatch_http_requests_total", &[("route", "/metrics"), ("status", "200")], 3.0);
/// assert!(out.ends_with("plugwatch_http_requests_total{route=\"/metrics\",status=\"200\"} 3\n"));
/// ```
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    /// Appends to `out`.
    pub fn new(out: &'a mut String) -> Self {
        Exposition { out }
    }

    /// Writes a family's `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        debug_assert!(valid_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family from [`names`](crate::names).
    pub fn declare(&mut self, family: &Family) {
        self.family(family.name, family.help, family.kind);
    }

    /// Writes one sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(valid_name(name), "invalid metric name {name:?}");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label) && !label.contains(':'), "invalid label name {label:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(self.out, value);
        self.out.push('\n');
    }
}

/// Writes a sample value as Go's `strconv.ParseFloat` reads it: integers without a fraction, `NaN`, `+Inf`,
/// `-Inf`, and otherwise Rust's shortest round-tripping decimal form.
fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_escaping() {
        let mut out = String::new();
        let mut e = Exposition::new(&mut out);
        e.family("a_total", "Help with \\ and\nnewline.", MetricKind::Counter);
        e.sample("a_total", &[("l", "back\\slash \"quoted\"\nnext")], 1.0);
        e.sample("a_total", &[], 0.25);
        e.sample("a_total", &[], f64::INFINITY);
        e.sample("a_total", &[], f64::NAN);
        e.sample("a_total", &[], 1e-7);
        e.sample("a_total", &[], -3.0);
        assert_eq!(
            out,
            "# HELP a_total Help with \\\\ and\\nnewline.\n# TYPE a_total counter\n\
             a_total{l=\"back\\\\slash \\\"quoted\\\"\\nnext\"} 1\n\
             a_total 0.25\na_total +Inf\na_total NaN\na_total 0.0000001\na_total -3\n"
        );
    }
}
