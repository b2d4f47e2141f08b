//! Switcher logins (issue 3, DESIGN.md §3): a service account that binds the tenant per session
//! (`SET orgwall.org_id`), per transaction (`SET LOCAL`) or with a signed token
//! (`SET orgwall.tenant_token`); unbound, it may not touch tenant tables. Tenant logins may not
//! switch at all.

use orgwall_e2e::clients::{connect, describe, expect_db_error};
use orgwall_e2e::tenancy::{
    hs256_token, hs256_token_kid, now_secs, tenant_db, tenant_proxy, tenant_proxy_with_jwt,
    unsigned_token, JWT_SECRET, SWITCHER, TENANT_A,
};
use orgwall_e2e::{bounded, ProxyOptions, TestDb, TestProxy};
use tokio_postgres::Client;

const A_USERS: [&str; 3] = ["u_a1", "u_a2", "u_a3"];
const B_USERS: [&str; 3] = ["u_b1", "u_b2", "u_b3"];
const USERS_SQL: &str = "SELECT id FROM users ORDER BY id";
/// The secret of the `[[jwt.keys]]` entry `k2` in the key-id test.
const SECOND_SECRET: &str = "e2e-second-key";

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

        let good_b = hs256_token(
            JWT_SECRET.as_bytes(),
            &format!(
                r#"{{"org_id":"org_b","sub":"svc","exp":{}}}"#,
                now_secs() + 600
            ),
        );
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

        // Each bad token is refused with 42501, saying why, and does not bind its org_b claim.
        let now = now_secs();
        let claims = |extra: &str| format!(r#"{{"org_id":"org_b"{extra}}}"#);
        let signed = |extra: &str| hs256_token(JWT_SECRET.as_bytes(), &claims(extra));
        let exp = format!(r#","exp":{}"#, now + 60);
        let bad_cases = [
            ("no exp (a token must expire)", signed(""), "no exp claim"),
            (
                "expired",
                signed(&format!(r#","exp":{}"#, now - 3600)),
                "expired",
            ),
            (
                "nbf in the future",
                signed(&format!(r#","exp":{},"nbf":{}"#, now + 3600, now + 600)),
                "not valid yet",
            ),
            (
                "issued in the future",
                signed(&format!(r#","exp":{},"iat":{}"#, now + 3600, now + 600)),
                "issued in the future",
            ),
            (
                "lifetime over max_lifetime_secs (one day)",
                signed(&format!(r#","exp":{},"iat":{}"#, now + 3600, now - 86_000)),
                "exceeds",
            ),
            (
                "exp two days ahead, no iat",
                signed(&format!(r#","exp":{}"#, now + 2 * 86_400)),
                "exceeds",
            ),
            (
                "wrong secret",
                hs256_token(b"not-the-secret", &claims(&exp)),
                "signature",
            ),
            ("alg none", unsigned_token(&claims(&exp)), "token rejected"),
            (
                "no org_id claim",
                hs256_token(JWT_SECRET.as_bytes(), &format!(r#"{{"sub":"svc"{exp}}}"#)),
                "no org_id claim",
            ),
            (
                "tampered payload",
                {
                    let t = hs256_token(
                        JWT_SECRET.as_bytes(),
                        &claims(&exp).replace("org_b", "org_a"),
                    );
                    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
                    use base64::Engine;
                    parts[1] =
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(&exp));
                    parts.join(".")
                },
                "signature",
            ),
            ("garbage", "not.a.jwt".to_string(), "malformed"),
        ];
        for (what, token, why) in bad_cases {
            let msg = expect_db_error(c.batch_execute(&set(&token)).await, "42501", what);
            assert!(
                msg.starts_with("orgwall: tenant token rejected") && msg.contains(why),
                "{what}: {msg}"
            );
            sees(
                &c,
                &A_USERS,
                &format!("{what}: the binding must not change"),
            )
            .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_tokens_issuer_audience_and_key_ids() {
    bounded(300, async {
        let db = tenant_db("switcher_jwt_claims").await;
        let jwt = format!(
            "hs256_secret = \"{JWT_SECRET}\"\nissuer = \"https://idp.test\"\naudience = \"orgwall\"\n\
             [[jwt.keys]]\nkid = \"k2\"\nhs256_secret = \"{SECOND_SECRET}\"\n"
        );
        let proxy = tenant_proxy_with_jwt(&db, ProxyOptions::default(), &jwt).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        let now = now_secs();
        let claims = |org: &str, iss: &str, aud: &str| {
            format!(
                r#"{{"org_id":"{org}","iss":"{iss}","aud":{aud},"exp":{}}}"#,
                now + 600
            )
        };
        let set = |t: String| format!("SET orgwall.tenant_token = '{t}'");
        let token = |secret: &str, kid: Option<&str>, claims: String| {
            set(hs256_token_kid(secret.as_bytes(), kid, &claims))
        };

        let good = [
            (
                "no kid, the unnamed key, iss and aud match",
                token(JWT_SECRET, None, claims("org_a", "https://idp.test", r#""orgwall""#)),
                &A_USERS,
            ),
            (
                "kid k2, its key, aud an array that contains ours",
                token(
                    SECOND_SECRET,
                    Some("k2"),
                    claims("org_b", "https://idp.test", r#"["other","orgwall"]"#),
                ),
                &B_USERS,
            ),
            (
                "no kid, the named key (every key of the algorithm is tried)",
                token(SECOND_SECRET, None, claims("org_a", "https://idp.test", r#""orgwall""#)),
                &A_USERS,
            ),
        ];
        for (what, sql, want) in good {
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
            sees(&c, want, what).await;
        }

        let bad = [
            (
                "wrong issuer",
                token(JWT_SECRET, None, claims("org_b", "https://evil.test", r#""orgwall""#)),
                "issuer",
            ),
            (
                "no issuer",
                set(hs256_token(
                    JWT_SECRET.as_bytes(),
                    &format!(r#"{{"org_id":"org_b","aud":"orgwall","exp":{}}}"#, now + 60),
                )),
                "issuer",
            ),
            (
                "wrong audience",
                token(JWT_SECRET, None, claims("org_b", "https://idp.test", r#""other""#)),
                "audience",
            ),
            (
                "audience array without ours",
                token(JWT_SECRET, None, claims("org_b", "https://idp.test", r#"["a","b"]"#)),
                "audience",
            ),
            (
                "kid k2 signed with another configured key",
                token(JWT_SECRET, Some("k2"), claims("org_b", "https://idp.test", r#""orgwall""#)),
                "signature",
            ),
            (
                "unknown kid",
                token(SECOND_SECRET, Some("k9"), claims("org_b", "https://idp.test", r#""orgwall""#)),
                "unknown key id",
            ),
        ];
        for (what, sql, why) in bad {
            let msg = expect_db_error(c.batch_execute(&sql).await, "42501", what);
            assert!(
                msg.starts_with("orgwall: tenant token rejected") && msg.contains(why),
                "{what}: {msg}"
            );
            sees(&c, &A_USERS, &format!("{what}: the binding must not change")).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_token_refuses_plain_org_id_and_expired_bindings() {
    bounded(300, async {
        let db = tenant_db("switcher_require_token").await;
        let jwt =
            format!("hs256_secret = \"{JWT_SECRET}\"\nrequire_token = true\nleeway_secs = 0\n");
        let proxy = tenant_proxy_with_jwt(&db, ProxyOptions::default(), &jwt).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        let token = |org: &str, exp: u64| {
            format!(
                "SET orgwall.tenant_token = '{}'",
                hs256_token(
                    JWT_SECRET.as_bytes(),
                    &format!(r#"{{"org_id":"{org}","exp":{exp}}}"#)
                )
            )
        };

        // Plain org ids are refused, in both protocols, in and out of transactions.
        for (what, r) in [
            (
                "simple SET",
                c.batch_execute("SET orgwall.org_id = 'org_a'").await,
            ),
            (
                "simple SET LOCAL",
                c.batch_execute("SET LOCAL orgwall.org_id = 'org_a'").await,
            ),
            (
                "extended SET",
                c.execute("SET orgwall.org_id = 'org_a'", &[])
                    .await
                    .map(|_| ()),
            ),
        ] {
            let msg = expect_db_error(r, "42501", what);
            assert!(msg.contains("require_token"), "{what}: {msg}");
            refused(&c, &format!("after the refused {what}")).await;
        }
        c.batch_execute("BEGIN").await.expect("BEGIN");
        expect_db_error(
            c.batch_execute("SET LOCAL orgwall.org_id = 'org_a'").await,
            "42501",
            "SET LOCAL in a transaction",
        );
        c.batch_execute("ROLLBACK").await.expect("ROLLBACK");

        // A token binds; RESET unbinds.
        c.batch_execute(&token("org_b", now_secs() + 600))
            .await
            .expect("a token binds");
        sees(&c, &B_USERS, "bound by token").await;
        c.batch_execute("RESET orgwall.tenant_token")
            .await
            .expect("RESET");
        refused(&c, "after RESET").await;

        // A binding made with a token ends when the token expires.
        let exp = now_secs() + 3;
        c.batch_execute(&token("org_a", exp))
            .await
            .expect("a short-lived token binds");
        sees(&c, &A_USERS, "bound by a short-lived token").await;
        let stmt = c.prepare(USERS_SQL).await.expect("prepare while bound");
        while now_secs() < exp {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for (what, r) in [
            ("simple", c.simple_query(USERS_SQL).await.map(|_| ())),
            ("extended", c.query(USERS_SQL, &[]).await.map(|_| ())),
            (
                "prepared before expiry",
                c.query(&stmt, &[]).await.map(|_| ()),
            ),
        ] {
            let msg = expect_db_error(r, "42501", &format!("{what} after the token expired"));
            assert!(
                msg.contains("expired") && msg.contains("orgwall.tenant_token"),
                "{what}: {msg}"
            );
        }
        // Statements that need no tenant still run; a fresh token binds again.
        c.simple_query("SELECT 1")
            .await
            .expect("SELECT 1 after expiry");
        c.batch_execute(&token("org_b", now_secs() + 600))
            .await
            .expect("a fresh token");
        sees(&c, &B_USERS, "bound by a fresh token").await;
    })
    .await;
}

/// Runs `sql` with the simple protocol, or with the extended one (Parse/Bind/Execute).
async fn run(c: &Client, sql: &str, extended: bool) -> Result<(), tokio_postgres::Error> {
    if extended {
        c.execute(sql, &[]).await.map(|_| ())
    } else {
        c.batch_execute(sql).await
    }
}

/// `BEGIN; SET orgwall.org_id = …; ROLLBACK` and friends: the binding follows PostgreSQL's SET
/// semantics (transactions, savepoints, SET LOCAL, aborted transactions), in both protocols
/// and both pool modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_binding_follows_set_semantics() {
    bounded(300, async {
        let db = tenant_db("switcher_set_semantics").await;
        for mode in ["transaction", "session"] {
            let proxy = tenant_proxy(&db, ProxyOptions::pool(2, mode)).await;
            for extended in [false, true] {
                let c = connect(&proxy.conn_str(SWITCHER)).await;
                let how = format!("{mode} pooling, extended = {extended}");
                let step = |sql: &'static str| {
                    let c = &c;
                    let how = how.clone();
                    async move {
                        run(c, sql, extended)
                            .await
                            .unwrap_or_else(|e| panic!("{how}: {sql}: {}", describe(&e)))
                    }
                };
                step("SET orgwall.org_id = 'org_a'").await;

                // A session-level SET is undone by ROLLBACK, kept by COMMIT.
                step("BEGIN").await;
                step("SET orgwall.org_id = 'org_b'").await;
                sees(&c, &B_USERS, &format!("{how}: SET inside BEGIN")).await;
                step("ROLLBACK").await;
                sees(&c, &A_USERS, &format!("{how}: BEGIN; SET b; ROLLBACK")).await;
                step("BEGIN").await;
                step("SET orgwall.org_id = 'org_b'").await;
                step("COMMIT").await;
                sees(&c, &B_USERS, &format!("{how}: BEGIN; SET b; COMMIT")).await;
                step("SET orgwall.org_id = 'org_a'").await;

                // RESET likewise.
                step("BEGIN").await;
                step("RESET orgwall.org_id").await;
                refused(&c, &format!("{how}: RESET inside BEGIN")).await;
                step("ROLLBACK").await;
                sees(&c, &A_USERS, &format!("{how}: BEGIN; RESET; ROLLBACK")).await;

                // SET LOCAL after a savepoint: undone by ROLLBACK TO it.
                step("BEGIN").await;
                step("SAVEPOINT s").await;
                step("SET LOCAL orgwall.org_id = 'org_b'").await;
                sees(&c, &B_USERS, &format!("{how}: SET LOCAL after SAVEPOINT")).await;
                step("ROLLBACK TO s").await;
                sees(&c, &A_USERS, &format!("{how}: SAVEPOINT; SET LOCAL b; ROLLBACK TO")).await;
                step("COMMIT").await;
                sees(&c, &A_USERS, &format!("{how}: after that COMMIT")).await;

                // A session-level SET after a savepoint: undone by ROLLBACK TO; nested ones.
                step("BEGIN").await;
                step("SAVEPOINT s").await;
                step("SET orgwall.org_id = 'org_b'").await;
                step("SAVEPOINT t").await;
                step("SET orgwall.org_id = 'org_a'").await;
                step("ROLLBACK TO SAVEPOINT t").await;
                sees(&c, &B_USERS, &format!("{how}: ROLLBACK TO the inner savepoint")).await;
                step("ROLLBACK TO s").await;
                sees(&c, &A_USERS, &format!("{how}: ROLLBACK TO the outer savepoint")).await;
                step("COMMIT").await;
                sees(&c, &A_USERS, &format!("{how}: COMMIT after ROLLBACK TO")).await;

                // RELEASE merges into the transaction: kept by COMMIT, undone by ROLLBACK.
                step("BEGIN").await;
                step("SAVEPOINT s").await;
                step("SET orgwall.org_id = 'org_b'").await;
                step("RELEASE s").await;
                step("ROLLBACK").await;
                sees(&c, &A_USERS, &format!("{how}: RELEASE then ROLLBACK")).await;
                step("BEGIN").await;
                step("SAVEPOINT s").await;
                step("SET orgwall.org_id = 'org_b'").await;
                step("RELEASE SAVEPOINT s").await;
                step("COMMIT").await;
                sees(&c, &B_USERS, &format!("{how}: RELEASE then COMMIT")).await;
                step("SET orgwall.org_id = 'org_a'").await;

                // SET LOCAL ends with its transaction, whichever way it ends.
                step("BEGIN").await;
                step("SET LOCAL orgwall.org_id = 'org_b'").await;
                step("COMMIT").await;
                sees(&c, &A_USERS, &format!("{how}: SET LOCAL; COMMIT")).await;

                // In an aborted transaction SET and RESET are refused as PostgreSQL refuses
                // every command, and bind nothing.
                step("BEGIN").await;
                expect_db_error(
                    run(&c, "SELECT 1/0", extended).await,
                    "22012",
                    "division by zero",
                );
                for sql in [
                    "SET orgwall.org_id = 'org_b'",
                    "SET LOCAL orgwall.org_id = 'org_b'",
                    "RESET orgwall.org_id",
                ] {
                    let msg = expect_db_error(
                        run(&c, sql, extended).await,
                        "25P02",
                        &format!("{how}: {sql} in an aborted transaction"),
                    );
                    assert_eq!(
                        msg,
                        "orgwall: current transaction is aborted, commands ignored until end of transaction block",
                        "{how}: {sql}"
                    );
                }
                step("ROLLBACK").await;
                sees(&c, &A_USERS, &format!("{how}: after the aborted transaction")).await;

                // An error rolls back a SET made earlier in the same transaction.
                step("BEGIN").await;
                step("SET orgwall.org_id = 'org_b'").await;
                let _ = run(&c, "SELECT 1/0", extended).await;
                step("COMMIT").await;
                sees(&c, &A_USERS, &format!("{how}: SET b; error; COMMIT")).await;
            }
        }
    })
    .await;
}

/// The same rules when the client pipelines (tokio-postgres sends concurrent requests back to
/// back): a `SET orgwall.*` applies where it stands in the stream, and statements after a
/// COMMIT or ROLLBACK run with the binding it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switcher_binding_in_pipelines() {
    bounded(300, async {
        let (_db, proxy) = setup("switcher_pipelines", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        let ids = |r: Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>| {
            r.unwrap_or_else(|e| panic!("{}", describe(&e)))
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind A");

        // BEGIN; SET b; ROLLBACK; SET b: the last SET stands.
        let (r1, r2, r3, r4) = futures_util::join!(
            c.batch_execute("BEGIN"),
            c.batch_execute("SET orgwall.org_id = 'org_b'"),
            c.batch_execute("ROLLBACK"),
            c.batch_execute("SET orgwall.org_id = 'org_b'"),
        );
        for r in [r1, r2, r3, r4] {
            r.expect("pipelined statement");
        }
        sees(&c, &B_USERS, "pipelined ROLLBACK then SET").await;
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind A");

        // SAVEPOINT; SET b; ROLLBACK TO: the SET comes after the savepoint.
        let (r1, r2, r3, r4, inside, r6, after) = futures_util::join!(
            c.batch_execute("BEGIN"),
            c.batch_execute("SAVEPOINT s"),
            c.batch_execute("SET orgwall.org_id = 'org_b'"),
            c.batch_execute("ROLLBACK TO s"),
            c.simple_query(USERS_SQL),
            c.batch_execute("COMMIT"),
            c.simple_query(USERS_SQL),
        );
        for r in [r1, r2, r3, r4, r6] {
            r.expect("pipelined statement");
        }
        assert_eq!(
            ids(inside),
            A_USERS,
            "pipelined SAVEPOINT; SET b; ROLLBACK TO"
        );
        assert_eq!(ids(after), A_USERS, "after the pipelined COMMIT");

        // SET LOCAL b; COMMIT; SELECT: the SELECT after the COMMIT is A's again.
        let (r1, r2, inside, r4, after) = futures_util::join!(
            c.batch_execute("BEGIN"),
            c.batch_execute("SET LOCAL orgwall.org_id = 'org_b'"),
            c.simple_query(USERS_SQL),
            c.batch_execute("COMMIT"),
            c.simple_query(USERS_SQL),
        );
        for r in [r1, r2, r4] {
            r.expect("pipelined statement");
        }
        assert_eq!(ids(inside), B_USERS, "pipelined SET LOCAL b");
        assert_eq!(ids(after), A_USERS, "pipelined SELECT after COMMIT");

        // SET b; ROLLBACK; SELECT: the SELECT after the ROLLBACK is A's again.
        let (r1, r2, r3, after) = futures_util::join!(
            c.batch_execute("BEGIN"),
            c.batch_execute("SET orgwall.org_id = 'org_b'"),
            c.batch_execute("ROLLBACK"),
            c.simple_query(USERS_SQL),
        );
        for r in [r1, r2, r3] {
            r.expect("pipelined statement");
        }
        assert_eq!(ids(after), A_USERS, "pipelined SELECT after ROLLBACK");
    })
    .await;
}
