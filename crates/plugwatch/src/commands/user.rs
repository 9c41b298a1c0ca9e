//! `plugwatch user …`: manage users directly in a data directory or a PostgreSQL database (for the first
//! admin, a lost password, or scripts), with the same rules as the API — never the last admin — and an
//! audit entry for each change. On PostgreSQL the running replicas hear of each change at once.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use plugwatch_access::{Access, AccessConfig, AuditEntry, AuditResult, Principal, Role};
use plugwatch_store::{KeySource, Store};

/// Manage users in a data directory or a PostgreSQL database (the server may be running).
#[derive(clap::Args)]
pub struct UserCommand {
    /// The data directory of the server whose users to manage.
    #[arg(long, env = "PLUGWATCH_DATA_DIR", default_value = "plugwatch-data", global = true)]
    data_dir: PathBuf,
    /// The PostgreSQL database of the servers whose users to manage, instead of the data directory's
    /// SQLite (`PLUGWATCH_DATABASE_URL` keeps the password out of the process list).
    #[arg(
        long = "database",
        value_name = "URL",
        env = "PLUGWATCH_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List users and their roles.
    List,
    /// Add a user. The password is read from stdin with --password-stdin, else generated and printed once.
    Add {
        username: String,
        /// admin, operator, viewer or invoker.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role (never demoting the last admin).
    SetRole {
        username: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (from stdin with --password-stdin, else generated and printed once); ends the user's sessions.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: it cannot sign in and its sessions end.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
    /// Delete a user (never the last admin); its tokens are revoked.
    Delete { username: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|_| format!("`{s}` is not a role (admin, operator, viewer, invoker)"))
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf).context("cannot read the password from stdin")?;
        let password = buf.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on stdin");
        Ok((password, false))
    } else {
        Ok((plugwatch_access::generate_password(), true))
    }
}

impl UserCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        tokio.block_on(self.execute())
    }

    async fn execute(self) -> anyhow::Result<ExitCode> {
        // Users need no secret key: this command can neither read nor write plugin secrets.
        let store = match &self.database_url {
            Some(url) => {
                Store::connect(url, &self.data_dir, KeySource::None).await.context("cannot open the database")?
            }
            None => {
                anyhow::ensure!(
                    self.data_dir.exists(),
                    "the data directory {} does not exist",
                    self.data_dir.display()
                );
                Store::open_with(&self.data_dir, KeySource::None).await.context("cannot open the data directory")?
            }
        };
        let access = Access::new(store, AccessConfig::default());
        let (action, target) = match &self.action {
            Action::List => {
                for user in access.users().await? {
                    let state = if user.disabled { "disabled" } else { "enabled" };
                    println!("{:<24} {:<9} {state}", user.username, user.role.as_str());
                }
                return Ok(ExitCode::SUCCESS);
            }
            Action::Add { username, role, password_stdin } => {
                let (password, generated) = password(*password_stdin)?;
                access.create_user(username, *role, &password).await?;
                if generated {
                    println!("{password}");
                    eprintln!("Created `{username}` ({}); the password above is shown this once.", role.as_str());
                }
                ("user.create", username.clone())
            }
            Action::SetRole { username, role } => {
                access.set_role(username, *role).await?;
                ("user.update", username.clone())
            }
            Action::ResetPassword { username, password_stdin } => {
                let (password, generated) = password(*password_stdin)?;
                access.set_password(username, &password).await?;
                if generated {
                    println!("{password}");
                    eprintln!("New password for `{username}`, shown this once.");
                }
                ("user.update", username.clone())
            }
            Action::Disable { username } => {
                access.set_disabled(username, true).await?;
                ("user.update", username.clone())
            }
            Action::Enable { username } => {
                access.set_disabled(username, false).await?;
                ("user.update", username.clone())
            }
            Action::Delete { username } => {
                access.delete_user(username).await?;
                ("user.delete", username.clone())
            }
        };
        let entry = AuditEntry {
            actor: Some(Principal::system()),
            action: action.to_owned(),
            target,
            source: Some("cli".to_owned()),
            result: AuditResult::Ok,
            detail: None,
        };
        access.record(entry).await?;
        Ok(ExitCode::SUCCESS)
    }
}
