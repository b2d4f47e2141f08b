//! The `orgwall migrate …` and `orgwall reconcile` arguments, and the tables they print.
//!
//! Output goes to stdout (it is a report the operator reads or a script parses); failures come
//! back as [`MigrateError`], which `main` turns into a message and a non-zero exit.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::backup::BackupPolicy;
use super::boundary::{TenantPassword, TENANT_ROLE};
use super::verify::Outcome;
use super::{plan, reconcile, runner, verify, MigrateError, RunOptions, Target};
use crate::config::{Config, EnvOverrides};

/// Where the commands connect.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// PostgreSQL URL (`postgres://user:pw@host:port/db`); default: the config's upstream.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Orgwall config file whose `[upstream]` to use when no URL is given.
    #[arg(long, env = "ORGWALL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl TargetArgs {
    /// `--database-url` / DATABASE_URL first, else the config file's upstream.
    pub fn resolve(&self) -> Result<Target, MigrateError> {
        if let Some(url) = self.database_url.as_deref().filter(|u| !u.is_empty()) {
            return Target::from_url(url);
        }
        let path = self.config.as_ref().ok_or(MigrateError::NoTarget)?;
        let config = Config::load(path, &EnvOverrides::default())?;
        Ok(Target::from_upstream(&config.upstream))
    }
}

/// `orgwall migrate …`
#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: MigrateAction,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Options shared by `up` and `down`.
#[derive(Args, Debug, Clone)]
pub struct ChangeArgs {
    /// Stop at this migration (number or name); for `down`, the one to keep (0 = none).
    #[arg(long)]
    pub to: Option<String>,
    /// pg_dump the database to FILE first (required when it has data, unless --no-backup).
    #[arg(long, value_name = "FILE", conflicts_with = "no_backup")]
    pub backup: Option<PathBuf>,
    /// Go on without a backup.
    #[arg(long)]
    pub no_backup: bool,
    /// Rows per backfill transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub batch_size: i64,
    /// Seconds to wait for another runner's migration lock.
    #[arg(long, default_value_t = 600)]
    pub lock_wait_secs: u64,
    /// Testing aid: fail after N committed transactions.
    #[arg(long, hide = true)]
    pub fail_after_commits: Option<usize>,
}

impl ChangeArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            batch_size: self.batch_size,
            backup: match (&self.backup, self.no_backup) {
                (Some(f), _) => BackupPolicy::File(f.clone()),
                (None, true) => BackupPolicy::Skip,
                (None, false) => BackupPolicy::Required,
            },
            progress: true,
            lock_wait: Duration::from_secs(self.lock_wait_secs),
            fail_after_commits: self.fail_after_commits,
            ..RunOptions::default()
        }
    }
}

/// `migrate up`: [`ChangeArgs`] and the tenant role's password.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Password of the tenant login role orgwall_tenant, set once 0004_tenant_boundary is
    /// applied (sent as a SCRAM verifier); without it the role has none (trust/peer setups).
    #[arg(
        long,
        env = "ORGWALL_TENANT_PASSWORD",
        hide_env_values = true,
        value_name = "PW"
    )]
    pub tenant_password: Option<TenantPassword>,
}

/// The `migrate` subcommands.
#[derive(Subcommand, Debug)]
pub enum MigrateAction {
    /// List the migrations and whether each is applied.
    Status,
    /// Apply pending migrations (all, or up to --to).
    Up(UpArgs),
    /// Roll back the latest migration (or everything after --to).
    Down(ChangeArgs),
    /// Run the migration guide's verification queries; non-zero exit on any failure.
    Verify,
}

/// `orgwall reconcile`
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Repair drifting balances (one transaction).
    #[arg(long)]
    pub fix: bool,
    /// An admin login on a running Orgwall (`postgres://admin:pw@proxy:port/db`): also compare
    /// its balance cache with inventory_balances (`SHOW orgwall.balances_drift`). Without a
    /// database target, only the cache is checked.
    #[arg(long, value_name = "URL", conflicts_with = "fix")]
    pub proxy: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `orgwall migrate …`.
pub async fn migrate(args: MigrateArgs) -> Result<(), MigrateError> {
    let target = args.target.resolve()?;
    match args.action {
        MigrateAction::Status => {
            println!("{:<32} {:<8} APPLIED AT", "MIGRATION", "STATE");
            for s in runner::status(&target).await? {
                let state = match (&s.applied_at, s.modified) {
                    (None, _) => "pending",
                    (Some(_), false) => "applied",
                    (Some(_), true) => "modified",
                };
                println!(
                    "{:<32} {state:<8} {}",
                    s.name,
                    s.applied_at.unwrap_or_default()
                );
            }
            Ok(())
        }
        MigrateAction::Up(UpArgs {
            change: c,
            tenant_password,
        }) => {
            let to = c.to.as_deref().map(plan::resolve).transpose()?.flatten();
            let opts = RunOptions {
                tenant_password,
                ..c.options()
            };
            let report = runner::up(&target, to, &opts).await?;
            print_report("applied", &report);
            Ok(())
        }
        MigrateAction::Down(c) => {
            let to = c.to.as_deref().map(plan::resolve).transpose()?;
            let report = runner::down(&target, to, &c.options()).await?;
            print_report("rolled back", &report);
            Ok(())
        }
        MigrateAction::Verify => {
            let checks = verify::verify(&target).await?;
            println!("{:<32} {:<6} DETAIL", "CHECK", "RESULT");
            for c in &checks {
                let r = match c.outcome {
                    Outcome::Pass => "pass",
                    Outcome::Fail => "FAIL",
                    Outcome::Skip => "skip",
                };
                println!("{:<32} {r:<6} {}", c.name, c.detail);
            }
            match checks.iter().filter(|c| c.outcome == Outcome::Fail).count() {
                0 => Ok(()),
                n => Err(MigrateError::VerifyFailed(n)),
            }
        }
    }
}

