//! The replication feed: keeps the store equal to `inventory_balances` as of `applied_lsn`.
//!
//! One round: check `wal_level`, read the served columns' catalog facts, make sure the
//! publication exists, open a walsender connection, create a temporary logical slot that
//! exports its snapshot, load `inventory_balances` in a REPEATABLE READ transaction on that
//! snapshot, then stream pgoutput from the slot's consistent point — so the load and the stream
//! meet exactly and every ledger insert is applied once, whole transactions at a time, in commit
//! order. Any failure ends the round: the cache stops serving, the temporary slot disappears
//! with its connection, and the next round (after a backoff) resyncs from scratch. An UPDATE,
//! DELETE or TRUNCATE of the append-only ledger is logged as an error and forces a resync.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::answer::{self, ColumnMeta, Columns};
use super::pgoutput::{self, Cell, Message, ServerCopy};
use super::store::Movement;
use super::Balances;
use crate::sql::quote_literal;
use crate::upstream::{Pool, ServerConn, UpstreamError};
use crate::wire;

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
        if was_serving {
            backoff = base;
        }
        match result {
            Err(FeedError::Off(why)) => {
                tracing::error!("balance cache is off: {why}; balance reads go to PostgreSQL");
                *b.off_reason.write().unwrap_or_else(|p| p.into_inner()) = Some(why);
                return;
            }
            Err(e @ FeedError::Resync(_)) => tracing::error!(error = %e, "balance cache resyncing"),
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_ms = backoff.as_millis() as u64,
                "balance feed interrupted; balance reads go to PostgreSQL until it resyncs"
            ),
            Ok(()) => {}
        }
        b.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

fn cell(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|c| c.as_deref())
}

async fn round(b: &Balances, pool: &Pool) -> Result<(), FeedError> {
    let cfg = &b.config;
    let mut conn = pool.connect_dedicated(false).await?;
    let level = conn.query_text("SHOW wal_level").await?;
    let level = level
        .first()
        .and_then(|r| cell(r, 0))
        .unwrap_or("?")
        .to_string();
    if level != "logical" {
        return Err(FeedError::Off(format!(
            "PostgreSQL runs with wal_level = {level}; the cache needs wal_level = logical"
        )));
    }
    let columns = load_columns(&mut conn, &cfg.schema).await?;
    *b.columns.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(columns));
    ensure_publication(&mut conn, &cfg.schema, &cfg.publication).await?;

    let mut repl = match pool.connect_dedicated(true).await {
        Err(UpstreamError::Rejected { code, message }) if code == "42501" => {
            return Err(FeedError::Off(format!(
                "the upstream role may not replicate ({message}); grant it REPLICATION"
            )))
        }
        other => other?,
    };
    let slot = format!(
        "orgwall_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let created = repl
        .query_text(&format!(
            "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
        ))
        .await?;
    let row = created
        .first()
        .ok_or_else(|| FeedError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
    let start = cell(row, 1)
        .and_then(pgoutput::parse_lsn)
        .ok_or_else(|| FeedError::Protocol("no consistent point".into()))?;
    let snapshot = cell(row, 2)
        .ok_or_else(|| FeedError::Protocol("no exported snapshot".into()))?
        .to_string();

    conn.query_text("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    conn.query_text(&format!(
        "SET TRANSACTION SNAPSHOT {}",
        quote_literal(&snapshot)
    ))
    .await?;
    let rows = conn
        .query_text(&format!(
            "SELECT org_id, item_id, location_id, lot_id, quantity FROM {}.inventory_balances",
            cfg.schema
        ))
        .await?;
    conn.query_text("COMMIT").await?;
    drop(conn);
    let loaded = b.store.write(|s| {
        s.clear();
        for r in &rows {
            let m = Movement {
                org: cell(r, 0).unwrap_or_default().to_string(),
                item: cell(r, 1).unwrap_or_default().to_string(),
                location: cell(r, 2).unwrap_or_default().to_string(),
                lot: cell(r, 3).map(str::to_string),
                quantity: cell(r, 4).unwrap_or("NaN").to_string(),
            };
            s.load(&m);
        }
        s.len()
    });
    drop(rows);
    b.applied_lsn.store(start, Ordering::Release);
    b.set_serving(true);
    tracing::info!(
        balances = loaded,
        lsn = %pgoutput::format_lsn(start),
        bytes_per_balance = b.store.bytes_per_balance(),
        "balance cache loaded; streaming the ledger"
    );
    stream(b, &mut repl, &slot, start).await
}

