//! The plugin, host and process families of `/metrics`, written with [`Exposition`].

use std::sync::Arc;

use plugwatch_model::Outcome;

use crate::exposition::Exposition;
use crate::host::HostSample;
use crate::names::{self, Family};
use crate::series::{Series, Snapshot};

/// Writes every family of [`names`]: the plugin families for the given series (none without series, like the
/// official clients, rather than families without samples) and, given a host sample, the host and process
/// families.
pub(crate) fn encode(series: &[(Arc<Series>, Snapshot)], host: Option<&HostSample>, out: &mut String) {
    let mut e = Exposition::new(out);
    if !series.is_empty() {
        encode_plugins(&mut e, series);
    }
    if let Some(host) = host {
        let gauges = [
            (&names::HOST_CPU_USAGE, host.cpu_usage),
            (&names::HOST_MEMORY_USED, host.memory_used_bytes as f64),
            (&names::HOST_MEMORY_TOTAL, host.memory_total_bytes as f64),
            (&names::HOST_DISK_USED, host.disk_used_bytes as f64),
            (&names::HOST_DISK_TOTAL, host.disk_total_bytes as f64),
            (&names::PROCESS_RESIDENT_MEMORY, host.process_rss_bytes as f64),
            (&names::PROCESS_CPU_SECONDS, host.process_cpu_seconds),
        ];
        for (family, value) in gauges {
            e.declare(family);
            e.sample(family.name, &[], value);
        }
    }
}

/// Reads one family's value from a series snapshot.
type SeriesValue = fn(&Snapshot) -> f64;

fn encode_plugins(e: &mut Exposition<'_>, series: &[(Arc<Series>, Snapshot)]) {
    e.declare(&names::PLUGIN_INVOCATIONS);
    for (s, snap) in series {
        let [plugin, version] = labels(s);
        for outcome in Outcome::ALL {
            let labels = [plugin, version, (names::LABEL_OUTCOME, outcome.as_str())];
            e.sample(names::PLUGIN_INVOCATIONS.name, &labels, snap.totals.counts[outcome.index()] as f64);
        }
    }

    let name = names::PLUGIN_DURATION.name;
    let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
    let bounds: Vec<String> = names::DURATION_BUCKETS.iter().map(f64::to_string).chain(["+Inf".to_owned()]).collect();
    e.declare(&names::PLUGIN_DURATION);
    for (s, snap) in series {
        let [plugin, version] = labels(s);
        let mut cumulative = 0;
        for (n, le) in snap.totals.histogram.iter().zip(&bounds) {
            cumulative += n;
            e.sample(&bucket, &[plugin, version, ("le", le)], cumulative as f64);
        }
        e.sample(&sum, &labels(s), snap.totals.wall_ns as f64 / 1e9);
        e.sample(&count, &labels(s), cumulative as f64);
    }

    let per_series: [(&Family, SeriesValue); 6] = [
        (&names::PLUGIN_CPU, |s| s.totals.cpu_ns as f64 / 1e9),
        (&names::PLUGIN_QUEUE, |s| s.totals.queued_ns as f64 / 1e9),
        (&names::PLUGIN_INSTRUCTIONS, |s| s.totals.instructions as f64),
        (&names::PLUGIN_MEMORY_PEAK, |s| s.memory_peak as f64),
        (&names::PLUGIN_INPUT_BYTES, |s| s.totals.input_bytes as f64),
        (&names::PLUGIN_OUTPUT_BYTES, |s| s.totals.output_bytes as f64),
    ];
    for (family, value) in per_series {
        e.declare(family);
        for (s, snap) in series {
            e.sample(family.name, &labels(s), value(snap));
        }
    }
}

/// The labels identifying a series.
fn labels(s: &Series) -> [(&'static str, &str); 2] {
    [(names::LABEL_PLUGIN, s.plugin()), (names::LABEL_VERSION, s.version())]
}