fn print_report(verb: &str, r: &runner::RunReport) {
    let password = || {
        if r.tenant_password_set {
            println!("password of {TENANT_ROLE} set");
        }
    };
    if r.migrations.is_empty() {
        println!("nothing to do: the database is up to date");
        return password();
    }
    for (m, step, took) in &r.steps {
        println!("  {m:<32} {step:<26} {:>9.3}s", took.as_secs_f64());
    }
    for b in &r.backfill {
        println!(
            "  backfill {:<23} {:>9} rows in {:>5} batches, longest batch {:.3}s",
            b.table,
            b.rows,
            b.batches,
            b.longest_batch.as_secs_f64()
        );
    }
    println!("{verb}: {}", r.migrations.join(", "));
    password();
}

/// Rows printed before "… and N more".
const SHOWN: usize = 50;

/// Runs `orgwall reconcile [--fix] [--proxy URL]`: non-zero exit on any unrepaired drift.
pub async fn reconcile(args: ReconcileArgs) -> Result<(), MigrateError> {
    let target = match (args.target.resolve(), &args.proxy) {
        (Err(MigrateError::NoTarget), Some(_)) => None,
        (t, _) => Some(t?),
    };
    let ledger_drift = match &target {
        Some(t) => reconcile_ledger(t, args.fix).await?,
        None => 0,
    };
    let cache_drift = match &args.proxy {
        Some(url) => reconcile_cache(url).await?,
        None => 0,
    };
    if ledger_drift > 0 {
        Err(MigrateError::Drift(ledger_drift))
    } else if cache_drift > 0 {
        Err(MigrateError::CacheDrift(cache_drift))
    } else {
        Ok(())
    }
}

/// `inventory_balances` against the ledger; the number of keys still drifting.
async fn reconcile_ledger(target: &Target, fix: bool) -> Result<usize, MigrateError> {
    let mut client = target.connect().await?;
    let drift = if fix {
        reconcile::fix(&mut client).await?
    } else {
        reconcile::find_drift(&client).await?
    };
    if drift.is_empty() {
        println!("inventory_balances matches the ledger");
        return Ok(0);
    }
    println!(
        "{:<16} {:<16} {:<16} {:<12} {:>14} {:>14}",
        "ORG", "ITEM", "LOCATION", "LOT", "LEDGER", "BALANCE"
    );
    for d in drift.iter().take(SHOWN) {
        println!(
            "{:<16} {:<16} {:<16} {:<12} {:>14} {:>14}",
            d.org_id,
            d.item_id,
            d.location_id,
            d.lot_id.as_deref().unwrap_or("(none)"),
            d.ledger,
            d.balance.as_deref().unwrap_or("(missing)")
        );
    }
    if drift.len() > SHOWN {
        println!("… and {} more", drift.len() - SHOWN);
    }
    if fix {
        println!("repaired {} key(s) in one transaction", drift.len());
        return Ok(0);
    }
    Ok(drift.len())
}

/// A running Orgwall's balance cache against `inventory_balances`, through its admin login;
/// the number of drifting keys.
async fn reconcile_cache(url: &str) -> Result<usize, MigrateError> {
    let proxy = Target::from_url(url)?;
    let client = proxy.connect().await?;
    let msgs = client
        .simple_query("SHOW orgwall.balances_drift")
        .await
        .map_err(MigrateError::sql(format!(
            "SHOW orgwall.balances_drift on {}",
            proxy.label()
        )))?;
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        println!(
            "the balance cache of {} matches inventory_balances",
            proxy.label()
        );
        return Ok(0);
    }
    println!(
        "{:<16} {:<16} {:<16} {:<12} {:>14} {:>14}",
        "ORG", "ITEM", "LOCATION", "LOT", "CACHED", "ACTUAL"
    );
    for r in rows.iter().take(SHOWN) {
        let col = |i: usize, none: &'static str| r.get(i).unwrap_or(none).to_string();
        println!(
            "{:<16} {:<16} {:<16} {:<12} {:>14} {:>14}",
            col(0, "?"),
            col(1, "?"),
            col(2, "?"),
            col(3, "(none)"),
            col(4, "(missing)"),
            col(5, "(missing)")
        );
    }
    if rows.len() > SHOWN {
        println!("… and {} more", rows.len() - SHOWN);
    }
    Ok(rows.len())
}
