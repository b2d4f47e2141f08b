//! The second wall (DESIGN.md §4a, issue 16): PostgreSQL's row-level security over Orgwall's
//! signed tenant context holds even when Orgwall's rewrite is switched off and tenant SQL
//! reaches PostgreSQL exactly as sent; forged, replayed, expired and malformed contexts see
//! nothing; the start-up check refuses unsafe tenant identities; the tripwire closes a server
//! connection that reports what Orgwall never sets.

use orgwall_e2e::clients::connect;
use orgwall_e2e::proxy::{ADMIN, TENANT_ROLE_PASSWORD};
use orgwall_e2e::tenancy::{
    admin_direct, mentions_b, org_checksums, run_simple, tenant_db, tenant_proxy, Outcome,
    TENANT_A, TENANT_B, TENANT_TABLES,
};
use orgwall_e2e::{bounded, sqlstate, ProxyOptions, TestProxy};

fn second_wall_alone() -> ProxyOptions {
    ProxyOptions {
        first_wall: false,
        ..ProxyOptions::pool(2, "transaction")
    }
}

/// The second wall alone on one server connection: every session takes its turn on it.
fn second_wall_alone_on_one_connection() -> ProxyOptions {
    ProxyOptions {
        first_wall: false,
        ..ProxyOptions::pool(1, "transaction")
    }
}

/// Rows, with nothing of tenant B in them.
fn assert_no_leak(sql: &str, out: &Outcome) {
    match out {
        Outcome::Rows(rs) => assert!(rs.leaks_b().is_none(), "{sql}: LEAK {out}"),
        Outcome::Error { message, .. } => {
            assert!(!mentions_b(message), "{sql}: error leaks B: {message}")
        }
        Outcome::Count(_) => {}
    }
}

fn row_count(sql: &str, out: &Outcome) -> usize {
    match out {
        Outcome::Rows(rs) => rs.rows.len(),
        other => panic!("{sql}: expected rows, got {other}"),
    }
}

