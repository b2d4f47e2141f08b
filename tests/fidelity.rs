//! What psycopg 3's own test suite found through Orgwall (issue 23), each as an end-to-end
//! regression test through a real client: statement names under session pooling, the reported
//! `client_encoding`, shared statements after DDL, two-phase commit and the exact refusals
//! under transaction pooling. `benches/psycopg_suite.py` runs the suite itself.

use bytes::BytesMut;
use orgwall_e2e::pg::SUPERUSER_PASSWORD;
use orgwall_e2e::raw::{
    bind_execute, bind_execute_no_params, bind_text_execute_sync, error_code, first_column, parse,
    tags, RawConn,
};
use orgwall_e2e::{
    bounded, db_and_proxy, dedicated_postgres_with, ProxyOptions, TestDb, TestProxy, ADMIN,
};
use postgres_protocol::message::frontend;

const PREPARED: &str = "SELECT name FROM pg_prepared_statements ORDER BY prepare_time, name";

/// Session pooling gives a client its server connection for the whole session, so there is no
/// reason to rename its statements: `pg_prepared_statements`, SQL `EXECUTE` and `DEALLOCATE`
/// see the client's names, and Close / DEALLOCATE remove them from the server (psycopg's
/// `test_evict_lru_deallocate` counts them there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_the_clients_statement_names() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("names", ProxyOptions::pool(2, "session")).await;
        let mut raw = RawConn::admin(&proxy).await;
        let mut out = BytesMut::new();
        parse(&mut out, "S_1", "SELECT $1::int4 + 1");
        parse(&mut out, "two", "SELECT $1::int4 + 2");
        bind_execute(&mut out, "S_1", 1);
        bind_execute(&mut out, "two", 1);
        frontend::sync(&mut out);
        assert_eq!(tags(&raw.exchange(&out, "parse").await), "112DC2DCZ");
        let names = first_column(&raw.query(PREPARED).await);
        assert_eq!(names, [Some("S_1".into()), Some("two".into())]);

        // SQL-level references reach the same statements.
        let msgs = raw.query("EXECUTE two(40)").await;
        assert_eq!(first_column(&msgs), [Some("42".into())], "{msgs:?}");

        // Close (extended protocol) and DEALLOCATE (SQL) take them off the server too.
        let mut out = BytesMut::new();
        frontend::close(b'S', "two", &mut out).expect("close");
        frontend::sync(&mut out);
        assert_eq!(tags(&raw.exchange(&out, "close").await), "3Z");
        let msgs = raw.query("DEALLOCATE \"S_1\"").await;
        assert_eq!(tags(&msgs), "CZ", "{msgs:?}");
        assert_eq!(
            first_column(&raw.query(PREPARED).await),
            Vec::<Option<String>>::new()
        );
        let msgs = raw.query("EXECUTE two(1)").await;
        assert_eq!(error_code(&msgs).as_deref(), Some("26000"), "{msgs:?}");

        // The name is free again, for other SQL.
        let mut out = BytesMut::new();
        parse(&mut out, "two", "SELECT $1::int4 * 2");
        bind_execute(&mut out, "two", 21);
        frontend::sync(&mut out);
        let msgs = raw.exchange(&out, "parse again").await;
        assert_eq!(first_column(&msgs), [Some("42".into())], "{msgs:?}");

        // A client name that looks like Orgwall's own is still renamed on the server.
        let mut out = BytesMut::new();
        parse(&mut out, "orgwall_0000000000000000", "SELECT 7");
        bind_execute_no_params(&mut out, "orgwall_0000000000000000");
        frontend::sync(&mut out);
        let msgs = raw.exchange(&out, "orgwall_ name").await;
        assert_eq!(first_column(&msgs), [Some("7".into())], "{msgs:?}");
    })
    .await;
}

