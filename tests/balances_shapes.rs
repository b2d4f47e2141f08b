//! The lookups apps write (issue 19), answered by the cache and compared with PostgreSQL's
//! answers (a proxy without the cache, same rewrite): without the lot or the location
//! (several rows), IN lists and `= ANY($n)` (text and binary arrays), org_id conditions,
//! ORDER BY key columns, per-item and per-location totals — every message byte for byte
//! (rows as a multiset where PostgreSQL's order is its plan's), and every one a cache hit.
//! Hostile tenant inputs: another org's org_id, ids or locations; malformed arrays.
use bytes::BytesMut;
use orgwall_e2e::balances::{
    cached_proxy, compare_describe, compare_on, compare_simple_rows, counter, raw_pair,
    render_rows, sort_data_rows, stats, wait_caught_up,
};
use orgwall_e2e::raw::{bind_execute_text, parse};
use orgwall_e2e::tenancy::{self, TENANT_A};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy};
use postgres_protocol::message::frontend;

/// More of tenant A's balances (several lots and locations per item, assorted scales).
const MORE: &str = "INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta, reason) VALUES \
    ('org_a', 'i_a1', 'l_a1', 'LOT-1', 2.50, 'shapes'), \
    ('org_a', 'i_a1', 'l_a2', NULL, -1, 'shapes'), \
    ('org_a', 'i_a1', 'l_a2', 'LOT-2', 0.125, 'shapes'), \
    ('org_a', 'i_a2', 'l_a1', 'LOT-1', 7, 'shapes')";

const COLS: &str = "SELECT item_id, location_id, lot_id, quantity, org_id FROM inventory_balances";

/// Several rows, no ORDER BY: compared as a multiset.
fn unordered_sqls() -> Vec<String> {
    [
        "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1'",
        "SELECT location_id, quantity FROM inventory_balances WHERE item_id = 'i_a1'",
        "SELECT lot_id FROM public.inventory_balances b WHERE b.item_id IN ('i_a1', 'i_a2', 'i_a1') AND b.location_id IN ('l_a2', 'l_a1')",
    ]
    .map(String::from)
    .to_vec()
}

/// Ordered (or at most one row): compared message for message.
fn ordered_sqls() -> Vec<String> {
    let mut v: Vec<String> = [
        "WHERE item_id = 'i_a1' ORDER BY location_id, lot_id",
        "WHERE item_id = 'i_a1' ORDER BY location_id DESC, lot_id DESC",
        "WHERE item_id IN ('i_a1', 'i_a2', 'i_b1') ORDER BY item_id, location_id, lot_id",
        "WHERE item_id = 'i_a1' AND lot_id IN ('LOT-1', 'LOT-2') ORDER BY lot_id",
        "WHERE item_id = 'i_a1' AND lot_id IS NULL ORDER BY location_id",
        // Hostile: another tenant's org, ids and locations.
        "WHERE org_id = 'org_b' AND item_id = 'i_b1'",
        "WHERE org_id IN ('org_a', 'org_b') AND item_id IN ('i_a1', 'i_b1') ORDER BY item_id, location_id, lot_id",
        "WHERE item_id = 'i_b1' AND location_id = 'l_b1' AND lot_id IS NULL",
    ]
    .iter()
    .map(|w| format!("{COLS} {w}"))
    .collect();
    v.extend(
        [
            "SELECT item_id AS location_id, location_id AS item_id FROM inventory_balances WHERE item_id IN ('i_a1', 'i_a2') ORDER BY location_id, item_id DESC, lot_id",
            "SELECT sum(quantity) FROM inventory_balances WHERE location_id = 'l_a2'",
            "SELECT sum(quantity) AS total FROM inventory_balances WHERE location_id IN ('l_a1', 'l_a2')",
            "SELECT sum(quantity) FROM inventory_balances WHERE location_id = 'l_b1'",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1'",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id IN ('i_a1', 'i_a2')",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i_a1' AND lot_id IS NULL",
            "SELECT sum(quantity) FROM inventory_balances WHERE org_id = 'org_b' AND item_id = 'i_b1'",
        ]
        .map(String::from),
    );
    v
}

