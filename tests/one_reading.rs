//! Issue "One reading of SQL": each bypass found by trying Orgwall as an outside attacker
//! would, replayed against a real PostgreSQL through the proxy — in both pool modes, in the
//! simple and the extended protocol where the path differs — with the next tenant on the same
//! server connection checking that nothing was left behind.

use bytes::BytesMut;
use orgwall_e2e::clients::{connect, try_connect};
use orgwall_e2e::raw::{error_code, RawConn};
use orgwall_e2e::tenancy::{
    admin_direct, mentions_b, run_extended, run_simple, tenant_db, tenant_proxy, Outcome, TENANT_A,
    TENANT_B,
};
use orgwall_e2e::{bounded, ProxyOptions, TestProxy, ADMIN};
use postgres_protocol::message::frontend;

/// The first cell of the first row (the harness renders text as a quoted literal: unquoted
/// here), or the outcome's error code.
fn cell(o: &Outcome) -> String {
    match o {
        Outcome::Rows(rs) => {
            let c = rs
                .rows
                .first()
                .and_then(|r| r.first())
                .cloned()
                .unwrap_or_default();
            match c.strip_prefix('\'').and_then(|c| c.strip_suffix('\'')) {
                Some(inner) => inner.replace("''", "'"),
                None => c,
            }
        }
        other => format!("error {:?}", other.code()),
    }
}

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    cell(&run_simple(c, &format!("SHOW {name}")).await)
}