/// Settings sent at startup are reported as PostgreSQL reports them (`client_encoding=utf8` as
/// `UTF8`, `euc-jp` as `EUC_JP`, `DateStyle=iso` as `ISO, MDY`), for admin and tenant logins,
/// and other encodings work; a value PostgreSQL refuses fails the login with its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_are_reported_as_postgres_reports_them() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("reported", ProxyOptions::pool(2, "session")).await;
        let cases: &[(&str, &str, &str)] = &[
            ("client_encoding", "utf8", "UTF8"),
            ("client_encoding", "utf_8", "UTF8"),
            ("client_encoding", "euc-jp", "EUC_JP"),
            ("DateStyle", "iso", "ISO, MDY"),
            ("TimeZone", "utc", "UTC"),
            ("application_name", "fidelity", "fidelity"),
        ];
        for &(name, sent, expected) in cases {
            for port in [db.server.port(), proxy.port] {
                let mut raw = RawConn::connect(port).await;
                let (user, password) = if port == proxy.port {
                    (ADMIN.name, ADMIN.password)
                } else {
                    ("postgres", SUPERUSER_PASSWORD)
                };
                let (_, reported) = raw
                    .login_with(user, password, &db.name, &[(name, sent)])
                    .await
                    .unwrap_or_else(|e| panic!("{name}={sent}: {:?}", e.field(b'M')));
                let got = reported.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                assert_eq!(
                    got.map(String::as_str),
                    Some(expected),
                    "{name}={sent} on {port}"
                );
            }
        }
        // Results come back in the client's encoding: U+30A2 is 0xA5 0xA2 in EUC_JP.
        let mut raw = RawConn::connect(proxy.port).await;
        raw.login_with(
            ADMIN.name,
            ADMIN.password,
            &db.name,
            &[("client_encoding", "EUC_JP")],
        )
        .await
        .expect("EUC_JP login");
        let msgs = raw.query("SELECT chr(12450)").await;
        let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
        assert_eq!(row.body[6..], [0xA5, 0xA2], "{msgs:?}");

        let mut raw = RawConn::connect(proxy.port).await;
        let refused = raw
            .login_with(
                ADMIN.name,
                ADMIN.password,
                &db.name,
                &[("DateStyle", "nonsense")],
            )
            .await
            .expect_err("an invalid DateStyle");
        assert_eq!(refused.field(b'C').as_deref(), Some("22023"));
        assert_eq!(refused.field(b'S').as_deref(), Some("FATAL"));
    })
    .await;
}

/// A server-side statement Orgwall shares between clients must not outlive a type it was
/// planned against: after `DROP TYPE; CREATE TYPE` of the same name, preparing the same SQL
/// again works as on PostgreSQL (psycopg's `test_change_type*`: "cache lookup failed for
/// type"), for another client and for the client that ran the DDL inside its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_retires_statements_shared_between_clients() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("ddl", ProxyOptions::pool(1, "transaction")).await;
        let sql = "SELECT $1::prepenum::text";
        let mut a = RawConn::admin(&proxy).await;
        let mut b = RawConn::admin(&proxy).await;
        let run = |name: &'static str| {
            let mut out = BytesMut::new();
            parse(&mut out, name, sql);
            bind_text_execute_sync(&mut out, name, &["foo"]);
            out
        };
        a.query("CREATE TYPE prepenum AS ENUM ('foo')").await;
        let msgs = a.exchange(&run("s1"), "first").await;
        assert_eq!(first_column(&msgs), [Some("foo".into())], "{msgs:?}");

        // Another client replaces the type; `a` prepares the same SQL again.
        let msgs = b
            .query("DROP TYPE prepenum CASCADE; CREATE TYPE prepenum AS ENUM ('foo')")
            .await;
        assert_eq!(error_code(&msgs), None, "{msgs:?}");
        let msgs = a.exchange(&run("s2"), "after DDL").await;
        assert_eq!(first_column(&msgs), [Some("foo".into())], "{msgs:?}");

        // Inside one transaction, as psycopg's test does it.
        a.query("BEGIN").await;
        let msgs = a.exchange(&run("s3"), "in a transaction").await;
        assert_eq!(first_column(&msgs), [Some("foo".into())], "{msgs:?}");
        let msgs = a
            .query("DROP TYPE prepenum; CREATE TYPE prepenum AS ENUM ('foo')")
            .await;
        assert_eq!(error_code(&msgs), None, "{msgs:?}");
        let msgs = a.exchange(&run("s4"), "after DDL in a transaction").await;
        assert_eq!(first_column(&msgs), [Some("foo".into())], "{msgs:?}");
        let msgs = a.query("COMMIT").await;
        assert_eq!(error_code(&msgs), None, "{msgs:?}");
    })
    .await;
}