type Param = Box<dyn tokio_postgres::types::ToSql + Sync>;

/// tokio-postgres (binary parameters, `text[]` arrays, binary results) through both proxies.
async fn compare_extended(cached: &TestProxy, plain: &TestProxy) -> u64 {
    let a = connect(&cached.conn_str(TENANT_A)).await;
    let b = connect(&plain.conn_str(TENANT_A)).await;
    let any_items = "SELECT item_id, location_id, lot_id, quantity FROM inventory_balances \
                     WHERE item_id = ANY($1) ORDER BY item_id, location_id, lot_id";
    let lists: [Vec<Option<&str>>; 4] = [
        vec![Some("i_a1"), Some("i_a2"), Some("i_b1")],
        vec![],
        vec![None, Some("i_a2")],
        vec![Some("i_b1"), Some("i_b2")],
    ];
    let mut n = 0;
    for list in &lists {
        let x = a.query(any_items, &[list]).await.expect("cached");
        let y = b.query(any_items, &[list]).await.expect("plain");
        assert_eq!(
            render_rows(x, true),
            render_rows(y, true),
            "{any_items} {list:?}"
        );
        n += 1;
    }
    let cases: [(&str, Vec<Param>, bool); 4] = [
        (
            "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $1 AND location_id = ANY($2)",
            vec![Box::new("i_a1"), Box::new(vec!["l_a1", "l_a2"])],
            false,
        ),
        (
            "SELECT sum(quantity) FROM inventory_balances WHERE location_id = $1",
            vec![Box::new("l_a2")],
            true,
        ),
        (
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = ANY($1) AND location_id = $2",
            vec![Box::new(vec!["i_a1", "i_a2"]), Box::new("l_a1")],
            true,
        ),
        (
            "SELECT org_id, quantity FROM inventory_balances WHERE org_id = $1 AND item_id = $2",
            vec![Box::new("org_b"), Box::new("i_b1")],
            true,
        ),
    ];
    for (sql, params, ordered) in &cases {
        let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|b| b.as_ref()).collect();
        let x = a.query(*sql, &p).await.expect("cached");
        let y = b.query(*sql, &p).await.expect("plain");
        assert_eq!(render_rows(x, *ordered), render_rows(y, *ordered), "{sql}");
        n += 1;
    }
    n
}

/// `= ANY($1)` with a text-format array, by hand: the strict forms read here answered alike,
/// malformed or unusual ones (left to PostgreSQL) fail or succeed alike.
async fn compare_text_arrays(cached: &TestProxy, plain: &TestProxy) {
    let (mut a, mut b) = raw_pair(cached, plain).await;
    let sql = "SELECT location_id, quantity FROM inventory_balances WHERE item_id = ANY($1) \
               ORDER BY location_id, lot_id";
    for value in [
        Some("{i_a1,i_a2}"),
        Some(r#"{"i_a1",NULL,"i_b1"}"#),
        Some("{}"),
        None,
        Some("{ i_a1 , i_a2 }"),
        Some("{i_a1,i_a2"),
        Some("i_a1"),
        Some("[1:2]={i_a1,i_a2}"),
    ] {
        let mut out = BytesMut::new();
        parse(&mut out, "", sql);
        bind_execute_text(&mut out, "", &[value]);
        frontend::sync(&mut out);
        let mut answers = Vec::new();
        for conn in [&mut a, &mut b] {
            let msgs: Vec<(u8, Vec<u8>)> = conn
                .exchange(&out, sql)
                .await
                .into_iter()
                .map(|m| (m.tag, m.body))
                .collect();
            answers.push(msgs);
        }
        assert_eq!(answers[0], answers[1], "array parameter {value:?}");
    }
}

#[tokio::test]
async fn natural_lookups_are_answered_from_memory_as_postgres_answers_them() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_shapes").await;
        tenancy::admin_direct(&db)
            .await
            .batch_execute(MORE)
            .await
            .expect("more balances");
        let cached = cached_proxy(&db).await;
        let plain = tenancy::tenant_proxy(&db, ProxyOptions::pool(8, "transaction")).await;
        wait_caught_up(&db, &cached).await;
        let before = counter(&stats(&cached).await, "hits");
        let (unordered, ordered) = (unordered_sqls(), ordered_sqls());
        compare_simple_rows(&cached, &plain, &unordered, false).await;
        compare_simple_rows(&cached, &plain, &ordered, true).await;
        let extended = compare_extended(&cached, &plain).await;
        let s = stats(&cached).await;
        let want = (unordered.len() + ordered.len()) as u64 + extended;
        assert_eq!(
            counter(&s, "hits") - before,
            want,
            "every lookup answered from memory: {s:?}"
        );
        let before = counter(&stats(&cached).await, "hits");
        compare_text_arrays(&cached, &plain).await;
        let s = stats(&cached).await;
        // The four arrays read here (three valid, one NULL); PostgreSQL read the others.
        assert_eq!(counter(&s, "hits") - before, 4, "{s:?}");
    })
    .await;
}