/// The classes of arbitrary SQL a tenant ran when Orgwall misread a statement, now sent as is:
/// each is refused by PostgreSQL or sees and changes only the tenant's own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_sql_as_the_tenant_identity_stays_in_its_tenant() {
    bounded(300, async {
        let db = tenant_db("wall2_classes").await;
        let proxy = tenant_proxy(&db, second_wall_alone()).await;
        let admin = admin_direct(&db).await;
        let b_before = org_checksums(&admin, "org_b", false).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;

        // Reads of B by id or by org: nothing.
        for sql in [
            "SELECT * FROM users WHERE id = 'u_b1'",
            "SELECT * FROM users WHERE org_id = 'org_b'",
            "SELECT * FROM public.items i JOIN public.locations l ON l.org_id = i.org_id",
            "SELECT * FROM inventory_balances WHERE org_id <> 'org_a'",
            "SELECT * FROM organizations WHERE id = 'org_b'",
            "SELECT count(*) FILTER (WHERE org_id = 'org_b') AS b FROM inventory_ledger",
        ] {
            let out = run_simple(&a, sql).await;
            assert_no_leak(sql, &out);
        }
        let out = run_simple(&a, "SELECT id FROM items ORDER BY id").await;
        assert_eq!(row_count("own items", &out), 3, "A sees its own items: {out}");

        // Inference through errors and side effects of non-leakproof functions: PostgreSQL
        // evaluates them only on rows that passed the policy.
        for sql in [
            "SELECT * FROM items WHERE org_id = 'org_b' AND 1 / (CASE WHEN description LIKE '%SECRET%' THEN 0 ELSE 1 END) = 1",
            "SELECT date_trunc(description, now()) FROM items WHERE description IS NOT NULL",
            "SELECT * FROM items WHERE jsonb_path_exists('{}'::jsonb, description::jsonpath)",
            "SELECT * FROM users WHERE (name::int) > 0",
        ] {
            let out = run_simple(&a, sql).await;
            assert_no_leak(sql, &out);
        }

        // Writes to B: nothing changes; rows claiming B are rejected by WITH CHECK.
        for sql in [
            "UPDATE items SET description = 'pwned' WHERE id = 'i_b1'",
            "UPDATE items SET description = 'pwned' WHERE org_id = 'org_b'",
            "DELETE FROM users WHERE org_id = 'org_b'",
            "DELETE FROM inventory_ledger WHERE id LIKE 'led_b%'",
        ] {
            let out = run_simple(&a, sql).await;
            assert_eq!(out, Outcome::Count(0), "{sql}");
        }
        for sql in [
            "INSERT INTO items (id, org_id, item_number) VALUES ('i_evil', 'org_b', 'X-1')",
            "UPDATE items SET org_id = 'org_b' WHERE id = 'i_a1'",
            "INSERT INTO organizations (id, name) VALUES ('org_evil', 'x')",
        ] {
            let out = run_simple(&a, sql).await;
            assert_eq!(out.code(), Some("42501"), "{sql}: {out}");
        }
        // A reference to B's row is refused by the tenant-scoped foreign keys.
        let out = run_simple(
            &a,
            "INSERT INTO inventory_ledger (id, org_id, item_id, location_id, quantity_delta, reason) \
             VALUES ('led_x', 'org_a', 'i_b1', 'l_a1', 1, 'x')",
        )
        .await;
        assert_eq!(out.code(), Some("23503"), "cross-tenant reference: {out}");

        // DDL, files, programs, the key, other roles: PostgreSQL's privileges refuse them.
        for sql in [
            "CREATE TABLE public.evil (x int)",
            "DROP TABLE users",
            "ALTER TABLE users DISABLE ROW LEVEL SECURITY",
            "TRUNCATE inventory_ledger",
            "SELECT pg_read_file('/etc/hostname')",
            "COPY items TO PROGRAM 'id'",
            "COPY (SELECT 1) TO '/tmp/orgwall-wall2'",
            "SELECT * FROM orgwall.tenant_key",
            "SELECT * FROM orgwall.schema_migrations",
            "ALTER ROLE orgwall_tenant BYPASSRLS",
            "SET session_replication_role = replica",
        ] {
            let out = run_simple(&a, sql).await;
            assert_eq!(out.code(), Some("42501"), "{sql}: {out}");
        }

        // (Under transaction pooling Orgwall refuses these for every role; in session pooling
        // they reach PostgreSQL.)
        let session = tenant_proxy(
            &db,
            ProxyOptions {
                first_wall: false,
                ..ProxyOptions::pool(2, "session")
            },
        )
        .await;
        let s = connect(&session.conn_str(TENANT_A)).await;
        for sql in ["SET ROLE postgres", "SET SESSION AUTHORIZATION postgres"] {
            let out = run_simple(&s, sql).await;
            assert_eq!(out.code(), Some("42501"), "{sql}: {out}");
        }

        let b_after = org_checksums(&admin, "org_b", false).await;
        for t in TENANT_TABLES {
            assert_eq!(b_before[t], b_after[t], "tenant B's rows of {t} changed");
        }
    })
    .await;
}

