//! The balance cache end to end: a proxy with `[balances] enabled = true` answers balance
//! lookups from memory, and its bytes equal those of a proxy without the cache (which sends
//! the same rewritten SQL to PostgreSQL), in the simple and extended protocols, text and binary.
use orgwall_e2e::balances::{
    assert_cache_matches_ledger, cached_proxy, compare_describe, compare_simple, counter,
    first_column, ledger_rows, lookup_sql, movement, numeric_integer, render_rows, stats,
    tenant_keys, wait_caught_up, wait_serving, wait_stats, TENANT_INSERT,
};
use orgwall_e2e::proxy::Login;
use orgwall_e2e::tenancy::{self, RawValue, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy};

const KEYS: &[(&str, &str, Option<&str>)] = &[
    ("i_a1", "l_a1", None),
    ("i_a2", "l_a2", Some("LOT-7")),
    ("i_a2", "l_a2", None),
    ("i_a1", "l_a2", None),
    ("i_b1", "l_b1", None),
    ("i_missing", "l_a1", None),
];

/// Extended protocol (tokio-postgres: binary results) through both proxies.
async fn compare_extended(cached: &TestProxy, plain: &TestProxy) {
    let a = connect(&cached.conn_str(TENANT_A)).await;
    let b = connect(&plain.conn_str(TENANT_A)).await;
    let point = "SELECT quantity, org_id, location_id, lot_id FROM inventory_balances \
                 WHERE item_id = $1 AND location_id = $2 AND lot_id = $3";
    let point_null = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";
    let total = "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1";
    let render = |rows| render_rows(rows, true);
    for &(item, loc, lot) in KEYS {
        let (x, y) = match lot {
            Some(l) => (
                a.query(point, &[&item, &loc, &l]).await.expect("cached"),
                b.query(point, &[&item, &loc, &l]).await.expect("plain"),
            ),
            None => (
                a.query(point_null, &[&item, &loc]).await.expect("cached"),
                b.query(point_null, &[&item, &loc]).await.expect("plain"),
            ),
        };
        assert_eq!(render(x), render(y), "extended point {item} {loc} {lot:?}");
        let x = a.query(total, &[&item]).await.expect("cached total");
        let y = b.query(total, &[&item]).await.expect("plain total");
        assert_eq!(render(x), render(y), "extended total {item}");
    }
}

/// Statements described (Parse + Describe S) through both proxies: undeclared and declared
/// parameter types, points, totals, aliases.
const DESCRIBED: &[(&str, &[u32])] = &[
    (
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        &[],
    ),
    (
        "SELECT quantity AS q, lot_id FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id = $3",
        &[25, 0, 1043],
    ),
    (
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
        &[],
    ),
    (
        "SELECT sum(quantity) AS total FROM inventory_balances WHERE item_id = 'i_a1'",
        &[],
    ),
];

fn all_simple_sqls() -> Vec<String> {
    let mut sqls: Vec<String> = KEYS
        .iter()
        .map(|&(i, l, lot)| lookup_sql(i, l, lot))
        .collect();
    for item in ["i_a1", "i_a2", "i_b1", "i_missing"] {
        sqls.push(format!(
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = '{item}'"
        ));
        sqls.push(format!(
            "SELECT org_id, location_id, quantity AS q FROM public.inventory_balances b \
             WHERE b.item_id = '{item}' AND b.location_id = 'l_a1' AND b.lot_id IS NULL"
        ));
    }
    sqls
}

#[tokio::test]
async fn cached_answers_are_byte_identical_including_after_concurrent_writes() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_diff").await;
        let cached = cached_proxy(&db).await;
        let plain = tenancy::tenant_proxy(&db, ProxyOptions::pool(8, "transaction")).await;
        wait_serving(&cached).await;
        compare_simple(&cached, &plain, &all_simple_sqls()).await;
        compare_extended(&cached, &plain).await;
        compare_describe(&cached, &plain, DESCRIBED).await;
        let hits: u64 = stats(&cached).await["hits"].parse().expect("hits");
        assert!(hits > 0, "the cache answered nothing");

        // Concurrent writers (direct to PostgreSQL), with assorted scales and signs.
        let mut writers = Vec::new();
        for w in 0..4 {
            let conn = db.direct_conn_str();
            writers.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                let deltas = ["1", "-0.25", "2.500", "-3", "0.0001", "7.10"];
                for n in 0..60 {
                    let (item, loc, lot) = KEYS[(w + n) % 3];
                    let org = if item == "i_b1" { "org_b" } else { "org_a" };
                    c.execute(
                        "INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta, reason) \
                         VALUES ($1, $2, $3, $4, $5::text::numeric, 'test')",
                        &[&org, &item, &loc, &lot, &deltas[(w * 7 + n) % deltas.len()]],
                    )
                    .await
                    .expect("ledger insert");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        wait_caught_up(&db, &cached).await;
        compare_simple(&cached, &plain, &all_simple_sqls()).await;
        compare_extended(&cached, &plain).await;

        // Cache == SUM(ledger) == inventory_balances for every key, both tenants.
        assert_cache_matches_ledger(&db, &cached).await;
    })
    .await;
}

