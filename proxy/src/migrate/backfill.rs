//! Batched backfill: `UPDATE t SET c = 'v' WHERE c IS NULL` walked in primary-key order,
//! `batch_size` keys per statement, each statement its own (autocommit) transaction.
//!
//! Only row locks are taken, each batch's for one short transaction. Rows that appear behind
//! the walk (a concurrent insert with a lower key) are caught by another pass; the walk ends
//! when a count finds no NULL left.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_postgres::Client;

use super::plan::{self, Backfill};
use super::runner::{Commits, RunOptions};
use super::MigrateError;

/// Passes over one table before giving up on rows that keep appearing with NULLs.
const MAX_PASSES: usize = 5;

/// What the backfill of one table did.
#[derive(Debug, Clone)]
pub struct TableStats {
    pub table: String,
    pub rows: u64,
    pub batches: u64,
    pub elapsed: Duration,
    /// The longest single batch transaction.
    pub longest_batch: Duration,
}

/// Runs every UPDATE of a batched step.
pub(crate) async fn run(
    client: &Client,
    sql: &str,
    opts: &RunOptions,
    commits: &mut Commits,
) -> Result<Vec<TableStats>, MigrateError> {
    let batch = opts.batch_size.max(1);
    let mut out = Vec::new();
    for b in plan::backfills(sql)? {
        out.push(table(client, &b, batch, opts.progress, commits).await?);
    }
    Ok(out)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn table(
    client: &Client,
    b: &Backfill,
    batch: i64,
    progress: bool,
    commits: &mut Commits,
) -> Result<TableStats, MigrateError> {
    let started = Instant::now();
    let (t, c) = (quote(&b.table), quote(&b.column));
    let what = format!("backfilling {}.{}", b.table, b.column);
    let key = client
        .query_opt(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary AND i.indnkeyatts = 1",
            &[&b.table],
        )
        .await
        .map_err(MigrateError::sql(&what))?
        .ok_or_else(|| MigrateError::NoBatchKey(b.table.clone()))?;
    let (k, ktype): (String, String) = (quote(&key.get::<_, String>(0)), key.get(1));
    let count_sql = format!("SELECT count(*) FROM {t} WHERE {c} IS NULL");
    // Per batch: find where the next `batch` keys end, then update that key range (an index
    // range scan; a join against the batch's keys lets the planner pick a full scan per batch).
    let cast = format!("$1::text::{ktype}");
    let first_end =
        format!("SELECT max({k})::text FROM (SELECT {k} FROM {t} ORDER BY {k} LIMIT {batch}) b");
    let next_end = format!(
        "SELECT max({k})::text FROM (SELECT {k} FROM {t} WHERE {k} > {cast} ORDER BY {k} LIMIT {batch}) b"
    );
    let v = &b.value;
    let first = format!("UPDATE {t} SET {c} = {v} WHERE {k} <= {cast} AND {c} IS NULL");
    let next = format!(
        "UPDATE {t} SET {c} = {v} WHERE {k} > $2::text::{ktype} AND {k} <= {cast} AND {c} IS NULL"
    );
    let mut stats = TableStats {
        table: b.table.clone(),
        rows: 0,
        batches: 0,
        elapsed: Duration::ZERO,
        longest_batch: Duration::ZERO,
    };
    for _pass in 0..MAX_PASSES {
        let nulls: i64 = client
            .query_one(&count_sql, &[])
            .await
            .map_err(MigrateError::sql(&what))?
            .get(0);
        if nulls == 0 {
            stats.elapsed = started.elapsed();
            return Ok(stats);
        }
        let bar = bar(progress, &b.table, nulls as u64);
        let mut last: Option<String> = None;
        loop {
            let t0 = Instant::now();
            let end: Option<String> = match &last {
                None => client.query_one(&first_end, &[]).await,
                Some(l) => client.query_one(&next_end, &[l]).await,
            }
            .map_err(MigrateError::sql(&what))?
            .get(0);
            let Some(end) = end else { break };
            let updated = match &last {
                None => client.execute(&first, &[&end]).await,
                Some(l) => client.execute(&next, &[&end, l]).await,
            }
            .map_err(MigrateError::sql(&what))?;
            stats.longest_batch = stats.longest_batch.max(t0.elapsed());
            stats.batches += 1;
            stats.rows += updated;
            bar.inc(updated);
            commits.committed()?;
            last = Some(end);
        }
        bar.finish_and_clear();
    }
    Err(MigrateError::Sql {
        what,
        why: format!("rows with NULL {} keep appearing after {MAX_PASSES} passes: stop the writers that insert them", b.column),
    })
}

fn bar(progress: bool, table: &str, len: u64) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:>18} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(table.to_string());
    bar
}