/// A tenant that rewrites its own context gets nothing: forged signatures, its own token with
/// another org, an expired token, garbage, none at all. The same statements with a genuine
/// token for B (made with the owner's key, which the tenant cannot read) do see B, so the
/// refusals are the signature's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_expired_and_missing_contexts_see_nothing() {
    bounded(300, async {
        let db = tenant_db("wall2_contexts").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "session")).await;
        let admin = admin_direct(&db).await;
        let key_hex: String = admin
            .query_one("SELECT encode(key, 'hex') FROM orgwall.tenant_key", &[])
            .await
            .unwrap()
            .get(0);
        let key: Vec<u8> = (0..key_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key_hex[i..i + 2], 16).unwrap())
            .collect();
        let now = orgwall::boundary::unix_now();
        let sign = |org: &str, exp: u64| orgwall::boundary::sign(&key, org, exp);

        // Straight to PostgreSQL as the tenant identity (what a tenant running arbitrary SQL
        // through a misread statement can do).
        let t = connect(&format!(
            "host=127.0.0.1 port={} user=orgwall_tenant password={TENANT_ROLE_PASSWORD} dbname={}",
            db.server.port(),
            db.name
        ))
        .await;
        // A's token, registered by the owner as Orgwall registers the tokens it issues.
        let own = sign("org_a", now + 600);
        admin
            .execute(
                "INSERT INTO orgwall.tenant_tokens (token, org, expires) \
                 VALUES ($1, 'org_a', now() + interval '10 minutes')",
                &[&own],
            )
            .await
            .unwrap();
        let visible = |token: String| {
            let t = &t;
            async move {
                t.execute("SELECT set_config('orgwall.tenant', $1, false)", &[&token])
                    .await
                    .unwrap();
                let n: i64 = t
                    .query_one("SELECT count(*) FROM users", &[])
                    .await
                    .unwrap()
                    .get(0);
                let insert = t
                    .execute(
                        "INSERT INTO feature_flags (id, org_id, key) \
                         VALUES ('ff_probe', 'org_b', 'probe')",
                        &[],
                    )
                    .await;
                if insert.is_ok() {
                    t.execute("DELETE FROM feature_flags WHERE id = 'ff_probe'", &[])
                        .await
                        .unwrap();
                }
                (n, insert.map_err(|e| sqlstate(&e)))
            }
        };
        let (n, _) = visible(own.clone()).await;
        assert_eq!(n, 3, "A's genuine token shows A's users");
        let for_b = sign("org_b", now + 600);
        admin
            .execute(
                "INSERT INTO orgwall.tenant_tokens (token, org, expires) \
                 VALUES ($1, 'org_b', now() + interval '10 minutes')",
                &[&for_b],
            )
            .await
            .unwrap();
        let (n, w) = visible(for_b).await;
        assert_eq!(
            (n, w.is_ok()),
            (3, true),
            "a genuine token for B sees and writes B"
        );
        // The registry takes only tokens whose signature holds for their org, whoever inserts.
        for (token, org) in [(forged_token(&own), "org_a"), (own.clone(), "org_b")] {
            let e = admin
                .execute(
                    "INSERT INTO orgwall.tenant_tokens (token, org, expires) \
                     VALUES ($1, $2, now() + interval '10 minutes')",
                    &[&token, &org],
                )
                .await
                .expect_err("a bad token registered");
            assert_eq!(sqlstate(&e).as_deref(), Some("23514"), "{e}");
        }
        // Signed but never registered (a token minted with a stolen key): nothing.
        let (n, _) = visible(sign("org_b", now + 700)).await;
        assert_eq!(n, 0, "an unregistered token");
        let forged_mac = forged_token(&own);
        let swapped = format!("{}.{}.org_b", &own[..64], now + 600);
        let cases = [
            ("forged signature", forged_mac),
            ("A's signature, org B", swapped),
            ("expired", sign("org_b", now - 5)),
            ("empty", String::new()),
            ("garbage", "x".into()),
            ("signature only", own[..64].to_string()),
            ("non-digit expiry", format!("{}.12a4.org_b", &own[..64])),
            ("13-digit expiry", sign("org_b", 9_999_999_999_999)),
            ("huge", "a".repeat(100_000)),
        ];
        for (what, token) in cases {
            let (n, w) = visible(token).await;
            assert_eq!(n, 0, "{what}: rows visible");
            assert_eq!(w, Err(Some("42501".into())), "{what}: write not rejected");
        }
        t.execute("RESET orgwall.tenant", &[]).await.unwrap();
        let n: i64 = t
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "no context: no rows");

        // Through the proxy the context is set as a Bind parameter: no tenant's statement text
        // in pg_stat_activity ever carries a token.
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let out = run_simple(&a, "SELECT id FROM items").await;
        assert_eq!(row_count("items", &out), 3);
        let texts: Vec<String> = admin
            .query(
                "SELECT query FROM pg_stat_activity WHERE usename = 'orgwall_tenant'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        assert!(
            texts.iter().all(|q| !q.contains(&own[64..])),
            "a token in statement text: {texts:?}"
        );
    })
    .await;
}

/// Tenant logins over an unsafe upstream identity are refused with one FATAL naming the
/// problem; admin logins still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_check_refuses_unsafe_tenant_identities() {
    bounded(300, async {
        let db = tenant_db("wall2_check").await;
        let n = &db.name;
        let roles = [
            (format!("{n}_su"), "SUPERUSER", "is a superuser"),
            (format!("{n}_bypass"), "BYPASSRLS", "has BYPASSRLS"),
            (format!("{n}_files"), "", "a member of pg_read_server_files"),
            (
                format!("{n}_owner"),
                "",
                "owns (or is a member of the owner of) public.feature_flags",
            ),
        ];
        let mut sql = String::new();
        for (role, attrs, _) in &roles {
            sql += &format!(
                "CREATE ROLE {role} LOGIN {attrs} PASSWORD 'pw'; GRANT orgwall_tenant TO {role};\n"
            );
        }
        sql += &format!("GRANT pg_read_server_files TO {n}_files;\n");
        sql += &format!("ALTER TABLE feature_flags OWNER TO {n}_owner;\n");
        db.psql(&sql).await;
        for (role, _, why) in &roles {
            let role: &'static str = Box::leak(role.clone().into_boxed_str());
            let opts = ProxyOptions {
                tenant_login: Some((role, "pw")),
                ..ProxyOptions::pool(2, "transaction")
            };
            let proxy = tenant_proxy(&db, opts).await;
            refused(&proxy, why).await;
        }
        db.psql(&format!(
            "ALTER TABLE feature_flags OWNER TO CURRENT_USER; DROP ROLE {n}_owner;"
        ))
        .await;

        // A tenant table without the policy (another permissive policy would widen it).
        db.psql("CREATE POLICY open_door ON users FOR SELECT TO orgwall_tenant USING (true);")
            .await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        refused(&proxy, "public.users has other permissive policies").await;
        drop(proxy);
        db.psql(
            "DROP POLICY open_door ON users; \
             ALTER TABLE audit_logs DISABLE ROW LEVEL SECURITY;",
        )
        .await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        refused(&proxy, "public.audit_logs has no row-level security").await;
        // Fixed, and reloaded: tenants log in again.
        db.psql("ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;")
            .await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let out = run_simple(&a, "SELECT count(*) FROM audit_logs").await;
        assert!(matches!(out, Outcome::Rows(_)), "{out}");
    })
    .await;
}

