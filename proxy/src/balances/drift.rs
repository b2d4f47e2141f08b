//! The drift check behind `SHOW orgwall.balances_drift`: the running cache against
//! PostgreSQL's `inventory_balances`, key by key, at a consistent point.
//!
//! One round reads the balances in a REPEATABLE READ transaction whose first statement also
//! returns `pg_current_wal_insert_lsn()`: every commit visible in that snapshot ends at or
//! before it. The cache is read (whole, under its read gate, with its applied LSN) only once it
//! has applied that far, so it holds everything the snapshot shows; if it cannot get there in
//! [`CATCH_UP`], the check fails rather than report drift it cannot tell from lag.
//!
//! The cache may hold a little more than the snapshot (a ledger write that committed in
//! between; WAL order and snapshot visibility also differ slightly), so a disagreeing key is
//! only a suspect. It is reported when the next round, on a fresh snapshot, finds both sides
//! unchanged and still disagreeing; suspects that moved are re-checked (a few rounds), and a
//! key that keeps being written is left to the next check rather than guessed at.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::decimal::Decimal;
use super::{pgoutput, Balances};
use crate::errors::{code, UserFacing};
use crate::upstream::{Pool, UpstreamError};

/// How long a round waits for the cache to apply PostgreSQL's position.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// Why the check could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("the balance cache is not enabled on this proxy")]
    Disabled,
    #[error("the balance cache is not serving{}", .0.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    NotServing(Option<String>),
    #[error("the balance cache did not reach PostgreSQL's position {target} within {CATCH_UP:?} (applied {applied}); no drift reported")]
    NotCaughtUp { target: String, applied: String },
    #[error("reading inventory_balances: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("unexpected answer from PostgreSQL: {0}")]
    Protocol(String),
}

impl UserFacing for DriftError {
    fn sqlstate(&self) -> &'static str {
        match self {
            DriftError::Upstream(u) => u.sqlstate(),
            _ => code::OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
    fn client_message(&self) -> String {
        format!("balance drift check: {self}")
    }
}

/// `(org_id, item_id, location_id, lot_id)`.
pub type Key = (String, String, String, Option<String>);

/// One drifting key: the cache's quantity and PostgreSQL's (`None` = no such balance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    pub key: Key,
    pub cached: Option<String>,
    pub actual: Option<String>,
}

/// Rounds after the first that re-check suspects whose values moved.
const CONFIRM_ROUNDS: usize = 3;

/// Compares the cache with `inventory_balances`; the drifting keys, ordered. Sets the
/// `drift_keys` metric and logs a warning when there are any.
pub async fn check(b: &Balances, pool: &Pool) -> Result<Vec<DriftRow>, DriftError> {
    let mut suspects = round(b, pool).await?;
    let mut rows = Vec::new();
    for _ in 0..CONFIRM_ROUNDS {
        if suspects.is_empty() {
            break;
        }
        let mut moved = HashMap::new();
        for (key, now) in round(b, pool).await? {
            match suspects.get(&key) {
                // Neither side moved between two consistent reads and they still disagree.
                Some(before) if *before == now => rows.push(DriftRow {
                    key,
                    cached: now.0,
                    actual: now.1,
                }),
                Some(_) => {
                    moved.insert(key, now);
                }
                // Not suspected before: a write in flight now, or drift that appeared since;
                // the next check will tell.
                None => {}
            }
        }
        suspects = moved;
    }
    if !suspects.is_empty() {
        tracing::info!(
            keys = suspects.len(),
            "balance drift check: keys still being written were not confirmed"
        );
    }
    rows.sort_by(|x, y| x.key.cmp(&y.key));
    b.metrics
        .drift_keys
        .store(rows.len() as u64, Ordering::Relaxed);
    if !rows.is_empty() {
        tracing::warn!(
            drift_keys = rows.len(),
            "the balance cache drifts from inventory_balances (SHOW orgwall.balances_drift lists \
             the keys; `orgwall reconcile` compares inventory_balances with the ledger)"
        );
    }
    Ok(rows)
}

