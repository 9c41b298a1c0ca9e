//! Log output: human-readable text, or one JSON object per line for ELK-style shipping. `PLUGWATCH_LOG`
//! takes a `tracing` filter (e.g. `debug`, `plugwatch_server=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_env("PLUGWATCH_LOG").unwrap_or_else(|_| default.into())
}

/// The server's logging: info and above, as text or JSON lines.
pub fn init(json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info,tower_http=warn"))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a file, a pipe or a container's log gets plain text.
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}

/// The local runner's logging: warnings only, so stderr stays the measurement.
pub fn init_quiet() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
