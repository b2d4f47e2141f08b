//! `status`, `up` and `down`: the history table, the advisory lock and the step loop.
//!
//! Invariants: every change runs while this connection holds the session advisory lock
//! [`LOCK_KEY`], and the history is read only after taking it, so two runners never apply the
//! same migration. A migration is recorded in the transaction of its last step when that step is
//! transactional, else right after it; every step of a multi-step migration is idempotent, so a
//! run that stopped anywhere before the record is completed by the next `up`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::backfill::{self, TableStats};
use super::backup::{self, BackupPolicy};
use super::boundary::{self, TenantPassword};
use super::plan::{self, Migration, StepKind, MIGRATIONS};
use super::{MigrateError, Target};

/// The advisory lock key all runners share (`orgwall` in ASCII).
pub const LOCK_KEY: i64 = 0x006f_7267_7761_6c6c;

/// Knobs for `up` and `down`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rows per backfill transaction.
    pub batch_size: i64,
    pub backup: BackupPolicy,
    /// Draw an indicatif progress bar for the backfill.
    pub progress: bool,
    /// How long to wait for another runner's lock before giving up.
    pub lock_wait: Duration,
    /// `lock_timeout` for each statement: a DDL step queued behind a long transaction fails
    /// (and `up` resumes later) instead of stalling every query behind it.
    pub statement_lock_timeout: Duration,
    /// Testing aid: fail after this many committed transactions.
    pub fail_after_commits: Option<usize>,
    /// `up` only: the password of the tenant role, set once 0004 is applied (also when it
    /// already was). `None` leaves the role as it is (none: trust or peer authentication).
    pub tenant_password: Option<TenantPassword>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: 10_000,
            backup: BackupPolicy::Required,
            progress: false,
            lock_wait: Duration::from_secs(600),
            statement_lock_timeout: Duration::from_secs(30),
            fail_after_commits: None,
            tenant_password: None,
        }
    }
}

/// What one `up` or `down` did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Migrations applied (up) or rolled back (down), in order.
    pub migrations: Vec<String>,
    /// `(migration, step, duration)` in order.
    pub steps: Vec<(String, String, Duration)>,
    /// Per-table backfill figures.
    pub backfill: Vec<TableStats>,
    /// Whether `up` set the tenant role's password.
    pub tenant_password_set: bool,
}

/// One row of `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub name: &'static str,
    /// `applied_at` as PostgreSQL prints it; `None` when pending.
    pub applied_at: Option<String>,
    /// Whether `up.sql` changed since it was applied (unknown for old records).
    pub modified: bool,
}

/// Counts committed transactions and injects the test failure.
pub(crate) struct Commits {
    done: usize,
    fail_after: Option<usize>,
}

impl Commits {
    pub(crate) fn committed(&mut self) -> Result<(), MigrateError> {
        self.done += 1;
        match self.fail_after {
            Some(n) if self.done >= n => Err(MigrateError::InjectedFailure(self.done)),
            _ => Ok(()),
        }
    }
}

/// The embedded migrations with their state in the database (read-only; takes no lock).
pub async fn status(target: &Target) -> Result<Vec<MigrationStatus>, MigrateError> {
    let client = target.connect().await?;
    let applied = read_history(&client).await?;
    Ok(MIGRATIONS
        .iter()
        .map(|m| {
            let rec = applied.get(m.name);
            MigrationStatus {
                name: m.name,
                applied_at: rec.map(|(at, _)| at.clone()),
                modified: rec
                    .and_then(|(_, sum)| sum.as_ref())
                    .is_some_and(|s| *s != m.checksum()),
            }
        })
        .collect())
}

