//! The server's integration tests: the real server on port 0 with a temporary data directory, spoken to
//! over real HTTP. One test binary with shared helpers.

mod support;

mod access;
mod alerts;
mod backups;
mod connections;
mod dashboard;
mod errors;
mod hooks;
mod operations;
mod plugins;
mod secrets;
mod telemetry;
