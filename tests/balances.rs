//! The balance cache end to end: a proxy with `[balances] enabled = true` answers balance
//! lookups from memory, and its bytes equal those of a proxy without the cache (which sends
//! the same rewritten SQL to PostgreSQL), in the simple and extended protocols, text and binary.

use std::collections::HashMap;
use std::time::Duration;

use orgwall_e2e::raw::RawConn;
use orgwall_e2e::tenancy::{self, RawValue, TENANT_A};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestDb, TestProxy, ADMIN};

const CACHE_TOML: &str = "[balances]\nenabled = true\n";

async fn cached_proxy(db: &TestDb) -> TestProxy {
    let extra = tenancy::tenancy_toml() + CACHE_TOML;
    TestProxy::start_with_extra(db, ProxyOptions::pool(8, "transaction"), &extra).await
}

/// `SHOW orgwall_balances` through the admin login, as a map.
async fn stats(proxy: &TestProxy) -> HashMap<String, String> {
    let admin = connect(&proxy.conn_str(ADMIN)).await;
    let mut out = HashMap::new();
    for m in admin
        .simple_query("SHOW orgwall_balances")
        .await
        .expect("show")
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.insert(
                r.get(0).unwrap_or_default().to_string(),
                r.get(1).unwrap_or_default().to_string(),
            );
        }
    }
    out
}

async fn wait_serving(proxy: &TestProxy) -> HashMap<String, String> {
    for _ in 0..200 {
        let s = stats(proxy).await;
        if s.get("serving").map(String::as_str) == Some("true") {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "balance cache never started serving: {:?}",
        stats(proxy).await
    );
}

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hi") << 32) | u64::from_str_radix(lo, 16).expect("lo")
}

/// Waits until the cache has applied everything PostgreSQL has written so far.
async fn wait_caught_up(db: &TestDb, proxy: &TestProxy) {
    let admin = tenancy::admin_direct(db).await;
    let row = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn");
    let target = parse_lsn(row.get::<_, &str>(0));
    for _ in 0..400 {
        let s = stats(proxy).await;
        if s.get("serving").map(String::as_str) == Some("true")
            && parse_lsn(&s["applied_lsn"]) >= target
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("cache did not catch up: {:?}", stats(proxy).await);
}

fn lookup_sql(item: &str, loc: &str, lot: Option<&str>) -> String {
    let lot = match lot {
        Some(l) => format!("lot_id = '{l}'"),
        None => "lot_id IS NULL".into(),
    };
    format!(
        "SELECT quantity, item_id, lot_id FROM inventory_balances \
         WHERE item_id = '{item}' AND location_id = '{loc}' AND {lot}"
    )
}

const KEYS: &[(&str, &str, Option<&str>)] = &[
    ("i_a1", "l_a1", None),
    ("i_a2", "l_a2", Some("LOT-7")),
    ("i_a2", "l_a2", None),
    ("i_a1", "l_a2", None),
    ("i_b1", "l_b1", None),
    ("i_missing", "l_a1", None),
];

/// Every message, byte for byte, of each query through both proxies.
async fn compare_simple(cached: &TestProxy, plain: &TestProxy, sqls: &[String]) {
    let mut a = RawConn::connect(cached.port).await;
    a.login(TENANT_A.name, TENANT_A.password, &cached.dbname)
        .await
        .expect("login");
    let mut b = RawConn::connect(plain.port).await;
    b.login(TENANT_A.name, TENANT_A.password, &plain.dbname)
        .await
        .expect("login");
    for sql in sqls {
        let x: Vec<(u8, Vec<u8>)> = a
            .query(sql)
            .await
            .into_iter()
            .map(|m| (m.tag, m.body))
            .collect();
        let y: Vec<(u8, Vec<u8>)> = b
            .query(sql)
            .await
            .into_iter()
            .map(|m| (m.tag, m.body))
            .collect();
        assert_eq!(x, y, "simple protocol differs for {sql}");
    }
}

/// Extended protocol (tokio-postgres: binary results) through both proxies.
async fn compare_extended(cached: &TestProxy, plain: &TestProxy) {
    let a = connect(&cached.conn_str(TENANT_A)).await;
    let b = connect(&plain.conn_str(TENANT_A)).await;
    let point = "SELECT quantity, org_id, location_id, lot_id FROM inventory_balances \
                 WHERE item_id = $1 AND location_id = $2 AND lot_id = $3";
    let point_null = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";
    let total = "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1";
    let render = |rows: Vec<tokio_postgres::Row>| -> Vec<(Vec<String>, Vec<RawValue>)> {
        rows.iter()
            .map(|r| {
                let cols = r
                    .columns()
                    .iter()
                    .map(|c| format!("{}:{}", c.name(), c.type_()))
                    .collect();
                let vals = (0..r.len()).map(|i| r.get::<_, RawValue>(i)).collect();
                (cols, vals)
            })
            .collect()
    };
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

        // Cache == SUM(ledger) == inventory_balances for every key.
        let admin = tenancy::admin_direct(&db).await;
        let rows = admin
            .query(
                "SELECT l.org_id, l.item_id, l.location_id, l.lot_id, sum(l.quantity_delta)::text, b.quantity::text \
                 FROM inventory_ledger l JOIN inventory_balances b USING (org_id, item_id, location_id) \
                 WHERE l.lot_id IS NOT DISTINCT FROM b.lot_id \
                 GROUP BY 1, 2, 3, 4, b.quantity",
                &[],
            )
            .await
            .expect("sums");
        let tenant = connect(&cached.conn_str(TENANT_A)).await;
        for r in rows {
            let (org, item, loc, lot): (String, String, String, Option<String>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let (sum, bal): (String, String) = (r.get(4), r.get(5));
            assert_eq!(sum, bal, "inventory_balances drifted for {item} {loc} {lot:?}");
            if org != TENANT_A.org_id {
                continue;
            }
            let got = tenant
                .simple_query(&lookup_sql(&item, &loc, lot.as_deref()))
                .await
                .expect("lookup");
            let value = got.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            assert_eq!(value.as_deref(), Some(sum.as_str()), "cache for {item} {loc} {lot:?}");
        }
    })
    .await;
}

/// The integer value of a binary `numeric` (base-10000 digits, no fraction expected).
fn numeric_integer(b: &[u8]) -> i64 {
    let word = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]) as i64;
    let (ndigits, weight, sign) = (word(0), word(2), word(4));
    let mut v = 0i64;
    for i in 0..=weight {
        v = v * 10_000
            + if i < ndigits {
                word(8 + 2 * i as usize)
            } else {
                0
            };
    }
    if sign == 0x4000 {
        -v
    } else {
        v
    }
}

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

#[tokio::test]
async fn an_update_on_the_ledger_forces_a_resync() {
    bounded(120, async {
        let db = tenancy::tenant_db("bal_update").await;
        let cached = cached_proxy(&db).await;
        wait_serving(&cached).await;
        let admin = tenancy::admin_direct(&db).await;
        admin
            .execute(
                "UPDATE inventory_ledger SET reason = 'tampered' WHERE id = 'led_a1'",
                &[],
            )
            .await
            .expect("update");
        for _ in 0..200 {
            let s = stats(&cached).await;
            if s["resyncs"] != "0" && s["serving"] == "true" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no resync after an UPDATE on the ledger: {:?}",
            stats(&cached).await
        );
    })
    .await;
}
