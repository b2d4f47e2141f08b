//! The start of a feed round: the server checks (`wal_level`, the served columns' catalog
//! facts, `inventory_balances`' replica identity, the publication of it and the ledger), the
//! replication connection, and the initial load —
//! a temporary logical slot that exports its snapshot, and `inventory_balances` read in a
//! REPEATABLE READ transaction on exactly that snapshot, so the load and the stream that
//! starts at the slot's consistent point meet with nothing missed or counted twice.

use std::sync::atomic::Ordering;

use super::answer::{self, ColumnMeta, Columns};
use super::feed::FeedError;
use super::pgoutput;
use super::store::{BalanceRow, Tables};
use super::timestamp;
use super::Balances;
use crate::sql::quote_literal;
use crate::upstream::{Pool, ServerConn, UpstreamError};

pub(super) fn cell(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|c| c.as_deref())
}

/// Checks `wal_level`, records the served columns' metadata and makes sure the publication
/// exists, on an ordinary connection (kept for the initial load).
pub(super) async fn prepare(b: &Balances, pool: &Pool) -> Result<ServerConn, FeedError> {
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
    note_identities(b, &mut conn).await?;
    let columns = load_columns(&mut conn, &cfg.schema).await?;
    b.set_columns(columns);
    ensure_publication(&mut conn, &cfg.schema, &cfg.publication).await?;
    Ok(conn)
}

/// A walsender connection; a role without REPLICATION turns the cache off for good.
pub(super) async fn replication_connection(pool: &Pool) -> Result<ServerConn, FeedError> {
    match pool.connect_dedicated(true).await {
        Err(UpstreamError::Rejected { code, message }) if code == "42501" => Err(FeedError::Off(
            format!("the upstream role may not replicate ({message}); grant it REPLICATION"),
        )),
        other => Ok(other?),
    }
}

/// Creates the temporary slot `slot` on `repl`, loads the store from its exported snapshot
/// over `conn` (consumed), and returns the LSN the stream starts from.
pub(super) async fn load(
    b: &Balances,
    mut conn: ServerConn,
    repl: &mut ServerConn,
    slot: &str,
) -> Result<u64, FeedError> {
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

    // `updated_at` is read as ISO text (any zone: the offset is in the text).
    conn.query_text("SET DateStyle = ISO").await?;
    conn.query_text("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    conn.query_text(&format!(
        "SET TRANSACTION SNAPSHOT {}",
        quote_literal(&snapshot)
    ))
    .await?;
    // Loaded into fresh tables as the rows arrive (never all rows in memory at once, which
    // the allocator would keep as resident memory after the load), then swapped in.
    let rss_before = super::resident_bytes();
    let mut tables = Tables::default();
    let updated_at = match b.columns().is_some_and(|c| c.updated_at.is_some()) {
        true => "updated_at",
        false => "NULL::timestamptz",
    };
    conn.query_each(
        &format!(
            "SELECT org_id, item_id, location_id, lot_id, quantity, {updated_at} \
             FROM {}.inventory_balances",
            b.config.schema
        ),
        |r| {
            let mut r = r.into_iter();
            let mut next = || r.next().flatten();
            let row = BalanceRow {
                org: next().unwrap_or_default(),
                item: next().unwrap_or_default(),
                location: next().unwrap_or_default(),
                lot: next(),
                quantity: next().unwrap_or_else(|| "NaN".into()),
                updated_at: next().map_or(timestamp::NULL, |t| timestamp::parse_iso(&t)),
            };
            tables.load(&row);
        },
    )
    .await?;
    conn.query_text("COMMIT").await?;
    drop(conn);
    tables.shrink();
    let old = b.store.write(|s| {
        let old = std::mem::replace(s, tables);
        // Not `set_applied` (a maximum): a resync may start before the last round's position.
        b.applied_lsn.store(start, Ordering::Release);
        old
    });
    drop(old);
    if let (Some(before), Some(after)) = (rss_before, super::resident_bytes()) {
        let growth = after.saturating_sub(before);
        b.metrics.load_rss_growth.store(growth, Ordering::Relaxed);
    }
    Ok(start)
}

