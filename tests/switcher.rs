//! Switcher logins (issue 3, DESIGN.md §3): a service account that binds the tenant per session
//! (`SET orgwall.org_id`), per transaction (`SET LOCAL`) or with a signed token
//! (`SET orgwall.tenant_token`); unbound, it may not touch tenant tables. Tenant logins may not
//! switch at all.

use orgwall_e2e::clients::{connect, describe, expect_db_error};
use orgwall_e2e::tenancy::{
    hs256_token, now_secs, tenant_db, tenant_proxy, unsigned_token, JWT_SECRET, SWITCHER, TENANT_A,
};
use orgwall_e2e::{bounded, ProxyOptions, TestDb, TestProxy};
use tokio_postgres::Client;

const A_USERS: [&str; 3] = ["u_a1", "u_a2", "u_a3"];
const B_USERS: [&str; 3] = ["u_b1", "u_b2", "u_b3"];
const USERS_SQL: &str = "SELECT id FROM users ORDER BY id";

/// User ids visible now, through the simple and the extended protocol (which must agree).
async fn visible(c: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let simple: Vec<String> = c
        .simple_query(USERS_SQL)
        .await?
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    let extended: Vec<String> = c
        .query(USERS_SQL, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(simple, extended, "simple and extended protocol disagree");
    Ok(simple)
}

async fn sees(c: &Client, want: &[&str], what: &str) {
    match visible(c).await {
        Ok(ids) => assert_eq!(ids, want, "{what}"),
        Err(e) => panic!("{what}: {}", describe(&e)),
    }
}

async fn refused(c: &Client, what: &str) {
    expect_db_error(visible(c).await, "42501", what);
}

async fn setup(label: &str, opts: ProxyOptions) -> (TestDb, TestProxy) {
    let db = tenant_db(label).await;
    let proxy = tenant_proxy(&db, opts).await;
    (db, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_binds_per_session_and_per_transaction() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_bind", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;

        // Unbound: no tenant data, but statements that touch none work.
        refused(&c, "unbound switcher reading users").await;
        let msg = expect_db_error(
            c.execute("UPDATE items SET active = true", &[]).await,
            "42501",
            "unbound switcher writing",
        );
        assert!(msg.starts_with("orgwall:"), "{msg}");
        let one: i32 = c.query_one("SELECT 1", &[]).await.expect("SELECT 1").get(0);
        assert_eq!(one, 1);
        c.simple_query("SELECT 1")
            .await
            .expect("simple SELECT 1 unbound");

        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind A");
        sees(&c, &A_USERS, "bound to org_a").await;
        c.batch_execute("SET orgwall.org_id TO 'org_b'")
            .await
            .expect("bind B");
        sees(&c, &B_USERS, "switched to org_b").await;

        // SET LOCAL lasts for one transaction, then the session binding is back.
        c.batch_execute("BEGIN").await.expect("BEGIN");
        c.batch_execute("SET LOCAL orgwall.org_id = 'org_a'")
            .await
            .expect("SET LOCAL A");
        sees(&c, &A_USERS, "SET LOCAL org_a inside the transaction").await;
        c.batch_execute("COMMIT").await.expect("COMMIT");
        sees(
            &c,
            &B_USERS,
            "after COMMIT the session binding (org_b) is back",
        )
        .await;
        c.batch_execute("BEGIN").await.expect("BEGIN 2");
        c.batch_execute("SET LOCAL orgwall.org_id = 'org_a'")
            .await
            .expect("SET LOCAL A 2");
        sees(&c, &A_USERS, "SET LOCAL org_a, second transaction").await;
        c.batch_execute("ROLLBACK").await.expect("ROLLBACK");
        sees(
            &c,
            &B_USERS,
            "after ROLLBACK the session binding (org_b) is back",
        )
        .await;

        // RESET unbinds.
        c.batch_execute("RESET orgwall.org_id")
            .await
            .expect("RESET");
        refused(&c, "after RESET orgwall.org_id").await;

        // From unbound, SET LOCAL reverts to unbound.
        c.batch_execute("BEGIN").await.expect("BEGIN 3");
        c.batch_execute("SET LOCAL orgwall.org_id = 'org_b'")
            .await
            .expect("SET LOCAL B");
        sees(&c, &B_USERS, "SET LOCAL org_b from unbound").await;
        c.batch_execute("COMMIT").await.expect("COMMIT 3");
        refused(&c, "after COMMIT, unbound again").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_prepared_statements_follow_the_binding() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_prepared", ProxyOptions::pool(1, "transaction")).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind A");
        let stmt = c
            .prepare(USERS_SQL)
            .await
            .expect("prepare while bound to A");
        let ids = |rows: Vec<tokio_postgres::Row>| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(c.query(&stmt, &[]).await.expect("run as A")), A_USERS);
        c.batch_execute("SET orgwall.org_id = 'org_b'")
            .await
            .expect("bind B");
        assert_eq!(
            ids(c.query(&stmt, &[]).await.expect("run as B")),
            B_USERS,
            "a statement prepared while bound to org_a must run as org_b after switching"
        );
        c.batch_execute("RESET orgwall.org_id")
            .await
            .expect("RESET");
        expect_db_error(
            c.query(&stmt, &[]).await,
            "42501",
            "prepared statement after unbinding",
        );

        // Two switchers bound to different tenants, sharing one server connection.
        let d = connect(&proxy.conn_str(SWITCHER)).await;
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("c binds A");
        d.batch_execute("SET orgwall.org_id = 'org_b'")
            .await
            .expect("d binds B");
        let sd = d.prepare(USERS_SQL).await.expect("d prepares");
        for round in 0..3 {
            assert_eq!(
                ids(c.query(&stmt, &[]).await.expect("c runs")),
                A_USERS,
                "round {round}: c"
            );
            assert_eq!(
                ids(d.query(&sd, &[]).await.expect("d runs")),
                B_USERS,
                "round {round}: d"
            );
            sees(&c, &A_USERS, "c, unnamed").await;
            sees(&d, &B_USERS, "d, unnamed").await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_tokens_are_verified() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_jwt", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        let set = |t: &str| format!("SET orgwall.tenant_token = '{t}'");

        let good_b = hs256_token(JWT_SECRET.as_bytes(), r#"{"org_id":"org_b","sub":"svc"}"#);
        c.batch_execute(&set(&good_b))
            .await
            .expect("valid HS256 token");
        sees(&c, &B_USERS, "bound by a valid token for org_b").await;
        let good_a = hs256_token(
            JWT_SECRET.as_bytes(),
            &format!(r#"{{"org_id":"org_a","exp":{}}}"#, now_secs() + 3600),
        );
        c.batch_execute(&set(&good_a))
            .await
            .expect("valid token with exp");
        sees(&c, &A_USERS, "bound by a valid token for org_a").await;

        // Each bad token is refused with 42501 and does not bind its org_b claim.
        let bad_cases = [
            (
                "wrong secret",
                hs256_token(b"not-the-secret", r#"{"org_id":"org_b"}"#),
            ),
            ("alg none", unsigned_token(r#"{"org_id":"org_b"}"#)),
            (
                "expired",
                hs256_token(
                    JWT_SECRET.as_bytes(),
                    &format!(r#"{{"org_id":"org_b","exp":{}}}"#, now_secs() - 3600),
                ),
            ),
            (
                "no org_id claim",
                hs256_token(JWT_SECRET.as_bytes(), r#"{"sub":"svc"}"#),
            ),
            ("tampered payload", {
                let t = hs256_token(JWT_SECRET.as_bytes(), r#"{"org_id":"org_a"}"#);
                let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
                use base64::Engine;
                parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(r#"{"org_id":"org_b"}"#);
                parts.join(".")
            }),
            ("garbage", "not.a.jwt".to_string()),
        ];
        for (what, token) in bad_cases {
            let msg = expect_db_error(c.batch_execute(&set(&token)).await, "42501", what);
            assert!(msg.starts_with("orgwall:"), "{what}: {msg}");
            match visible(&c).await {
                Ok(ids) => assert_eq!(
                    ids, A_USERS,
                    "{what}: the binding changed after a rejected token"
                ),
                Err(e) => assert_eq!(
                    e.code().map(|c| c.code()),
                    Some("42501"),
                    "{what}: after a rejected token: {}",
                    describe(&e)
                ),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_logins_cannot_switch() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_tenant_refused", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(TENANT_A)).await;
        let token = hs256_token(JWT_SECRET.as_bytes(), r#"{"org_id":"org_b"}"#);
        for sql in [
            "SET orgwall.org_id = 'org_b'".to_string(),
            "SET LOCAL orgwall.org_id = 'org_b'".to_string(),
            format!("SET orgwall.tenant_token = '{token}'"),
            "RESET orgwall.org_id".to_string(),
        ] {
            let msg = expect_db_error(c.batch_execute(&sql).await, "42501", &sql);
            assert!(msg.starts_with("orgwall:"), "{sql}: {msg}");
            sees(&c, &A_USERS, &format!("tenant A after {sql}")).await;
        }
    })
    .await;
}

/// Drivers that use the extended protocol for everything (JDBC, Npgsql, node-postgres with
/// parameters, Prisma) send `SET` as Parse/Bind/Execute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgwall_settings_work_through_the_extended_protocol() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_extended", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        c.execute("SET orgwall.org_id = 'org_a'", &[])
            .await
            .expect("bind via extended");
        sees(&c, &A_USERS, "bound via extended protocol").await;
        let t = connect(&proxy.conn_str(TENANT_A)).await;
        expect_db_error(
            t.execute("SET orgwall.org_id = 'org_b'", &[]).await,
            "42501",
            "extended SET orgwall.org_id as a tenant",
        );
        sees(&t, &A_USERS, "tenant A after extended SET").await;
    })
    .await;
}
