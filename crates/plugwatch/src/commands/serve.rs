//! `plugwatch serve`: runs the server until SIGTERM or Ctrl-C, then drains and flushes. A plugin compile
//! still running on a blocking thread then is abandoned: the process exits without waiting for it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use plugwatch_server::config::LogFormat;
use plugwatch_server::{ServeConfig, Server};

/// Top-level settings that `PLUGWATCH_*` environment variables may set (nested ones use `__`, e.g.
/// `PLUGWATCH_TELEMETRY__FLUSH_INTERVAL_SECS=5`). Other `PLUGWATCH_*` variables belong to other commands.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "cache_dir",
    "log_format",
    "demo",
    "drain_timeout_secs",
    "admin_password",
    "secret_key",
    "database_url",
    "cache_url",
    "http",
    "runtime",
    "telemetry",
    "access",
    "alerts",
    "backup",
    "cluster",
];

/// The admin password of a `--demo` server, unless `PLUGWATCH_ADMIN_PASSWORD` says otherwise. Documented in
/// the README and announced on start; a demo database is thrown away on exit.
pub const DEMO_ADMIN_PASSWORD: &str = "plugwatch-demo";

/// Run the plugwatch server.
///
/// Settings come from, in increasing precedence: built-in defaults, the TOML file given with --config,
/// `PLUGWATCH_*` environment variables (nested keys joined with `__`), and these flags.
#[derive(clap::Args)]
pub struct Serve {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Where the database, plugins and caches live [default: ./plugwatch-data; with --demo, a fresh
    /// temporary directory removed on exit].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL instead of the data directory's SQLite: `postgres://user:password@host:port/database`
    /// (or `PLUGWATCH_DATABASE_URL`, which keeps the password out of the process list).
    #[arg(long = "database", value_name = "URL")]
    database_url: Option<String>,
    /// Redis shared by the replicas, for dashboard reads and change announcements:
    /// `redis://[:password@]host[:port][/db]` (or `PLUGWATCH_CACHE_URL`). Optional; while it is away,
    /// the replicas do without it.
    #[arg(long = "cache", value_name = "URL")]
    cache_url: Option<String>,
    /// This replica's name on a shared PostgreSQL database (`cluster.replica_id`) [default:
    /// <hostname>:<port>].
    #[arg(long, value_name = "NAME")]
    replica_id: Option<String>,
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load the example plugins and drive synthetic restaurant traffic.
    #[arg(long)]
    demo: bool,
    /// `text` or `json` (structured logs for ELK) [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl Serve {
    pub fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let mut config = load_config(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = self.database_url {
            config.database_url = Some(plugwatch_server::config::Secret(url));
        }
        if let Some(url) = self.cache_url {
            config.cache_url = Some(plugwatch_server::config::Secret(url));
        }
        if let Some(id) = self.replica_id {
            config.cluster.replica_id = Some(id);
        }
        if let Some(format) = &self.log_format {
            config.log_format = if format == "json" { LogFormat::Json } else { LogFormat::Text };
        }
        config.demo |= self.demo;
        // A demo starts from a fresh database unless told where to keep it.
        let explicit_dir = self.data_dir.is_some() || figment_has(&self.config, "data_dir");
        let _demo_dir = if config.demo && !explicit_dir {
            let dir = tempfile::Builder::new()
                .prefix("plugwatch-demo-")
                .tempdir()
                .context("cannot create a demo directory")?;
            config.data_dir = dir.path().to_owned();
            // Compiled code outlives the throwaway database: the next demo starts in a second, not ten.
            if config.cache_dir.is_none() {
                config.cache_dir = crate::commands::run::default_cache_dir();
            }
            Some(dir)
        } else {
            None
        };
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        let demo_password = config.demo && config.admin_password.is_none();
        if demo_password {
            config.admin_password = Some(plugwatch_server::config::Secret(DEMO_ADMIN_PASSWORD.to_owned()));
        }
        crate::logging::init(config.log_format == LogFormat::Json);
        if demo_password {
            tracing::warn!(
                message =
                    "Demo mode: sign in as `admin` with the documented demo password. Never use --demo for real data.",
                username = "admin",
                password = DEMO_ADMIN_PASSWORD,
            );
        }

        let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let result = tokio.block_on(async {
            // Listen for the signals before anything else, so one sent during startup is not the default
            // (an exit without the shutdown flush) and is not lost.
            let shutdown = shutdown_signal().context("cannot listen for SIGTERM and SIGINT")?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown.await;
                let _ = stop.send(true);
            });
            // Held for as long as this process serves: a restore from the command line is refused meanwhile.
            let _lock = plugwatch_backup::lock(&config.data_dir)?;
            let mut config = config.clone();
            loop {
                let server = Server::bind(config.clone()).await?;
                // A restart (to finish a restore) listens where this start did.
                config.listen = server.local_addr();
                tracing::info!(
                    message = "plugwatch is listening.",
                    flush_interval_secs = config.telemetry.flush_interval_secs,
                    address = %format!("http://{}", server.local_addr()),
                    dashboard = %format!("http://{}/plugin-monitoring", server.local_addr()),
                    data_dir = %config.data_dir.display(),
                    demo = config.demo,
                    plugins = server.state().registry.plugins().len(),
                );
                let mut stopped = stopped.clone();
                let signal = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                match server.run(signal).await? {
                    plugwatch_server::Stopped::Restart => continue,
                    plugwatch_server::Stopped::Shutdown => break,
                }
            }
            tracing::info!(message = "plugwatch stopped.");
            Ok::<_, anyhow::Error>(())
        });
        // Dropping the runtime would wait for every blocking task, a compile of minutes included.
        tokio.shutdown_background();
        result?;
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// The configuration from built-in defaults, the TOML file (if any) and `PLUGWATCH_*` variables: what
/// `serve` starts from before its flags, and what other commands read the secret key from.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<ServeConfig> {
    let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
    if let Some(path) = path {
        anyhow::ensure!(path.exists(), "the configuration file {} does not exist", path.display());
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(
        Env::prefixed("PLUGWATCH_")
            .filter(|key| ENV_KEYS.iter().any(|k| key.as_str().to_ascii_lowercase().starts_with(k)))
            .split("__"),
    );
    figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// Whether the configuration file (if any) sets `key` at the top level, or the environment does.
fn figment_has(config: &Option<PathBuf>, key: &str) -> bool {
    let env = std::env::var_os(format!("PLUGWATCH_{}", key.to_uppercase())).is_some();
    let file = config.as_ref().is_some_and(|path| Figment::from(Toml::file_exact(path)).find_value(key).is_ok());
    env || file
}

/// Installs the handlers now; the future resolves on SIGTERM or SIGINT (Ctrl-C).
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