/// The integer value of a binary `numeric` (base-10000 digits, no fraction expected).
#[tokio::test]
async fn a_session_reads_its_own_ledger_writes() {
    bounded(600, async {
        let db = tenancy::tenant_db("bal_ryw").await;
        let cached = cached_proxy(&db).await;
        wait_serving(&cached).await;
        let c = connect(&cached.conn_str(TENANT_A)).await;
        let mut expected: i64 = 85; // seed: 100 - 15
        for n in 0..1000 {
            c.execute(
                "INSERT INTO inventory_ledger (item_id, location_id, quantity_delta, reason) VALUES ('i_a1', 'l_a1', 1, 'ryw')",
                &[],
            )
            .await
            .expect("insert");
            expected += 1;
            let rows = c
                .simple_query("SELECT quantity FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL")
                .await
                .expect("read");
            let got = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            if got != Some(expected.to_string()) {
                panic!("iteration {n}: stale read {got:?}, stats {:?}", stats(&cached).await);
            }
        }
        // Extended protocol: an insert prepared once and re-executed (no Parse per write),
        // read back through a prepared lookup with a parameter.
        let insert = c
            .prepare("INSERT INTO inventory_ledger (item_id, location_id, quantity_delta, reason) VALUES ($1, 'l_a1', 2, 'ryw')")
            .await
            .expect("prepare insert");
        let read = c
            .prepare("SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = 'l_a1' AND lot_id IS NULL")
            .await
            .expect("prepare read");
        for n in 0..300 {
            c.execute(&insert, &[&"i_a1"]).await.expect("insert");
            expected += 2;
            let raw: RawValue = c.query_one(&read, &[&"i_a1"]).await.expect("read").get(0);
            let got = numeric_integer(&raw.0.expect("quantity is not NULL"));
            if got != expected {
                panic!("prepared iteration {n}: stale read {got}, stats {:?}", stats(&cached).await);
            }
        }
        let s = stats(&cached).await;
        let hits: u64 = s["hits"].parse().expect("hits");
        assert!(hits >= 1200, "reads should mostly be served by the cache: {s:?}");
        assert_eq!(s["rows_applied"], "1300", "every insert applied once: {s:?}");
    })
    .await;
}

/// A balance straight from `inventory_balances` (superuser, no cache).
async fn direct_balance(
    db: &orgwall_e2e::TestDb,
    org: &str,
    item: &str,
    loc: &str,
    lot: Option<&str>,
) -> Option<String> {
    tenancy::admin_direct(db)
        .await
        .query_opt(
            "SELECT quantity::text FROM inventory_balances WHERE org_id = $1 AND item_id = $2 \
             AND location_id = $3 AND lot_id IS NOT DISTINCT FROM $4",
            &[&org, &item, &loc, &lot],
        )
        .await
        .expect("direct balance")
        .map(|r| r.get(0))
}

