//! What one invocation did and cost: the record the runtime returns for every call.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// How an invocation ended. The names (`as_str`) are stable: they are metric labels and API values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The plugin returned `ok(output)` within every limit.
    Ok,
    /// The plugin returned `err(message)`: its own refusal.
    PluginError,
    /// The guest trapped (see [`Invocation::trap_kind`]).
    Trap,
    /// The wall-clock limit was reached.
    Timeout,
    /// The instruction budget (fuel) ran out.
    FuelExhausted,
    /// The guest tried to grow its linear memory past its cap.
    MemoryLimit,
    /// The plugin returned more bytes than its output limit.
    OutputTooLarge,
    /// The input was over the plugin's input limit; the plugin did not run.
    InputTooLarge,
    /// The plugin's concurrency slots and queue were full; the plugin did not run.
    Rejected,
}

impl Outcome {
    /// Every outcome, in a fixed order (useful for dense per-outcome counters).
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::PluginError,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::FuelExhausted,
        Outcome::MemoryLimit,
        Outcome::OutputTooLarge,
        Outcome::InputTooLarge,
        Outcome::Rejected,
    ];

    /// The outcome's stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PluginError => "plugin_error",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::FuelExhausted => "fuel_exhausted",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::OutputTooLarge => "output_too_large",
            Outcome::InputTooLarge => "input_too_large",
            Outcome::Rejected => "rejected",
        }
    }

    /// This outcome's position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the plugin produced a usable output.
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a string names no [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// Severity of a log line, as in the WIT `host.level` enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// The level's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The plugin called `host.log`.
    Host,
    /// The guest wrote a line to WASI stdout.
    Stdout,
    /// The guest wrote a line to WASI stderr.
    Stderr,
}

impl LogSource {
    /// The source's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Host => "host",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        }
    }
}

/// One captured log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Time since the invocation started executing.
    pub at: Duration,
    pub level: Level,
    pub source: LogSource,
    pub message: String,
}

/// Everything measured about one invocation.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub outcome: Outcome,
    /// For `trap`: the kind of trap in snake_case (`unreachable_code_reached`, `stack_overflow`, …).
    pub trap_kind: Option<String>,
    /// The plugin's `err` message, or what went wrong for any other failing outcome.
    pub detail: Option<String>,
    /// The plugin's output, only for [`Outcome::Ok`].
    pub output: Option<Vec<u8>>,
    /// When the invocation was admitted (wall clock).
    pub started_at: SystemTime,
    /// Time from admission to completion, including any queue wait and instantiation.
    pub wall: Duration,
    /// Time spent waiting for a concurrency slot.
    pub queued: Duration,
    /// Time spent instantiating on the request path (zero when a pre-instantiated instance was used): its
    /// execution, without any wait for a thread (that is in `queued`).
    pub instantiate: Duration,
    /// CPU time consumed by the threads executing this invocation.
    pub cpu: Duration,
    /// WebAssembly instructions executed by the call (fuel consumed), when the engine meters them. Not known
    /// for `timeout`: wasmtime does not flush the fuel counter when the deadline interrupts a guest.
    pub instructions: Option<u64>,
    /// Peak total linear memory of the instance, in bytes.
    pub memory_peak_bytes: u64,
    /// Invocations of the plugin executing once this one was admitted, itself included (for a rejected
    /// one, those that were executing): what its `max_concurrency` is measured against.
    pub concurrency: u32,
    pub input_bytes: u64,
    /// Bytes the plugin returned (also when over the limit).
    pub output_bytes: u64,
    pub logs: Vec<LogLine>,
    /// Log bytes dropped because the log limit was reached.
    pub logs_dropped_bytes: u64,
}

impl Invocation {
    pub fn new(started_at: SystemTime, input_bytes: usize) -> Self {
        Invocation {
            outcome: Outcome::Ok,
            trap_kind: None,
            detail: None,
            output: None,
            started_at,
            wall: Duration::ZERO,
            queued: Duration::ZERO,
            instantiate: Duration::ZERO,
            cpu: Duration::ZERO,
            instructions: None,
            memory_peak_bytes: 0,
            concurrency: 0,
            input_bytes: input_bytes as u64,
            output_bytes: 0,
            logs: Vec::new(),
            logs_dropped_bytes: 0,
        }
    }

    pub fn fail(&mut self, outcome: Outcome, detail: impl Into<String>) {
        self.outcome = outcome;
        self.detail = Some(detail.into());
        self.output = None;
    }
}
