//! Session state versus pooling: in transaction mode, state that cannot survive pooling
//! (LISTEN, session advisory locks, temp tables) is refused with `0A000`, and session `SET`s
//! follow their client across pooled server connections without leaking to other clients;
//! in session mode LISTEN/NOTIFY works.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use orgwall_e2e::clients::describe;
use orgwall_e2e::raw::{bind_execute, bind_execute_no_params, error_code, parse, tags, RawConn};
use orgwall_e2e::{bounded, connect, db_and_proxy, expect_db_error, ProxyOptions, ADMIN};
use postgres_protocol::message::frontend;
use tokio_postgres::{AsyncMessage, NoTls};

async fn show(c: &tokio_postgres::Client, what: &str) -> String {
    c.query_one(&format!("SHOW {what}"), &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW {what}: {}", describe(&e)))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_refuses_listen_with_0a000() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("listen_tx", ProxyOptions::pool(2, "transaction")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        expect_db_error(
            c.simple_query("LISTEN foo").await,
            "0A000",
            "LISTEN (simple)",
        );
        expect_db_error(
            c.query("LISTEN foo", &[]).await,
            "0A000",
            "LISTEN (extended)",
        );
        let v: i32 = c
            .query_one("SELECT 1", &[])
            .await
            .expect("after refusal")
            .get(0);
        assert_eq!(v, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_refuses_session_advisory_locks_with_0a000() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("advisory_tx", ProxyOptions::pool(2, "transaction")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        expect_db_error(
            c.simple_query("SELECT pg_advisory_lock(1)").await,
            "0A000",
            "pg_advisory_lock (simple)",
        );
        expect_db_error(
            c.query("SELECT pg_advisory_lock($1::int8)", &[&1i64]).await,
            "0A000",
            "pg_advisory_lock (extended)",
        );
        // Nothing was actually locked upstream.
        let direct = connect(&db.direct_conn_str()).await;
        let locks: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        assert_eq!(
            locks, 0,
            "a refused advisory lock must not be held by a pooled connection"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_refuses_temp_tables_with_0a000() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("temp_tx", ProxyOptions::pool(2, "transaction")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        expect_db_error(
            c.simple_query("CREATE TEMP TABLE t (x int)").await,
            "0A000",
            "CREATE TEMP TABLE",
        );
        expect_db_error(
            c.simple_query("CREATE TEMPORARY TABLE t2 AS SELECT 1 AS x")
                .await,
            "0A000",
            "CREATE TEMPORARY TABLE AS",
        );
        // Ordinary tables are fine.
        c.batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("regular table");
    })
    .await;
}

/// Pool of one, two clients interleaving: A's session `SET` must be in force for every later
/// statement of A (in and out of explicit transactions, both protocols) and never visible to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_set_follows_its_client_across_a_shared_pooled_connection() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("session_set", ProxyOptions::pool(1, "transaction")).await;
        let a = connect(&proxy.conn_str(ADMIN)).await;
        let b = connect(&proxy.conn_str(ADMIN)).await;
        let default = show(&b, "statement_timeout").await;
        assert_eq!(default, "0");

        a.batch_execute("SET statement_timeout = '1234ms'")
            .await
            .expect("SET");
        for round in 0..3 {
            assert_eq!(show(&b, "statement_timeout").await, "0", "B, round {round}");
            assert_eq!(
                show(&a, "statement_timeout").await,
                "1234ms",
                "A, round {round}"
            );
            let msgs = a
                .simple_query("SHOW statement_timeout")
                .await
                .expect("simple SHOW");
            let got: Vec<&str> = msgs
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                    _ => None,
                })
                .collect();
            assert_eq!(got, vec!["1234ms"], "A simple protocol, round {round}");
            b.batch_execute("BEGIN; SELECT 1; COMMIT")
                .await
                .expect("B transaction");
        }
        // Inside A's explicit transaction too, while B waits for the single connection.
        let mut a = a;
        let tx = a.transaction().await.expect("begin");
        let b_task = tokio::spawn(async move {
            let v = show(&b, "statement_timeout").await;
            (b, v)
        });
        let in_tx: String = tx
            .query_one("SHOW statement_timeout", &[])
            .await
            .expect("SHOW")
            .get(0);
        assert_eq!(in_tx, "1234ms");
        tx.commit().await.expect("commit");
        let (b, b_saw) = b_task.await.expect("B task");
        assert_eq!(b_saw, "0");

        // The setting is really in force for A: a longer statement is cancelled by it.
        let e = expect_db_error(
            a.query_one("SELECT pg_sleep(3)", &[]).await,
            "57014",
            "A's statement_timeout",
        );
        assert!(e.contains("statement timeout"), "{e}");
        b.query_one("SELECT pg_sleep(1.5)", &[])
            .await
            .expect("B has no timeout");

        // SET LOCAL lasts for the transaction only; RESET restores the default.
        a.batch_execute("BEGIN; SET LOCAL statement_timeout = '777ms'; COMMIT")
            .await
            .expect("SET LOCAL");
        assert_eq!(show(&a, "statement_timeout").await, "1234ms");
        a.batch_execute("RESET statement_timeout")
            .await
            .expect("RESET");
        assert_eq!(show(&a, "statement_timeout").await, "0");
        assert_eq!(show(&b, "statement_timeout").await, "0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_allows_listen_and_delivers_notifications() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("listen_session", ProxyOptions::pool(3, "session")).await;
        let (listener, mut connection) = tokio_postgres::connect(&proxy.conn_str(ADMIN), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {}", describe(&e)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let AsyncMessage::Notification(n) = m {
                    let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                }
            }
        });
        listener
            .batch_execute("LISTEN foo")
            .await
            .expect("LISTEN in session mode");

        let notifier = connect(&proxy.conn_str(ADMIN)).await;
        notifier
            .batch_execute("NOTIFY foo, 'hello from notifier'")
            .await
            .expect("NOTIFY");
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("notification delivered to the idle listener (10s guard)")
            .expect("notification channel open");
        assert_eq!(got, ("foo".to_string(), "hello from notifier".to_string()));

        // UNLISTEN works and the listener connection stays usable.
        listener
            .batch_execute("UNLISTEN foo")
            .await
            .expect("UNLISTEN");
        let v: i32 = listener
            .query_one("SELECT 9", &[])
            .await
            .expect("query")
            .get(0);
        assert_eq!(v, 9);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_temp_tables_and_session_state() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("session_temp", ProxyOptions::pool(2, "session")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.batch_execute("CREATE TEMP TABLE tt (x int); INSERT INTO tt VALUES (1), (2)")
            .await
            .expect("temp table in session mode");
        c.batch_execute("SET application_name = 'session-mode'")
            .await
            .expect("SET");
        let n: i64 = c
            .query_one("SELECT count(*) FROM tt", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2);
        assert_eq!(show(&c, "application_name").await, "session-mode");
        let locked: bool = c
            .query_one("SELECT pg_try_advisory_lock(42)", &[])
            .await
            .expect("advisory lock in session mode")
            .get(0);
        assert!(locked);
    })
    .await;
}

