//! plugwatch's alerting: rules over what plugwatch measures, alert states and history, silences, routing,
//! and notifications delivered through a durable outbox. It knows nothing of HTTP routing or wasmtime.
pub mod channels;
