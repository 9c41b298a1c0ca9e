//! Every Prometheus metric family plugwatch-telemetry exposes, written down once: name, type and help text.
//! `METRICS.md` mirrors this file (a test keeps the two in step).

use crate::exposition::MetricKind;

/// A metric family: what its `# HELP` and `# TYPE` lines say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

/// The label naming the plugin.
pub const LABEL_PLUGIN: &str = "plugin";
/// The label naming the plugin version.
pub const LABEL_VERSION: &str = "version";
/// The label naming an [`Outcome`](plugwatch_model::Outcome) (`Outcome::as_str`).
pub const LABEL_OUTCOME: &str = "outcome";

/// Upper bounds (seconds, inclusive) of [`PLUGIN_DURATION`]'s buckets, from 100 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub const PLUGIN_INVOCATIONS: Family = Family {
    name: "plugwatch_plugin_invocations_total",
    kind: MetricKind::Counter,
    help: "Plugin invocations since the process started, by outcome.",
};

pub const PLUGIN_DURATION: Family = Family {
    name: "plugwatch_plugin_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Wall time of plugin invocations, from admission to completion (queueing and instantiation included).",
};

pub const PLUGIN_CPU: Family = Family {
    name: "plugwatch_plugin_cpu_seconds_total",
    kind: MetricKind::Counter,
    help: "CPU time consumed by plugin invocations since the process started.",
};

pub const PLUGIN_QUEUE: Family = Family {
    name: "plugwatch_plugin_queue_seconds_total",
    kind: MetricKind::Counter,
    help: "Time plugin invocations spent waiting (for a concurrency slot or a guest thread) since the process started.",
};

pub const PLUGIN_INSTRUCTIONS: Family = Family {
    name: "plugwatch_plugin_instructions_total",
    kind: MetricKind::Counter,
    help: "WebAssembly instructions (fuel) executed by plugin invocations since the process started.",
};

pub const PLUGIN_MEMORY_PEAK: Family = Family {
    name: "plugwatch_plugin_memory_peak_bytes",
    kind: MetricKind::Gauge,
    help: "Highest peak linear memory of an invocation in the current or the last closed 10 s bucket.",
};

pub const PLUGIN_INPUT_BYTES: Family = Family {
    name: "plugwatch_plugin_input_bytes_total",
    kind: MetricKind::Counter,
    help: "Input bytes passed to plugin invocations since the process started.",
};

pub const PLUGIN_OUTPUT_BYTES: Family = Family {
    name: "plugwatch_plugin_output_bytes_total",
    kind: MetricKind::Counter,
    help: "Output bytes returned by plugin invocations since the process started.",
};

pub const HOST_CPU_USAGE: Family = Family {
    name: "plugwatch_host_cpu_usage_ratio",
    kind: MetricKind::Gauge,
    help: "CPU usage of the whole machine between the last two host samples (0 to 1).",
};

pub const HOST_MEMORY_USED: Family =
    Family { name: "plugwatch_host_memory_used_bytes", kind: MetricKind::Gauge, help: "Memory in use on the machine." };

pub const HOST_MEMORY_TOTAL: Family =
    Family { name: "plugwatch_host_memory_total_bytes", kind: MetricKind::Gauge, help: "Total memory of the machine." };

pub const HOST_DISK_USED: Family = Family {
    name: "plugwatch_host_disk_used_bytes",
    kind: MetricKind::Gauge,
    help: "Used space on the filesystem holding the data directory.",
};

pub const HOST_DISK_TOTAL: Family = Family {
    name: "plugwatch_host_disk_total_bytes",
    kind: MetricKind::Gauge,
    help: "Size of the filesystem holding the data directory.",
};

pub const PROCESS_RESIDENT_MEMORY: Family =
    Family { name: "process_resident_memory_bytes", kind: MetricKind::Gauge, help: "Resident memory size in bytes." };

pub const PROCESS_CPU_SECONDS: Family = Family {
    name: "process_cpu_seconds_total",
    kind: MetricKind::Counter,
    help: "Total user and system CPU time spent in seconds.",
};

/// The label naming one of a plugin's limits (`wall_time`, `instructions`, `memory`, `output`,
/// `concurrency`).
pub const LABEL_LIMIT: &str = "limit";

/// How much of its own limits a plugin version used over the last five minutes: written by
/// [`Telemetry::encode_headroom`](crate::Telemetry::encode_headroom), which is given the limits.
pub const PLUGIN_HEADROOM: Family = Family {
    name: "plugwatch_plugin_headroom_ratio",
    kind: MetricKind::Gauge,
    help: "Share of each of its own limits a plugin version used over the last 5 minutes (1 is the limit).",
};