/// Tenant A tries each trick on a one-connection pool; tenant B then runs on that connection.
async fn tokenizer_and_settings(pool_mode: &'static str) {
    bounded(180, async {
        let db = tenant_db(&format!("one_reading_{pool_mode}")).await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, pool_mode)).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        // 1. A string PostgreSQL reads as one SELECT, which the old lexer read as a SET.
        let trick = "SELECT CASE WHEN false THEN 'a' ELSE'\\' END || '; SET standard_conforming_strings TO off; SELECT '";
        let o = run_simple(&a, trick).await;
        assert!(matches!(o, Outcome::Rows(_)), "{trick}: {o:?}");
        assert_eq!(show(&a, "standard_conforming_strings").await, "on");
        let leak = "SELECT '\\', ' UNION ALL SELECT email FROM public.users -- '";
        for o in [run_simple(&a, leak).await, run_extended(&a, leak, &[]).await] {
            if let Outcome::Rows(rs) = &o {
                assert_eq!(rs.rows.len(), 1, "{leak}: {o:?}");
                assert!(rs.leaks_b().is_none(), "{leak}: {o:?}");
            }
        }
        // 2. A value sqlparser used to print as a second statement.
        let inj = "SELECT '\\''; DELETE FROM users; --'";
        let o = run_simple(&a, inj).await;
        assert_eq!(cell(&o), "\\'; DELETE FROM users; --", "{inj}");
        let admin = admin_direct(&db).await;
        let users: i64 = admin.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
        assert!(users > 0, "users deleted through the printer");
        // 3. Pinned settings: the pinned value is a no-op, any other refused.
        let o = run_simple(&a, "SET standard_conforming_strings = on").await;
        assert!(o.code().is_none(), "{o:?}");
        for sql in [
            "SET standard_conforming_strings = off",
            "SET backslash_quote = on",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
        ] {
            let o = run_simple(&a, sql).await;
            assert_eq!(o.code(), Some("42501"), "{sql}: {o:?}");
        }
        // 4. Settings written in forms the old lexer missed are tracked (A keeps them) and never
        //    reach B on the same server connection.
        for sql in [
            "SET/**/app.x = 'from-a'",
            "SELECT \"set_config\"('app.y', 'from-a', false)",
            "SET/**/statement_timeout = 4321",
        ] {
            let o = run_simple(&a, sql).await;
            assert!(o.code().is_none(), "{sql}: {o:?}");
        }
        assert_eq!(show(&a, "app.x").await, "from-a");
        assert_eq!(show(&a, "statement_timeout").await, "4321ms");
        // 5. WITH/**/HOLD is a WITH HOLD cursor.
        let o = run_simple(&a, "DECLARE c CURSOR WITH/**/HOLD FOR SELECT id FROM items").await;
        if pool_mode == "transaction" {
            assert_eq!(o.code(), Some("0A000"), "{o:?}");
        }
        // 6. Field selection that calls a function.
        for sql in [
            "SELECT ('/etc/hostname'::text).pg_read_file",
            "SELECT (NULL::int).pg_stat_get_activity",
            "SELECT (1).pg_terminate_backend",
            "SELECT u.text FROM users u",
            "SELECT ('x'::text).ts_stat",
        ] {
            for o in [run_simple(&a, sql).await, run_extended(&a, sql, &[]).await] {
                assert_eq!(o.code(), Some("42501"), "{sql}: {o:?}");
            }
        }
        // A still works. Then B gets A's server connection (the only one; in session pooling
        // once A has gone) and sees none of A's settings.
        assert_eq!(cell(&run_simple(&a, "SELECT 1").await), "1");
        drop(a);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        assert_ne!(show(&b, "app.x").await, "from-a");
        assert_ne!(show(&b, "app.y").await, "from-a");
        assert_eq!(show(&b, "statement_timeout").await, "0");
        assert_eq!(show(&b, "standard_conforming_strings").await, "on");
        let o = run_simple(&b, "SELECT id FROM items").await;
        assert!(matches!(o, Outcome::Rows(_)), "{o:?}");
        drop(proxy);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenizer_tricks_and_settings_transaction_pooling() {
    tokenizer_and_settings("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenizer_tricks_and_settings_session_pooling() {
    tokenizer_and_settings("session").await;
}

fn with_options(proxy: &TestProxy, login: orgwall_e2e::proxy::Login, options: &str) -> String {
    format!("{} options='{options}'", proxy.conn_str(login))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_are_held_to_an_allow_list() {
    bounded(120, async {
        let db = tenant_db("one_reading_options").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "transaction")).await;
        for opt in [
            "-c role=postgres",
            "-c session_authorization=postgres",
            "-c search_path=pg_temp",
            "-c session_replication_role=replica",
            "-c standard_conforming_strings=off",
            "-c client_encoding=SJIS",
        ] {
            let err = try_connect(&with_options(&proxy, TENANT_A, opt))
                .await
                .err()
                .unwrap_or_else(|| panic!("{opt} accepted for a tenant"));
            let db_err = err.as_db_error().unwrap_or_else(|| panic!("{opt}: {err}"));
            assert_eq!(db_err.code().code(), "42501", "{opt}");
            assert!(
                db_err.message().starts_with("orgwall:"),
                "{opt}: {}",
                db_err.message()
            );
        }
        let ok = connect(&with_options(
            &proxy,
            TENANT_A,
            "-c statement_timeout=1234 -c DateStyle=ISO,\\\\ DMY",
        ))
        .await;
        assert_eq!(show(&ok, "statement_timeout").await, "1234ms");
        assert_eq!(show(&ok, "DateStyle").await, "ISO, DMY");
        // The role setting never reached a pooled connection: B and the admin run as before.
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        assert_eq!(show(&b, "statement_timeout").await, "0");
        let admin = connect(&with_options(&proxy, ADMIN, "-c search_path=public")).await;
        assert_eq!(show(&admin, "search_path").await, "public");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_crashes_the_proxy() {
    bounded(180, async {
        let db = tenant_db("one_reading_crash").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let bystander = connect(&proxy.conn_str(TENANT_B)).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let flat = format!("SELECT 1{}", "+1".repeat(50_000));
        let o = run_simple(&a, &flat).await;
        assert_eq!(o.code(), Some("54001"), "100 KB flat expression: {o:?}");
        let unions = format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(1000));
        for o in [
            run_simple(&a, &unions).await,
            run_extended(&a, &unions, &[]).await,
        ] {
            // Run by PostgreSQL, or refused by it or Orgwall: never a dead process.
            assert!(matches!(o, Outcome::Rows(_)) || o.code().is_some(), "{o:?}");
        }
        let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(run_simple(&a, &deep).await.code().is_some());
        let huge = format!("SELECT '{}'", "x".repeat(5 << 20));
        assert_eq!(run_simple(&a, &huge).await.code(), Some("54000"));
        assert_eq!(cell(&run_simple(&a, "SELECT 1").await), "1");
        assert_eq!(cell(&run_simple(&bystander, "SELECT 2").await), "2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_refused_not_rewritten() {
    bounded(120, async {
        let db = tenant_db("one_reading_utf8").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "transaction")).await;
        let mut raw = RawConn::connect(proxy.port).await;
        raw.login(TENANT_A.name, TENANT_A.password, &proxy.dbname)
            .await
            .unwrap_or_else(|e| panic!("login: {:?}", e.field(b'M')));
        // Query: "SELECT 'x<0xff>'".
        let mut q = BytesMut::new();
        let body: &[u8] = b"SELECT 'x\xff'\0";
        q.extend_from_slice(b"Q");
        q.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        q.extend_from_slice(body);
        let msgs = raw.exchange(&q, "invalid UTF-8 query").await;
        assert_eq!(error_code(&msgs).as_deref(), Some("22021"));
        // Parse with the same text, then Sync.
        let mut p = BytesMut::new();
        let body: &[u8] = b"\0SELECT 'x\xff'\0\0\0";
        p.extend_from_slice(b"P");
        p.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        p.extend_from_slice(body);
        frontend::sync(&mut p);
        let msgs = raw.exchange(&p, "invalid UTF-8 parse").await;
        assert_eq!(error_code(&msgs).as_deref(), Some("22021"));
        let msgs = raw.query("SELECT 1").await;
        assert_eq!(error_code(&msgs), None);
        assert!(!mentions_b("x"));
    })
    .await;
}
