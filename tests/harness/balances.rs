//! Balance-cache fixtures (issue 5): a proxy with `[balances] enabled = true`, its state as
//! `SHOW orgwall_balances` reports it, waiting for it to serve or to catch up with PostgreSQL,
//! ledger writers through the proxy, and the full check "cache == SUM(ledger) ==
//! inventory_balances for every key", read through the proxy as each tenant.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use crate::clients::{connect, describe};
use crate::pg::TestDb;
use crate::proxy::{Login, ProxyOptions, TestProxy, ADMIN};
use crate::raw::RawConn;
use crate::tenancy::{self, RawValue, TENANT_A, TENANT_B};

/// The cache on. Reads wait up to 5 s (not the default 50 ms) for the cache to pass the fence:
/// on a loaded test machine the feed can lag, and tests that count hits must not see those
/// reads go to PostgreSQL (still correct, but not what they check).
pub const CACHE_TOML: &str = "[balances]\nenabled = true\nread_your_writes_timeout_ms = 5000\n";

/// A tenant-isolation proxy (tenants A and B, switcher) with the balance cache on.
pub async fn cached_proxy(db: &TestDb) -> TestProxy {
    cached_proxy_with(db, "").await
}

/// [`cached_proxy`] with more `[balances]` keys (TOML lines).
pub async fn cached_proxy_with(db: &TestDb, balances_keys: &str) -> TestProxy {
    let extra = tenancy::tenancy_toml() + CACHE_TOML + balances_keys;
    TestProxy::start_with_extra(db, ProxyOptions::pool(8, "transaction"), &extra).await
}

/// A binary `numeric` with no fractional digits, as an integer.
pub fn numeric_integer(b: &[u8]) -> i64 {
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

/// Rows as (column name:type, raw values), sorted unless `ordered`: extended-protocol answers
/// compared between proxies.
pub type Rendered = Vec<(Vec<String>, Vec<RawValue>)>;

pub fn render_rows(rows: Vec<tokio_postgres::Row>, ordered: bool) -> Rendered {
    let mut v: Rendered = rows
        .iter()
        .map(|r| {
            let cols = r
                .columns()
                .iter()
                .map(|c| format!("{}:{}", c.name(), c.type_()))
                .collect();
            (
                cols,
                (0..r.len()).map(|i| r.get::<_, RawValue>(i)).collect(),
            )
        })
        .collect();
    if !ordered {
        v.sort_by_key(|row| format!("{row:?}"));
    }
    v
}

/// The first column of each row of a simple query (NULL as `None`).
pub fn first_column(msgs: &[SimpleQueryMessage]) -> Vec<Option<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .collect()
}

/// `SHOW orgwall_balances` through the admin login, as a map.
pub async fn stats(proxy: &TestProxy) -> HashMap<String, String> {
    let admin = connect(&proxy.conn_str(ADMIN)).await;
    let mut out = HashMap::new();
    for m in admin
        .simple_query("SHOW orgwall_balances")
        .await
        .expect("show")
    {
        if let SimpleQueryMessage::Row(r) = m {
            out.insert(
                r.get(0).unwrap_or_default().to_string(),
                r.get(1).unwrap_or_default().to_string(),
            );
        }
    }
    out
}

/// A counter of `SHOW orgwall_balances`.
pub fn counter(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in {stats:?}"))
}

/// Polls the stats until `done` holds (at most ~`tries` × 50 ms), else panics naming `what`.
pub async fn wait_stats(
    proxy: &TestProxy,
    tries: usize,
    what: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    for _ in 0..tries {
        let s = stats(proxy).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", stats(proxy).await);
}

pub async fn wait_serving(proxy: &TestProxy) -> HashMap<String, String> {
    wait_stats(proxy, 400, "balance cache never started serving", |s| {
        s.get("serving").map(String::as_str) == Some("true")
    })
    .await
}

pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn");
    (u64::from_str_radix(hi, 16).expect("hi") << 32) | u64::from_str_radix(lo, 16).expect("lo")
}

/// Waits until the cache serves and has applied everything PostgreSQL has written so far.
pub async fn wait_caught_up(db: &TestDb, proxy: &TestProxy) {
    let admin = tenancy::admin_direct(db).await;
    let row = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn");
    let target = parse_lsn(row.get::<_, &str>(0));
    wait_stats(proxy, 800, "cache did not catch up", |s| {
        s.get("serving").map(String::as_str) == Some("true")
            && parse_lsn(&s["applied_lsn"]) >= target
    })
    .await;
}