async fn refused(proxy: &TestProxy, why: &str) {
    let err = tokio_postgres::connect(&proxy.conn_str(TENANT_A), tokio_postgres::NoTls)
        .await
        .err()
        .unwrap_or_else(|| panic!("tenant login accepted over an identity that {why}"));
    let db = err.as_db_error().unwrap_or_else(|| panic!("{why}: {err}"));
    assert_eq!(db.code().code(), "55000", "{why}: {}", db.message());
    assert!(
        db.message()
            .starts_with("orgwall: tenant logins are refused")
            && db.message().contains(why)
            && db.message().contains("orgwall migrate up"),
        "{why}: {}",
        db.message()
    );
    let admin = connect(&proxy.conn_str(ADMIN)).await;
    admin.simple_query("SELECT 1").await.unwrap();
}

/// A tenant server connection that reports `standard_conforming_strings = off` (here through
/// SQL that the first wall, switched off, would have refused) is closed, its client's session
/// ends, and no later client runs on that backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tripwire_closes_a_connection_that_reads_strings_differently() {
    bounded(300, async {
        let db = tenant_db("wall2_tripwire").await;
        let proxy = tenant_proxy(
            &db,
            ProxyOptions {
                first_wall: false,
                ..ProxyOptions::pool(1, "transaction")
            },
        )
        .await;
        let admin = admin_direct(&db).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let pid: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let err = a
            .simple_query("SET standard_conforming_strings = off")
            .await
            .expect_err("the session must end");
        let db_err = err
            .as_db_error()
            .map(|e| (e.code().code().to_string(), e.message().to_string()));
        let (code, message) = db_err.unwrap_or_else(|| panic!("not a server error: {err}"));
        assert_eq!(code, "42501", "{message}");
        assert!(
            message.contains("standard_conforming_strings = off"),
            "{message}"
        );
        assert!(
            a.simple_query("SELECT 1").await.is_err(),
            "session still open"
        );
        let mut gone = false;
        for _ in 0..50 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(gone, "backend {pid} still connected");
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let row = b
            .query_one(
                "SELECT pg_backend_pid(), current_setting('standard_conforming_strings')",
                &[],
            )
            .await
            .unwrap();
        assert_ne!(row.get::<_, i32>(0), pid);
        assert_eq!(row.get::<_, String>(1), "on");
    })
    .await;
}

/// With both walls (the default), tenants cannot run EXPLAIN ANALYZE (its row counts include
/// other tenants' rows) nor, by default, plain EXPLAIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_is_refused_for_tenants() {
    bounded(120, async {
        let db = tenant_db("wall2_explain").await;
        let proxy = tenant_proxy(&db, ProxyOptions::default()).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        for sql in [
            "EXPLAIN ANALYZE SELECT * FROM items",
            "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM items WHERE org_id = 'org_b'",
            "EXPLAIN SELECT * FROM items",
        ] {
            let out = run_simple(&a, sql).await;
            assert_eq!(out.code(), Some("42501"), "{sql}: {out}");
            assert!(out.is_orgwall_refusal(), "{sql}: {out}");
        }
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        admin
            .simple_query("EXPLAIN ANALYZE SELECT * FROM items")
            .await
            .unwrap();
    })
    .await;
}

