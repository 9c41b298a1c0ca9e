//! `plugwatch secrets rotate`: re-encrypts every secret with a new key, in one transaction, and scrubs the
//! old ciphertexts from the database files; in the data directory's SQLite, or in PostgreSQL once every
//! replica is stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use plugwatch_access::{Access, AccessConfig, AuditEntry, AuditResult, Principal};
use plugwatch_store::{KEY_FILE, KeySource, SecretKey, Store};

/// Manage the key that encrypts plugin secrets at rest.
#[derive(clap::Args)]
pub struct SecretsCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Re-encrypt every secret with a new key. Stop the server (on PostgreSQL: every replica) first.
    ///
    /// The current key is read as `serve` reads it (PLUGWATCH_SECRET_KEY, PLUGWATCH_SECRET_KEY_FILE,
    /// `secret_key_file` in --config, else <data dir>/secret.key). When it was the data directory's key file,
    /// that file is replaced by the new key; otherwise configure the new key before the next start.
    Rotate {
        /// The data directory [default: `data_dir` of the configuration, ./plugwatch-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML configuration file, as for `serve`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file holding the new key: 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -hex 32`).
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

impl SecretsCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        match self.action {
            Action::Rotate { data_dir, config, new_key_file } => tokio.block_on(rotate(data_dir, config, new_key_file)),
        }
    }
}

async fn rotate(data_dir: Option<PathBuf>, config: Option<PathBuf>, new_key_file: PathBuf) -> anyhow::Result<ExitCode> {
    let mut config = crate::commands::serve::load_config(config.as_deref())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    let dir = &config.data_dir;
    // A running server keeps using the old key: refuse rather than leave it with secrets it cannot open.
    // SQLite: the data directory's lock says whether a server runs. PostgreSQL: its sessions say whether any
    // replica is connected (checked once the database is open, below).
    let _lock = match &config.database_url {
        None => {
            anyhow::ensure!(dir.join("plugwatch.db").exists(), "{} holds no plugwatch database", dir.display());
            Some(plugwatch_backup::lock(dir)?)
        }
        Some(_) => None,
    };
    let new = SecretKey::read_file(&new_key_file).context("cannot read the new key")?;
    // The data directory's key file is replaced by the new key once the secrets are re-encrypted.
    let (current, key_file) = match config.key_source().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))? {
        KeySource::DataDir => {
            let path = dir.join(KEY_FILE);
            anyhow::ensure!(
                path.exists(),
                "no current key: {} does not exist and neither PLUGWATCH_SECRET_KEY nor PLUGWATCH_SECRET_KEY_FILE is set",
                path.display()
            );
            let key = SecretKey::read_file(&path)?;
            (KeySource::Configured { key, origin: path.display().to_string() }, Some(path))
        }
        configured => (configured, None),
    };
    let store = match &config.database_url {
        None => Store::open_with(dir, current).await.context("cannot open the data directory")?,
        Some(url) => Store::connect(url.expose(), dir, current).await.context("cannot open the database")?,
    };
    // Held until the rotation is done: refused while a replica runs, and no replica starts meanwhile.
    let _rotation = match store.lock_for_rotation().await {
        Ok(lock) => lock,
        Err(error) => {
            store.close().await;
            return Err(error.into());
        }
    };
    let rotated = store.rotate_secret_key(&new).await?;
    let entry = AuditEntry {
        actor: Some(Principal::system()),
        action: "secrets.rotate".to_owned(),
        target: "secret key".to_owned(),
        source: Some("cli".to_owned()),
        result: AuditResult::Ok,
        detail: Some(format!(
            "key {} replaced by key {} ({} values)",
            rotated.old_key_id, rotated.new_key_id, rotated.values
        )),
    };
    Access::new(store.clone(), AccessConfig::default()).record(entry).await?;
    store.close().await;
    eprintln!(
        "Re-encrypted {} secrets: key {} replaced by key {}.",
        rotated.values, rotated.old_key_id, rotated.new_key_id
    );
    match key_file {
        Some(path) => {
            new.replace_file(&path).with_context(|| {
                format!(
                    "the secrets are now encrypted with key {}, but {} still holds the old key: copy {} there",
                    rotated.new_key_id,
                    path.display(),
                    new_key_file.display()
                )
            })?;
            eprintln!("{} now holds the new key. Back it up, separately from the database.", path.display());
            if config.database_url.is_some() {
                eprintln!(
                    "Every other replica's {KEY_FILE} still holds the old key: give each the new one before it \
                     starts (better, configure one key for all, PLUGWATCH_SECRET_KEY_FILE)."
                );
            }
        }
        None => eprintln!(
            "Configure the new key (PLUGWATCH_SECRET_KEY_FILE={} or `secret_key_file`) before the next start, \
             and back it up separately from the database; the old key no longer opens these secrets.",
            new_key_file.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