/// Settings a transaction changed are kept only if it commits, exactly as PostgreSQL keeps
/// them: the same steps run directly and through a pool of one shared with a second client
/// (which takes the server connection between steps), with `SHOW` after each, must agree.
/// Covers ROLLBACK, an error in an implicit multi-statement transaction, `SET` through the
/// extended protocol, savepoints (rolled back to, released, named with quotes, in both
/// protocols), `COMMIT AND CHAIN`, and asyncpg's pool reset string (several statements ending
/// in `RESET ALL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_commit_and_rollback_as_on_postgres() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("settings_tx", ProxyOptions::pool(1, "transaction")).await;
        // (step, through the extended protocol, outside a transaction after it)
        let steps: &[(&str, bool, bool)] = &[
            ("SET application_name = 'committed'", false, true),
            ("BEGIN; SET application_name = 'rolled back'; ROLLBACK", false, true),
            ("SET application_name = 'implicit'; SELECT 1/0", false, true),
            ("SET application_name = 'multi'; SET statement_timeout = '7s'; SELECT 1", false, true),
            ("BEGIN", false, false),
            ("SET application_name = 'extended, rolled back'", true, false),
            ("SELECT 1/0", true, false),
            ("ROLLBACK", false, true),
            ("BEGIN; SET statement_timeout = '8s'; COMMIT", false, true),
            ("SET application_name = 'extended'", true, true),
            (
                "BEGIN; SET application_name = 'kept'; SAVEPOINT s; RESET statement_timeout",
                false,
                false,
            ),
            ("SELECT 1/0", false, false),
            ("ROLLBACK TO SAVEPOINT s; COMMIT", false, true),
            (
                "BEGIN; SAVEPOINT a; SET application_name = 'in a'; SAVEPOINT \"B\"",
                false,
                false,
            ),
            ("SET statement_timeout = '9s'", true, false),
            ("RELEASE \"B\"", true, false),
            ("ROLLBACK TO a", true, false),
            ("SET application_name = 'after a'; COMMIT", false, true),
            ("BEGIN; RESET ALL; COMMIT AND CHAIN; SET application_name = 'chained'", false, false),
            ("ROLLBACK", false, true),
            ("SET application_name = 'before reset'", false, true),
            ("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;", false, true),
        ];
        let run = |conn: String, other: Option<String>| async move {
            let c = connect(&conn).await;
            let other = match other {
                Some(o) => Some(connect(&o).await),
                None => None,
            };
            let mut seen = Vec::new();
            for (sql, extended, idle) in steps {
                let r = if *extended {
                    c.execute(*sql, &[]).await.map(|_| ())
                } else {
                    c.batch_execute(sql).await
                };
                let outcome = r.map_err(|e| e.code().map(|c| c.code().to_string()));
                if let (Some(o), true) = (&other, idle) {
                    // Another client's transaction on the one server connection in between.
                    o.batch_execute("SET application_name = 'other'; SELECT 1")
                        .await
                        .expect("other client");
                }
                let shown = match c
                    .query_one("SELECT current_setting('application_name') || ' / ' || current_setting('statement_timeout')", &[])
                    .await
                {
                    Ok(row) => row.get::<_, String>(0),
                    Err(e) => format!("{:?}", e.code().map(|c| c.code().to_string())),
                };
                seen.push(format!("{sql} -> {outcome:?}: {shown}"));
            }
            seen
        };
        // The proxy's clients log in with this application_name: RESET ALL returns to it.
        let direct = format!("{} application_name=orgwall-e2e", db.direct_conn_str());
        let direct = run(direct, None).await;
        let proxied = run(proxy.conn_str(ADMIN), Some(proxy.conn_str(ADMIN))).await;
        assert_eq!(proxied, direct);
        // What PostgreSQL does, spelled out for the steps that once went wrong through Orgwall.
        assert!(direct[1].ends_with("committed / 0"), "{}", direct[1]);
        assert!(direct[3].ends_with("multi / 7s"), "{}", direct[3]);
        assert!(direct[12].ends_with("kept / 8s"), "{}", direct[12]);
        assert!(direct[17].ends_with("after a / 8s"), "{}", direct[17]);
        let last = direct.last().expect("steps");
        assert!(last.ends_with(": orgwall-e2e / 0"), "{last}");
    })
    .await;
}

