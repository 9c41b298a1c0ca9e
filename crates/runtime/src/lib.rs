//! plugwatch's plugin runtime: loads WebAssembly components built against `wit/plugin.wit`, runs each
//! invocation in a fresh sandboxed instance under wall-clock, instruction, memory, input, output and log
//! limits, and returns a record of what happened and what it cost.
//!
//! It knows nothing of HTTP, databases or time series: callers get an [`Invocation`] and do what they like
//! with it. One [`Runtime`] (one wasmtime `Engine`) serves the whole process.
//!
//! ```no_run
//! # async fn demo(bytes: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! use plugwatch_runtime::{LoadOptions, Runtime, RuntimeConfig};
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let plugin = runtime.load(bytes, LoadOptions::default()).await?;
//! let record = plugin.invoke("order.created", br#"{"order_id":"1"}"#).await;
//! println!("{} in {:?}", record.outcome, record.wall);
//! # Ok(()) }
//! ```

mod admission;
mod bindings;
mod cpu;
mod engine;
mod error;
mod executor;
mod inspect;
mod plugin;
mod state;
mod ticker;

pub use cpu::{thread_cpu_time, thread_minor_faults};
pub use engine::{FULL_RESET_BYTES, LoadOptions, Prewarm, Runtime, RuntimeConfig, engine_config};
pub use error::{LoadError, RuntimeError};
pub use inspect::{ALLOWED_WASI, HANDLE_EXPORT, HOST_INTERFACE, Inspection, import_allowed, inspect};
pub use plugin::Plugin;
pub use plugwatch_model::{
    DEFAULT_FUEL, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_LOG_BYTES, DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_QUEUE, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, Invocation, Level, Limits, LimitsError, LogLine,
    LogSource, MAX_TIMEOUT, Outcome, PoolMemory, PoolStats, UnknownOutcome, default_fuel_for,
};
pub use state::PluginConfig;