/// Applies pending migrations up to and including `to` (all when `None`).
pub async fn up(
    target: &Target,
    to: Option<&Migration>,
    opts: &RunOptions,
) -> Result<RunReport, MigrateError> {
    let client = locked_connection(target, opts).await?;
    let applied = read_history(&client).await?;
    let last = to.map_or(u32::MAX, Migration::number);
    let pending: Vec<&Migration> = MIGRATIONS
        .iter()
        .filter(|m| m.number() <= last && !applied.contains_key(m.name))
        .collect();
    if opts.tenant_password.is_some()
        && !applied.contains_key(boundary::MIGRATION)
        && !pending.iter().any(|m| m.name == boundary::MIGRATION)
    {
        return Err(MigrateError::TenantPasswordUnapplied(boundary::MIGRATION));
    }
    let mut report = RunReport::default();
    if !pending.is_empty() {
        backup::guard(&client, target, &opts.backup).await?;
        let mut commits = Commits {
            done: 0,
            fail_after: opts.fail_after_commits,
        };
        for m in pending {
            tracing::info!(migration = m.name, "applying");
            apply(&client, m, opts, &mut commits, &mut report).await?;
            report.migrations.push(m.name.to_string());
        }
    }
    if let Some(pw) = &opts.tenant_password {
        boundary::set_password(&client, pw).await?;
        tracing::info!(role = boundary::TENANT_ROLE, "password set");
        report.tenant_password_set = true;
    }
    unlock(&client).await;
    Ok(report)
}

/// Rolls back applied migrations newer than `to`: `None` rolls back the latest one,
/// `Some(None)` all of them, `Some(Some(m))` everything after `m`.
pub async fn down(
    target: &Target,
    to: Option<Option<&Migration>>,
    opts: &RunOptions,
) -> Result<RunReport, MigrateError> {
    let client = locked_connection(target, opts).await?;
    let applied = read_history(&client).await?;
    let mut newest_first: Vec<&Migration> = MIGRATIONS
        .iter()
        .filter(|m| applied.contains_key(m.name))
        .collect();
    newest_first.reverse();
    let rollback: Vec<&Migration> = match to {
        None => newest_first.into_iter().take(1).collect(),
        Some(keep) => {
            let keep = keep.map_or(0, Migration::number);
            newest_first
                .into_iter()
                .filter(|m| m.number() > keep)
                .collect()
        }
    };
    let mut report = RunReport::default();
    if rollback.is_empty() {
        return Ok(report);
    }
    backup::guard(&client, target, &opts.backup).await?;
    let mut commits = Commits {
        done: 0,
        fail_after: opts.fail_after_commits,
    };
    for m in rollback {
        tracing::info!(migration = m.name, "rolling back");
        let started = Instant::now();
        let what = format!("{} down.sql", m.name);
        client
            .batch_execute("BEGIN")
            .await
            .map_err(MigrateError::sql(&what))?;
        let run = async {
            client.batch_execute(m.down).await?;
            client
                .execute(
                    "DELETE FROM orgwall.schema_migrations WHERE version = $1",
                    &[&m.name],
                )
                .await?;
            client.batch_execute("COMMIT").await
        };
        if let Err(e) = run.await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(MigrateError::sql(what)(e));
        }
        commits.committed()?;
        report
            .steps
            .push((m.name.into(), "down".into(), started.elapsed()));
        report.migrations.push(m.name.to_string());
    }
    unlock(&client).await;
    Ok(report)
}

async fn locked_connection(target: &Target, opts: &RunOptions) -> Result<Client, MigrateError> {
    let client = target.connect().await?;
    let ms = opts.statement_lock_timeout.as_millis();
    client
        .batch_execute(&format!("SET lock_timeout = {ms}"))
        .await
        .map_err(MigrateError::sql("SET lock_timeout"))?;
    lock(&client, opts.lock_wait).await?;
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS orgwall;
             CREATE TABLE IF NOT EXISTS orgwall.schema_migrations (
                 version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             ALTER TABLE orgwall.schema_migrations ADD COLUMN IF NOT EXISTS checksum text;",
        )
        .await
        .map_err(MigrateError::sql("creating orgwall.schema_migrations"))?;
    Ok(client)
}