/// One comparison; keys whose cached and actual quantities differ, with both values.
async fn round(
    b: &Balances,
    pool: &Pool,
) -> Result<HashMap<Key, (Option<String>, Option<String>)>, DriftError> {
    if !b.serving() {
        return Err(DriftError::NotServing(b.off_reason()));
    }
    let (target, actual) = read_postgres(b, pool).await?;
    if !b.wait_applied(target, CATCH_UP).await {
        if !b.serving() {
            return Err(DriftError::NotServing(b.off_reason()));
        }
        return Err(DriftError::NotCaughtUp {
            target: pgoutput::format_lsn(target),
            applied: pgoutput::format_lsn(b.applied_lsn()),
        });
    }
    let (serving, applied, cached) = b
        .store
        .read(|s| (b.serving(), b.applied_lsn(), s.snapshot()));
    // The feed may have stopped (and cleared the store) between the wait and the read.
    if !serving || applied < target {
        return Err(DriftError::NotServing(b.off_reason()));
    }
    let mut actual = actual;
    let mut drift = HashMap::new();
    for (m, exact) in cached {
        let key = (m.org, m.item, m.location, m.lot);
        let pg = actual.remove(&key);
        // An unservable value is never answered from memory, so it cannot be served wrong.
        if exact && !same(Some(&m.quantity), pg.as_deref()) {
            drift.insert(key, (Some(m.quantity), pg));
        }
    }
    for (key, pg) in actual {
        drift.insert(key, (None, Some(pg)));
    }
    Ok(drift)
}

/// PostgreSQL's balances and a WAL position past every commit they reflect.
async fn read_postgres(
    b: &Balances,
    pool: &Pool,
) -> Result<(u64, HashMap<Key, String>), DriftError> {
    // A connection of its own: an error half-way must not leave a pooled one in a transaction.
    let mut conn = pool.connect_dedicated(false).await?;
    conn.query_text("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    // The first statement takes the snapshot; the position is read after it was taken.
    let lsn = conn
        .query_text("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
        .await?;
    let target = lsn
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.as_deref())
        .and_then(pgoutput::parse_lsn)
        .ok_or_else(|| DriftError::Protocol("no WAL position".into()))?;
    let rows = conn
        .query_text(&format!(
            "SELECT org_id, item_id, location_id, lot_id, quantity::text \
             FROM {}.inventory_balances",
            quote_ident(&b.config.schema)
        ))
        .await?;
    conn.query_text("COMMIT").await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let mut it = r.into_iter();
        let mut next = || it.next().flatten();
        let (Some(org), Some(item), Some(loc), lot, Some(q)) =
            (next(), next(), next(), next(), next())
        else {
            return Err(DriftError::Protocol("a balance row with a NULL key".into()));
        };
        out.insert((org, item, loc, lot), q);
    }
    Ok((target, out))
}

/// The schema name as an identifier (`"…"`, quotes doubled).
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Numerically equal (`1.50` = `1.5`); a missing side only equals another missing side.
fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a == b
                || matches!((Decimal::parse(a), Decimal::parse(b)), (Some(x), Some(y)) if normal(x) == normal(y))
        }
        (None, None) => true,
        _ => false,
    }
}

/// Text without trailing fractional zeros (`-1.500` → `-1.5`, `-0.00` → `0`).
fn normal(d: Decimal) -> String {
    let t = d.to_text();
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    if t == "-0" {
        "0".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_numerically() {
        assert!(same(Some("1.50"), Some("1.5")));
        assert!(same(Some("-0.00"), Some("0")));
        assert!(!same(Some("1.5"), Some("1.51")));
        assert!(!same(Some("0"), None));
        assert!(same(None, None));
        assert_eq!(normal(Decimal::parse("-1.500").unwrap()), "-1.5");
        assert_eq!(normal(Decimal::parse("-0.00").unwrap()), "0");
        assert_eq!(normal(Decimal::parse("100").unwrap()), "100");
    }

    #[test]
    fn schema_names_are_quoted_as_identifiers() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
