//! Connection establishment through the proxy: TLS with a certificate generated in the test
//! (tokio-postgres + rustls, and psql with `sslmode=require`), refusal of plaintext when TLS is
//! required, SSLRequest/GSSENCRequest declined when not offered, SCRAM-SHA-256 logins, and
//! `28P01` for a wrong password or an unknown user; the Unix-domain socket listener.

use orgwall_e2e::clients::{describe, expect_refused, psql, psql_unix, sqlstate, try_connect};
use orgwall_e2e::raw::RawConn;
use orgwall_e2e::tls::TestCert;
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, ADMIN, TENANT};

fn tls_options(cert: &TestCert, require: bool) -> ProxyOptions {
    ProxyOptions {
        tls: Some((cert.clone(), require)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sslmode_require_with_rustls_client_succeeds() {
    bounded(120, async {
        let cert = TestCert::generate();
        let (_db, proxy) = db_and_proxy("tls_rustls", tls_options(&cert, false)).await;
        let conn_str = proxy.conn_str_with(ADMIN.name, ADMIN.password, "require");
        let (client, connection) = tokio_postgres::connect(&conn_str, cert.connector())
            .await
            .unwrap_or_else(|e| panic!("TLS connect: {}", describe(&e)));
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT $1::text || ' over TLS'", &[&"hello"])
            .await
            .expect("query over TLS");
        assert_eq!(row.get::<_, String>(0), "hello over TLS");
        let msgs = client
            .simple_query("SELECT 1; SELECT 2")
            .await
            .expect("simple over TLS");
        let rows: Vec<&str> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec!["1", "2"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rustls_client_rejects_a_different_certificate() {
    bounded(120, async {
        let served = TestCert::generate();
        let other = TestCert::generate();
        let (_db, proxy) = db_and_proxy("tls_wrong_cert", tls_options(&served, false)).await;
        let conn_str = proxy.conn_str_with(ADMIN.name, ADMIN.password, "require");
        let r = tokio_postgres::connect(&conn_str, other.connector()).await;
        assert!(
            r.is_err(),
            "a client trusting another certificate must not connect: the proxy must present \
             the configured one"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_sslmode_require_connects_over_tls() {
    bounded(120, async {
        let cert = TestCert::generate();
        let (_db, proxy) = db_and_proxy("tls_psql", tls_options(&cert, false)).await;
        let out = psql(
            &proxy,
            ADMIN,
            "require",
            &["-v", "ON_ERROR_STOP=1", "-A", "-t", "-f", "-"],
            Some("\\conninfo\nSELECT 'tls-ok';\n"),
        )
        .await;
        out.assert_success("psql sslmode=require");
        assert!(out.stdout.contains("tls-ok"), "{out:?}");
        assert!(
            out.stdout.contains("SSL connection"),
            "\\conninfo should report an SSL connection: {out:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plaintext_clients() {
    bounded(120, async {
        let cert = TestCert::generate();
        let (_db, proxy) = db_and_proxy("tls_required", tls_options(&cert, true)).await;
        let err = expect_refused(
            try_connect(&proxy.conn_str(ADMIN)).await,
            "plaintext with tls.require = true",
        );
        let mentions_ssl = err
            .as_db_error()
            .map(|d| {
                let m = d.message().to_ascii_lowercase();
                m.contains("ssl") || m.contains("tls")
            })
            .unwrap_or(false);
        assert!(
            sqlstate(&err).as_deref() == Some("28000") || mentions_ssl,
            "expected SQLSTATE 28000 or an SSL/TLS error message, got {}",
            describe(&err)
        );
        let out = psql(&proxy, ADMIN, "disable", &["-c", "SELECT 1"], None).await;
        assert!(
            !out.status.success(),
            "psql sslmode=disable must fail: {out:?}"
        );

        // The same proxy still serves TLS clients.
        let conn_str = proxy.conn_str_with(ADMIN.name, ADMIN.password, "require");
        let (client, connection) = tokio_postgres::connect(&conn_str, cert.connector())
            .await
            .unwrap_or_else(|e| panic!("TLS connect: {}", describe(&e)));
        tokio::spawn(connection);
        let v: i32 = client
            .query_one("SELECT 5", &[])
            .await
            .expect("TLS query")
            .get(0);
        assert_eq!(v, 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_optional_still_accepts_plaintext_clients() {
    bounded(120, async {
        let cert = TestCert::generate();
        let (_db, proxy) = db_and_proxy("tls_optional", tls_options(&cert, false)).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        let v: i32 = c
            .query_one("SELECT 6", &[])
            .await
            .expect("plaintext query")
            .get(0);
        assert_eq!(v, 6);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_gssenc_requests_are_declined_without_tls_then_startup_proceeds() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("gssenc", ProxyOptions::default()).await;
        let mut raw = RawConn::connect(proxy.port).await;
        assert_eq!(
            raw.gssenc_request().await,
            b'N',
            "GSSENCRequest must be declined"
        );
        let auth = raw
            .login(ADMIN.name, ADMIN.password, &proxy.dbname)
            .await
            .unwrap_or_else(|e| panic!("login after GSSENC decline: {:?}", e.field(b'M')));
        assert!(auth.contains(&0), "AuthenticationOk expected, got {auth:?}");
        let msgs = raw.query("SELECT 'after-gss'").await;
        assert!(msgs.iter().any(|m| m.tag == b'D'), "no DataRow: {msgs:?}");

        // Without [tls], an SSLRequest is answered with 'N' and plaintext startup continues.
        let mut raw = RawConn::connect(proxy.port).await;
        assert_eq!(raw.ssl_request().await, b'N', "SSLRequest without [tls]");
        raw.login(ADMIN.name, ADMIN.password, &proxy.dbname)
            .await
            .unwrap_or_else(|e| panic!("login after SSL decline: {:?}", e.field(b'M')));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_use_scram_sha_256_for_admin_and_tenant_users() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("scram", ProxyOptions::default()).await;
        for login in [ADMIN, TENANT] {
            let mut raw = RawConn::connect(proxy.port).await;
            let auth = raw
                .login(login.name, login.password, &proxy.dbname)
                .await
                .unwrap_or_else(|e| panic!("{} login: {:?}", login.name, e.field(b'M')));
            // AuthenticationSASL, SASLContinue, SASLFinal (server signature verified), Ok.
            assert_eq!(auth, vec![10, 11, 12, 0], "{} auth sequence", login.name);
            let msgs = raw.query("SELECT current_database()").await;
            assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
        }
        // tokio-postgres negotiates the same way.
        let c = connect(&proxy.conn_str(TENANT)).await;
        let v: i32 = c
            .query_one("SELECT 8", &[])
            .await
            .expect("tenant query")
            .get(0);
        assert_eq!(v, 8);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_rejected_with_28p01() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("wrong_pw", ProxyOptions::default()).await;
        for login in [ADMIN, TENANT] {
            let r =
                try_connect(&proxy.conn_str_with(login.name, "not-the-password", "disable")).await;
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{} logged in with a wrong password", login.name));
            assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{}", describe(&e));
        }
        // A failed login does not disturb the next, correct one.
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.simple_query("SELECT 1")
            .await
            .expect("query after failed logins");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_is_rejected_with_28p01() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("unknown_user", ProxyOptions::default()).await;
        let r = try_connect(&proxy.conn_str_with("nobody_here", "whatever", "disable")).await;
        let e = expect_refused(r, "an unknown user");
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{}", describe(&e));
        // The PostgreSQL superuser is not a proxy login either.
        let r = try_connect(&proxy.conn_str_with(
            "postgres",
            orgwall_e2e::pg::SUPERUSER_PASSWORD,
            "disable",
        ))
        .await;
        let e = expect_refused(r, "the upstream superuser (not a proxy user)");
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{}", describe(&e));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_clients_log_in_cancel_and_skip_required_tls() {
    bounded(120, async {
        let cert = TestCert::generate();
        let opts = ProxyOptions {
            unix_listener: true,
            ..tls_options(&cert, true)
        };
        let (_db, proxy) = db_and_proxy("unix_listener", opts).await;
        let socket = proxy.socket_path();
        assert!(socket.exists(), "no socket at {}", socket.display());

        // TLS is required on TCP, but a local socket needs none (as PostgreSQL's `local` lines).
        expect_refused(
            try_connect(&proxy.conn_str(ADMIN)).await,
            "plaintext TCP with tls.require = true",
        );
        for login in [ADMIN, TENANT] {
            let c = connect(&proxy.unix_conn_str(login)).await;
            let v: String = c
                .query_one("SELECT $1::text || ' via unix'", &[&login.name])
                .await
                .unwrap_or_else(|e| panic!("{}: {}", login.name, describe(&e)))
                .get(0);
            assert_eq!(v, format!("{} via unix", login.name));
        }

        // An SSLRequest on the socket is declined, as PostgreSQL does for local connections.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::UnixStream::connect(&socket).await.unwrap();
        raw.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
        assert_eq!(raw.read_u8().await.unwrap(), b'N');
        drop(raw);

        let out = psql_unix(
            &proxy,
            ADMIN,
            &["-v", "ON_ERROR_STOP=1", "-A", "-t", "-f", "-"],
            Some("\\conninfo\nSELECT 'unix-ok';\n"),
        )
        .await;
        out.assert_success("psql over the Unix socket");
        assert!(out.stdout.contains("unix-ok"), "{out:?}");
        assert!(out.stdout.contains("via socket in"), "{out:?}");

        // A cancel request arriving on the socket reaches the query's backend.
        let c = connect(&proxy.unix_conn_str(ADMIN)).await;
        let token = c.cancel_token();
        let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(10)").await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel over the socket");
        let err = sleeper
            .await
            .unwrap()
            .expect_err("pg_sleep must be cancelled");
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("57014"),
            "{}",
            describe(&err)
        );
        assert!(started.elapsed().as_secs() < 5);

        proxy.shutdown().await.expect("clean shutdown");
        assert!(!socket.exists(), "socket file left at {}", socket.display());
    })
    .await;
}
