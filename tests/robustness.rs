//! Misbehaving clients and a misbehaving upstream: garbage bytes, an absurd length prefix, a
//! client that vanishes mid-transaction or mid-query, and PostgreSQL restarting under the proxy.
//! In every case only the offending connection suffers, and pooled server connections are
//! clean when the next client gets them.

use std::time::Duration;

use orgwall_e2e::clients::{describe, sqlstate};
use orgwall_e2e::raw::{ready_status, RawConn};
use orgwall_e2e::{
    bounded, connect, db_and_proxy, dedicated_postgres, ProxyOptions, TestDb, TestProxy, ADMIN,
};

/// Asserts the proxy closed `raw` within 15 s, sending at most ErrorResponses first.
async fn assert_closed_with_at_most_an_error(raw: &mut RawConn, what: &str) {
    let end = raw.wait_closed(15).await;
    assert!(
        end.closed,
        "{what}: the proxy kept the connection open for 15s after receiving {:?}",
        end.messages.iter().map(|m| m.summary()).collect::<Vec<_>>()
    );
    for m in &end.messages {
        assert_eq!(
            m.tag, b'E',
            "{what}: only an ErrorResponse may precede the close, got tag {:?}",
            m.tag as char
        );
    }
}

async fn assert_neighbour_works(neighbour: &tokio_postgres::Client, proxy: &TestProxy) {
    let row = neighbour
        .query_one("SELECT $1::text", &[&"still here"])
        .await
        .expect("the established neighbour keeps working");
    assert_eq!(row.get::<_, String>(0), "still here");
    let fresh = connect(&proxy.conn_str(ADMIN)).await;
    let v: i32 = fresh
        .query_one("SELECT 3", &[])
        .await
        .expect("new client")
        .get(0);
    assert_eq!(v, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_after_startup_close_only_that_connection() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("garbage", ProxyOptions::default()).await;
        let neighbour = connect(&proxy.conn_str(ADMIN)).await;
        neighbour
            .simple_query("SELECT 1")
            .await
            .expect("neighbour before");

        let mut raw = RawConn::admin(&proxy).await;
        // An unknown message type with a well-formed length, then more junk.
        raw.send(&[
            0xff, 0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x00, 0x42,
        ])
        .await
        .expect("send garbage");
        assert_closed_with_at_most_an_error(&mut raw, "garbage after startup").await;
        assert_neighbour_works(&neighbour, &proxy).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_startup_packet_closes_only_that_connection() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("garbage_startup", ProxyOptions::default()).await;
        let neighbour = connect(&proxy.conn_str(ADMIN)).await;
        let mut raw = RawConn::connect(proxy.port).await;
        raw.send(b"GET / HTTP/1.1\r\nHost: orgwall\r\n\r\n")
            .await
            .expect("send http");
        assert_closed_with_at_most_an_error(&mut raw, "HTTP instead of startup").await;
        assert_neighbour_works(&neighbour, &proxy).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_prefix_closes_only_that_connection() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("huge_len", ProxyOptions::default()).await;
        let neighbour = connect(&proxy.conn_str(ADMIN)).await;
        let mut raw = RawConn::admin(&proxy).await;
        // 'Q' claiming a 2 GiB body; the proxy must not wait for (or allocate) it.
        raw.send(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b'S', b'E', b'L'])
            .await
            .expect("send huge length");
        assert_closed_with_at_most_an_error(&mut raw, "huge length prefix").await;
        assert_neighbour_works(&neighbour, &proxy).await;

        // Same for a startup packet that claims to be enormous.
        let mut raw = RawConn::connect(proxy.port).await;
        raw.send(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
            .await
            .expect("send huge startup");
        assert_closed_with_at_most_an_error(&mut raw, "huge startup length").await;
        assert_neighbour_works(&neighbour, &proxy).await;
    })
    .await;
}

