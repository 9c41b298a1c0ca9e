//! The `plugwatch` command: a thin shell whose subcommands each live in `commands/` as a struct with `run()`.

mod commands;
mod logging;

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
    Serve(commands::serve::Serve),
    Run(commands::run::Run),
    User(commands::user::UserCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(cmd) => cmd.run(),
        Command::Run(cmd) => {
            logging::init_quiet();
            cmd.run()
        }
        Command::User(cmd) => {
            logging::init_quiet();
            cmd.run()
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
