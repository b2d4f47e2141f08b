//! Plugin bypasses from the issue "Hostile clients on shared connections": writes hidden below
//! a statement's top level (item 5: writable CTEs, `ON CONFLICT DO UPDATE`) must reach
//! `append-only-ledger`, and a switcher's statement prepared for one tenant must not run for
//! another without passing the plugins for it (item 4), whether the balance cache or
//! PostgreSQL answers it, nor may a portal bound for one tenant run after a switch.

#[path = "plugins_common/mod.rs"]
mod common;

use bytes::BytesMut;
use common::{plugin_toml, wasm};
use orgwall_e2e::balances::{counter, stats, wait_serving, CACHE_TOML};
use orgwall_e2e::clients::{expect_db_error, sqlstate};
use orgwall_e2e::raw::{error_code, tags, RawConn};
use orgwall_e2e::tenancy::{admin_direct, tenancy_toml, tenant_db, RawValue, SWITCHER, TENANT_A};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy, ADMIN};
use postgres_protocol::message::frontend;

/// Each hides a write of the ledger below a statement that is not an UPDATE/DELETE/MERGE.
const BYPASSES: &[&str] = &[
    "WITH d AS (DELETE FROM inventory_ledger WHERE id = 'led_a1' RETURNING id) SELECT * FROM d",
    "WITH u AS (UPDATE inventory_ledger SET reason = 'rewritten' WHERE id = 'led_a1' \
     RETURNING id) SELECT * FROM u",
    "INSERT INTO inventory_ledger (id, item_id, location_id, quantity_delta) \
     VALUES ('led_a1', 'i_a1', 'l_a1', 0) \
     ON CONFLICT (id) DO UPDATE SET quantity_delta = excluded.quantity_delta",
    "SELECT * FROM items WHERE id IN (WITH d AS (DELETE FROM inventory_ledger \
     WHERE id = 'led_a1' RETURNING item_id) SELECT item_id FROM d)",
    "WITH a AS (WITH d AS (DELETE FROM inventory_ledger WHERE id = 'led_a1' RETURNING id) \
     SELECT id FROM d) SELECT * FROM a",
];