/// A point lookup on `inventory_balances` as a tenant writes it (no org_id).
pub fn lookup_sql(item: &str, loc: &str, lot: Option<&str>) -> String {
    let lot = match lot {
        Some(l) => format!("lot_id = '{l}'"),
        None => "lot_id IS NULL".into(),
    };
    format!(
        "SELECT quantity, item_id, lot_id FROM inventory_balances \
         WHERE item_id = '{item}' AND location_id = '{loc}' AND {lot}"
    )
}

/// The items and locations a tenant may write ledger rows for (the seed's).
pub fn tenant_keys(login: Login) -> (&'static [&'static str], &'static [&'static str]) {
    if login.org_id == TENANT_A.org_id {
        (&["i_a1", "i_a2", "i_a3"], &["l_a1", "l_a2"])
    } else {
        (&["i_b1", "i_b2", "i_b4"], &["l_b1", "l_b2"])
    }
}

/// The ledger insert a tenant sends through the proxy (org_id is injected by the rewrite).
pub const TENANT_INSERT: &str = "INSERT INTO inventory_ledger \
     (item_id, location_id, lot_id, quantity_delta, reason) \
     VALUES ($1, $2, $3, $4::text::numeric, 'e2e')";

/// The `n`th movement of writer `w`: a key among the tenant's, a lot among three (NULL
/// included), a delta of assorted scale and sign.
pub fn movement(login: Login, w: usize, n: usize) -> (String, String, Option<String>, String) {
    let (items, locs) = tenant_keys(login);
    const DELTAS: [&str; 7] = ["1", "-0.25", "2.500", "-3", "0.0001", "7.10", "-1.5"];
    let lot = match (n / 2 + w) % 3 {
        0 => None,
        1 => Some("LOT-7".to_string()),
        _ => Some(format!("LOT-W{}", n % 5)),
    };
    (
        items[(w + n) % items.len()].to_string(),
        locs[(w * 3 + n) % locs.len()].to_string(),
        lot,
        DELTAS[(w * 5 + n) % DELTAS.len()].to_string(),
    )
}

/// Balance keys and figures as PostgreSQL sees them, straight from the database.
pub struct Truth {
    pub org: String,
    pub item: String,
    pub location: String,
    pub lot: Option<String>,
    pub ledger_sum: String,
    pub balance: Option<String>,
    pub equal: bool,
}