/// Polls PostgreSQL directly (bounded) until no backend of `db` is idle in a transaction.
async fn assert_no_open_transaction_upstream(db: &TestDb) {
    let direct = connect(&db.direct_conn_str()).await;
    let mut last = -1;
    for _ in 0..100 {
        last = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND (state LIKE 'idle in transaction%' OR xact_start IS NOT NULL AND state <> 'active')",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0);
        if last == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{last} upstream backend(s) still idle in transaction after the client vanished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_a_clean_pooled_connection() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("killed_txn", ProxyOptions::pool(1, "transaction")).await;
        let setup = connect(&proxy.conn_str(ADMIN)).await;
        setup
            .batch_execute("CREATE TABLE k (x int)")
            .await
            .expect("create");
        drop(setup);

        // Twice: once after the INSERT's answer arrived, once with the INSERT still in flight.
        for (round, wait_for_answer) in [(1, true), (2, false)] {
            let mut raw = RawConn::admin(&proxy).await;
            let msgs = raw.query("BEGIN").await;
            assert_eq!(
                ready_status(&msgs),
                Some(b'T'),
                "in a transaction after BEGIN"
            );
            if wait_for_answer {
                let msgs = raw.query("INSERT INTO k VALUES (1)").await;
                assert_eq!(ready_status(&msgs), Some(b'T'), "{msgs:?}");
            } else {
                let mut q = bytes::BytesMut::new();
                postgres_protocol::message::frontend::query("INSERT INTO k VALUES (1)", &mut q)
                    .expect("encode");
                raw.send(&q).await.expect("send insert");
            }
            drop(raw); // vanish without COMMIT or Terminate

            let b = connect(&proxy.conn_str(ADMIN)).await;
            let n: i64 = b
                .query_one("SELECT count(*) FROM k WHERE x = 1", &[])
                .await
                .expect("next client uses the single pooled connection")
                .get(0);
            assert_eq!(
                n, 0,
                "round {round}: the vanished client's uncommitted row is visible"
            );
            let iso: String = b
                .query_one("SHOW transaction_isolation", &[])
                .await
                .expect("SHOW transaction_isolation")
                .get(0);
            assert_eq!(iso, "read committed");
            b.batch_execute(&format!("INSERT INTO k VALUES ({})", 100 + round))
                .await
                .expect("autocommit insert");
            drop(b);

            // B's write is committed for real (it did not run inside the leftover transaction).
            let direct = connect(&db.direct_conn_str()).await;
            let rows: Vec<i32> = direct
                .query("SELECT x FROM k ORDER BY x", &[])
                .await
                .expect("direct read")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let expected: Vec<i32> = (1..=round).map(|r| 100 + r).collect();
            assert_eq!(
                rows, expected,
                "round {round}: rows visible directly in PostgreSQL"
            );
            assert_no_open_transaction_upstream(&db).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_query_does_not_leak_its_results_to_the_next_client() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("killed_query", ProxyOptions::pool(1, "transaction")).await;
        let mut raw = RawConn::admin(&proxy).await;
        let mut q = bytes::BytesMut::new();
        postgres_protocol::message::frontend::query(
            "SELECT 'vanished-result'::text, pg_sleep(1.5)",
            &mut q,
        )
        .expect("encode");
        raw.send(&q).await.expect("send slow query");
        // Let the query reach PostgreSQL, then vanish.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(raw);

        let b = connect(&proxy.conn_str(ADMIN)).await;
        for i in 0..5i32 {
            let row = b
                .query_one("SELECT $1::int4, 'b-result'::text", &[&i])
                .await
                .expect("next client after a vanished one");
            assert_eq!(row.get::<_, i32>(0), i);
            assert_eq!(row.get::<_, String>(1), "b-result");
        }
        let msgs = b.simple_query("SELECT 'simple-b'").await.expect("simple");
        let got: Vec<&str> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec!["simple-b"]);
    })
    .await;
}