/// Item 9 of "Hostile clients on shared connections": a tenant's UPDATE or DELETE of its own
/// ledger rows (a no-op one included) reaches the cache as the balance-row changes the
/// trigger of migration 0005 makes (mirrored) — the cache keeps serving every tenant, nothing
/// is reloaded, and its answers equal `inventory_balances` for that tenant and the other.
#[tokio::test]
async fn ledger_updates_and_deletes_are_mirrored_not_resyncs() {
    bounded(180, async {
        let db = tenancy::tenant_db("bal_deltas").await;
        let cached = cached_proxy(&db).await;
        let s = wait_serving(&cached).await;
        assert_eq!(s["ledger_replica_identity"], "full", "{s:?}");
        let a = connect(&cached.conn_str(TENANT_A)).await;
        let b = connect(&cached.conn_str(TENANT_B)).await;
        // The attack: a no-op UPDATE of the tenant's own row.
        a.simple_query("UPDATE inventory_ledger SET reason = reason WHERE id = 'led_a1'")
            .await
            .expect("no-op update");
        // A new quantity; a row moved to another item, location and lot (extended protocol);
        // a delete.
        a.simple_query("UPDATE inventory_ledger SET quantity_delta = 2.25 WHERE id = 'led_a4'")
            .await
            .expect("update quantity");
        a.execute(
            "UPDATE inventory_ledger SET item_id = $1, location_id = $2, lot_id = $3, \
             quantity_delta = $4::text::numeric WHERE id = $5",
            &[&"i_a2", &"l_a2", &"LOT-7", &"-0.5", &"led_a2"],
        )
        .await
        .expect("move a row");
        a.simple_query("DELETE FROM inventory_ledger WHERE id = 'led_a1'")
            .await
            .expect("delete");
        // Read-your-writes holds for UPDATE/DELETE too: 100 - 15, then +15 (moved), -100.
        let got = first_column(
            &a.simple_query(&lookup_sql("i_a1", "l_a1", None))
                .await
                .expect("read back"),
        );
        assert_eq!(got, vec![Some("0".to_string())]);
        // The other tenant: a delete, an update in a transaction, one rolled back.
        b.simple_query("DELETE FROM inventory_ledger WHERE id = 'led_b3'")
            .await
            .expect("delete b");
        b.batch_execute(
            "BEGIN; UPDATE inventory_ledger SET quantity_delta = quantity_delta + 0.125 \
             WHERE id = 'led_b4'; COMMIT",
        )
        .await
        .expect("update b");
        b.batch_execute(
            "BEGIN; UPDATE inventory_ledger SET quantity_delta = 999 WHERE id = 'led_b1'; ROLLBACK",
        )
        .await
        .expect("rolled back update");
        wait_caught_up(&db, &cached).await;

        let s = stats(&cached).await;
        assert_eq!(counter(&s, "resyncs"), 0, "{s:?}");
        assert_eq!(
            (s["serving"].as_str(), s["last_resync_reason"].as_str()),
            ("true", "")
        );
        for (org, item, loc, lot, want) in [
            ("org_a", "i_a1", "l_a1", None, "0"),
            ("org_a", "i_a2", "l_a2", Some("LOT-7"), "40.0"),
            ("org_a", "i_a3", "l_a2", None, "2.25"),
            ("org_b", "i_b2", "l_b1", Some("LOT-7"), "12"),
            ("org_b", "i_b4", "l_b2", None, "50.125"),
            ("org_b", "i_b1", "l_b1", None, "7"),
        ] {
            let direct = direct_balance(&db, org, item, loc, lot).await;
            assert_eq!(direct.as_deref(), Some(want), "{org} {item} {loc} {lot:?}");
        }
        // Every key and total, as each tenant, answered by the cache, equal to the table.
        let keys = assert_cache_matches_ledger(&db, &cached).await;
        assert_eq!(keys, 6, "the seed's six keys, one of them now at zero");
        assert_eq!(counter(&stats(&cached).await, "resyncs"), 0);
    })
    .await;
}

/// The cache mirrors `inventory_balances`, so the ledger's replica identity no longer
/// matters: a ledger UPDATE (the trigger updates the balance row) is mirrored without a
/// resync. If `inventory_balances` leaves the publication behind the cache's back, the next
/// ledger insert arrives without its balance change: the cache resyncs, says why, publishes
/// the table again and is exact.
#[tokio::test]
async fn ledger_identity_no_longer_matters_and_an_unpublished_mirror_resyncs() {
    bounded(180, async {
        let db = tenancy::tenant_db("bal_update").await;
        db.psql("ALTER TABLE inventory_ledger REPLICA IDENTITY DEFAULT")
            .await;
        let cached = cached_proxy(&db).await;
        let s = wait_serving(&cached).await;
        assert_eq!(s["ledger_replica_identity"], "default", "{s:?}");
        let a = connect(&cached.conn_str(TENANT_A)).await;
        a.simple_query("UPDATE inventory_ledger SET quantity_delta = 90 WHERE id = 'led_a1'")
            .await
            .expect("update");
        wait_caught_up(&db, &cached).await;
        assert_eq!(
            direct_balance(&db, "org_a", "i_a1", "l_a1", None)
                .await
                .as_deref(),
            Some("75")
        );
        assert_cache_matches_ledger(&db, &cached).await;
        assert_eq!(counter(&stats(&cached).await, "resyncs"), 0);

        db.psql("ALTER PUBLICATION orgwall_ledger DROP TABLE inventory_balances")
            .await;
        a.simple_query(
            "INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, reason) \
             VALUES ('i_a1', 'l_a1', NULL, 5, 'unpublished')",
        )
        .await
        .expect("insert");
        let s = wait_stats(
            &cached,
            400,
            "no resync after the unpublished change",
            |s| counter(s, "resyncs") >= 1 && s["serving"] == "true",
        )
        .await;
        let why = &s["last_resync_reason"];
        assert!(why.contains("changed no inventory_balances row"), "{s:?}");
        wait_caught_up(&db, &cached).await;
        assert_cache_matches_ledger(&db, &cached).await;
    })
    .await;
}

