//! `SHOW orgwall.balances_drift` (admin) and `orgwall reconcile --proxy`: the running balance
//! cache against PostgreSQL's `inventory_balances`. Zero rows when exact — also while writers
//! are busy (the comparison is made at a consistent point, no false drift) — and still zero
//! after changes behind the proxy's back (a direct UPDATE/INSERT of the balances, a ledger
//! row written with the balance trigger disabled): the cache mirrors the table, and the
//! table's drift from the ledger is `orgwall reconcile`'s to report and fix. Tenants are
//! refused with 42501.

use orgwall::migrate::cli::{self, ReconcileArgs, TargetArgs};
use orgwall::migrate::MigrateError;
use orgwall_e2e::balances::{
    cached_proxy, counter, drift_rows, first_column, lookup_sql, movement, stats, wait_caught_up,
    wait_serving, wait_stats, TENANT_INSERT,
};
use orgwall_e2e::proxy::Login;
use orgwall_e2e::tenancy::{self, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, expect_db_error, ProxyOptions, TestProxy, ADMIN};

fn admin_url(proxy: &TestProxy) -> String {
    format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        ADMIN.name, ADMIN.password, proxy.port, proxy.dbname
    )
}

fn reconcile_args(proxy: Option<String>, database_url: Option<String>) -> ReconcileArgs {
    ReconcileArgs {
        fix: false,
        proxy,
        target: TargetArgs {
            database_url,
            config: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_empty_when_exact_and_the_mirror_follows_changes_behind_the_proxy() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_drift").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;
        let writer = connect(&proxy.conn_str(TENANT_B)).await;
        for n in 0..20 {
            let (item, loc, lot, delta) = movement(TENANT_B, 0, n);
            writer
                .execute(TENANT_INSERT, &[&item, &loc, &lot, &delta])
                .await
                .expect("insert");
        }
        wait_caught_up(&db, &proxy).await;
        assert_eq!(drift_rows(&proxy).await.expect("drift"), Vec::<Vec<Option<String>>>::new());
        assert_eq!(counter(&stats(&proxy).await, "drift_keys"), 0);
        cli::reconcile(reconcile_args(Some(admin_url(&proxy)), Some(db.upstream_url())))
            .await
            .expect("reconcile --proxy with no drift");

        // Changes behind the proxy's back: a balance changed directly, a stray balance row,
        // and a ledger row whose balance the (disabled) trigger never wrote. The cache mirrors
        // the table (issue 19), so none of it is drift between cache and table: the first two
        // arrive through the stream, and the ledger insert without its balance change makes
        // the cache reload (and say why).
        db.psql(
            "UPDATE inventory_balances SET quantity = quantity + 5 \
               WHERE org_id = 'org_a' AND item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL;
             INSERT INTO inventory_balances (org_id, item_id, location_id, lot_id, quantity) \
               VALUES ('org_a', 'i_a3', 'l_a2', 'STRAY', 7);
             ALTER TABLE inventory_ledger DISABLE TRIGGER inventory_ledger_balance_trigger;
             INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta) \
               VALUES ('org_b', 'i_b2', 'l_b2', 'LOT-Z', 4.25);
             ALTER TABLE inventory_ledger ENABLE TRIGGER inventory_ledger_balance_trigger;",
        )
        .await;
        let s = wait_stats(&proxy, 400, "no resync after the trigger-less ledger insert", |s| {
            counter(s, "resyncs") >= 1 && s["serving"] == "true"
        })
        .await;
        assert!(s["last_resync_reason"].contains("changed no inventory_balances row"), "{s:?}");
        wait_caught_up(&db, &proxy).await;
        assert!(drift_rows(&proxy).await.expect("drift").is_empty());
        assert_eq!(counter(&stats(&proxy).await, "drift_keys"), 0);
        // The cache answers what the table holds, as PostgreSQL does.
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let got = first_column(&a.simple_query(&lookup_sql("i_a1", "l_a1", None)).await.expect("lookup"));
        assert_eq!(got, vec![Some("90".to_string())]);

        // The CLI: the cache matches the table; the table drifts from the ledger on 3 keys.
        cli::reconcile(reconcile_args(Some(admin_url(&proxy)), None))
            .await
            .expect("the cache is the table");
        let err = cli::reconcile(reconcile_args(Some(admin_url(&proxy)), Some(db.upstream_url())))
            .await
            .expect_err("drift must fail the command");
        assert!(matches!(err, MigrateError::Drift(3)), "{err}");

        // Repair the table from the ledger: the mirror follows (the stray key is a zero row
        // now, in the table and in the cache), and nothing drifts.
        let mut fix = reconcile_args(None, Some(db.upstream_url()));
        fix.fix = true;
        cli::reconcile(fix).await.expect("reconcile --fix");
        wait_caught_up(&db, &proxy).await;
        assert!(drift_rows(&proxy).await.expect("drift").is_empty());
        let got = first_column(&a.simple_query(&lookup_sql("i_a1", "l_a1", None)).await.expect("lookup"));
        assert_eq!(got, vec![Some("85".to_string())]);
        cli::reconcile(reconcile_args(Some(admin_url(&proxy)), Some(db.upstream_url())))
            .await
            .expect("nothing drifts after the fix");
    })
    .await;
}