/// A query on a client connection that was open across an upstream restart: it may succeed
/// (the proxy reconnected) or fail cleanly with SQLSTATE class 08 or 57P01 — never hang, never
/// drop the connection without an ErrorResponse.
fn assert_recovered_or_clean_error<T>(r: Result<T, tokio_postgres::Error>, what: &str) {
    if let Err(e) = r {
        let code = sqlstate(&e);
        let clean = code
            .as_deref()
            .map(|c| c.starts_with("08") || c == "57P01")
            .unwrap_or(false);
        assert!(
            clean,
            "{what}: expected success or SQLSTATE 08xxx/57P01, got {}",
            describe(&e)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_mid_test_recovers_for_new_connections() {
    bounded(240, async {
        let pg = dedicated_postgres().await;
        let db = TestDb::create_on(pg.server.clone(), "restart").await;
        let proxy = TestProxy::start(&db, ProxyOptions::pool(2, "transaction")).await;

        let a = connect(&proxy.conn_str(ADMIN)).await;
        a.batch_execute("CREATE TABLE r (x int); INSERT INTO r VALUES (1)")
            .await
            .expect("setup");
        let counter = a.prepare("SELECT count(*) FROM r").await.expect("prepare");
        // Warm both pooled server connections.
        let a2 = connect(&proxy.conn_str(ADMIN)).await;
        let (x, y) = futures_util::join!(
            a.query_one("SELECT pg_sleep(0.2), 1", &[]),
            a2.query_one("SELECT pg_sleep(0.2), 2", &[])
        );
        x.expect("warm 1");
        y.expect("warm 2");

        let server = pg.server.clone();
        tokio::task::spawn_blocking(move || server.restart())
            .await
            .expect("restart task");

        // The old client: success or a clean error, bounded.
        let r = tokio::time::timeout(Duration::from_secs(30), a.query_one(&counter, &[]))
            .await
            .expect("a client open across the restart must not hang (30s guard)");
        assert_recovered_or_clean_error(r, "prepared statement across restart");
        let r = tokio::time::timeout(Duration::from_secs(30), a.simple_query("SELECT 1"))
            .await
            .expect("second query across the restart must not hang (30s guard)");
        assert_recovered_or_clean_error(r, "second query across restart");

        // New clients work on their first query, concurrently (both pooled connections).
        let b1 = connect(&proxy.conn_str(ADMIN)).await;
        let b2 = connect(&proxy.conn_str(ADMIN)).await;
        let (r1, r2) = futures_util::join!(
            b1.query_one("SELECT count(*), pg_sleep(0.2)::text FROM r", &[]),
            b2.query_one("SELECT count(*), pg_sleep(0.2)::text FROM r", &[])
        );
        for (i, r) in [r1, r2].into_iter().enumerate() {
            let row = r.unwrap_or_else(|e| {
                panic!("new client {i} after restart failed: {}", describe(&e))
            });
            assert_eq!(row.get::<_, i64>(0), 1);
        }
        let s = b1
            .prepare("SELECT $1::int4 * 2")
            .await
            .expect("prepare after restart");
        let v: i32 = b1.query_one(&s, &[&21i32]).await.expect("execute").get(0);
        assert_eq!(v, 42);
        drop(proxy);
        drop(pg);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_max_message_bytes_closes_only_that_connection() {
    bounded(120, async {
        let opts = ProxyOptions {
            max_message_bytes: Some(4096),
            ..Default::default()
        };
        let (_db, proxy) = db_and_proxy("max_msg", opts).await;
        let neighbour = connect(&proxy.conn_str(ADMIN)).await;
        // A query just under the limit is fine.
        let small = format!("SELECT '{}'::text", "x".repeat(3000));
        neighbour
            .simple_query(&small)
            .await
            .expect("query under the limit");

        let mut raw = RawConn::admin(&proxy).await;
        let mut q = bytes::BytesMut::new();
        let big = format!("SELECT '{}'::text", "y".repeat(10_000));
        postgres_protocol::message::frontend::query(&big, &mut q).expect("encode");
        // The proxy may close as soon as it has read the length, so a failed write is fine.
        let _ = raw.send(&q).await;
        assert_closed_with_at_most_an_error(&mut raw, "message over max_message_bytes").await;
        assert_neighbour_works(&neighbour, &proxy).await;
    })
    .await;
}
