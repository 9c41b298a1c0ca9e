//! The run log: one entry per invocation, kept in bounded in-memory rings and handed out for persistence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use plugwatch_model::{Invocation, LogLine, Outcome};

use crate::rollup::micros;

/// One invocation as the run log shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunLogEntry {
    pub plugin: String,
    pub version: String,
    pub hook: String,
    pub started_at: SystemTime,
    pub outcome: Outcome,
    pub trap_kind: Option<String>,
    pub detail: Option<String>,
    pub wall_us: u64,
    pub queued_us: u64,
    pub instantiate_us: u64,
    pub cpu_us: u64,
    pub instructions: Option<u64>,
    pub memory_peak_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub logs: Vec<LogLine>,
    pub logs_dropped_bytes: u64,
}

/// The heap-allocated parts of a run, built before the series lock is taken. Shared (`Arc`) so that one
/// failing run can sit in several rings without copying its strings or logs.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunText {
    pub trap_kind: Option<Arc<str>>,
    pub detail: Option<Arc<str>>,
    pub logs: Option<Arc<[LogLine]>>,
}

impl RunText {
    /// Copies what the invocation carries on the heap; allocates nothing for a successful run without logs.
    pub fn of(invocation: &Invocation) -> RunText {
        RunText {
            trap_kind: invocation.trap_kind.as_deref().map(Arc::from),
            detail: invocation.detail.as_deref().map(Arc::from),
            logs: (!invocation.logs.is_empty()).then(|| Arc::from(invocation.logs.as_slice())),
        }
    }
}

/// A run as a series keeps it: the hook is an index into the series' interned hook names.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub hook: u32,
    /// Its number in its shard, for finding what a flush has not persisted yet.
    pub seq: u64,
    pub started_at: SystemTime,
    pub outcome: Outcome,
    pub text: RunText,
    pub wall_us: u64,
    pub queued_us: u64,
    pub instantiate_us: u64,
    pub cpu_us: u64,
    pub instructions: Option<u64>,
    pub memory_peak_bytes: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub logs_dropped_bytes: u64,
}

impl Run {
    pub fn new(hook: u32, seq: u64, invocation: &Invocation, text: RunText) -> Run {
        Run {
            hook,
            seq,
            started_at: invocation.started_at,
            outcome: invocation.outcome,
            text,
            wall_us: micros(invocation.wall),
            queued_us: micros(invocation.queued),
            instantiate_us: micros(invocation.instantiate),
            cpu_us: micros(invocation.cpu),
            instructions: invocation.instructions,
            memory_peak_bytes: invocation.memory_peak_bytes,
            input_bytes: invocation.input_bytes,
            output_bytes: invocation.output_bytes,
            logs_dropped_bytes: invocation.logs_dropped_bytes,
        }
    }

    /// The public form, with the series' names and this run's hook name.
    pub fn entry(&self, plugin: &str, version: &str, hook: &str) -> RunLogEntry {
        RunLogEntry {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            hook: hook.to_owned(),
            started_at: self.started_at,
            outcome: self.outcome,
            trap_kind: self.text.trap_kind.as_deref().map(str::to_owned),
            detail: self.text.detail.as_deref().map(str::to_owned),
            wall_us: self.wall_us,
            queued_us: self.queued_us,
            instantiate_us: self.instantiate_us,
            cpu_us: self.cpu_us,
            instructions: self.instructions,
            memory_peak_bytes: self.memory_peak_bytes,
            input_bytes: self.input_bytes,
            output_bytes: self.output_bytes,
            logs: self.text.logs.as_deref().map(<[LogLine]>::to_vec).unwrap_or_default(),
            logs_dropped_bytes: self.logs_dropped_bytes,
        }
    }
}

/// A bounded FIFO that drops its oldest item when full. Its storage grows on demand (a series shard that
/// sees little traffic stays small) and is kept once grown.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Ring { items: VecDeque::new(), capacity }
    }

    pub fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut ring = Ring::new(3);
        (0..10).for_each(|i| ring.push(i));
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [7, 8, 9]);
        let mut none = Ring::new(0);
        none.push(1);
        assert_eq!(none.iter().count(), 0);
    }
}
