//! The streaming half of a feed round: START_REPLICATION from the load's position, pgoutput
//! messages applied a whole transaction at a time at its Commit (in commit order, under the
//! store's write gate together with the applied LSN), keepalives answered and positions
//! acknowledged. Ledger UPDATEs and DELETEs are applied as deltas from the old and new rows
//! (`delta.rs`, `REPLICA IDENTITY FULL`); one that comes without the old row, or a TRUNCATE,
//! ends the round with [`FeedError::Resync`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use super::delta;
use super::feed::FeedError;
use super::pgoutput::{self, Message, ServerCopy};
use super::store::Movement;
use super::Balances;
use crate::upstream::{ServerConn, UpstreamError};
use crate::wire;

/// How often the server is asked for its position while a fence probe waits for the stream.
const REPING: Duration = Duration::from_millis(1);

/// The ledger relation as the stream describes it: its id and where our columns are.
struct Ledger {
    id: u32,
    /// Indexes of org_id, item_id, location_id, lot_id, quantity_delta.
    idx: [usize; 5],
}

async fn send_status(repl: &mut ServerConn, lsn: u64, reply: bool) -> Result<(), FeedError> {
    let mut payload = pgoutput::status_update(lsn);
    if reply {
        if let Some(last) = payload.last_mut() {
            *last = 1;
        }
    }
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    out.put_u8(b'd');
    out.put_i32(payload.len() as i32 + 4);
    out.put_slice(&payload);
    Ok(repl.send(&out).await?)
}

/// Streams the slot from `start` until the connection fails or the ledger needs a resync.
pub(super) async fn stream(
    b: &Balances,
    repl: &mut ServerConn,
    slot: &str,
    start: u64,
) -> Result<(), FeedError> {
    let mut q = BytesMut::new();
    wire::put(
        &mut q,
        &pgwire::messages::simplequery::Query::new(format!(
            "START_REPLICATION SLOT {slot} LOGICAL {} (proto_version '1', publication_names '{}')",
            pgoutput::format_lsn(start),
            b.config.publication
        )),
    );
    repl.send(&q).await?;
    loop {
        let f = repl.next_frame(usize::MAX >> 1).await?;
        match f[0] {
            b'W' => break,
            b'E' => return Err(UpstreamError::rejected(&f).into()),
            b'N' => {}
            other => {
                return Err(FeedError::Protocol(format!(
                    "{:?} before CopyBoth",
                    other as char
                )))
            }
        }
    }
    let mut ledger: Option<Ledger> = None;
    let mut txn: Vec<Movement> = Vec::new();
    let mut in_txn = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let mut reply = false;
        let mut frames = Vec::new();
        tokio::select! {
            read = repl.read_more() => read?,
            _ = b.ping.notified() => reply = true,
            _ = tick.tick() => {}
            // A fence probe waits for the store: ask for the server's position again
            // until the stream has passed it.
            _ = tokio::time::sleep(REPING), if b.fence.pending() => reply = true,
        }
        while let Some(f) = repl.buffered_frame(usize::MAX >> 1)? {
            frames.push(f);
        }
        for f in frames {
            match f[0] {
                b'd' => match pgoutput::server_copy(&f[5..])? {
                    ServerCopy::XLogData { end, data, .. } => {
                        b.set_server_lsn(end);
                        let msg = pgoutput::message(data)?;
                        apply(b, msg, &mut ledger, &mut txn, &mut in_txn)?;
                    }
                    ServerCopy::Keepalive { end, reply: wanted } => {
                        b.set_server_lsn(end);
                        if !in_txn {
                            b.set_applied(end);
                        }
                        reply |= wanted;
                    }
                },
                b'E' => return Err(UpstreamError::rejected(&f).into()),
                b'c' => {
                    return Err(FeedError::Protocol(
                        "server ended the replication stream".into(),
                    ))
                }
                b'N' => {}
                other => {
                    return Err(FeedError::Protocol(format!(
                        "{:?} in CopyBoth",
                        other as char
                    )))
                }
            }
        }
        send_status(repl, b.applied_lsn(), reply).await?;
    }
}

/// Applies one pgoutput message; a transaction's movements are applied together at Commit.
/// Ledger UPDATEs and DELETEs are deltas (`delta.rs`); one without the old row ends the round.
fn apply(
    b: &Balances,
    msg: Message,
    ledger: &mut Option<Ledger>,
    txn: &mut Vec<Movement>,
    in_txn: &mut bool,
) -> Result<(), FeedError> {
    let cols = |rel: u32| ledger.as_ref().filter(|l| l.id == rel).map(|l| l.idx);
    let resync = |e: delta::NeedsResync| FeedError::Resync(e.to_string());
    match msg {
        Message::Relation {
            id,
            schema,
            name,
            columns,
        } if schema == b.config.schema && name == "inventory_ledger" => {
            let pos = |c: &str| {
                columns
                    .iter()
                    .position(|x| x == c)
                    .ok_or_else(|| FeedError::Off(format!("inventory_ledger has no column {c}")))
            };
            *ledger = Some(Ledger {
                id,
                idx: [
                    pos("org_id")?,
                    pos("item_id")?,
                    pos("location_id")?,
                    pos("lot_id")?,
                    pos("quantity_delta")?,
                ],
            });
        }
        Message::Relation { .. } => {}
        Message::Begin { .. } => {
            txn.clear();
            *in_txn = true;
        }
        Message::Insert { relation, tuple } => {
            if let Some(c) = cols(relation) {
                txn.push(delta::insert(&c, &tuple).map_err(resync)?);
            }
        }
        Message::Update { relation, old, new } => {
            if let Some(c) = cols(relation) {
                txn.extend(delta::update(&c, old.as_ref(), &new).map_err(resync)?);
            }
        }
        Message::Delete { relation, old } => {
            if let Some(c) = cols(relation) {
                txn.push(delta::delete(&c, &old).map_err(resync)?);
            }
        }
        Message::Truncate { relations } if relations.iter().any(|&r| cols(r).is_some()) => {
            tracing::error!("inventory_ledger was truncated; the balance cache resyncs");
            return Err(FeedError::Resync("TRUNCATE of inventory_ledger".into()));
        }
        Message::Commit { end_lsn, .. } => {
            let n = txn.len() as u64;
            // The position moves under the write gate with the movements, so a reader holding
            // the read side sees a store and an applied LSN that agree (the drift check).
            if n == 0 {
                b.set_applied(end_lsn);
            } else {
                b.store.write(|s| {
                    txn.iter().for_each(|m| s.apply(m));
                    b.set_applied(end_lsn);
                });
                b.metrics
                    .transactions_applied
                    .fetch_add(1, Ordering::Relaxed);
                b.metrics.rows_applied.fetch_add(n, Ordering::Relaxed);
            }
            txn.clear();
            *in_txn = false;
        }
        _ => {}
    }
    Ok(())
}
