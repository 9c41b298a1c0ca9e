//! The plain data plugwatch's crates share, with no behaviour heavier than validation: what one invocation
//! did and cost ([`Invocation`]), the limits a plugin runs under ([`Limits`]), the alerting vocabulary
//! ([`alerts`]), and what replicas share besides the database ([`shared`]). It depends on nothing heavy,
//! so that the store, telemetry and alerts crates can name these types without compiling wasmtime.

pub mod alerts;
mod limits;
mod pool;
mod record;
pub mod shared;

pub use limits::*;
pub use pool::{PoolMemory, PoolStats};
pub use record::{Invocation, Level, LogLine, LogSource, Outcome, UnknownOutcome};