/// `SELECT set_config('name', 'value', false)` (how Django sets its `TimeZone`) is a session
/// `SET`: it follows its client across a pool of one shared with another client, in both
/// protocols, and never reaches the other client; with `true` it lasts for its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_follows_its_client_like_set() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("set_config", ProxyOptions::pool(1, "transaction")).await;
        let a = connect(&proxy.conn_str(ADMIN)).await;
        let b = connect(&proxy.conn_str(ADMIN)).await;
        let default = show(&b, "TimeZone").await;
        assert_ne!(default, "Asia/Tokyo");

        a.batch_execute("SELECT set_config('TimeZone', 'Asia/Tokyo', false)")
            .await
            .expect("simple set_config");
        b.batch_execute("SELECT 1").await.expect("B");
        assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
        assert_eq!(show(&b, "TimeZone").await, default);

        a.query(
            "SELECT pg_catalog.set_config('application_name', 'a''s app', false)",
            &[],
        )
        .await
        .expect("extended set_config");
        b.batch_execute("SELECT 1").await.expect("B");
        assert_eq!(show(&a, "application_name").await, "a's app");
        assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
        assert_ne!(show(&b, "application_name").await, "a's app");

        a.batch_execute("BEGIN; SELECT set_config('TimeZone', 'UTC', true)")
            .await
            .expect("local set_config");
        assert_eq!(show(&a, "TimeZone").await, "UTC");
        a.batch_execute("COMMIT").await.expect("commit");
        b.batch_execute("SELECT 1").await.expect("B");
        assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
        // Rolled back: forgotten, as PostgreSQL forgets it.
        a.batch_execute("BEGIN; SELECT set_config('TimeZone', 'UTC', false); ROLLBACK")
            .await
            .expect("rolled back set_config");
        b.batch_execute("SELECT 1").await.expect("B");
        assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
        // Sequelize's connect statement: an INTERVAL time zone, replayed in the form that
        // takes one.
        a.batch_execute(
            "SET client_min_messages TO warning; SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE",
        )
        .await
        .expect("interval time zone");
        b.batch_execute("SELECT 1").await.expect("B");
        assert_eq!(show(&a, "TimeZone").await, "<+02>-02");
        assert_eq!(show(&a, "client_min_messages").await, "warning");
    })
    .await;
}