/// Records the ledger's `REPLICA IDENTITY` (shown in `SHOW orgwall_balances`) and requires
/// `FULL` on `inventory_balances`: the cache mirrors its rows, and with any other identity
/// their UPDATEs and DELETEs could not be followed (migration 0007 sets it).
async fn note_identities(b: &Balances, conn: &mut ServerConn) -> Result<(), FeedError> {
    let schema = &b.config.schema;
    let rows = conn
        .query_text(&format!(
            "SELECT c.relname::text, c.relreplident::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = {} AND c.relname IN ('inventory_ledger', 'inventory_balances')",
            quote_literal(schema)
        ))
        .await?;
    let identity = |table: &str| {
        let r = rows.iter().find(|r| cell(r, 0) == Some(table))?;
        Some(match cell(r, 1) {
            Some("f") => "full",
            Some("d") => "default",
            Some("i") => "index",
            _ => "nothing",
        })
    };
    for table in ["inventory_ledger", "inventory_balances"] {
        if identity(table).is_none() {
            return Err(FeedError::Off(format!("{schema}.{table} does not exist")));
        }
    }
    let balances = identity("inventory_balances").unwrap_or("nothing");
    if balances != "full" {
        return Err(FeedError::Off(format!(
            "{schema}.inventory_balances has REPLICA IDENTITY {balances}, not FULL: its \
             UPDATEs and DELETEs cannot be mirrored (run `orgwall migrate`: migration \
             0007_balances_mirror sets it)"
        )));
    }
    let ledger = identity("inventory_ledger").unwrap_or("nothing");
    Balances::note(&b.ledger_identity, ledger.to_string());
    Ok(())
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
    // The key columns' collation: "C"/"POSIX" (their own or the database's libc default).
    let bytewise = conn
        .query_text(&format!(
            "SELECT bool_and(CASE WHEN a.attcollation = 100 \
                 THEN d.datlocprovider = 'c' AND d.datcollate IN ('C', 'POSIX') \
                 ELSE co.collname IN ('C', 'POSIX') END) \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
             JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database() \
             WHERE a.attrelid = '{}.inventory_balances'::regclass \
               AND a.attname IN ('org_id', 'item_id', 'location_id', 'lot_id')",
            schema
        ))
        .await?
        .first()
        .and_then(|r| cell(r, 0))
        == Some("t");
    // `*` is answered only for the table exactly as migration 0003 creates it.
    let mut by_attnum: Vec<(i64, &str)> = rows
        .iter()
        .filter_map(|r| Some((cell(r, 2)?.parse().ok()?, cell(r, 0)?)))
        .collect();
    by_attnum.sort_unstable();
    let names: Vec<&str> = by_attnum.iter().map(|&(_, n)| n).collect();
    let star = names == super::shape::STAR.map(|c| c.name());
    let updated_at = meta("updated_at")
        .ok()
        .filter(|m| m.type_oid == answer::TIMESTAMPTZ);
    let cols = Columns {
        bytewise,
        star: star && updated_at.is_some(),
        names: names.iter().map(|n| n.to_string()).collect(),
        org_id: meta("org_id")?,
        item_id: meta("item_id")?,
        location_id: meta("location_id")?,
        lot_id: meta("lot_id")?,
        quantity: meta("quantity")?,
        updated_at,
    };
    if !answer::supported(&cols) {
        return Err(FeedError::Off(
            "inventory_balances key columns must be text and quantity numeric".into(),
        ));
    }
    Ok(cols)
}

/// Makes sure the publication exists and carries both tables: `inventory_balances` (the rows
/// the cache mirrors) and the ledger (whose inserts the stream checks against the balance
/// changes of the same transaction). A publication of an older Orgwall (the ledger only)
/// gets `inventory_balances` added; its identity was checked first, so its updates keep
/// working.
async fn ensure_publication(
    conn: &mut ServerConn,
    schema: &str,
    publication: &str,
) -> Result<(), FeedError> {
    let published = conn
        .query_text(&format!(
            "SELECT tablename::text FROM pg_catalog.pg_publication_tables \
             WHERE pubname = {} AND schemaname = {}",
            quote_literal(publication),
            quote_literal(schema)
        ))
        .await?;
    let has = |t: &str| published.iter().any(|r| cell(r, 0) == Some(t));
    let exists = !published.is_empty()
        || !conn
            .query_text(&format!(
                "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {}",
                quote_literal(publication)
            ))
            .await?
            .is_empty();
    let sql = match (exists, has("inventory_ledger"), has("inventory_balances")) {
        (true, true, true) => return Ok(()),
        (false, ..) => format!(
            "CREATE PUBLICATION {publication} FOR TABLE {schema}.inventory_balances, \
             {schema}.inventory_ledger"
        ),
        (true, ledger, balances) => {
            let missing: Vec<String> = [
                ("inventory_balances", balances),
                ("inventory_ledger", ledger),
            ]
            .iter()
            .filter(|(_, there)| !there)
            .map(|(t, _)| format!("{schema}.{t}"))
            .collect();
            format!(
                "ALTER PUBLICATION {publication} ADD TABLE {}",
                missing.join(", ")
            )
        }
    };
    match conn.query_text(&sql).await {
        Ok(_) => {
            tracing::info!(publication, "published inventory_balances and the ledger");
            Ok(())
        }
        // Another proxy created or altered it first.
        Err(UpstreamError::Rejected { code, .. }) if code == "42710" => Ok(()),
        Err(e) => Err(e.into()),
    }
}