/// One writer through the proxy, `rows` single-row transactions.
async fn writer(conn: String, login: Login, w: usize, rows: usize) {
    let c = connect(&conn).await;
    for n in 0..rows {
        let (item, loc, lot, delta) = movement(login, w, n);
        c.execute(TENANT_INSERT, &[&item, &loc, &lot, &delta])
            .await
            .expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_check_reports_no_false_drift_while_writers_are_busy() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_drift_busy").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;
        let mut writers = Vec::new();
        for (w, login) in [TENANT_A, TENANT_B, TENANT_A, TENANT_B]
            .into_iter()
            .enumerate()
        {
            writers.push(tokio::spawn(writer(proxy.conn_str(login), login, w, 300)));
        }
        let mut checks = 0;
        while writers.iter().any(|w| !w.is_finished()) {
            let rows = drift_rows(&proxy).await.expect("drift check under writes");
            assert!(rows.is_empty(), "false drift while writing: {rows:?}");
            checks += 1;
        }
        for w in writers {
            w.await.expect("writer");
        }
        wait_caught_up(&db, &proxy).await;
        assert!(drift_rows(&proxy).await.expect("drift").is_empty());
        println!("drift checks during 1200 concurrent inserts: {checks}, all empty");
        assert!(checks > 0);
    })
    .await;
}

#[tokio::test]
async fn drift_check_is_for_admins_in_both_protocols_with_the_cache_on() {
    bounded(120, async {
        let db = tenancy::tenant_db("bal_drift_refused").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;
        for login in [TENANT_A, TENANT_B] {
            let c = connect(&proxy.conn_str(login)).await;
            for sql in ["SHOW orgwall.balances_drift", "show ORGWALL_BALANCES;"] {
                let msg = expect_db_error(c.simple_query(sql).await, "42501", sql);
                assert!(msg.starts_with("orgwall:"), "{msg}");
                let msg = expect_db_error(c.query(sql, &[]).await, "42501", sql);
                assert!(msg.starts_with("orgwall:"), "{msg}");
            }
            // The session is usable afterwards.
            c.simple_query("SELECT 1").await.expect("after the refusal");
        }
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        // The extended protocol answers it too (the admin console, issue 20): no drift here.
        let rows = admin
            .query("SHOW orgwall.balances_drift", &[])
            .await
            .expect("drift in the extended protocol");
        assert!(rows.is_empty(), "{rows:?}");
        // Inside an admin transaction it still answers (it reads on a connection of its own).
        admin.batch_execute("BEGIN; SELECT 1").await.expect("begin");
        let msgs = admin
            .simple_query("SHOW orgwall.balances_drift")
            .await
            .expect("drift inside a transaction");
        assert!(first_column(&msgs).is_empty(), "{msgs:?}");
        admin.batch_execute("COMMIT").await.expect("commit");

        let plain = tenancy::tenant_proxy(&db, ProxyOptions::default()).await;
        let a = connect(&plain.conn_str(ADMIN)).await;
        let msg = expect_db_error(
            a.simple_query("SHOW orgwall.balances_drift").await,
            "55000",
            "cache disabled",
        );
        assert!(msg.contains("not enabled"), "{msg}");
    })
    .await;
}
