//! The `plugwatch` command: a thin shell whose subcommands each live in `commands/` as a struct with `run()`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run third-party plugins as sandboxed WebAssembly components and watch how each one performs.
#[derive(Parser)]
#[command(name = "plugwatch", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(commands::run::Run),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUGWATCH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(cmd) => cmd.run(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