/// Reads the catalog facts PostgreSQL puts in RowDescription for the served columns.
async fn load_columns(conn: &mut ServerConn, schema: &str) -> Result<Columns, FeedError> {
    let rows = conn
        .query_text(&format!(
            "SELECT a.attname, c.oid, a.attnum, a.atttypid, a.attlen, a.atttypmod \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = {} AND c.relname = 'inventory_balances' \
               AND a.attnum > 0 AND NOT a.attisdropped",
            quote_literal(schema)
        ))
        .await?;
    let meta = |name: &str| -> Result<ColumnMeta, FeedError> {
        let r = rows
            .iter()
            .find(|r| cell(r, 0) == Some(name))
            .ok_or_else(|| {
                FeedError::Off(format!("{schema}.inventory_balances has no column {name}"))
            })?;
        let num = |i: usize| -> Result<i64, FeedError> {
            cell(r, i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| FeedError::Protocol(format!("bad pg_attribute row for {name}")))
        };
        Ok(ColumnMeta {
            table_oid: num(1)? as u32,
            attnum: num(2)? as i16,
            type_oid: num(3)? as u32,
            typlen: num(4)? as i16,
            typmod: num(5)? as i32,
        })
    };
    let cols = Columns {
        org_id: meta("org_id")?,
        item_id: meta("item_id")?,
        location_id: meta("location_id")?,
        lot_id: meta("lot_id")?,
        quantity: meta("quantity")?,
    };
    if !answer::supported(&cols) {
        return Err(FeedError::Off(
            "inventory_balances key columns must be text and quantity numeric".into(),
        ));
    }
    Ok(cols)
}

async fn ensure_publication(
    conn: &mut ServerConn,
    schema: &str,
    publication: &str,
) -> Result<(), FeedError> {
    let exists = |rows: &Vec<Vec<Option<String>>>| !rows.is_empty();
    let check = format!(
        "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {}",
        quote_literal(publication)
    );
    if exists(&conn.query_text(&check).await?) {
        return Ok(());
    }
    match conn
        .query_text(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {schema}.inventory_ledger"
        ))
        .await
    {
        Ok(_) => {
            tracing::info!(publication, "created the ledger publication");
            Ok(())
        }
        // Another proxy created it first.
        Err(UpstreamError::Rejected { code, .. }) if code == "42710" => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The ledger relation as the stream describes it: its id and where our columns are.
struct Ledger {
    id: u32,
    /// Indexes of org_id, item_id, location_id, lot_id, quantity_delta.
    idx: [usize; 5],
}

async fn read_frame(repl: &mut ServerConn) -> Result<BytesMut, FeedError> {
    loop {
        if let Some(f) = wire::split_frame(&mut repl.rbuf, usize::MAX >> 1)? {
            return Ok(f);
        }
        if repl
            .stream
            .read_buf(&mut repl.rbuf)
            .await
            .map_err(UpstreamError::Io)?
            == 0
        {
            return Err(UpstreamError::Closed.into());
        }
    }
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
    repl.stream
        .write_all(&out)
        .await
        .map_err(UpstreamError::Io)?;
    Ok(())
}

async fn stream(
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
    repl.stream.write_all(&q).await.map_err(UpstreamError::Io)?;
    loop {
        let f = read_frame(repl).await?;
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
        {
            let ServerConn { stream, rbuf, .. } = &mut *repl;
            tokio::select! {
                n = stream.read_buf(rbuf) => {
                    if n.map_err(UpstreamError::Io)? == 0 {
                        return Err(UpstreamError::Closed.into());
                    }
                }
                _ = b.ping.notified() => reply = true,
                _ = tick.tick() => {}
            }
        }
        while let Some(f) = wire::split_frame(&mut repl.rbuf, usize::MAX >> 1)? {
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

fn text(tuple: &[Cell], i: usize) -> Option<String> {
    match tuple.get(i) {
        Some(Cell::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Applies one pgoutput message; a transaction's movements are applied together at Commit.
fn apply(
    b: &Balances,
    msg: Message,
    ledger: &mut Option<Ledger>,
    txn: &mut Vec<Movement>,
    in_txn: &mut bool,
) -> Result<(), FeedError> {
    let is_ledger = |rel: u32| ledger.as_ref().is_some_and(|l| l.id == rel);
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
        Message::Insert { relation, tuple } if is_ledger(relation) => {
            let Some(l) = ledger.as_ref() else {
                return Ok(());
            };
            let get = |k: usize| text(&tuple, l.idx[k]);
            let (Some(org), Some(item), Some(location), Some(quantity)) =
                (get(0), get(1), get(2), get(4))
            else {
                return Err(FeedError::Resync(
                    "ledger row with a NULL key or quantity".into(),
                ));
            };
            txn.push(Movement {
                org,
                item,
                location,
                lot: get(3),
                quantity,
            });
        }
        Message::Update { relation } | Message::Delete { relation } if is_ledger(relation) => {
            tracing::error!(
                "inventory_ledger is append-only but an UPDATE or DELETE was replicated; \
                 the balance cache resyncs from inventory_balances (check the ledger's writers)"
            );
            return Err(FeedError::Resync(
                "UPDATE/DELETE on inventory_ledger".into(),
            ));
        }
        Message::Truncate { relations } if relations.iter().any(|&r| is_ledger(r)) => {
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
