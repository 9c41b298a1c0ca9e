//! The `plugwatch` command: a thin shell whose subcommands each live in `commands/` as a struct with `run()`.

mod allocator;
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
    Secrets(commands::secrets::SecretsCommand),
    Backup(commands::backup::BackupCommand),
}

fn main() -> ExitCode {
    allocator::configure();
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
        Command::Secrets(cmd) => {
            logging::init_quiet();
            cmd.run()
        }
        Command::Backup(cmd) => {
            logging::init_quiet();
            cmd.run()
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", report(&error));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without repeating a cause whose text its
/// parent's message already includes (the crates' errors say `storage: {source}` and keep the source).
fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("must be at least 12 characters")]
        Short,
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("invalid password: {0}")]
        Repeats(#[from] Inner),
        #[error("cannot start")]
        Wraps(#[source] Inner),
    }

    #[test]
    fn an_error_report_names_each_cause_once() {
        assert_eq!(report(&Outer::Repeats(Inner::Short).into()), "invalid password: must be at least 12 characters");
        assert_eq!(report(&Outer::Wraps(Inner::Short).into()), "cannot start: must be at least 12 characters");
        let context = anyhow::Error::from(Outer::Repeats(Inner::Short)).context("reading the configuration");
        assert_eq!(report(&context), "reading the configuration: invalid password: must be at least 12 characters");
    }
}
