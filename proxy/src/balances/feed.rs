//! The replication feed: keeps the store equal to `inventory_balances` as of `applied_lsn`.
//! This file owns the rounds (their errors, backoff, off-for-good); `snapshot.rs` starts a
//! round and `stream.rs` follows the stream.
//!
//! One round: check `wal_level`, read the served columns' catalog facts, make sure the
//! publication exists, open a walsender connection, create a temporary logical slot that
//! exports its snapshot, load `inventory_balances` in a REPEATABLE READ transaction on that
//! snapshot, then stream pgoutput from the slot's consistent point — so the load and the stream
//! meet exactly and every ledger insert is applied once, whole transactions at a time, in commit
//! order. Any failure ends the round: the cache stops serving, the temporary slot disappears
//! with its connection, and the next round (after a backoff) resyncs from scratch. Ledger
//! UPDATEs and DELETEs are applied as deltas; one without the old row (the ledger's
//! `REPLICA IDENTITY` is not FULL) or a TRUNCATE forces a resync, logged with its reason and
//! shown by `SHOW orgwall_balances` (`last_resync_reason`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{pgoutput, snapshot, stream, Balances};
use crate::upstream::{Pool, UpstreamError};

/// Why a feed round ended.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Decode(#[from] pgoutput::DecodeError),
    #[error("{0}")]
    Wire(#[from] crate::wire::WireError),
    /// The cache cannot work against this server; it stays off.
    #[error("{0}")]
    Off(String),
    /// The stream showed something the cache cannot follow incrementally.
    #[error("{0}")]
    Resync(String),
    #[error("unexpected replication protocol message: {0}")]
    Protocol(String),
}

/// Runs feed rounds until `shutdown`; returns early only when the cache must stay off.
pub async fn run(b: Arc<Balances>, pool: &Pool, shutdown: CancellationToken) {
    let base = Duration::from_millis(100);
    let max = Duration::from_millis(b.config.max_backoff_ms.max(100));
    let mut backoff = base;
    loop {
        let result = tokio::select! {
            r = round(&b, pool) => r,
            _ = shutdown.cancelled() => {
                b.set_serving(false);
                return;
            }
        };
        let was_serving = b.serving();
        b.set_serving(false);
        b.fence.reset();
        if was_serving {
            backoff = base;
        } else {
            b.metrics.resync_retries.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Err(FeedError::Off(why)) => {
                tracing::error!("balance cache is off: {why}; balance reads go to PostgreSQL");
                *b.off_reason.write().unwrap_or_else(|p| p.into_inner()) = Some(why);
                return;
            }
            Err(FeedError::Resync(why)) => {
                tracing::warn!(
                    reason = %why,
                    "balance cache reloading from inventory_balances (a full resync; reads go \
                     to PostgreSQL meanwhile)"
                );
                Balances::note(&b.last_resync, why);
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "balance feed interrupted; balance reads go to PostgreSQL until it resyncs"
                );
                Balances::note(&b.last_resync, format!("feed interrupted: {e}"));
            }
            Ok(()) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

async fn round(b: &Balances, pool: &Pool) -> Result<(), FeedError> {
    let conn = snapshot::prepare(b, pool).await?;
    let mut repl = snapshot::replication_connection(pool).await?;
    let slot = format!(
        "orgwall_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let start = snapshot::load(b, conn, &mut repl, &slot).await?;
    if b.metrics.loads.fetch_add(1, Ordering::Relaxed) > 0 {
        b.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    b.set_serving(true);
    tracing::info!(
        balances = b.store.len(),
        lsn = %pgoutput::format_lsn(start),
        bytes_per_balance = b.store.bytes_per_balance(),
        "balance cache loaded; streaming the ledger"
    );
    stream::stream(b, &mut repl, &slot, start).await
}
