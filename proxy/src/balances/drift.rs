//! The drift check behind `SHOW orgwall.balances_drift`: the running cache (a mirror of
//! `inventory_balances`) against the table, key by key — quantity text and `updated_at` — at
//! a consistent point.
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

use super::{pgoutput, timestamp, Balances};
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
        // The mirror answers both columns byte for byte: both must be PostgreSQL's.
        let same_time = pg.as_ref().is_none_or(|p| p.1 == m.updated_at);
        if exact && !(same(Some(&m.quantity), pg.as_ref().map(|p| p.0.as_str())) && same_time) {
            let shown = |q: &str, at: i64| match same_time {
                true => q.to_string(),
                false => format!("{q} @ {}", shown_time(at)),
            };
            let pg = pg.map(|(q, at)| shown(&q, at));
            drift.insert(key, (Some(shown(&m.quantity, m.updated_at)), pg));
        }
    }
    for (key, (pg, _)) in actual {
        drift.insert(key, (None, Some(pg)));
    }
    Ok(drift)
}

/// A mirrored `updated_at` as the drift report shows it.
fn shown_time(at: i64) -> String {
    match at {
        timestamp::NULL => "NULL".into(),
        at => timestamp::to_text_utc(at).unwrap_or_else(|| "(not kept)".into()),
    }
}

/// PostgreSQL's balances (quantity text, `updated_at` as the mirror keeps it) and a WAL
/// position past every commit they reflect.
async fn read_postgres(
    b: &Balances,
    pool: &Pool,
) -> Result<(u64, HashMap<Key, (String, i64)>), DriftError> {
    // A connection of its own: an error half-way must not leave a pooled one in a transaction.
    let mut conn = pool.connect_dedicated(false).await?;
    conn.query_text("SET DateStyle = ISO").await?;
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
    let updated_at = match b.columns().is_some_and(|c| c.updated_at.is_some()) {
        true => "updated_at",
        false => "NULL::timestamptz",
    };
    let rows = conn
        .query_text(&format!(
            "SELECT org_id, item_id, location_id, lot_id, quantity::text, {updated_at} \
             FROM {}.inventory_balances",
            quote_ident(&b.config.schema)
        ))
        .await?;
    conn.query_text("COMMIT").await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let mut it = r.into_iter();
        let mut next = || it.next().flatten();
        let (Some(org), Some(item), Some(loc), lot, Some(q), at) =
            (next(), next(), next(), next(), next(), next())
        else {
            return Err(DriftError::Protocol("a balance row with a NULL key".into()));
        };
        let at = at.map_or(timestamp::NULL, |t| timestamp::parse_iso(&t));
        out.insert((org, item, loc, lot), (q, at));
    }
    Ok((target, out))
}

/// The schema name as an identifier (`"…"`, quotes doubled).
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The same text (the mirror answers `1.50` as `1.50`: the display scale is part of the
/// answer); a missing side only equals another missing side.
fn same(a: Option<&str>, b: Option<&str>) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_as_answered() {
        assert!(!same(Some("1.50"), Some("1.5")), "another display scale");
        assert!(same(Some("-0.00"), Some("-0.00")));
        assert!(!same(Some("0"), None));
        assert!(same(None, None));
        assert_eq!(shown_time(timestamp::NULL), "NULL");
        assert_eq!(shown_time(0), "2000-01-01 00:00:00+00");
        assert_eq!(shown_time(timestamp::UNSERVABLE), "(not kept)");
    }

    #[test]
    fn schema_names_are_quoted_as_identifiers() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
