//! Plugin bypasses from the issue "Hostile clients on shared connections": writes hidden below
//! a statement's top level (item 5: writable CTEs, `ON CONFLICT DO UPDATE`) must reach
//! `append-only-ledger`.

#[path = "plugins_common/mod.rs"]
mod common;

use common::{plugin_toml, wasm};
use orgwall_e2e::clients::{expect_db_error, sqlstate};
use orgwall_e2e::tenancy::{admin_direct, tenancy_toml, tenant_db, TENANT_A};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy, ADMIN};

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
