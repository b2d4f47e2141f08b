//! The streaming half of a feed round: START_REPLICATION from the load's position, pgoutput
//! messages applied a whole transaction at a time at its Commit (in commit order, under the
//! store's write gate together with the applied LSN), keepalives answered and positions
//! acknowledged. `inventory_balances` changes are mirrored (`mirror.rs`); one that comes
//! without the old row, a TRUNCATE of the table, or a transaction that inserted ledger rows
//! but brought no balance change (the table left the publication, or the balance trigger is
//! off) ends the round with [`FeedError::Resync`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use super::feed::FeedError;
use super::mirror::{self, Change};
use super::pgoutput::{self, Message, ServerCopy};
use super::Balances;
use crate::upstream::{ServerConn, UpstreamError};
use crate::wire;

/// How often the server is asked for its position while a fence probe waits for the stream.
const REPING: Duration = Duration::from_millis(1);

/// The relations as the stream described them, and the transaction being received.
#[derive(Default)]
struct Txn {
    /// `inventory_balances`: its relation id and where its columns are.
    balances: Option<(u32, mirror::Columns)>,
    /// `inventory_ledger`'s relation id.
    ledger: Option<u32>,
    changes: Vec<Change>,
    ledger_inserts: usize,
    open: bool,
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
    // pgoutput writes values with the walsender's output functions: `updated_at` in ISO text
    // whatever the database's default DateStyle (`mirror.rs` reads any zone's offset).
    repl.query_text("SET DateStyle = ISO").await?;
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
    let mut txn = Txn::default();
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
                        apply(b, msg, &mut txn)?;
                    }
                    ServerCopy::Keepalive { end, reply: wanted } => {
                        b.set_server_lsn(end);
                        if !txn.open {
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

/// Applies one pgoutput message; a transaction's changes are applied together at Commit.
fn apply(b: &Balances, msg: Message, txn: &mut Txn) -> Result<(), FeedError> {
    let schema = &b.config.schema;
    let cols = |t: &Txn, rel: u32| t.balances.filter(|x| x.0 == rel).map(|x| x.1);
    let resync = |e: mirror::NeedsResync| FeedError::Resync(e.to_string());
    match msg {
        Message::Relation {
            id,
            schema: s,
            name,
            columns,
        } if s == *schema => match name.as_str() {
            "inventory_balances" => {
                if b.columns().is_some_and(|c| c.names != columns) {
                    return Err(FeedError::Resync(
                        "inventory_balances' columns changed (ALTER TABLE)".into(),
                    ));
                }
                let c = mirror::Columns::find(&columns).ok_or_else(|| {
                    FeedError::Off("inventory_balances lacks a key or quantity column".into())
                })?;
                txn.balances = Some((id, c));
            }
            "inventory_ledger" => txn.ledger = Some(id),
            _ => {}
        },
        Message::Begin { .. } => {
            txn.changes.clear();
            txn.ledger_inserts = 0;
            txn.open = true;
        }
        Message::Insert { relation, tuple } => {
            if let Some(c) = cols(txn, relation) {
                txn.changes
                    .push(mirror::insert(&c, &tuple).map_err(resync)?);
            } else if txn.ledger == Some(relation) {
                txn.ledger_inserts += 1;
            }
        }
        Message::Update { relation, old, new } => {
            if let Some(c) = cols(txn, relation) {
                let changes = mirror::update(&c, old.as_ref(), &new).map_err(resync)?;
                txn.changes.extend(changes);
            }
        }
        Message::Delete { relation, old } => {
            if let Some(c) = cols(txn, relation) {
                txn.changes.push(mirror::delete(&c, &old).map_err(resync)?);
            }
        }
        Message::Truncate { relations } if relations.iter().any(|&r| cols(txn, r).is_some()) => {
            tracing::error!("inventory_balances was truncated; the balance cache resyncs");
            return Err(FeedError::Resync("TRUNCATE of inventory_balances".into()));
        }
        Message::Commit { end_lsn, .. } => {
            if txn.ledger_inserts > 0 && txn.changes.is_empty() {
                return Err(FeedError::Resync(format!(
                    "a transaction inserted {} ledger rows but changed no inventory_balances \
                     row (is inventory_balances still in publication {}, and \
                     inventory_ledger_balance_trigger enabled?)",
                    txn.ledger_inserts, b.config.publication
                )));
            }
            let n = txn.changes.len() as u64;
            // The position moves under the write gate with the changes, so a reader holding
            // the read side sees a store and an applied LSN that agree (the drift check).
            if n == 0 {
                b.set_applied(end_lsn);
            } else {
                b.store.write(|s| {
                    for c in &txn.changes {
                        match c {
                            Change::Put(row) => s.put(row),
                            Change::Remove(row) => s.remove(row),
                        }
                    }
                    b.set_applied(end_lsn);
                });
                b.metrics
                    .transactions_applied
                    .fetch_add(1, Ordering::Relaxed);
                b.metrics.rows_applied.fetch_add(n, Ordering::Relaxed);
            }
            txn.changes.clear();
            txn.open = false;
        }
        _ => {}
    }
    Ok(())
}