/// The seed's ledger rows, as the superuser sees them.
async fn ledger(db: &orgwall_e2e::TestDb) -> Vec<String> {
    admin_direct(db)
        .await
        .query(
            "SELECT id || ':' || quantity_delta || ':' || reason FROM inventory_ledger \
             WHERE id LIKE 'led_%' ORDER BY id",
            &[],
        )
        .await
        .expect("read the ledger")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_only_ledger_refuses_writes_hidden_below_the_top_level() {
    bounded(300, async {
        let db = tenant_db("plugins_bypass_ledger").await;
        let before = ledger(&db).await;
        let plugins = plugin_toml("append-only-ledger", &wasm("append_only_ledger"), "");
        let proxy =
            TestProxy::start_with_extra(&db, ProxyOptions::default(), &(tenancy_toml() + &plugins))
                .await;
        let tenant = connect(&proxy.conn_str(TENANT_A)).await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        for sql in BYPASSES {
            for (who, c) in [("tenant", &tenant), ("admin", &admin)] {
                let e = c
                    .simple_query(sql)
                    .await
                    .expect_err("a hidden ledger write must be refused");
                assert_eq!(
                    sqlstate(&e).as_deref(),
                    Some("42501"),
                    "{who}: {sql}: {e:?}"
                );
                assert!(format!("{e:?}").contains("append-only"), "{who}: {e:?}");
                expect_db_error(c.query(*sql, &[]).await, "42501", "append-only");
            }
        }
        // MERGE whose only action deletes, and EXPLAIN ANALYZE (which runs the DELETE).
        for sql in [
            "MERGE INTO inventory_ledger l USING items i ON l.item_id = i.id \
             WHEN MATCHED THEN DELETE",
            "EXPLAIN ANALYZE DELETE FROM inventory_ledger",
        ] {
            expect_db_error(admin.query(sql, &[]).await, "42501", "append-only");
        }
        assert_eq!(
            ledger(&db).await,
            before,
            "the ledger's history is unchanged"
        );

        // Appending still works, for tenants and admins, in both protocols.
        let n = tenant
            .execute(
                "INSERT INTO inventory_ledger (id, item_id, location_id, quantity_delta, reason) \
                 VALUES ($1, 'i_a1', 'l_a1', 1, 'e2e')",
                &[&"new_a1"],
            )
            .await
            .expect("a tenant appends to the ledger");
        assert_eq!(n, 1);
        tenant
            .simple_query(
                "INSERT INTO inventory_ledger (id, item_id, location_id, quantity_delta, reason) \
                 VALUES ('new_a2', 'i_a1', 'l_a1', 2, 'e2e') ON CONFLICT (id) DO NOTHING",
            )
            .await
            .expect("an insert that changes no row is an append");
        admin
            .simple_query(
                "INSERT INTO inventory_ledger \
                 (id, org_id, item_id, location_id, quantity_delta, reason) \
                 VALUES ('new_a3', 'org_a', 'i_a1', 'l_a1', 3, 'e2e')",
            )
            .await
            .expect("an admin appends to the ledger");
        let appended: i64 = admin_direct(&db)
            .await
            .query_one(
                "SELECT count(*) FROM inventory_ledger WHERE id LIKE 'new_a%'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(appended, 3);
    })
    .await;
}

/// The balance lookup a switcher prepares (answerable by the cache).
const LOOKUP: &str = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";

/// A switcher prepares the lookup as org_a (which the plugin allows), switches to org_b (which
/// it refuses) and runs the statement prepared as org_a: refused, with the cache on or off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_prepared_for_one_tenant_is_checked_again_for_the_next() {
    bounded(300, async {
        let db = tenant_db("plugins_bypass_rebind").await;
        let plugins = plugin_toml(
            "audit-admin-only",
            &wasm("audit_admin_only"),
            "tables = [\"inventory_balances\"], orgs = [\"org_a\"]",
        );
        for cached in [true, false] {
            let extra = tenancy_toml() + &plugins + if cached { CACHE_TOML } else { "" };
            let proxy =
                TestProxy::start_with_extra(&db, ProxyOptions::pool(8, "transaction"), &extra)
                    .await;
            if cached {
                wait_serving(&proxy).await;
            }
            let hits = || async {
                match cached {
                    true => counter(&stats(&proxy).await, "hits"),
                    false => 0,
                }
            };
            let c = connect(&proxy.conn_str(SWITCHER)).await;
            c.batch_execute("SET orgwall.org_id = 'org_a'")
                .await
                .expect("bind org_a");
            let stmt = c.prepare(LOOKUP).await.expect("org_a may prepare");
            let before = hits().await;
            let q: RawValue = c
                .query_one(&stmt, &[&"i_a1", &"l_a1"])
                .await
                .expect("org_a looks up its balance")
                .get(0);
            assert!(q.0.is_some(), "org_a has a balance there");
            let after_a = hits().await;
            assert_eq!(
                after_a - before,
                u64::from(cached),
                "answered by the cache: {cached}"
            );

            c.batch_execute("SET orgwall.org_id = 'org_b'")
                .await
                .expect("bind org_b");
            // A fresh Parse as org_b is refused …
            expect_db_error(c.prepare(LOOKUP).await, "42501", "requires role");
            // … and so is the statement prepared as org_a, run now as org_b.
            expect_db_error(
                c.query_one(&stmt, &[&"i_b1", &"l_b1"]).await,
                "42501",
                "requires role",
            );
            assert_eq!(
                hits().await,
                after_a,
                "the cache answered nothing for org_b"
            );

            // Back to org_a: allowed again (from the cache when it is on).
            c.batch_execute("SET orgwall.org_id = 'org_a'")
                .await
                .expect("bind org_a again");
            let again: RawValue = c
                .query_one(&stmt, &[&"i_a1", &"l_a1"])
                .await
                .expect("org_a again")
                .get(0);
            assert_eq!(again.0, q.0);
            assert_eq!(
                hits().await,
                after_a + u64::from(cached),
                "cached: {cached}"
            );
            drop(c);
            proxy.shutdown().await.expect("proxy shuts down");
        }
    })
    .await;
}

/// Appends Bind of `statement` (no parameters, text results) to `portal`.
fn bind(out: &mut BytesMut, portal: &str, statement: &str) {
    orgwall_e2e::raw::bind_no_params(out, portal, statement);
}

/// A portal bound as org_a and executed after `SET orgwall.org_id = 'org_b'` in the same
/// pipeline is refused, whether the cache or PostgreSQL would answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_bound_for_one_tenant_does_not_run_for_another() {
    bounded(300, async {
        let db = tenant_db("plugins_bypass_portal").await;
        let extra = tenancy_toml() + CACHE_TOML;
        let proxy =
            TestProxy::start_with_extra(&db, ProxyOptions::pool(8, "transaction"), &extra).await;
        wait_serving(&proxy).await;
        let cached = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL";
        let forwarded = "SELECT quantity_delta FROM inventory_ledger WHERE id = 'led_a1'";
        for sql in [cached, forwarded] {
            let mut raw = RawConn::connect(proxy.port).await;
            raw.login(SWITCHER.name, SWITCHER.password, &proxy.dbname)
                .await
                .unwrap_or_else(|e| panic!("switcher login: {:?}", e.field(b'M')));
            let msgs = raw.query("SET orgwall.org_id = 'org_a'").await;
            assert_eq!(error_code(&msgs), None, "{}", tags(&msgs));
            let mut out = BytesMut::new();
            frontend::parse("s1", sql, std::iter::empty::<u32>(), &mut out).expect("parse");
            bind(&mut out, "p1", "s1");
            frontend::parse(
                "s2",
                "SET orgwall.org_id = 'org_b'",
                std::iter::empty::<u32>(),
                &mut out,
            )
            .expect("parse");
            bind(&mut out, "p2", "s2");
            frontend::execute("p2", 0, &mut out).expect("execute");
            frontend::execute("p1", 0, &mut out).expect("execute");
            frontend::sync(&mut out);
            let msgs = raw.exchange(&out, sql).await;
            // ParseComplete, BindComplete (twice), the SET's CommandComplete, then the refusal.
            assert_eq!(tags(&msgs), "1212CEZ", "{sql}");
            assert_eq!(error_code(&msgs).as_deref(), Some("42501"), "{sql}");
            let msg = msgs
                .iter()
                .find(|m| m.tag == b'E')
                .and_then(|m| m.field(b'M'));
            assert!(
                msg.as_deref()
                    .is_some_and(|m| m.contains("bound for another tenant")),
                "{msg:?}"
            );
            // The failed pipeline undid its SET: the session is org_a's again and works.
            let msgs = raw.query(sql).await;
            assert_eq!(error_code(&msgs), None, "{}", tags(&msgs));
            assert!(tags(&msgs).contains('D'), "org_a's row: {}", tags(&msgs));
        }
    })
    .await;
}