/// The families written only by callers that know the plugins' limits.
pub const WITH_LIMITS: [Family; 1] = [PLUGIN_HEADROOM];

/// A plugin version's pool of pre-instantiated instances: written by
/// [`encode_pools`](crate::encode_pools), which is given what the runtime reports.
pub const PLUGIN_POOL_MAX: Family = Family {
    name: "plugwatch_plugin_pool_max_instances",
    kind: MetricKind::Gauge,
    help: "The most pre-instantiated instances a plugin version may keep ready (0: it has no pool and instantiates on the call's path).",
};

pub const PLUGIN_POOL_TARGET: Family = Family {
    name: "plugwatch_plugin_pool_target_instances",
    kind: MetricKind::Gauge,
    help: "Pre-instantiated instances a plugin version keeps ready now: it follows demand, and is 0 once the plugin is idle.",
};

pub const PLUGIN_POOL_READY: Family = Family {
    name: "plugwatch_plugin_pool_ready_instances",
    kind: MetricKind::Gauge,
    help: "Pre-instantiated instances of a plugin version ready now.",
};

pub const PLUGIN_POOL_MISSES: Family = Family {
    name: "plugwatch_plugin_pool_misses_total",
    kind: MetricKind::Counter,
    help: "Invocations that found the plugin version's pool empty and instantiated on their own path, since it was loaded.",
};

pub const PLUGIN_POOL_MEMORY: Family = Family {
    name: "plugwatch_plugin_pool_memory_bytes",
    kind: MetricKind::Gauge,
    help: "Memory a plugin version's ready instances hold, each counted at the most an instantiation of the plugin faulted in.",
};

pub const RUNTIME_POOL_MEMORY: Family = Family {
    name: "plugwatch_runtime_pool_memory_bytes",
    kind: MetricKind::Gauge,
    help: "Memory all plugins' ready instances hold, each counted at the most an instantiation of its plugin faulted in.",
};

pub const RUNTIME_POOL_BUDGET: Family = Family {
    name: "plugwatch_runtime_pool_memory_budget_bytes",
    kind: MetricKind::Gauge,
    help: "The memory all plugins' ready instances may hold (runtime.pool_memory_budget_bytes).",
};

pub const RUNTIME_IDLE_SLOT_MEMORY: Family = Family {
    name: "plugwatch_runtime_idle_slot_resident_bytes",
    kind: MetricKind::Gauge,
    help: "Memory the engine's unused instance slots keep resident (reset in place rather than given back).",
};

/// The families written only by callers that know the runtime's pools: per plugin version, then for the
/// process.
pub const WITH_POOLS: [Family; 5] =
    [PLUGIN_POOL_MAX, PLUGIN_POOL_TARGET, PLUGIN_POOL_READY, PLUGIN_POOL_MISSES, PLUGIN_POOL_MEMORY];
pub const WITH_POOL_MEMORY: [Family; 3] = [RUNTIME_POOL_MEMORY, RUNTIME_POOL_BUDGET, RUNTIME_IDLE_SLOT_MEMORY];

/// Every family above but [`WITH_LIMITS`] and [`WITH_POOLS`], in exposition order.
pub const ALL: [Family; 15] = [
    PLUGIN_INVOCATIONS,
    PLUGIN_DURATION,
    PLUGIN_CPU,
    PLUGIN_QUEUE,
    PLUGIN_INSTRUCTIONS,
    PLUGIN_MEMORY_PEAK,
    PLUGIN_INPUT_BYTES,
    PLUGIN_OUTPUT_BYTES,
    HOST_CPU_USAGE,
    HOST_MEMORY_USED,
    HOST_MEMORY_TOTAL,
    HOST_DISK_USED,
    HOST_DISK_TOTAL,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_CPU_SECONDS,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// METRICS.md lists every family with the same name, type and help text.
    #[test]
    fn metrics_md_matches() {
        let doc = include_str!("../METRICS.md");
        for family in ALL.into_iter().chain(WITH_LIMITS).chain(WITH_POOLS).chain(WITH_POOL_MEMORY) {
            let row = format!("| `{}` | {} |", family.name, family.kind.as_str());
            let line = doc.lines().find(|l| l.starts_with(&row)).unwrap_or_else(|| panic!("METRICS.md lacks {row}"));
            assert!(line.contains(family.help), "METRICS.md's help for {} differs: {line}", family.name);
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            ALL.len() + WITH_LIMITS.len() + WITH_POOLS.len() + WITH_POOL_MEMORY.len(),
            "METRICS.md lists families that names.rs does not"
        );
    }
}
