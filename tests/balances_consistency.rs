//! The balance cache's consistency promise (DESIGN.md §5, issue 19): once a ledger write
//! through the proxy has committed, every later read through the proxy — any session, any
//! protocol — sees it; a write made directly on PostgreSQL is seen within `max_staleness_ms`;
//! and one tenant's stream of writes never holds back another tenant's cached reads.
use orgwall_e2e::balances::{cached_proxy_with, counter, numeric_integer, stats, wait_serving};
use orgwall_e2e::tenancy::{self, RawValue, SWITCHER, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect};
use tokio_postgres::{Client, SimpleQueryMessage};

const READ: &str = "SELECT quantity FROM inventory_balances \
                    WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL";
const READ_PARAM: &str = "SELECT quantity FROM inventory_balances \
                          WHERE item_id = $1 AND location_id = 'l_a1' AND lot_id IS NULL";
const WRITE: &str = "INSERT INTO inventory_ledger (item_id, location_id, quantity_delta, reason) \
                     VALUES ('i_a1', 'l_a1', 1, 'fence')";
/// The same write as the admin login sends it (no tenant rewrite: org_id given).
const ADMIN_WRITE: &str = "INSERT INTO inventory_ledger \
                           (org_id, item_id, location_id, quantity_delta, reason) \
                           VALUES ('org_a', 'i_a1', 'l_a1', 1, 'fence')";

async fn simple_value(c: &Client, sql: &str) -> Option<String> {
    let rows = c.simple_query(sql).await.expect("read");
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// The balance of `i_a1`/`l_a1` as B reads it through the proxy: simple protocol or a
/// parameter Bind (binary results).
async fn read_as(c: &Client, n: usize) -> Option<String> {
    if n.is_multiple_of(2) {
        simple_value(c, READ).await
    } else {
        let row = c.query_one(READ_PARAM, &[&"i_a1"]).await.expect("read");
        let raw: RawValue = row.get(0);
        raw.0.map(|b| numeric_integer(&b).to_string())
    }
}

/// The loop: A writes and commits, then B — another session of the same proxy —
/// reads. Writers vary: A autocommit (simple and extended), A in an explicit transaction,
/// a switcher bound to A's org, the admin login. Not one read may be stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_commit_every_session_of_the_proxy_reads_the_new_balance() {
    bounded(600, async {
        let db = tenancy::tenant_db("bal_fence").await;
        let proxy = cached_proxy_with(&db, "").await;
        wait_serving(&proxy).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_A)).await;
        let sw = connect(&proxy.conn_str(SWITCHER)).await;
        sw.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind");
        let admin = connect(&proxy.conn_str(orgwall_e2e::ADMIN)).await;
        let before = counter(&stats(&proxy).await, "hits");
        let mut expected: i64 = 85; // seed: 100 - 15
        let mut stale = Vec::new();
        for n in 0..500 {
            match n % 5 {
                0 => a.batch_execute(WRITE).await.expect("write"),
                1 => a.execute(WRITE, &[]).await.map(drop).expect("write"),
                2 => a
                    .batch_execute(&format!("BEGIN; {WRITE}; COMMIT"))
                    .await
                    .expect("write"),
                3 => sw.execute(WRITE, &[]).await.map(drop).expect("write"),
                _ => admin.batch_execute(ADMIN_WRITE).await.expect("write"),
            }
            expected += 1;
            let got = read_as(&b, n).await;
            if got != Some(expected.to_string()) {
                stale.push((n, got));
            }
        }
        let s = stats(&proxy).await;
        assert_eq!(stale, vec![], "stale reads after a commit: {s:?}");
        let hits = counter(&s, "hits") - before;
        assert!(
            hits >= 250,
            "the cache should answer most reads: {hits} hits, {s:?}"
        );
    })
    .await;
}

/// A tenant's `COPY inventory_ledger FROM STDIN` (staged and inserted by Orgwall) is a ledger
/// write like an INSERT: once it has committed, the next read from another session sees it,
/// whether the COPY ran on its own or inside the client's transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_ledger_copy_every_session_reads_the_new_balance() {
    bounded(600, async {
        let db = tenancy::tenant_db("bal_fence_copy").await;
        let proxy = cached_proxy_with(&db, "").await;
        wait_serving(&proxy).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_A)).await;
        let before = counter(&stats(&proxy).await, "hits");
        let mut expected: i64 = 85; // seed: 100 - 15
        let mut stale = Vec::new();
        for n in 0..100 {
            let in_transaction = n % 3 == 2;
            if in_transaction {
                a.batch_execute("BEGIN").await.expect("BEGIN");
            }
            let sink = a
                .copy_in::<_, bytes::Bytes>(
                    "COPY inventory_ledger (item_id, location_id, quantity_delta, reason) FROM STDIN",
                )
                .await
                .expect("COPY");
            futures_util::pin_mut!(sink);
            futures_util::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"i_a1\tl_a1\t2\tcopy\n"))
                .await
                .expect("COPY data");
            assert_eq!(sink.finish().await.expect("COPY done"), 1);
            if in_transaction {
                a.batch_execute("COMMIT").await.expect("COMMIT");
            }
            expected += 2;
            let got = read_as(&b, n).await;
            if got != Some(expected.to_string()) {
                stale.push((n, got));
            }
        }
        let s = stats(&proxy).await;
        assert_eq!(stale, vec![], "stale reads after a ledger COPY: {s:?}");
        assert!(counter(&s, "hits") > before, "the cache answered none: {s:?}");
    })
    .await;
}

