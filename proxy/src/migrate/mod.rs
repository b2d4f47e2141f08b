//! `orgwall migrate` and `orgwall reconcile`: the migration guide as resumable commands.
//!
//! - [`plan`]: the embedded `migrations/` and how a file splits into steps (pure).
//! - [`runner`]: history table, advisory lock, `status` / `up` / `down`.
//! - [`backfill`]: primary-key batches for the big UPDATEs, one short transaction each.
//! - [`backup`]: the "database has data" guard and `pg_dump`.
//! - [`verify`]: the guide's verification queries as pass/fail checks.
//! - [`reconcile`]: balances vs. ledger, and the one-transaction repair.
//! - [`boundary`]: what 0004 creates, by name: the tenant role, the signed-context format that
//!   `orgwall.current_org()` accepts ([`boundary::sign_tenant`]), the role's password.
//! - [`cli`]: the clap arguments and the printed tables.
//!
//! This is admin tooling, not the data path: it talks to PostgreSQL with tokio-postgres.

pub mod backfill;
pub mod backup;
pub mod boundary;
pub mod cli;
pub mod plan;
pub mod reconcile;
pub mod runner;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

pub use plan::{Migration, MIGRATIONS};
pub use runner::{down, status, up, MigrationStatus, RunOptions, RunReport};

/// The `application_name` of the runner's connection (benchmarks find its locks by it).
pub const APPLICATION_NAME: &str = "orgwall migrate";

/// Everything that can stop a migrate, verify or reconcile command.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("invalid database URL `{0}`: {1}")]
    BadUrl(String, String),
    #[error("no database given: pass --database-url, set DATABASE_URL, or pass --config / set ORGWALL_CONFIG")]
    NoTarget,
    #[error("cannot load config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot connect to {target}: {why}")]
    Connect { target: String, why: String },
    #[error("{what}: {why}")]
    Sql { what: String, why: String },
    #[error("unknown migration `{given}`; known migrations: {known} (or 0 for none)")]
    UnknownMigration { given: String, known: String },
    #[error("invalid migration file: {0}")]
    BadMigration(String),
    #[error("table {0} has no single-column primary key to batch the backfill by")]
    NoBatchKey(String),
    #[error("database has data (table {table} is not empty): pass --backup FILE to pg_dump it first, or --no-backup to go on without one")]
    BackupRequired { table: String },
    #[error("backup to {path} failed: {why}")]
    Backup { path: PathBuf, why: String },
    #[error("another `orgwall migrate` held the migration lock for {0:?}; try again later")]
    LockTimeout(Duration),
    #[error("injected failure after {0} committed transactions (--fail-after-commits)")]
    InjectedFailure(usize),
    #[error("--tenant-password needs migration {0}, which --to leaves out")]
    TenantPasswordUnapplied(&'static str),
    #[error("verification failed: {0} check(s) failed")]
    VerifyFailed(usize),
    #[error(
        "inventory_balances drifts from the ledger on {0} key(s); run `orgwall reconcile --fix`"
    )]
    Drift(usize),
    #[error(
        "the running Orgwall's balance cache drifts from inventory_balances on {0} key(s); \
         it reloads from inventory_balances when its feed resyncs (e.g. a proxy restart)"
    )]
    CacheDrift(usize),
}

impl MigrateError {
    /// Wraps a tokio-postgres error with what was being done, keeping PostgreSQL's own message.
    pub fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MigrateError {
        let what = what.into();
        move |e| MigrateError::Sql {
            what,
            why: describe(&e),
        }
    }
}

/// PostgreSQL's message (with detail/hint) when there is one, else the error chain.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            s += &format!("; {d}");
        }
        if let Some(h) = db.hint() {
            s += &format!("; hint: {h}");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s += &format!(": {inner}");
        src = inner.source();
    }
    s
}

/// The database the commands act on.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
}

impl Target {
    /// From a `postgres://` URL or a `key=value` connection string.
    pub fn from_url(url: &str) -> Result<Target, MigrateError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| MigrateError::BadUrl(redact(url), e.to_string()))?;
        Ok(Target::from_config(config))
    }

    /// From Orgwall's config file: its upstream.
    pub fn from_upstream(up: &crate::config::UpstreamConfig) -> Target {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&up.host)
            .port(up.port)
            .user(&up.user)
            .dbname(&up.database);
        if let Some(p) = &up.password {
            config.password(p);
        }
        Target::from_config(config)
    }

    fn from_config(mut config: tokio_postgres::Config) -> Target {
        config.application_name(APPLICATION_NAME);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Target { config }
    }

    /// `user@host:port/db`, never the password.
    pub fn label(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            c.get_user().unwrap_or("?"),
            c.get_dbname().or(c.get_user()).unwrap_or("?")
        )
    }

    /// Connects (no TLS) and drives the connection on a background task.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, MigrateError> {
        let (client, conn) = self
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| MigrateError::Connect {
                target: self.label(),
                why: describe(&e),
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "migrate connection closed");
            }
        });
        Ok(client)
    }
}

/// A URL with its password replaced, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable)".into(),
    }
}
