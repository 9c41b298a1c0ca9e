//! The runtime's integration tests: real components (WAT fixtures and the example plugins) in real
//! wasmtime sandboxes. One test binary with shared helpers.

mod support;

mod guests;
mod limits;
mod load;
mod loading;
mod measurement;
mod scheduling;
