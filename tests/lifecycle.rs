//! The proxy's life around its clients: the client connection limit, graceful drain on
//! shutdown (no new clients, open transactions may finish, nothing left running afterwards),
//! and an upstream outage (clean `08`/`57P0x` errors while PostgreSQL is down, recovery after).

use std::time::Duration;

use orgwall_e2e::clients::{describe, expect_refused, sqlstate, try_connect};
use orgwall_e2e::raw::RawConn;
use orgwall_e2e::{
    bounded, connect, db_and_proxy, dedicated_postgres, ProxyOptions, TestDb, TestProxy, ADMIN,
};

fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    sqlstate(e)
        .map(|c| c.starts_with("08") || c.starts_with("57P0"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connection_limit_refuses_extra_clients_with_53300() {
    bounded(120, async {
        let opts = ProxyOptions {
            max_client_connections: Some(2),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("conn_limit", opts).await;
        let c1 = connect(&proxy.conn_str(ADMIN)).await;
        let c2 = connect(&proxy.conn_str(ADMIN)).await;
        let e = expect_refused(try_connect(&proxy.conn_str(ADMIN)).await, "a third client");
        assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{}", describe(&e));
        // The two admitted clients are unaffected.
        c1.simple_query("SELECT 1").await.expect("c1");
        c2.simple_query("SELECT 1").await.expect("c2");

        // A slot frees up once a client leaves (bounded poll: the proxy must notice the close).
        drop(c1);
        let mut admitted = None;
        for _ in 0..50 {
            match try_connect(&proxy.conn_str(ADMIN)).await {
                Ok(c) => {
                    admitted = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let c3 = admitted.expect("a new client is admitted after another one left");
        let v: i32 = c3.query_one("SELECT 11", &[]).await.expect("c3").get(0);
        assert_eq!(v, 11);
    })
    .await;
}

/// Tries new logins until one is refused (the proxy stopped accepting) or the attempts run out.
async fn assert_new_clients_refused(proxy: &TestProxy) {
    for _ in 0..50 {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), try_connect(&proxy.conn_str(ADMIN))).await;
        match attempt {
            Ok(Err(_)) => return,
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => panic!("during drain a new client was neither refused nor served (5s)"),
        }
    }
    panic!("the proxy kept accepting new clients after shutdown was triggered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_clients_and_lets_open_transactions_commit() {
    bounded(120, async {
        let (db, mut proxy) = db_and_proxy("drain", ProxyOptions::default()).await;
        let a = connect(&proxy.conn_str(ADMIN)).await;
        let idle = connect(&proxy.conn_str(ADMIN)).await;
        a.batch_execute("CREATE TABLE d (x int)")
            .await
            .expect("create");
        a.batch_execute("BEGIN; INSERT INTO d VALUES (1)")
            .await
            .expect("begin");
        // A client that connected but has not logged in holds no transaction: the drain closes
        // it at once instead of waiting out `shutdown_timeout_secs` (5 s here).
        let mut silent = RawConn::connect(proxy.port).await;

        proxy.trigger_shutdown();
        let ending = silent.wait_closed(3).await;
        assert!(
            ending.closed,
            "a client still in its handshake kept the drain waiting"
        );
        assert_new_clients_refused(&proxy).await;

        // The open transaction may finish.
        a.batch_execute("INSERT INTO d VALUES (2); COMMIT")
            .await
            .unwrap_or_else(|e| panic!("commit during drain: {}", describe(&e)));
        proxy.wait_stopped(30).await.expect("server::run result");

        let direct = connect(&db.direct_conn_str()).await;
        let rows: Vec<i32> = direct
            .query("SELECT x FROM d ORDER BY x", &[])
            .await
            .expect("direct read")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rows, vec![1, 2]);

        // Once `run` has returned, no client connection is still being served.
        assert!(
            a.simple_query("SELECT 1").await.is_err(),
            "a served after stop"
        );
        assert!(
            idle.simple_query("SELECT 1").await.is_err(),
            "an idle client served after stop"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_ends_a_transaction_left_open_without_committing_it() {
    bounded(120, async {
        let (db, mut proxy) = db_and_proxy("drain_timeout", ProxyOptions::default()).await;
        let a = connect(&proxy.conn_str(ADMIN)).await;
        a.batch_execute("CREATE TABLE d (x int)")
            .await
            .expect("create");
        a.batch_execute("BEGIN; INSERT INTO d VALUES (1)")
            .await
            .expect("begin");

        // shutdown_timeout_secs = 5 in the test config; the client never commits.
        proxy.trigger_shutdown();
        proxy.wait_stopped(60).await.expect("server::run result");
        assert!(
            a.simple_query("SELECT 1").await.is_err(),
            "the lingering client is still served after the proxy stopped"
        );

        let direct = connect(&db.direct_conn_str()).await;
        for _ in 0..100 {
            let open: i64 = direct
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n: i64 = direct
            .query_one("SELECT count(*) FROM d", &[])
            .await
            .expect("count (blocks if the transaction were still open and locking)")
            .get(0);
        assert_eq!(n, 0, "the abandoned transaction must not be committed");
        let open: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        assert_eq!(
            open, 0,
            "a server connection is still idle in transaction after stop"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outage_gives_clean_errors_then_recovers() {
    bounded(240, async {
        let pg = dedicated_postgres().await;
        let db = TestDb::create_on(pg.server.clone(), "outage").await;
        let proxy = TestProxy::start(&db, ProxyOptions::pool(2, "transaction")).await;
        let a = connect(&proxy.conn_str(ADMIN)).await;
        a.batch_execute("CREATE TABLE o (x int); INSERT INTO o VALUES (1)")
            .await
            .expect("setup");

        let server = pg.server.clone();
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("stop task");

        // The established client gets an error, not a hang and not a silent close.
        let r = tokio::time::timeout(Duration::from_secs(30), a.simple_query("SELECT 1"))
            .await
            .expect("a query while PostgreSQL is down must fail promptly (30s guard)");
        match r {
            Ok(_) => panic!("a query succeeded while PostgreSQL was down"),
            Err(e) => assert!(is_unavailable(&e), "established client: {}", describe(&e)),
        }
        // A new client: refused at login or at its first query, with a clean code.
        let attempt =
            tokio::time::timeout(Duration::from_secs(30), try_connect(&proxy.conn_str(ADMIN)))
                .await
                .expect("login while PostgreSQL is down must not hang (30s guard)");
        match attempt {
            Err(e) => assert!(is_unavailable(&e), "new client login: {}", describe(&e)),
            Ok(b) => {
                let r = tokio::time::timeout(Duration::from_secs(30), b.simple_query("SELECT 1"))
                    .await
                    .expect("first query while PostgreSQL is down (30s guard)");
                match r {
                    Ok(_) => panic!("a new client's query succeeded while PostgreSQL was down"),
                    Err(e) => assert!(is_unavailable(&e), "new client query: {}", describe(&e)),
                }
            }
        }

        let server = pg.server.clone();
        tokio::task::spawn_blocking(move || server.restart())
            .await
            .expect("start again task");

        let c = connect(&proxy.conn_str(ADMIN)).await;
        let n: i64 = c
            .query_one("SELECT count(*) FROM o", &[])
            .await
            .unwrap_or_else(|e| panic!("first query after PostgreSQL returned: {}", describe(&e)))
            .get(0);
        assert_eq!(n, 1);
        drop(proxy);
        drop(pg);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_timeout_closes_idle_clients_but_not_busy_ones() {
    bounded(120, async {
        let opts = ProxyOptions {
            idle_client_timeout_secs: Some(1),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("idle_timeout", opts).await;
        let idle = connect(&proxy.conn_str(ADMIN)).await;
        let busy = connect(&proxy.conn_str(ADMIN)).await;
        idle.simple_query("SELECT 1")
            .await
            .expect("idle client first query");
        // The busy client never pauses for long; the idle one sits well past the timeout.
        for i in 0..16i32 {
            let v: i32 = busy
                .query_one("SELECT $1::int4", &[&i])
                .await
                .unwrap_or_else(|e| {
                    panic!("busy client closed by the idle timeout: {}", describe(&e))
                })
                .get(0);
            assert_eq!(v, i);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            idle.simple_query("SELECT 1").await.is_err(),
            "a client idle for 4s survived idle_client_timeout_secs = 1"
        );
    })
    .await;
}