/// Takes the session advisory lock, polling so a waiting runner holds no snapshot (a blocked
/// `pg_advisory_lock` would make the holder's CREATE INDEX CONCURRENTLY wait for it).
async fn lock(client: &Client, wait: Duration) -> Result<(), MigrateError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(MigrateError::sql("taking the migration lock"))?
            .get(0);
        if got {
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(MigrateError::LockTimeout(wait));
        }
        if !told {
            tracing::warn!("another orgwall migrate is running; waiting for its lock");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn unlock(client: &Client) {
    let _ = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
}

/// `version → (applied_at, checksum)`; empty when the history table does not exist yet.
pub(crate) async fn read_history(
    client: &Client,
) -> Result<HashMap<String, (String, Option<String>)>, MigrateError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('orgwall.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(MigrateError::sql("reading the migration history"))?
        .get(0);
    if !exists {
        return Ok(HashMap::new());
    }
    let has_checksum: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'orgwall'
             AND table_name = 'schema_migrations' AND column_name = 'checksum')",
            &[],
        )
        .await
        .map_err(MigrateError::sql("reading the migration history"))?
        .get(0);
    let sql = if has_checksum {
        "SELECT version, applied_at::text, checksum FROM orgwall.schema_migrations"
    } else {
        "SELECT version, applied_at::text, NULL::text FROM orgwall.schema_migrations"
    };
    let rows = client
        .query(sql, &[])
        .await
        .map_err(MigrateError::sql("reading the migration history"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

const RECORD: &str = "INSERT INTO orgwall.schema_migrations (version, checksum) VALUES ($1, $2)
                      ON CONFLICT (version) DO NOTHING";

async fn apply(
    client: &Client,
    m: &Migration,
    opts: &RunOptions,
    commits: &mut Commits,
    report: &mut RunReport,
) -> Result<(), MigrateError> {
    let steps = plan::steps(m.up)?;
    let mut recorded = false;
    for (i, step) in steps.iter().enumerate() {
        let started = Instant::now();
        let what = format!("{} step `{}`", m.name, step.name);
        tracing::info!(migration = m.name, step = %step.name, "step {}/{}", i + 1, steps.len());
        match step.kind {
            StepKind::Transaction => {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(MigrateError::sql(&what))?;
                let run = async {
                    client.batch_execute(&step.sql).await?;
                    if i + 1 == steps.len() {
                        client.execute(RECORD, &[&m.name, &m.checksum()]).await?;
                    }
                    client.batch_execute("COMMIT").await
                };
                if let Err(e) = run.await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(MigrateError::sql(what)(e));
                }
                recorded = i + 1 == steps.len();
                commits.committed()?;
            }
            StepKind::NoTransaction => {
                for index in plan::concurrent_index_names(&step.sql) {
                    drop_invalid_index(client, &index).await?;
                }
                for stmt in plan::statements(&step.sql) {
                    client
                        .batch_execute(stmt)
                        .await
                        .map_err(MigrateError::sql(&what))?;
                }
                commits.committed()?;
            }
            StepKind::Batched => {
                let stats = backfill::run(client, &step.sql, opts, commits).await?;
                report.backfill.extend(stats);
            }
        }
        report
            .steps
            .push((m.name.into(), step.name.clone(), started.elapsed()));
    }
    if !recorded {
        client
            .execute(RECORD, &[&m.name, &m.checksum()])
            .await
            .map_err(MigrateError::sql("updating orgwall.schema_migrations"))?;
        commits.committed()?;
    }
    Ok(())
}

/// A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would keep.
async fn drop_invalid_index(client: &Client, name: &str) -> Result<(), MigrateError> {
    let invalid = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = $1 AND NOT i.indisvalid AND pg_table_is_visible(c.oid)",
            &[&name],
        )
        .await
        .map_err(MigrateError::sql("looking for invalid indexes"))?;
    for row in invalid {
        let qualified: String = row.get(0);
        tracing::warn!(index = %qualified, "dropping the invalid leftover of an interrupted build");
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"))
            .await
            .map_err(MigrateError::sql(format!(
                "dropping invalid index {qualified}"
            )))?;
    }
    Ok(())
}
