//! Limits that keep one client, or one tenant, from starving the others: sockets that never
//! log in (the startup gate, `startup_timeout_secs`), the admin reserve of
//! `max_client_connections`, per-tenant caps on server connections, the idle-in-transaction
//! timeout, and the largest message Orgwall buffers.

use bytes::BytesMut;
use orgwall_e2e::clients::{describe, expect_refused, sqlstate, try_connect};
use orgwall_e2e::raw::{error_code, ready_status, tags, RawConn};
use orgwall_e2e::tenancy::{tenancy_toml, tenant_db, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, TestProxy, ADMIN, TENANT};

/// A startup packet for `user` on `db`, as a client sends it first.
fn startup_packet(user: &str, db: &str) -> BytesMut {
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", user), ("database", db)],
        &mut out,
    )
    .expect("encode startup");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_log_in_do_not_keep_real_logins_out() {
    bounded(120, async {
        let opts = ProxyOptions {
            max_client_connections: Some(5),
            max_startup_connections: Some(3),
            reserved_admin_connections: Some(0),
            // Long enough that no idle socket is closed by the timeout during the test.
            startup_timeout_secs: Some(120),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("idle_startup", opts).await;
        // Twice the client limit, more than three times the startup limit: half of them say
        // nothing, half send the first bytes of a startup packet and stop.
        let mut idle = Vec::new();
        for i in 0..10 {
            let mut raw = RawConn::connect(proxy.port).await;
            if i % 2 == 1 {
                raw.send(&startup_packet(ADMIN.name, &proxy.dbname)[..6])
                    .await
                    .expect("send half a startup packet");
            }
            idle.push(raw);
        }
        // Every client slot still goes to a real login.
        let mut clients = Vec::new();
        for i in 0..5 {
            let login = if i % 2 == 0 { ADMIN } else { TENANT };
            match try_connect(&proxy.conn_str(login)).await {
                Ok(c) => clients.push(c),
                Err(e) => panic!("login {i} kept out by idle sockets: {}", describe(&e)),
            }
        }
        for (i, c) in clients.iter().enumerate() {
            c.simple_query("SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("client {i}: {}", describe(&e)));
        }
        // The oldest idle sockets lost their places to newer connections and were told why.
        let oldest = idle[0].wait_closed(30).await;
        assert!(oldest.closed, "the oldest idle socket is still open");
        assert_eq!(
            error_code(&oldest.messages).as_deref(),
            Some("53300"),
            "{:?}",
            oldest
                .messages
                .iter()
                .map(|m| m.summary())
                .collect::<Vec<_>>()
        );
        // The limit of logged-in clients itself still holds.
        let e = expect_refused(
            try_connect(&proxy.conn_str(ADMIN)).await,
            "a sixth logged-in client",
        );
        assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{}", describe(&e));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_finishes_logging_in_is_closed_after_the_startup_timeout() {
    bounded(120, async {
        let opts = ProxyOptions {
            startup_timeout_secs: Some(1),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("startup_timeout", opts).await;
        // One says nothing at all; one sends its startup packet and never answers the SCRAM
        // challenge.
        let mut silent = RawConn::connect(proxy.port).await;
        let mut stalled = RawConn::connect(proxy.port).await;
        stalled
            .send(&startup_packet(ADMIN.name, &proxy.dbname))
            .await
            .expect("send startup");
        let challenge = stalled.expect_msg(30, "authentication request").await;
        assert_eq!(challenge.tag, b'R', "{}", challenge.summary());
        for (what, raw) in [("silent", &mut silent), ("stalled in SCRAM", &mut stalled)] {
            let end = raw.wait_closed(60).await;
            assert!(
                end.closed,
                "{what}: still open long after the startup timeout"
            );
            assert_eq!(
                error_code(&end.messages).as_deref(),
                Some("08P01"),
                "{what}: {:?}",
                end.messages.iter().map(|m| m.summary()).collect::<Vec<_>>()
            );
        }
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.simple_query("SELECT 1").await.expect("a real login");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_slots_let_admins_in_when_tenants_fill_the_rest() {
    bounded(120, async {
        let opts = ProxyOptions {
            max_client_connections: Some(4),
            reserved_admin_connections: Some(2),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("admin_reserve", opts).await;
        let t1 = connect(&proxy.conn_str(TENANT)).await;
        let t2 = connect(&proxy.conn_str(TENANT)).await;
        let e = expect_refused(
            try_connect(&proxy.conn_str(TENANT)).await,
            "a tenant when only reserved slots remain",
        );
        assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{}", describe(&e));
        let message = e.as_db_error().map(|d| d.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.starts_with("orgwall:") && m.contains("reserved")),
            "{message:?}"
        );
        let a1 = connect(&proxy.conn_str(ADMIN)).await;
        let a2 = connect(&proxy.conn_str(ADMIN)).await;
        let e = expect_refused(
            try_connect(&proxy.conn_str(ADMIN)).await,
            "an admin when every slot is taken",
        );
        assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{}", describe(&e));
        for (i, c) in [&t1, &t2, &a1, &a2].into_iter().enumerate() {
            c.simple_query("SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("client {i}: {}", describe(&e)));
        }
        // Admins count against the limit too: once they and a tenant left, a tenant gets in.
        drop((t1, a1, a2));
        let mut admitted = None;
        for _ in 0..100 {
            match try_connect(&proxy.conn_str(TENANT)).await {
                Ok(c) => {
                    admitted = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let t3 = admitted.expect("a tenant is admitted once another tenant left");
        t3.simple_query("SELECT 1").await.expect("t3");
    })
    .await;
}

/// Opens a transaction that holds a server connection (its first statement ran).
async fn hold_transaction(c: &tokio_postgres::Client, what: &str) {
    c.batch_execute("BEGIN; SELECT count(*) FROM items")
        .await
        .unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_cap_waits_while_other_tenants_keep_working() {
    bounded(180, async {
        let db = tenant_db("org_cap").await;
        let opts = ProxyOptions {
            checkout_timeout_secs: 5,
            ..ProxyOptions::pool(4, "transaction")
        };
        let extra = tenancy_toml().replacen(
            "[tenancy]\n",
            "[tenancy]\nmax_server_connections_per_org = 2\n",
            1,
        );
        let proxy = TestProxy::start_with_extra(&db, opts, &extra).await;
        let mut a = Vec::new();
        for _ in 0..4 {
            a.push(std::sync::Arc::new(
                connect(&proxy.conn_str(TENANT_A)).await,
            ));
        }
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        hold_transaction(&a[0], "A's first transaction").await;
        hold_transaction(&a[1], "A's second transaction").await;
        // A asks for the rest of the pool; those checkouts wait for A's own connections,
        // holding nothing.
        let waiting: Vec<_> = a[2..4]
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(async move { hold_transaction(&c, "A beyond its cap").await })
            })
            .collect();
        // (Time for A's requests to reach the proxy; without the cap they would take the
        // whole pool and B's queries would time out.)
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for _ in 0..3 {
            let n: i64 = b
                .query_one("SELECT count(*) FROM items", &[])
                .await
                .unwrap_or_else(|e| panic!("B starved by A: {}", describe(&e)))
                .get(0);
            assert!(n > 0, "B sees its items");
        }
        // A's waiting checkouts get the connections A gives back.
        a[0].batch_execute("COMMIT").await.expect("A commits");
        a[1].batch_execute("COMMIT").await.expect("A commits");
        for w in waiting {
            w.await.expect("A's waiting transaction");
        }
        // A at its cap again: its next checkout fails, naming the cap, once the checkout
        // timeout has passed; A's open transactions and B are unaffected.
        let err = a[0]
            .batch_execute("BEGIN; SELECT count(*) FROM items")
            .await
            .expect_err("a transaction beyond A's cap");
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("53300"),
            "{}",
            describe(&err)
        );
        let message = err.as_db_error().map(|d| d.message().to_string());
        assert!(
            message.as_deref().is_some_and(|m| m.starts_with("orgwall:")
                && m.contains("org_a")
                && m.contains("max_server_connections_per_org")),
            "{message:?}"
        );
        b.simple_query("SELECT 1")
            .await
            .expect("B after A's refusal");
        for (i, c) in a[2..4].iter().enumerate() {
            c.batch_execute("SELECT count(*) FROM items; COMMIT")
                .await
                .unwrap_or_else(|e| panic!("A's open transaction {i}: {}", describe(&e)));
        }
        a[0].batch_execute("ROLLBACK")
            .await
            .expect("A's refused one ends");
        hold_transaction(&a[0], "A below its cap again").await;
        a[0].batch_execute("COMMIT").await.expect("commit");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idle_in_a_transaction_is_disconnected_and_its_connection_closed() {
    bounded(120, async {
        let opts = ProxyOptions {
            idle_in_transaction_timeout_secs: Some(1),
            ..ProxyOptions::pool(1, "transaction")
        };
        let (_db, proxy) = db_and_proxy("idle_in_tx", opts).await;
        let setup = connect(&proxy.conn_str(ADMIN)).await;
        setup
            .batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("create table");
        // A statement that runs longer than the timeout is not idleness.
        setup
            .batch_execute("BEGIN; SELECT pg_sleep(2.5); COMMIT")
            .await
            .unwrap_or_else(|e| panic!("a busy transaction was cut: {}", describe(&e)));

        let mut raw = RawConn::admin(&proxy).await;
        let msgs = raw.query("BEGIN; INSERT INTO t VALUES (1)").await;
        assert_eq!(ready_status(&msgs), Some(b'T'), "{}", tags(&msgs));
        let end = raw.wait_closed(60).await;
        assert!(
            end.closed,
            "a client idle in a transaction was not disconnected"
        );
        let error = end.messages.iter().find(|m| m.tag == b'E');
        assert_eq!(
            error.and_then(|m| m.field(b'C')).as_deref(),
            Some("25P03"),
            "{:?}",
            end.messages.iter().map(|m| m.summary()).collect::<Vec<_>>()
        );
        assert!(error
            .and_then(|m| m.field(b'M'))
            .is_some_and(|m| m.starts_with("orgwall:")));
        // The pool's only connection was closed, not handed on mid-transaction: the next
        // client gets a fresh one and the insert was rolled back.
        let n: i64 = setup
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap_or_else(|e| panic!("the pool did not recover: {}", describe(&e)))
            .get(0);
        assert_eq!(n, 0, "the idle transaction's insert survived");
    })
    .await;
}

/// `multiplexed_batches` from `SHOW orgwall_pool` (admin login).
async fn shared_batches(c: &tokio_postgres::Client) -> u64 {
    let msgs = c
        .simple_query("SHOW orgwall_pool")
        .await
        .expect("SHOW orgwall_pool");
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r)
                if r.get(0) == Some("multiplexed_batches") =>
            {
                r.get(1)?.parse().ok()
            }
            _ => None,
        })
        .expect("multiplexed_batches in SHOW orgwall_pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_over_max_message_bytes_fails_its_session_and_no_other() {
    bounded(180, async {
        for multiplex in [0, 1] {
            let opts = ProxyOptions {
                max_message_bytes: Some(1 << 20),
                multiplex,
                ..ProxyOptions::pool(2, "transaction")
            };
            let (_db, proxy) = db_and_proxy("max_answer", opts).await;
            let what = format!("multiplex {multiplex}");
            let neighbour = connect(&proxy.conn_str(ADMIN)).await;
            let big = connect(&proxy.conn_str(ADMIN)).await;
            let under: i32 = neighbour
                .query_one("SELECT length(repeat('y', 500000))", &[])
                .await
                .unwrap_or_else(|e| panic!("{what}: a row under the limit: {}", describe(&e)))
                .get(0);
            assert_eq!(under, 500_000);
            let before = shared_batches(&neighbour).await;
            // A row of 2 MB, twice the limit (the simple protocol, so the multiplexed
            // connection carries it when there is one).
            let err = big
                .simple_query("SELECT repeat('x', 2000000)")
                .await
                .expect_err("a row over max_message_bytes");
            assert_eq!(
                sqlstate(&err).as_deref(),
                Some("54000"),
                "{what}: {}",
                describe(&err)
            );
            let message = err.as_db_error().map(|d| d.message().to_string());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("orgwall:") && m.contains("max_message_bytes")),
                "{what}: {message:?}"
            );
            if multiplex > 0 {
                assert!(
                    shared_batches(&neighbour).await > before,
                    "{what}: the big row did not go through the multiplexed connection"
                );
            }
            // Everyone else, on the same connections, carries on.
            for round in 0..3 {
                let rows = neighbour
                    .simple_query("SELECT repeat('z', 300000)")
                    .await
                    .unwrap_or_else(|e| panic!("{what}: neighbour {round}: {}", describe(&e)));
                let row = rows.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::len),
                    _ => None,
                });
                assert_eq!(row, Some(300_000), "{what}: neighbour {round}");
            }
            let fresh = connect(&proxy.conn_str(ADMIN)).await;
            fresh
                .simple_query("SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("{what}: a new client: {}", describe(&e)));
        }
    })
    .await;
}