/// A write made directly on PostgreSQL (bypassing the proxy) and read through the proxy once
/// `max_staleness_ms` has passed: never stale — served from memory when the cache could
/// promise the bound, else by PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_bypasses_the_proxy_is_seen_within_max_staleness() {
    bounded(600, async {
        let db = tenancy::tenant_db("bal_stale").await;
        let proxy = cached_proxy_with(&db, "max_staleness_ms = 20\n").await;
        wait_serving(&proxy).await;
        let direct = tenancy::admin_direct(&db).await;
        let b = connect(&proxy.conn_str(TENANT_A)).await;
        let before = counter(&stats(&proxy).await, "hits");
        let mut expected: i64 = 85;
        for n in 0..200 {
            direct
                .batch_execute(&format!(
                    "INSERT INTO inventory_ledger (org_id, item_id, location_id, quantity_delta, \
                     reason) VALUES ('org_a', 'i_a1', 'l_a1', 1, 'direct {n}')"
                ))
                .await
                .expect("direct write");
            expected += 1;
            // The bound (20 ms) and a little more; the read must then see the write.
            tokio::time::sleep(std::time::Duration::from_millis(21)).await;
            let got = read_as(&b, n).await;
            assert_eq!(
                got,
                Some(expected.to_string()),
                "iteration {n}: {:?}",
                stats(&proxy).await
            );
        }
        let s = stats(&proxy).await;
        assert!(
            counter(&s, "hits") > before,
            "the cache should answer some reads within the bound: {s:?}"
        );
    })
    .await;
}

/// A hostile tenant writing as fast as it can does not make another tenant's cached reads
/// wait: the fence holds back only the writer's own org (a tenant's writes are confined to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_writes_do_not_hold_back_another_tenants_reads() {
    bounded(600, async {
        let db = tenancy::tenant_db("bal_fence_orgs").await;
        // A bound so wide that only write fences can make a read wait.
        let proxy = cached_proxy_with(&db, "max_staleness_ms = 3600000\n").await;
        wait_serving(&proxy).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let hostile = connect(&proxy.conn_str(TENANT_B)).await;
        // The first read may wait for the first position probe.
        assert_eq!(simple_value(&a, READ).await.as_deref(), Some("85"));
        let s0 = stats(&proxy).await;
        for n in 0..200 {
            hostile
                .batch_execute(&format!(
                    "INSERT INTO inventory_ledger (item_id, location_id, quantity_delta, reason) \
                     VALUES ('i_b1', 'l_b1', 1, 'noise {n}')"
                ))
                .await
                .expect("b writes");
            assert_eq!(simple_value(&a, READ).await.as_deref(), Some("85"));
        }
        let s1 = stats(&proxy).await;
        assert_eq!(
            counter(&s1, "read_your_writes_waits"),
            counter(&s0, "read_your_writes_waits"),
            "A's reads waited for B's writes: {s1:?}"
        );
        assert_eq!(counter(&s1, "hits") - counter(&s0, "hits"), 200, "{s1:?}");
    })
    .await;
}

/// The probe runs only while reads come: an idle proxy reads no server position, and the
/// first read after the pause still sees a write another session just committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cache_sends_no_probes_and_its_first_read_is_still_fresh() {
    bounded(120, async {
        let db = tenancy::tenant_db("bal_idle").await;
        let proxy = cached_proxy_with(&db, "").await;
        wait_serving(&proxy).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_A)).await;
        assert_eq!(simple_value(&b, READ).await.as_deref(), Some("85"));
        // Past the idle window (1 s) without a read: the probe count stops moving.
        let probes = || async { counter(&stats(&proxy).await, "probes") };
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let idle = probes().await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(probes().await, idle, "probes while nothing was read");
        a.batch_execute(WRITE).await.expect("write");
        let hits = counter(&stats(&proxy).await, "hits");
        assert_eq!(simple_value(&b, READ).await.as_deref(), Some("86"));
        let s = stats(&proxy).await;
        assert_eq!(counter(&s, "hits"), hits + 1, "answered from memory: {s:?}");
        assert!(counter(&s, "probes") > idle, "{s:?}");
    })
    .await;
}

/// The cache mirrors `inventory_balances`, so a write to the table itself through the proxy
/// (a reconciliation a tenant runs) is fenced like a ledger write: B reads it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_balance_write_through_the_proxy_is_read_back_by_another_session() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_fence_direct").await;
        // A wide staleness bound: only the write note can make B wait for the stream.
        let proxy = cached_proxy_with(&db, "max_staleness_ms = 60000\n").await;
        wait_serving(&proxy).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_A)).await;
        let before = counter(&stats(&proxy).await, "hits");
        let mut stale = Vec::new();
        for n in 0..300i64 {
            let set = format!(
                "UPDATE inventory_balances SET quantity = {} \
                 WHERE item_id = 'i_a1' AND location_id = 'l_a1' AND lot_id IS NULL",
                1000 + n
            );
            a.batch_execute(&set).await.expect("direct write");
            let got = read_as(&b, n as usize).await;
            if got.as_deref() != Some((1000 + n).to_string().as_str()) {
                stale.push((n, got));
            }
        }
        assert!(stale.is_empty(), "stale reads: {stale:?}");
        let s = stats(&proxy).await;
        assert!(counter(&s, "hits") > before, "{s:?}");
    })
    .await;
}