/// Two-phase commit under transaction pooling, as PgBouncer's transaction mode runs it:
/// `PREPARE TRANSACTION` ends the client's transaction (its server connection goes back to the
/// pool) and `COMMIT PREPARED` / `ROLLBACK PREPARED` finish it from any connection, here from
/// another client's. A statement named "transaction" is still SQL-level PREPARE (refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_commit_under_transaction_pooling() {
    bounded(180, async {
        let pg = dedicated_postgres_with(&[("max_prepared_transactions", "4")]).await;
        let db = TestDb::create_on(pg.server.clone(), "tpc").await;
        let proxy = TestProxy::start(&db, ProxyOptions::pool(2, "transaction")).await;
        let mut a = RawConn::admin(&proxy).await;
        let mut b = RawConn::admin(&proxy).await;
        let ok = |msgs: &[orgwall_e2e::raw::Msg]| assert_eq!(error_code(msgs), None, "{msgs:?}");
        ok(&a.query("CREATE TABLE tpc (v int)").await);

        for (gid, finish, rows) in [("g-commit", "COMMIT", "1"), ("g-rollback", "ROLLBACK", "1")] {
            ok(&a.query("BEGIN").await);
            ok(&a.query("SET datestyle = 'German'").await);
            ok(&a.query("INSERT INTO tpc VALUES (1)").await);
            let msgs = a.query(&format!("PREPARE TRANSACTION '{gid}'")).await;
            ok(&msgs);
            assert_eq!(orgwall_e2e::raw::ready_status(&msgs), Some(b'I'));
            // The SET of the prepared transaction stays, as after a commit.
            let msgs = a.query("SHOW datestyle").await;
            assert_eq!(
                first_column(&msgs),
                [Some("German, DMY".into())],
                "{msgs:?}"
            );
            ok(&a.query("RESET datestyle").await);

            let msgs = b.query("SELECT gid FROM pg_prepared_xacts").await;
            assert_eq!(first_column(&msgs), [Some(gid.to_string())], "{msgs:?}");
            ok(&b.query(&format!("{finish} PREPARED '{gid}'")).await);
            let msgs = b.query("SELECT count(*) FROM tpc").await;
            assert_eq!(
                first_column(&msgs),
                [Some(rows.to_string())],
                "{finish}: {msgs:?}"
            );
        }
        let msgs = a.query("PREPARE transaction AS SELECT 1").await;
        assert_eq!(error_code(&msgs).as_deref(), Some("0A000"), "{msgs:?}");
    })
    .await;
}

/// `SELECT set_config($1, $2, false)` with the setting's name bound too (psycopg's
/// `test_set_transaction_param_reset`) is tracked under transaction pooling like `SET`: it
/// follows its client to another server connection and does not leak to another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_config_with_a_bound_name_follows_its_client() {
    bounded(120, async {
        let (_db, proxy) =
            db_and_proxy("set_config_names", ProxyOptions::pool(2, "transaction")).await;
        let mut a = RawConn::admin(&proxy).await;
        let mut b = RawConn::admin(&proxy).await;
        let mut out = BytesMut::new();
        parse(&mut out, "", "SELECT set_config($1, $2, false)");
        bind_text_execute_sync(
            &mut out,
            "",
            &["default_transaction_isolation", "serializable"],
        );
        let msgs = a.exchange(&out, "set_config").await;
        assert_eq!(
            first_column(&msgs),
            [Some("serializable".into())],
            "{msgs:?}"
        );

        // `b` holds a server connection (likely the one `a` used) while `a` runs on another.
        assert_eq!(error_code(&b.query("BEGIN").await), None);
        let show = "SHOW default_transaction_isolation";
        assert_eq!(
            first_column(&a.query(show).await),
            [Some("serializable".into())]
        );
        assert_eq!(
            first_column(&b.query(show).await),
            [Some("read committed".into())]
        );
        assert_eq!(error_code(&b.query("COMMIT").await), None);
        assert_eq!(
            first_column(&b.query(show).await),
            [Some("read committed".into())]
        );
        assert_eq!(
            first_column(&a.query(show).await),
            [Some("serializable".into())]
        );
    })
    .await;
}

/// A message with tag `tag` and `body` (raw bytes: SQL in a client encoding other than UTF-8).
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// With `client_encoding` set to another encoding (psycopg's `test_query_encode[latin9]`), an
/// admin's SQL in that encoding reaches PostgreSQL as written, in both protocols and pool
/// modes: '€' is 0xA4 in LATIN9, and comes back so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_encodings_pass_through_for_admins() {
    bounded(120, async {
        for mode in ["session", "transaction"] {
            let (_db, proxy) = db_and_proxy("latin9", ProxyOptions::pool(2, mode)).await;
            let mut raw = RawConn::admin(&proxy).await;
            let msgs = raw.query("SET client_encoding TO latin9").await;
            assert_eq!(error_code(&msgs), None, "{mode}: {msgs:?}");
            let euro = |msgs: &[orgwall_e2e::raw::Msg]| {
                let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
                assert_eq!(row.body[2..], [0, 0, 0, 2, 0xA4, b'x'], "{mode}: {msgs:?}");
            };
            let simple = message(b'Q', b"SELECT '\xA4x'\0");
            euro(&raw.exchange(&simple, "simple").await);

            for name in ["", "named"] {
                let mut body = format!("{name}\0").into_bytes();
                body.extend_from_slice(b"SELECT '\xA4x'\0\0\0");
                let mut out = BytesMut::from(&message(b'P', &body)[..]);
                bind_execute_no_params(&mut out, name);
                frontend::sync(&mut out);
                euro(&raw.exchange(&out, "extended").await);
            }
            // Another text with the same lossy UTF-8 reading is another statement.
            let body = b"other\0SELECT '\xA5x'\0\0\0".to_vec();
            let mut out = BytesMut::from(&message(b'P', &body)[..]);
            bind_execute_no_params(&mut out, "other");
            frontend::sync(&mut out);
            let msgs = raw.exchange(&out, "other text").await;
            let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
            assert_eq!(row.body[6..], [0xA5, b'x'], "{mode}: {msgs:?}");
        }
    })
    .await;
}