/// Without migration 0007 (`inventory_balances` not `REPLICA IDENTITY FULL`) the table is
/// never published — its updates, and so every ledger insert, would fail — and the cache
/// stays off, saying why; PostgreSQL answers and writes keep working.
#[tokio::test]
async fn without_the_mirror_migration_the_cache_stays_off() {
    bounded(180, async {
        let db = tenancy::tenant_db("bal_no_0007").await;
        db.psql("ALTER TABLE inventory_balances REPLICA IDENTITY DEFAULT")
            .await;
        let cached = cached_proxy(&db).await;
        let s = wait_stats(&cached, 400, "the cache never said why it is off", |s| {
            !s["off_reason"].is_empty()
        })
        .await;
        assert_eq!(s["serving"], "false", "{s:?}");
        assert!(s["off_reason"].contains("0007_balances_mirror"), "{s:?}");
        let a = connect(&cached.conn_str(TENANT_A)).await;
        a.simple_query(
            "INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, reason) \
             VALUES ('i_a1', 'l_a1', NULL, 5, 'still writable')",
        )
        .await
        .expect("ledger inserts still work");
        let rows = a
            .query(&lookup_sql("i_a1", "l_a1", None), &[])
            .await
            .expect("lookup");
        assert_eq!(rows.len(), 1);
        assert_eq!(counter(&stats(&cached).await, "hits"), 0);
    })
    .await;
}

/// One writer through the proxy: `rows` movements as `login`, alternating the simple protocol
/// with literals, a prepared statement, explicit multi-row transactions and rolled-back ones
/// (which must never reach the cache). Returns the movements that committed.
async fn proxy_writer(proxy_conn: String, login: Login, w: usize, rows: usize) -> u64 {
    let c = connect(&proxy_conn).await;
    let insert = c.prepare(TENANT_INSERT).await.expect("prepare insert");
    let mut committed = 0u64;
    let mut n = 0;
    while n < rows {
        let (item, loc, lot, delta) = movement(login, w, n);
        match n % 4 {
            0 => {
                let lot = lot.map_or("NULL".to_string(), |l| format!("'{l}'"));
                c.simple_query(&format!(
                    "INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, reason) \
                     VALUES ('{item}', '{loc}', {lot}, {delta}, 'e2e')"
                ))
                .await
                .expect("simple insert");
                committed += 1;
            }
            1 => {
                c.execute(&insert, &[&item, &loc, &lot, &delta])
                    .await
                    .expect("prepared insert");
                committed += 1;
            }
            2 => {
                c.batch_execute("BEGIN").await.expect("begin");
                for k in 0..3 {
                    let (item, loc, lot, delta) = movement(login, w, n + k);
                    c.execute(&insert, &[&item, &loc, &lot, &delta])
                        .await
                        .expect("insert in transaction");
                }
                c.batch_execute("COMMIT").await.expect("commit");
                committed += 3;
            }
            _ => {
                c.batch_execute("BEGIN").await.expect("begin");
                c.execute(&insert, &[&item, &loc, &lot, &"1000000"])
                    .await
                    .expect("insert to roll back");
                c.batch_execute("ROLLBACK").await.expect("rollback");
            }
        }
        n += 1;
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_through_the_proxy_then_quiesce_cache_equals_ledger_sums() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_writers").await;
        let cached = cached_proxy(&db).await;
        wait_serving(&cached).await;
        let seed_rows = ledger_rows(&db).await;

        // Three writers per tenant, while two readers keep the cache answering lookups.
        let mut writers = Vec::new();
        for (w, login) in [TENANT_A, TENANT_B, TENANT_A, TENANT_B, TENANT_A, TENANT_B]
            .into_iter()
            .enumerate()
        {
            writers.push(tokio::spawn(proxy_writer(
                cached.conn_str(login),
                login,
                w,
                80,
            )));
        }
        let mut readers = Vec::new();
        for login in [TENANT_A, TENANT_B] {
            let conn = cached.conn_str(login);
            readers.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                let (items, locs) = tenant_keys(login);
                for n in 0..200 {
                    c.simple_query(&lookup_sql(items[n % 3], locs[n % 2], None))
                        .await
                        .expect("concurrent lookup");
                }
            }));
        }
        let mut committed = 0;
        for w in writers {
            committed += w.await.expect("writer");
        }
        for r in readers {
            r.await.expect("reader");
        }

        wait_caught_up(&db, &cached).await;
        let keys = assert_cache_matches_ledger(&db, &cached).await;
        let ledger_rows = ledger_rows(&db).await;
        assert_eq!(
            ledger_rows - seed_rows,
            committed as i64,
            "committed movements"
        );
        let s = stats(&cached).await;
        assert_eq!(
            counter(&s, "rows_applied"),
            committed,
            "every committed movement applied exactly once, no rolled-back one: {s:?}"
        );
        assert_eq!(counter(&s, "resyncs"), 0, "{s:?}");
        println!(
            "concurrent writers: {committed} movements from 6 connections, {keys} keys compared, \
             {} transactions applied",
            counter(&s, "transactions_applied")
        );
    })
    .await;
}

