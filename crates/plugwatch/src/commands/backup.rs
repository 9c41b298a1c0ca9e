//! `plugwatch backup create|list|inspect|verify|restore|delete`: the backups of a data directory, from the
//! command line, with the same code the server's schedule and API use. `restore` refuses a data directory
//! a running server holds (restore through its API then); the others work beside a running server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use plugwatch_access::{Access, AuditEntry, AuditResult, Principal};
use plugwatch_backup::{BackupInfo, Backups, Reason, Restored};
use plugwatch_server::ServeConfig;
use plugwatch_store::Store;

/// Take, list, check and restore backups of a data directory, or of a PostgreSQL database
/// (`PLUGWATCH_DATABASE_URL` or `database_url` in the configuration).
#[derive(clap::Args)]
pub struct BackupCommand {
    #[command(subcommand)]
    action: Action,
    /// The data directory [default: `data_dir` of the configuration, ./plugwatch-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A TOML configuration file, as for `serve` (its `[backup]` says where archives go).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Take a backup now (the server may keep running).
    Create,
    /// List the backups, newest first.
    List,
    /// Print a backup's manifest (versions, time, rows per kind, every member's size and sha256).
    Inspect { backup: String },
    /// Check every member's checksum and the database's integrity.
    Verify { backup: String },
    /// Restore a backup (an id from `list`, or an archive file) into the data directory: everything is
    /// checked first, the current state is backed up, and the swap is all or nothing. Stop the server
    /// first, or restore through its API; on PostgreSQL stop every replica (one transaction replaces
    /// every row).
    Restore { backup: String },
    /// Delete a backup.
    Delete { backup: String },
}

impl BackupCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        tokio.block_on(self.execute())
    }

    async fn execute(self) -> anyhow::Result<ExitCode> {
        let mut config = crate::commands::serve::load_config(self.config.as_deref())?;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        config.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let dir = config.data_dir.clone();
        let backups = Backups::open(&dir, config.backup.clone()).context("cannot open the backup destination")?;
        match self.action {
            Action::Create => {
                let store = open(&config).await?;
                let info = backups.create(&store, Reason::Manual).await;
                audited(&store, "backup.create", info.as_ref().map(|i| i.id.clone())).await?;
                let info = info?;
                store.close().await;
                println!("{}", line(&info));
                println!("{}", counts(&info.manifest.counts));
            }
            Action::List => {
                println!("destination: {}", backups.describe());
                for info in backups.list().await? {
                    println!("{}", line(&info));
                }
            }
            Action::Inspect { backup } => {
                let (path, _, _fetched) = resolve(&backups, &backup).await?;
                let manifest = plugwatch_backup::inspect(&path)?;
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            }
            Action::Verify { backup } => {
                let (path, id, _fetched) = resolve(&backups, &backup).await?;
                let verified = plugwatch_backup::verify(&path, &dir).await?;
                println!(
                    "{id}: OK — {} members, {} bytes, every sha256 matches and the database passes its integrity check",
                    verified.members, verified.bytes
                );
            }
            Action::Restore { backup } => {
                let _lock = plugwatch_backup::lock(&dir)?;
                let restored = restore(&config, &backups, &backup).await?;
                println!(
                    "Restored {} (schema {} → {}); the state it replaced is in backup {}.",
                    restored.archive,
                    restored.schema_from,
                    restored.schema_to,
                    restored.safety_backup.as_deref().unwrap_or("(none: the data directory was empty)")
                );
                println!("{}", counts(&restored.counts));
            }
            Action::Delete { backup } => {
                backups.delete(&backup).await?;
                println!("Deleted {backup}.");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

async fn open(config: &ServeConfig) -> anyhow::Result<Store> {
    if config.database_url.is_some() {
        return config.open_store(None).await.context("cannot open the database");
    }
    let dir = &config.data_dir;
    anyhow::ensure!(dir.join("plugwatch.db").exists(), "{} holds no plugwatch database", dir.display());
    let keys = config.key_source().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Store::open_with(dir, keys).await.context("cannot open the data directory")
}

/// Records a command-line action in the audit log.
async fn audited(
    store: &Store,
    action: &str,
    result: Result<String, &plugwatch_backup::BackupError>,
) -> anyhow::Result<()> {
    let (result, target, detail) = match result {
        Ok(target) => (AuditResult::Ok, target, None),
        Err(error) => (AuditResult::Failed, String::new(), Some(error.to_string())),
    };
    let entry = AuditEntry {
        actor: Some(Principal::system()),
        action: action.to_owned(),
        target,
        source: Some("cli".to_owned()),
        result,
        detail,
    };
    Access::new(store.clone(), Default::default()).record(entry).await?;
    Ok(())
}

/// An archive file named on the command line, or a backup in the destination by id.
async fn resolve(
    backups: &Backups,
    arg: &str,
) -> anyhow::Result<(PathBuf, String, Option<plugwatch_backup::backups::Fetched>)> {
    let path = Path::new(arg);
    if path.is_file() {
        let id = path.file_name().map_or_else(|| arg.to_owned(), |n| n.to_string_lossy().into_owned());
        return Ok((path.to_owned(), id, None));
    }
    let fetched = backups.fetch(arg).await?;
    Ok((fetched.path.clone(), arg.to_owned(), Some(fetched)))
}

async fn restore(config: &ServeConfig, backups: &Backups, arg: &str) -> anyhow::Result<Restored> {
    let dir = &config.data_dir;
    // Finish or clear what an interrupted restore left first.
    plugwatch_backup::recover(dir)?;
    let keys = config.key_source().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let live = if config.database_url.is_some() || dir.join("plugwatch.db").exists() {
        Some(open(config).await?)
    } else {
        None
    };
    let (path, id, _fetched) = resolve(backups, arg).await?;
    let result = backups
        .restore_file(live.as_ref(), &path, &id, keys, |staged, restored| {
            let detail = format!(
                "from {} (schema {} → {}) via the command line",
                restored.archive, restored.schema_from, restored.schema_to
            );
            let entry = AuditEntry {
                actor: Some(Principal::system()),
                action: "backup.restore".to_owned(),
                target: restored.archive.clone(),
                source: Some("cli".to_owned()),
                result: AuditResult::Ok,
                detail: Some(detail),
            };
            async move { Access::new(staged, Default::default()).record(entry).await.map_err(Into::into) }
        })
        .await;
    if let Some(live) = &live {
        if let Err(error) = &result {
            let _ = audited(live, "backup.restore", Err(error)).await;
        }
        live.close().await;
    }
    let restored = result?;
    plugwatch_backup::recover(dir)?;
    Ok(restored)
}

fn line(info: &BackupInfo) -> String {
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(info.manifest.created_at),
    );
    format!(
        "{}  {at}  {:<11}  {} bytes  schema {}",
        info.id,
        info.manifest.reason.as_str(),
        info.size,
        info.manifest.schema_version
    )
}

fn counts(counts: &std::collections::BTreeMap<String, i64>) -> String {
    counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}