/// The context follows the session's tenant with the first wall off, so what each statement
/// sees is decided by the context alone: switchers bound and unbound, `SET LOCAL` inside a
/// transaction, a statement prepared under one tenant and run under another, tenants taking
/// turns on one server connection, in both pool modes and on a multiplexed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_follows_the_session_tenant() {
    bounded(300, async {
        let db = tenant_db("wall2_follow").await;
        for (mode, multiplex) in [("transaction", 0), ("session", 0), ("transaction", 1)] {
            let opts = ProxyOptions {
                first_wall: false,
                multiplex,
                ..ProxyOptions::pool(if multiplex > 0 { 2 } else { 1 }, mode)
            };
            let proxy = tenant_proxy(&db, opts).await;
            let what = format!("{mode} pooling, multiplex {multiplex}");
            let a_ids = "i_a1,i_a2,i_a3";
            let b_ids = "i_b1,i_b2,i_b4";
            let s = connect(&proxy.conn_str(orgwall_e2e::tenancy::SWITCHER)).await;
            assert_eq!(item_ids(&s).await, "", "{what}: unbound switcher");
            s.batch_execute("SET orgwall.org_id = 'org_a'")
                .await
                .unwrap();
            assert_eq!(item_ids(&s).await, a_ids, "{what}: switcher bound to A");
            let prepared = s
                .prepare("SELECT string_agg(id, ',' ORDER BY id) FROM items")
                .await
                .unwrap();
            if mode == "transaction" || multiplex > 0 {
                // (Session pooling: the one server connection stays with the switcher.)
                let b = connect(&proxy.conn_str(TENANT_B)).await;
                assert_eq!(item_ids(&b).await, b_ids, "{what}: tenant B after A");
                assert_eq!(item_ids(&s).await, a_ids, "{what}: switcher after B");
            }
            s.batch_execute("BEGIN").await.unwrap();
            s.batch_execute("SET LOCAL orgwall.org_id = 'org_b'")
                .await
                .unwrap();
            assert_eq!(item_ids(&s).await, b_ids, "{what}: SET LOCAL to B");
            s.batch_execute("COMMIT").await.unwrap();
            assert_eq!(item_ids(&s).await, a_ids, "{what}: back to A after COMMIT");
            s.batch_execute("BEGIN").await.unwrap();
            s.batch_execute("SET LOCAL orgwall.org_id = 'org_b'")
                .await
                .unwrap();
            assert_eq!(item_ids(&s).await, b_ids, "{what}: SET LOCAL to B again");
            s.batch_execute("ROLLBACK").await.unwrap();
            assert_eq!(
                item_ids(&s).await,
                a_ids,
                "{what}: back to A after ROLLBACK"
            );
            s.batch_execute("SET orgwall.org_id = 'org_b'")
                .await
                .unwrap();
            let got: Option<String> = s.query_one(&prepared, &[]).await.unwrap().get(0);
            assert_eq!(
                got.as_deref(),
                Some(b_ids),
                "{what}: prepared under A, run under B"
            );
            s.batch_execute("RESET orgwall.org_id").await.unwrap();
            assert_eq!(item_ids(&s).await, "", "{what}: unbound again");
        }

        // Two tenants hammering one multiplexed connection see only their own rows.
        let proxy = tenant_proxy(
            &db,
            ProxyOptions {
                first_wall: false,
                multiplex: 1,
                ..ProxyOptions::pool(2, "transaction")
            },
        )
        .await;
        let mut tasks = Vec::new();
        for (login, want) in [(TENANT_A, "i_a1,i_a2,i_a3"), (TENANT_B, "i_b1,i_b2,i_b4")] {
            let conn = proxy.conn_str(login);
            tasks.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                for _ in 0..200 {
                    assert_eq!(item_ids(&c).await, want, "{}", login.name);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
}

/// Temporary objects never outlive their tenant on a pooled server connection. A tenant whose
/// statement Orgwall misread (here: the first wall off, and a DO block) can create tables and
/// views in `pg_temp`; they would shadow every unqualified relation and type of
/// the same name for whoever runs on that connection next (a planted `pg_type` for another
/// tenant's driver, a `users` table catching what another tenant writes unqualified). The
/// context change that hands the connection to another tenant drops them (`DISCARD TEMP`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_objects_never_reach_the_next_tenant_on_a_pooled_connection() {
    bounded(300, async {
        let db = tenant_db("wall2_temp").await;
        let proxy = tenant_proxy(&db, second_wall_alone_on_one_connection()).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        // (Inside a DO block, where no reading of the statement's words sees them.)
        for sql in [
            "DO $$ BEGIN EXECUTE 'CREATE VIEW pg_temp.pg_type AS SELECT ''planted''::name AS typname'; END $$",
            "DO $$ BEGIN EXECUTE 'CREATE TABLE pg_temp.users (LIKE public.users)'; END $$",
        ] {
            let out = run_simple(&a, sql).await;
            assert!(out.code().is_none(), "{sql}: {out}");
        }
        // Its own next statements see them: the connection stayed with tenant A.
        let planted = "SELECT count(*) FROM pg_type WHERE typname = 'planted'";
        let out = run_simple(&a, planted).await;
        assert_eq!(single(planted, &out), "'1'", "A's own view, still there");

        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let out = run_simple(&b, planted).await;
        assert_eq!(single(planted, &out), "'0'", "B reads pg_catalog.pg_type");
        let out = run_simple(&b, "SELECT count(*) FROM pg_temp.users").await;
        assert_eq!(out.code(), Some("42P01"), "A's table is gone for B: {out}");

        // And A, back on the connection after B, finds nothing B could have left either.
        let out = run_simple(&a, "SELECT count(*) FROM pg_temp.users").await;
        assert_eq!(out.code(), Some("42P01"), "gone for A too: {out}");
    })
    .await;
}

/// Prepared statements and settings never cross tenants on a pooled server connection: a
/// connection that changes tenant when it is taken drops every statement prepared on it and
/// resets its settings (`RESET ALL` and the session's own). Otherwise a tenant
/// whose statement Orgwall misread (a DO block) could list another tenant's statements in
/// `pg_prepared_statements` and put its own under their names, to run with that tenant's
/// parameters the next time Orgwall binds them (here: copying them into a setting it reads back
/// later on the same connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_settings_never_cross_tenants_on_a_pooled_connection() {
    bounded(300, async {
        let db = tenant_db("wall2_prepared").await;
        let proxy = tenant_proxy(&db, second_wall_alone_on_one_connection()).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let lookup = b
            .prepare("SELECT id FROM items WHERE id = $1")
            .await
            .unwrap();
        let rows = b.query(&lookup, &[&"i_b1"]).await.unwrap();
        assert_eq!(rows.len(), 1, "B's own item");

        // Another session of the same tenant finds the statement still prepared there.
        let others = "SELECT count(*) FROM pg_prepared_statements \
                      WHERE name <> 'orgwall_tenant_context'";
        let b2 = connect(&proxy.conn_str(TENANT_B)).await;
        let out = run_simple(&b2, others).await;
        assert_eq!(single(others, &out), "'1'", "kept for the same tenant");
        drop(b2);

        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let out = run_simple(&a, others).await;
        assert_eq!(single(others, &out), "'0'", "A sees none of B's statements");
        let replace = "DO $$ DECLARE r record; BEGIN \
            PERFORM set_config('x.leftover', 'from A', false); \
            FOR r IN SELECT name FROM pg_prepared_statements LOOP \
              EXECUTE format('DEALLOCATE %I', r.name); \
              EXECUTE format('PREPARE %I(text) AS SELECT set_config(''x.loot'', $1, false) AS id', r.name); \
            END LOOP; END $$";
        let out = run_simple(&a, replace).await;
        assert!(out.code().is_none(), "{out}");

        // B's statement is B's own: no row for an id that does not exist; and nothing of A's
        // settings, which Orgwall never saw, reaches B.
        let rows = b.query(&lookup, &[&"secret-of-b"]).await.unwrap();
        assert!(rows.is_empty(), "B ran a statement A prepared");
        let leftover = "SELECT coalesce(current_setting('x.leftover', true), '')";
        let out = run_simple(&b, leftover).await;
        assert_eq!(single(leftover, &out), "''", "A's setting reached B");
        let loot = "SELECT coalesce(current_setting('x.loot', true), '')";
        let out = run_simple(&a, loot).await;
        assert_eq!(single(loot, &out), "''", "B's parameter reached A");
    })
    .await;
}

/// The one value of a one-row, one-column result.
fn single(sql: &str, out: &Outcome) -> String {
    match out {
        Outcome::Rows(rs) if rs.rows.len() == 1 && rs.rows[0].len() == 1 => rs.rows[0][0].clone(),
        other => panic!("{sql}: expected one value, got {other}"),
    }
}

async fn item_ids(c: &tokio_postgres::Client) -> String {
    let rows = c
        .simple_query("SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM items")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

/// `token` with its signature replaced.
fn forged_token(token: &str) -> String {
    format!("{}{}", "0".repeat(64), &token[64..])
}