/// Reads in a transaction, or by default at SERIALIZABLE/REPEATABLE READ, go to PostgreSQL.
#[tokio::test]
async fn transactions_and_strict_isolation_read_from_postgres() {
    bounded(120, async {
        let db = tenancy::tenant_db("bal_isolation").await;
        let cached = cached_proxy(&db).await;
        wait_serving(&cached).await;
        let c = connect(&cached.conn_str(TENANT_A)).await;
        let sql = lookup_sql("i_a1", "l_a1", None);
        let hits = || async { counter(&stats(&cached).await, "hits") };
        let read = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| {
            first_column(&msgs).into_iter().next().flatten()
        };
        let before = hits().await;
        assert_eq!(
            read(c.simple_query(&sql).await.expect("lookup")).as_deref(),
            Some("85")
        );
        assert_eq!(hits().await, before + 1, "served from the cache");
        for (setup, teardown) in [
            ("BEGIN", "COMMIT"),
            (
                "SET default_transaction_isolation = 'serializable'",
                "RESET default_transaction_isolation",
            ),
            (
                "SET default_transaction_isolation TO 'repeatable read'",
                "RESET default_transaction_isolation",
            ),
        ] {
            c.batch_execute(setup).await.expect(setup);
            let before = hits().await;
            assert_eq!(
                read(c.simple_query(&sql).await.expect("lookup")).as_deref(),
                Some("85"),
                "{setup}"
            );
            assert_eq!(hits().await, before, "{setup}: must go to PostgreSQL");
            c.batch_execute(teardown).await.expect(teardown);
        }
        let before = hits().await;
        assert_eq!(
            read(c.simple_query(&sql).await.expect("lookup")).as_deref(),
            Some("85")
        );
        assert_eq!(
            hits().await,
            before + 1,
            "served from the cache again: {:?}",
            stats(&cached).await
        );
    })
    .await;
}

/// A column added to `inventory_balances` while the cache streams: the stream's next
/// Relation message differs from the columns the round started with, so the cache reloads;
/// `SELECT *` (no longer the six columns it knows) is then PostgreSQL's to answer, byte for
/// byte, while lookups of named columns stay in memory.
#[tokio::test]
async fn a_column_added_to_the_table_resyncs_and_star_goes_to_postgres() {
    bounded(180, async {
        let db = tenancy::tenant_db("bal_alter").await;
        let cached = cached_proxy(&db).await;
        let plain = tenancy::tenant_proxy(&db, ProxyOptions::pool(4, "transaction")).await;
        wait_serving(&cached).await;
        db.psql("ALTER TABLE inventory_balances ADD COLUMN note text DEFAULT 'n'")
            .await;
        let a = connect(&cached.conn_str(TENANT_A)).await;
        a.simple_query(
            "INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, reason) \
             VALUES ('i_a1', 'l_a1', NULL, 5, 'after alter')",
        )
        .await
        .expect("insert");
        let s = wait_stats(&cached, 400, "no resync after ALTER TABLE", |s| {
            counter(s, "resyncs") >= 1 && s["serving"] == "true"
        })
        .await;
        assert!(s["last_resync_reason"].contains("columns changed"), "{s:?}");
        wait_caught_up(&db, &cached).await;
        let star = "SELECT * FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL".to_string();
        let hits = counter(&stats(&cached).await, "hits");
        compare_simple(&cached, &plain, std::slice::from_ref(&star)).await;
        assert_eq!(counter(&stats(&cached).await, "hits"), hits, "SELECT * left to PostgreSQL");
        compare_simple(&cached, &plain, &[lookup_sql("i_a1", "l_a1", None)]).await;
        assert_eq!(counter(&stats(&cached).await, "hits"), hits + 1);
    })
    .await;
}