/// `RESET` returns a setting to the value the client's startup packet gave it, as on
/// PostgreSQL, in both pool modes: Orgwall's server connection started with its own startup
/// packet, so without help a client's `RESET ALL` took it to the server's defaults (and with
/// session pooling kept it there for the rest of the session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_to_the_startup_settings_as_on_postgres() {
    bounded(120, async {
        // (step, through the extended protocol)
        let steps: &[(&str, bool)] = &[
            ("SET application_name = 'changed'", false),
            ("RESET ALL", false),
            ("SET statement_timeout = '7s'", false),
            ("RESET statement_timeout", true),
            ("SET statement_timeout = '8s'", false),
            ("BEGIN; RESET ALL; ROLLBACK", false),
            ("BEGIN; RESET ALL; COMMIT", false),
            ("SET application_name = 'again'", true),
            ("RESET ALL", true),
            ("RESET application_name; SELECT 1/0", false),
        ];
        let run = |conn: String| async move {
            let c = connect(&conn).await;
            let mut seen = Vec::new();
            for (sql, extended) in steps {
                let r = if *extended {
                    c.execute(*sql, &[]).await.map(|_| ())
                } else {
                    c.batch_execute(sql).await
                };
                let outcome = r.map_err(|e| e.code().map(|c| c.code().to_string()));
                let row = c
                    .query_one("SELECT current_setting('application_name') || ' / ' || current_setting('statement_timeout')", &[])
                    .await
                    .expect("settings");
                seen.push(format!("{sql} -> {outcome:?}: {}", row.get::<_, String>(0)));
            }
            seen
        };
        let startup = " application_name=startup options='-c statement_timeout=5s'";
        for mode in ["transaction", "session"] {
            let (db, proxy) = db_and_proxy("reset_startup", ProxyOptions::pool(1, mode)).await;
            let direct = run(format!("{}{startup}", db.direct_conn_str())).await;
            let proxied = run(format!("{}{startup}", proxy.conn_str(ADMIN))).await;
            assert_eq!(proxied, direct, "{mode}");
            assert!(direct[1].ends_with(": startup / 5s"), "{}", direct[1]);
            assert!(direct[3].ends_with(": startup / 5s"), "{}", direct[3]);
            assert!(direct[5].ends_with(": startup / 8s"), "{}", direct[5]);
        }
    })
    .await;
}