/// SQL-level references to a statement the client prepared through the protocol (`EXECUTE
/// name`, sqlx's `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1(NULL)`) reach it under the
/// name pooling gave it on the server, in both protocols and pool modes, also from a statement
/// prepared earlier and run on another server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_execute_names_the_clients_protocol_statement() {
    bounded(120, async {
        for mode in ["transaction", "session"] {
            let (_db, proxy) = db_and_proxy("sql_execute", ProxyOptions::pool(3, mode)).await;
            let mut a = RawConn::admin(&proxy).await;
            let mut b = RawConn::admin(&proxy).await;
            let mut out = BytesMut::new();
            parse(&mut out, "sqlx_s_1", "SELECT $1::int4 + 1");
            parse(&mut out, "later", "EXECUTE sqlx_s_1(1)");
            frontend::sync(&mut out);
            assert_eq!(tags(&a.exchange(&out, "parse").await), "11Z", "{mode}");

            let msgs = a.query("EXECUTE sqlx_s_1(41)").await;
            assert_eq!(first_column(&msgs), [Some("42".into())], "{mode}: {msgs:?}");
            let msgs = a
                .query("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1(NULL)")
                .await;
            assert_eq!(error_code(&msgs), None, "{mode}: {msgs:?}");
            let mut out = BytesMut::new();
            parse(&mut out, "", "EXPLAIN EXECUTE sqlx_s_1(NULL)");
            bind_execute_no_params(&mut out, "");
            frontend::sync(&mut out);
            let msgs = a.exchange(&out, "extended EXPLAIN").await;
            assert_eq!(error_code(&msgs), None, "{mode}: {msgs:?}");

            // `b` holds a connection; `later` runs where `sqlx_s_1` may not be prepared yet.
            assert_eq!(error_code(&b.query("BEGIN").await), None);
            let mut out = BytesMut::new();
            bind_execute_no_params(&mut out, "later");
            frontend::sync(&mut out);
            let msgs = a.exchange(&out, "later").await;
            assert_eq!(first_column(&msgs), [Some("2".into())], "{mode}: {msgs:?}");
            assert_eq!(error_code(&b.query("COMMIT").await), None);

            let msgs = a.query("EXECUTE nothing_prepared").await;
            assert_eq!(
                error_code(&msgs).as_deref(),
                Some("26000"),
                "{mode}: {msgs:?}"
            );
        }
    })
    .await;
}

/// With session pooling a notification from the client's own `NOTIFY` names the sender by the
/// pid the client was told at login (psycopg's `test_notify_handlers` compares them); another
/// session's notification keeps that session's server pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_notifications_carry_the_pid_the_client_knows() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("notify_pid", ProxyOptions::pool(3, "session")).await;
        let mut a = RawConn::admin(&proxy).await;
        let mut b = RawConn::admin(&proxy).await;
        let pid = a.backend_pid.expect("BackendKeyData");
        let sender = |msgs: &[orgwall_e2e::raw::Msg]| {
            let n = msgs.iter().find(|m| m.tag == b'A').expect("a notification");
            i32::from_be_bytes([n.body[0], n.body[1], n.body[2], n.body[3]])
        };
        let msgs = a.query("LISTEN foo; NOTIFY foo, 'mine'").await;
        assert_eq!(sender(&msgs), pid, "{msgs:?}");
        assert_eq!(error_code(&b.query("NOTIFY foo, 'theirs'").await), None);
        let msgs = a.query("SELECT 1").await;
        assert_ne!(sender(&msgs), pid, "{msgs:?}");
        assert_ne!(Some(sender(&msgs)), b.backend_pid, "{msgs:?}");
    })
    .await;
}