/// Rows compared as a multiset must still be every row PostgreSQL has: the helper's sort
/// keeps the other messages where they are.
#[test]
fn sorting_rows_keeps_the_other_messages_in_place() {
    let mut m = vec![
        (b'T', vec![1]),
        (b'D', vec![3]),
        (b'D', vec![2]),
        (b'C', vec![0]),
    ];
    sort_data_rows(&mut m);
    assert_eq!(
        m,
        vec![
            (b'T', vec![1]),
            (b'D', vec![2]),
            (b'D', vec![3]),
            (b'C', vec![0])
        ]
    );
}

/// Balance rows with `updated_at` values that test its text form (fractions, the epoch's
/// edge) and one PostgreSQL has but the cache does not reproduce (`infinity`).
const TIMES: &str = "UPDATE inventory_balances SET updated_at = CASE \
    WHEN item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL THEN '2026-12-05 04:21:17.5+00'::timestamptz \
    WHEN lot_id = 'LOT-1' AND item_id = 'i_a1' THEN '1999-12-31 23:59:59.999999+00' \
    WHEN item_id = 'i_a2' AND lot_id = 'LOT-1' THEN 'infinity' \
    ELSE '2000-01-01 00:00:00+00' END";

/// `SELECT *` and `updated_at` (issue 19): RowDescription (types, typmods, table OID and
/// attnums) and every row byte for byte as PostgreSQL sends them — text in a UTC session,
/// binary through tokio-postgres — answered from the mirrored rows; a session in another
/// zone gets PostgreSQL's own text (the cache does not answer it); direct writes to
/// `inventory_balances` (a lower scale, a moved and a deleted row) reach the mirror.
#[tokio::test]
async fn every_column_and_star_are_answered_as_postgres_answers_them() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_star").await;
        let admin = tenancy::admin_direct(&db).await;
        // Not ISO by default: the cache's own connections read `updated_at` in ISO anyway
        // (tokio-postgres asks for ISO itself, the raw connections below set it).
        admin
            .batch_execute(&format!("ALTER DATABASE {} SET DateStyle = 'SQL, DMY'", db.name))
            .await
            .expect("datestyle");
        admin.batch_execute(MORE).await.expect("more balances");
        admin.batch_execute(TIMES).await.expect("timestamps");
        let cached = cached_proxy(&db).await;
        let plain = tenancy::tenant_proxy(&db, ProxyOptions::pool(8, "transaction")).await;
        wait_caught_up(&db, &cached).await;
        let (mut a, mut b) = raw_pair(&cached, &plain).await;
        let point = "SELECT * FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL";
        let served = [
            point.to_string(),
            "SELECT updated_at, quantity AS q FROM inventory_balances WHERE item_id = 'i_a1' ORDER BY location_id, lot_id".into(),
            "SELECT b.*, b.updated_at AS at FROM inventory_balances b WHERE b.item_id IN ('i_a1', 'i_b1') ORDER BY b.location_id DESC, b.lot_id".into(),
            "SELECT * FROM inventory_balances WHERE org_id = 'org_b' AND item_id = 'i_b1'".into(),
        ];
        // The infinite timestamp: PostgreSQL answers.
        let infinite = "SELECT * FROM inventory_balances WHERE item_id = 'i_a2' AND location_id = 'l_a1' AND lot_id = 'LOT-1'".to_string();
        let iso_utc = ["SET DateStyle = ISO".into(), "SET TimeZone = 'Etc/UTC'".into()];
        compare_on(&mut a, &mut b, &iso_utc, true).await;
        let hits = || async { counter(&stats(&cached).await, "hits") };
        let before = hits().await;
        compare_on(&mut a, &mut b, &served, true).await;
        assert_eq!(hits().await - before, served.len() as u64, "every one answered from memory");
        let before = hits().await;
        compare_on(&mut a, &mut b, std::slice::from_ref(&infinite), true).await;
        assert_eq!(hits().await, before, "infinity is PostgreSQL's to print");

        // Another zone: the same bytes, from PostgreSQL (text timestamps are not printed here).
        compare_on(&mut a, &mut b, &["SET TimeZone = 'America/St_Johns'".into()], true).await;
        let before = hits().await;
        compare_on(&mut a, &mut b, &served, true).await;
        let quantity_only = "SELECT quantity FROM inventory_balances WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL";
        compare_on(&mut a, &mut b, &[quantity_only.into()], true).await;
        // Only the last (no updated_at, and org_b's empty answer) came from memory.
        assert_eq!(hits().await - before, 2);

        // Binary results (tokio-postgres) and Describe: from memory, whatever the zone.
        let x = connect(&cached.conn_str(TENANT_A)).await;
        let y = connect(&plain.conn_str(TENANT_A)).await;
        let star = "SELECT * FROM inventory_balances WHERE item_id = ANY($1) ORDER BY item_id, location_id, lot_id";
        let items = vec!["i_a1", "i_b2"];
        let before = hits().await;
        assert_eq!(
            render_rows(x.query(star, &[&items]).await.expect("cached"), true),
            render_rows(y.query(star, &[&items]).await.expect("plain"), true),
        );
        assert_eq!(hits().await - before, 1);
        compare_describe(&cached, &plain, &[(star, &[]), ("SELECT updated_at FROM inventory_balances WHERE item_id = $1", &[])]).await;

        // Direct writes to the table (a reconciliation job's): a lower scale, a moved row, a
        // deleted row. The mirror follows; totals stay PostgreSQL's.
        admin
            .batch_execute(
                "UPDATE inventory_balances SET quantity = 3, updated_at = '2001-02-03 04:05:06.7+00' \
                   WHERE org_id = 'org_a' AND item_id = 'i_a1' AND location_id = 'l_a2' AND lot_id = 'LOT-2'; \
                 UPDATE inventory_balances SET lot_id = 'LOT-9' \
                   WHERE org_id = 'org_a' AND item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id = 'LOT-1'; \
                 DELETE FROM inventory_balances WHERE org_id = 'org_a' AND item_id = 'i_a2' AND lot_id = 'LOT-1'",
            )
            .await
            .expect("direct writes");
        wait_caught_up(&db, &cached).await;
        compare_on(&mut a, &mut b, &["SET TimeZone = 'UTC'".into()], true).await;
        let before = hits().await;
        compare_on(&mut a, &mut b, &served, true).await;
        assert_eq!(hits().await - before, served.len() as u64);
        let sums = [
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i_a1'".into(),
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i_a2'".into(),
            "SELECT sum(quantity) FROM inventory_balances WHERE location_id = 'l_a2'".into(),
            "SELECT sum(quantity) FROM inventory_balances WHERE location_id = 'l_a1'".into(),
            "SELECT * FROM inventory_balances WHERE item_id = 'i_a2' ORDER BY location_id, lot_id".into(),
        ];
        compare_on(&mut a, &mut b, &sums, true).await;
    })
    .await;
}