/// Every key of the ledger or of `inventory_balances`, with `SUM(quantity_delta)` and the
/// balance row (one read, one snapshot).
pub async fn truth(db: &TestDb) -> Vec<Truth> {
    let admin = tenancy::admin_direct(db).await;
    let rows = admin
        .query(
            "SELECT org_id, item_id, location_id, lot_id, coalesce(sum(delta), 0)::text, \
                    max(quantity)::text, \
                    count(quantity) = 1 AND coalesce(sum(delta), 0) = max(quantity) \
             FROM (SELECT org_id, item_id, location_id, lot_id, quantity_delta AS delta, \
                          NULL::numeric AS quantity FROM inventory_ledger \
                   UNION ALL \
                   SELECT org_id, item_id, location_id, lot_id, NULL, quantity \
                   FROM inventory_balances) k \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("reading the truth: {}", describe(&e)));
    rows.iter()
        .map(|r| Truth {
            org: r.get(0),
            item: r.get(1),
            location: r.get(2),
            lot: r.get(3),
            ledger_sum: r.get(4),
            balance: r.get(5),
            equal: r.get(6),
        })
        .collect()
}

/// After a quiesce: for every key, `inventory_balances` == `SUM(ledger)` (directly), and the
/// proxy's answer — read as the key's tenant, served by the cache (its `hits` must grow by one
/// per lookup) — equals it; the same for each item's total. Returns the keys compared.
/// Rows in the ledger now (read directly, as the superuser).
pub async fn ledger_rows(db: &TestDb) -> i64 {
    tenancy::admin_direct(db)
        .await
        .query_one("SELECT count(*) FROM inventory_ledger", &[])
        .await
        .expect("count ledger rows")
        .get(0)
}

pub async fn assert_cache_matches_ledger(db: &TestDb, proxy: &TestProxy) -> usize {
    let keys = truth(db).await;
    assert!(!keys.is_empty(), "no balances at all");
    let before = counter(&stats(proxy).await, "hits");
    let mut lookups = 0u64;
    for login in [TENANT_A, TENANT_B] {
        let c = connect(&proxy.conn_str(login)).await;
        let mut items = BTreeSet::new();
        for k in keys.iter().filter(|k| k.org == login.org_id) {
            assert!(
                k.equal,
                "inventory_balances {:?} != SUM(ledger) {} for {} {} {:?}",
                k.balance, k.ledger_sum, k.item, k.location, k.lot
            );
            let got = first_column(
                &c.simple_query(&lookup_sql(&k.item, &k.location, k.lot.as_deref()))
                    .await
                    .expect("lookup"),
            );
            lookups += 1;
            assert_eq!(
                got,
                vec![k.balance.clone()],
                "the proxy's answer for {} {} {} {:?}",
                k.org,
                k.item,
                k.location,
                k.lot
            );
            items.insert(k.item.clone());
        }
        let admin = tenancy::admin_direct(db).await;
        for item in &items {
            let sql =
                format!("SELECT sum(quantity) FROM inventory_balances WHERE item_id = '{item}'");
            let direct: Option<String> = admin
                .query_one(
                    "SELECT sum(quantity)::text FROM inventory_balances WHERE org_id = $1 AND item_id = $2",
                    &[&login.org_id, item],
                )
                .await
                .expect("direct total")
                .get(0);
            let got = first_column(&c.simple_query(&sql).await.expect("total"));
            lookups += 1;
            assert_eq!(got, vec![direct], "total of {} {item}", login.org_id);
        }
    }
    let after = counter(&stats(proxy).await, "hits");
    assert_eq!(
        after - before,
        lookups,
        "every lookup should have been answered by the cache: {:?}",
        stats(proxy).await
    );
    keys.len()
}

/// The admin view of the running cache's drift, through the proxy.
pub async fn drift_rows(
    proxy: &TestProxy,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let admin = connect(&proxy.conn_str(ADMIN)).await;
    let msgs = admin.simple_query("SHOW orgwall.balances_drift").await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// Tenant A logged in through each proxy, speaking the protocol by hand.
pub async fn raw_pair(cached: &TestProxy, plain: &TestProxy) -> (RawConn, RawConn) {
    let mut a = RawConn::connect(cached.port).await;
    a.login(TENANT_A.name, TENANT_A.password, &cached.dbname)
        .await
        .expect("login");
    let mut b = RawConn::connect(plain.port).await;
    b.login(TENANT_A.name, TENANT_A.password, &plain.dbname)
        .await
        .expect("login");
    (a, b)
}

/// Parse + Describe (statement) + Sync of each `(sql, declared types)`: every message, byte
/// for byte, through both proxies (ParameterDescription and RowDescription included).
pub async fn compare_describe(cached: &TestProxy, plain: &TestProxy, cases: &[(&str, &[u32])]) {
    use postgres_protocol::message::frontend;
    let (mut a, mut b) = raw_pair(cached, plain).await;
    for (sql, types) in cases {
        let mut out = bytes::BytesMut::new();
        frontend::parse("", sql, types.iter().copied(), &mut out).expect("parse");
        frontend::describe(b'S', "", &mut out).expect("describe");
        frontend::sync(&mut out);
        let x: Vec<(u8, Vec<u8>)> = a
            .exchange(&out, sql)
            .await
            .into_iter()
            .map(|m| (m.tag, m.body))
            .collect();
        let y: Vec<(u8, Vec<u8>)> = b
            .exchange(&out, sql)
            .await
            .into_iter()
            .map(|m| (m.tag, m.body))
            .collect();
        assert_eq!(x, y, "Describe of {sql} with types {types:?} differs");
    }
}

/// Every message, byte for byte, of each query through both proxies, as tenant A.
pub async fn compare_simple(cached: &TestProxy, plain: &TestProxy, sqls: &[String]) {
    compare_simple_rows(cached, plain, sqls, true).await;
}

/// [`compare_simple`]; with `ordered` false the DataRows of each answer are compared as a
/// multiset (a query without ORDER BY: PostgreSQL's row order is its plan's).
pub async fn compare_simple_rows(
    cached: &TestProxy,
    plain: &TestProxy,
    sqls: &[String],
    ordered: bool,
) {
    let (mut a, mut b) = raw_pair(cached, plain).await;
    compare_on(&mut a, &mut b, sqls, ordered).await;
}

/// [`compare_simple_rows`] on two logged-in connections (their session settings kept).
pub async fn compare_on(a: &mut RawConn, b: &mut RawConn, sqls: &[String], ordered: bool) {
    for sql in sqls {
        let mut answers = Vec::new();
        for conn in [&mut *a, &mut *b] {
            let mut msgs: Vec<(u8, Vec<u8>)> = conn
                .query(sql)
                .await
                .into_iter()
                .map(|m| (m.tag, m.body))
                .collect();
            if !ordered {
                sort_data_rows(&mut msgs);
            }
            answers.push(msgs);
        }
        assert_eq!(answers[0], answers[1], "simple protocol differs for {sql}");
    }
}

/// Sorts each run of DataRow messages in place.
pub fn sort_data_rows(msgs: &mut [(u8, Vec<u8>)]) {
    for run in msgs.chunk_by_mut(|x, y| x.0 == y.0) {
        if run[0].0 == b'D' {
            run.sort();
        }
    }
}
