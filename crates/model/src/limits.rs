//! Per-plugin resource limits, their defaults, and the checks that keep them within the engine's ceilings.

use std::time::Duration;

/// Default wall-clock limit of one invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default instruction budget (fuel) of one invocation. See ARCHITECTURE.md for how it was chosen:
/// it is several times what a plugin can execute within the default timeout on the reference machine,
/// so the wall-clock limit normally fires first and fuel is the load-independent backstop.
pub const DEFAULT_FUEL: u64 = 2_000_000_000;
/// The default instruction budget for a given wall-clock limit: [`DEFAULT_FUEL`] per [`DEFAULT_TIMEOUT`],
/// so that a plugin granted a longer timeout is not stopped early by a budget sized for the default one.
pub fn default_fuel_for(timeout: Duration) -> u64 {
    let scaled = DEFAULT_FUEL as u128 * timeout.as_nanos() / DEFAULT_TIMEOUT.as_nanos();
    (scaled.min(u64::MAX as u128) as u64).max(DEFAULT_FUEL)
}

/// Default cap on an instance's total linear memory.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Default cap on input bytes.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1 << 20;
/// Default cap on output bytes.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Default cap on captured log bytes per invocation.
pub const DEFAULT_MAX_LOG_BYTES: usize = 16 << 10;
/// Default number of invocations of one plugin that may run at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;
/// Default number of invocations of one plugin that may wait for a slot.
pub const DEFAULT_MAX_QUEUE: u32 = 256;

/// The longest wall-clock limit a plugin may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits applied to every invocation of one plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit, from the moment the invocation starts executing.
    pub timeout: Duration,
    /// Instruction budget; `None` means unlimited (still measured when the engine meters fuel).
    pub fuel: Option<u64>,
    /// Cap on the instance's total linear memory, in bytes.
    pub memory_bytes: u64,
    pub max_input_bytes: usize,
    pub max_output_bytes: usize,
    pub max_log_bytes: usize,
    /// Invocations of this plugin that may execute at once.
    pub max_concurrency: u32,
    /// Invocations of this plugin that may wait for a slot; beyond that they are `rejected`.
    pub max_queue: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            fuel: Some(DEFAULT_FUEL),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
        }
    }
}

/// A limit outside what the runtime can enforce.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid limit `{field}`: {reason}")]
pub struct LimitsError {
    pub field: &'static str,
    pub reason: String,
}

impl Limits {
    /// Checks every limit against the engine's ceilings.
    pub fn validate(&self, max_memory_bytes: u64) -> Result<(), LimitsError> {
        let err = |field, reason: String| Err(LimitsError { field, reason });
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return err("timeout", format!("must be between 1ms and {}s", MAX_TIMEOUT.as_secs()));
        }
        if self.fuel == Some(0) {
            return err("fuel", "must be positive (omit it for no budget)".into());
        }
        if self.memory_bytes < 64 << 10 || self.memory_bytes > max_memory_bytes {
            return err(
                "memory",
                format!("must be between 64 KiB (one page) and the runtime's ceiling of {max_memory_bytes} bytes"),
            );
        }
        if self.max_input_bytes == 0 || self.max_output_bytes == 0 {
            let field = if self.max_input_bytes == 0 { "max_input_bytes" } else { "max_output_bytes" };
            return err(field, "must be positive".into());
        }
        if self.max_concurrency == 0 {
            return err("max_concurrency", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_named() {
        let ceiling = 1 << 30;
        assert_eq!(Limits::default().validate(ceiling), Ok(()));
        let bad = Limits { timeout: Duration::ZERO, ..Limits::default() };
        assert_eq!(bad.validate(ceiling).unwrap_err().field, "timeout");
        let bad = Limits { memory_bytes: 2 << 30, ..Limits::default() };
        assert_eq!(bad.validate(ceiling).unwrap_err().field, "memory");
        let bad = Limits { max_concurrency: 0, ..Limits::default() };
        assert_eq!(bad.validate(ceiling).unwrap_err().field, "max_concurrency");
        let bad = Limits { fuel: Some(0), ..Limits::default() };
        assert_eq!(bad.validate(ceiling).unwrap_err().field, "fuel");
    }
}