/// SQL `DEALLOCATE` of the client's protocol-level statements (psycopg sends `DEALLOCATE ALL`
/// after every rollback once it has prepared something): with transaction pooling Orgwall
/// answers it, dropping the client's statements as PostgreSQL would; with session pooling it
/// answers it for those statements and passes it on for SQL-level ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_drops_the_clients_statements_in_both_pool_modes() {
    bounded(120, async {
        for mode in ["transaction", "session"] {
            let (_db, proxy) = db_and_proxy("deallocate", ProxyOptions::pool(2, mode)).await;
            let mut raw = RawConn::admin(&proxy).await;
            let mut out = BytesMut::new();
            for (name, sql) in [
                ("S_1", "SELECT $1::int4 + 1"),
                ("two", "SELECT $1::int4 + 2"),
            ] {
                parse(&mut out, name, sql);
            }
            frontend::sync(&mut out);
            assert_eq!(tags(&raw.exchange(&out, "parse").await), "11Z", "{mode}");
            let run = |name: &str| {
                let mut out = BytesMut::new();
                bind_execute(&mut out, name, 1);
                frontend::sync(&mut out);
                out
            };

            // Identifiers fold to lower case as in PostgreSQL: `S_1` needs quotes.
            let msgs = raw.query("DEALLOCATE S_1").await;
            assert_eq!(error_code(&msgs).as_deref(), Some("26000"), "{mode}");
            let msgs = raw.query("DEALLOCATE \"S_1\"").await;
            assert_eq!(tags(&msgs), "CZ", "{mode}: {msgs:?}");
            assert!(msgs[0].body.starts_with(b"DEALLOCATE\0"), "{mode}");
            let msgs = raw.exchange(&run("S_1"), "S_1 after DEALLOCATE").await;
            assert_eq!(error_code(&msgs).as_deref(), Some("26000"), "{mode}");
            assert_eq!(
                tags(&raw.exchange(&run("two"), "two").await),
                "2DCZ",
                "{mode}"
            );

            // DEALLOCATE ALL through the extended protocol, as psycopg sends it.
            let mut out = BytesMut::new();
            parse(&mut out, "", "DEALLOCATE ALL");
            bind_execute_no_params(&mut out, "");
            frontend::sync(&mut out);
            let msgs = raw.exchange(&out, "DEALLOCATE ALL").await;
            assert_eq!(tags(&msgs), "12CZ", "{mode}: {msgs:?}");
            assert!(msgs[2].body.starts_with(b"DEALLOCATE ALL\0"), "{mode}");
            let msgs = raw.exchange(&run("two"), "two after DEALLOCATE ALL").await;
            assert_eq!(error_code(&msgs).as_deref(), Some("26000"), "{mode}");

            // Inside a failed transaction it fails as every statement there does.
            raw.query("BEGIN").await;
            raw.query("SELECT 1/0").await;
            let msgs = raw.query("DEALLOCATE ALL").await;
            assert_eq!(error_code(&msgs).as_deref(), Some("25P02"), "{mode}");
            raw.query("ROLLBACK").await;
            let mut out = BytesMut::new();
            parse(&mut out, "two", "SELECT $1::int4 + 2");
            bind_execute(&mut out, "two", 1);
            frontend::sync(&mut out);
            assert_eq!(
                tags(&raw.exchange(&out, "two again").await),
                "12DCZ",
                "{mode}"
            );
            if mode == "session" {
                // SQL-level statements are PostgreSQL's own: DEALLOCATE reaches it.
                let msgs = raw
                    .query("PREPARE p AS SELECT 41 + 1; EXECUTE p; DEALLOCATE p")
                    .await;
                assert_eq!(error_code(&msgs), None, "{mode}: {msgs:?}");
                let msgs = raw.query("EXECUTE p").await;
                assert_eq!(error_code(&msgs).as_deref(), Some("26000"), "{mode}");
            }
        }
    })
    .await;
}

/// Session mode passes `DEALLOCATE ALL` and `DISCARD ALL` through; afterwards the client's
/// statements are gone, as they would be on PostgreSQL (26000 naming the client's statement),
/// and preparing the same SQL again prepares it again on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_deallocate_all_drops_statements_on_both_sides() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("session_discard", ProxyOptions::pool(2, "session")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
            let stmt = c.prepare("SELECT $1::int4 * 2").await.expect("prepare");
            let v: i32 = c.query_one(&stmt, &[&21i32]).await.expect("run").get(0);
            assert_eq!(v, 42);
            c.batch_execute(reset).await.expect(reset);
            let gone = c.query_one(&stmt, &[&1i32]).await;
            let e = expect_db_error(gone, "26000", reset);
            assert!(
                !e.contains("orgwall_"),
                "{reset}: the server's name leaked: {e}"
            );
            let again = c
                .prepare("SELECT $1::int4 * 2")
                .await
                .expect("prepare again");
            let v: i32 = c.query_one(&again, &[&4i32]).await.expect(reset).get(0);
            assert_eq!(v, 8, "{reset}");
        }
    })
    .await;
}

/// `?host=<socket dir>` in the upstream URL: the pool reaches PostgreSQL over its Unix socket
/// (no TLS negotiation, as in libpq), and both protocols work through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_over_a_unix_socket() {
    bounded(60, async {
        let opts = ProxyOptions {
            unix_upstream: true,
            ..ProxyOptions::pool(2, "transaction")
        };
        let (_db, proxy) = db_and_proxy("unix_upstream", opts).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        let row = c
            .query_one("SELECT inet_server_addr() IS NULL, $1::int + 1", &[&41i32])
            .await
            .expect("extended query over the socket");
        assert!(row.get::<_, bool>(0), "PostgreSQL saw a TCP connection");
        assert_eq!(row.get::<_, i32>(1), 42);
        let stmt = c.prepare("SELECT $1::text || '!'").await.expect("prepare");
        for word in ["a", "b", "c"] {
            let got: String = c.query_one(&stmt, &[&word]).await.expect("execute").get(0);
            assert_eq!(got, format!("{word}!"));
        }
        c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
            .await
            .expect("multi-statement simple query");
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2);
    })
    .await;
}
