//! The `orgwall` command line: `serve` runs the proxy from a config file, `demo` runs a private
//! PostgreSQL with two demo tenants behind the proxy, `migrate` / `reconcile` are admin tooling,
//! `bench balances` load-tests the balance cache of a running Orgwall.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use orgwall::config::{Config, EnvOverrides};
use orgwall::listen::Listeners;

#[derive(Parser)]
#[command(
    name = "orgwall",
    version,
    about = "PostgreSQL proxy that confines every statement to its tenant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (TOML); every key is described in the README's configuration reference.
        #[arg(long, env = "ORGWALL_CONFIG")]
        config: PathBuf,
        /// If PostgreSQL does not accept one of the upstream logins at start, try again every
        /// second (logging each try) instead of exiting with an error.
        #[arg(long)]
        wait_for_upstream: bool,
        /// Load and check the config, log in upstream as each identity, then exit without
        /// serving (0: all good).
        #[arg(long)]
        check: bool,
    },
    /// Start a private PostgreSQL with the demo schema and tenants, and the proxy in front of it.
    Demo {
        /// Address the proxy listens on.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: SocketAddr,
    },
    /// Apply, roll back or check the schema migrations (`status | up | down | verify`).
    Migrate(orgwall::migrate::cli::MigrateArgs),
    /// Compare inventory_balances with the ledger; `--fix` repairs drift.
    Reconcile(orgwall::migrate::cli::ReconcileArgs),
    /// Policy plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Load tests.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Balance lookups (and writers that read their writes back from another connection)
    /// against a running Orgwall, or PostgreSQL itself with `--org`.
    Balances(orgwall::bench::BalancesArgs),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run a plugin on one statement without a database and print its decision
    /// (exit 0 allow/mask, 2 deny, 1 the plugin could not be loaded).
    Check(orgwall::policy::cli::CheckArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` sizes the runtime and chooses the log format from its config; the other
    // commands use the defaults.
    let config = match &cli.command {
        Command::Serve { config, .. } => Some(
            Config::load(config, &EnvOverrides::from_process())
                .with_context(|| format!("loading {}", config.display()))?,
        ),
        _ => None,
    };
    orgwall::logging::init(config.as_ref().map(|c| c.log_format).unwrap_or_default());
    let workers = config
        .as_ref()
        .map_or_else(orgwall::config::default_workers, |c| c.workers);
    let rt = orgwall::server::runtime(workers).context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve {
                wait_for_upstream,
                check,
                ..
            } => serve(config.context("no config")?, wait_for_upstream, check).await,
            Command::Demo { listen } => {
                let dir = std::env::current_dir().context("current directory")?;
                orgwall::demo::run(&dir, listen).await
            }
            Command::Migrate(args) => Ok(orgwall::migrate::cli::migrate(args).await?),
            Command::Reconcile(args) => Ok(orgwall::migrate::cli::reconcile(args).await?),
            Command::Bench {
                command: BenchCommand::Balances(args),
            } => orgwall::bench::balances(args).await.map(drop),
            Command::Plugin {
                command: PluginCommand::Check(args),
            } => {
                let (report, status) = orgwall::policy::cli::check(&args)?;
                print!("{report}");
                std::process::exit(status);
            }
        }
    })
}

async fn serve(config: Config, wait_for_upstream: bool, check: bool) -> anyhow::Result<()> {
    orgwall::startup::raise_fd_limit(&config);
    let every = std::time::Duration::from_secs(1);
    tokio::select! {
        checked = orgwall::startup::wait_for_upstream(&config, wait_for_upstream, every) => checked?,
        () = shutdown_signal() => return Ok(()),
    }
    if check {
        tracing::info!("config and upstream logins are good");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let listener = Listeners::bind(listener, config.unix_socket_dir.as_deref())
        .context("binding unix_socket_dir")?;
    orgwall::server::run(listener, Arc::new(config), shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown signal received");
}
