//! Limits that keep one client, or one tenant, from starving the others: sockets that never
//! log in (the startup gate, `startup_timeout_secs`), the admin reserve of
//! `max_client_connections`, per-tenant caps on server connections, the idle-in-transaction
//! timeout, and the largest message Orgwall buffers.

use bytes::BytesMut;
use orgwall_e2e::clients::{describe, expect_refused, sqlstate, try_connect};
use orgwall_e2e::raw::{error_code, RawConn};
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, ADMIN, TENANT};

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
