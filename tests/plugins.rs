//! Policy plugins: the example plugins decide as documented (engine level, no database), and
//! through a real PostgreSQL behind the proxy they change behaviour in the simple and the
//! extended protocol; `orgwall plugin check` reports decisions.

#[path = "plugins_common/mod.rs"]
mod common;

use common::{plugin_toml, wasm};
use orgwall::config::{PluginSpec, Role};
use orgwall::plan::Planner;
use orgwall::policy::{PolicyEngine, Who};
use orgwall_e2e::clients::{expect_db_error, sqlstate};
use orgwall_e2e::tenancy::{tenancy_toml, tenant_db, SWITCHER, TENANT_A};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy, ADMIN};

fn spec(name: &str, file: &str, config_json: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path: wasm(file),
        config_json: config_json.into(),
        fuel: 5_000_000,
        init_fuel: 50_000_000,
        memory_bytes: 16 << 20,
        cache: true,
    }
}

const TENANT: Who<'static> = Who {
    user: "acme",
    org_id: Some("org_a"),
    role: Role::Tenant,
};
const ADMIN_WHO: Who<'static> = Who {
    user: "ops",
    org_id: None,
    role: Role::Admin,
};

/// One planner for the whole file, as the proxy has one: analyses are shared by shape.
static PLANNER: std::sync::LazyLock<Planner> =
    std::sync::LazyLock::new(|| Planner::new(4096, None));

/// `Ok(None)` allow, `Ok(Some(sql))` masked, `Err(code)` refused.
fn check(engine: &PolicyEngine, who: &Who<'_>, sql: &str) -> Result<Option<String>, String> {
    engine
        .check(who, sql, || PLANNER.plan(sql).analysis())
        .map_err(|r| r.code.to_string())
}

/// (principal, SQL, expected: allow `Ok(None)`, mask `Ok(Some(sql))`, refusal `Err(code)`).
type Case<'a> = (&'a Who<'a>, &'a str, Result<Option<&'a str>, &'a str>);

#[test]
fn example_plugins_decide_as_documented() {
    let e = PolicyEngine::new(&[
        spec("ledger", "append_only_ledger", "{}"),
        spec("audit", "audit_admin_only", "{}"),
        spec("mask", "mask_email", r#"{"with":"***"}"#),
        spec(
            "limit",
            "row_limit",
            r#"{"max_rows":100,"tables":["inventory_ledger"]}"#,
        ),
    ])
    .expect("engine");
    for slot in &e.current().slots {
        match slot {
            orgwall::policy::Slot::Ready(p) => assert!(p.caches(), "{} should cache", p.name),
            orgwall::policy::Slot::Failed { why, .. } => panic!("load failed: {why}"),
        }
    }
    let cases: &[Case] = &[
        // append-only-ledger: history cannot change, for anyone.
        (
            &TENANT,
            "DELETE FROM inventory_ledger WHERE id = 'l1'",
            Err("42501"),
        ),
        (
            &ADMIN_WHO,
            "UPDATE inventory_ledger SET reason = 'x'",
            Err("42501"),
        ),
        (&ADMIN_WHO, "TRUNCATE inventory_ledger", Err("42501")),
        (
            &TENANT,
            "INSERT INTO inventory_ledger (id) VALUES ('l9')",
            Ok(None),
        ),
        (&TENANT, "DELETE FROM items WHERE id = 'i1'", Ok(None)),
        // … wherever the write is in the statement (the issue's bypasses; as admin, whom
        // row-limit lets read the ledger).
        (
            &ADMIN_WHO,
            "WITH d AS (DELETE FROM inventory_ledger RETURNING id) SELECT * FROM d",
            Err("42501"),
        ),
        (
            &ADMIN_WHO,
            "WITH u AS (UPDATE inventory_ledger SET reason = 'x' RETURNING id) SELECT * FROM u",
            Err("42501"),
        ),
        (
            &ADMIN_WHO,
            "INSERT INTO inventory_ledger (id) VALUES ('l1') \
             ON CONFLICT (id) DO UPDATE SET reason = 'x'",
            Err("42501"),
        ),
        (
            &ADMIN_WHO,
            "INSERT INTO inventory_ledger (id) VALUES ('l1') ON CONFLICT (id) DO NOTHING",
            Ok(None),
        ),
        (
            &ADMIN_WHO,
            "SELECT 1 FROM items WHERE id IN (WITH d AS (DELETE FROM inventory_ledger \
             RETURNING item_id) SELECT item_id FROM d)",
            Err("42501"),
        ),
        (
            &TENANT,
            "WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM d",
            Ok(None),
        ),
        // audit-admin-only.
        (&TENANT, "SELECT count(*) FROM audit_logs", Err("42501")),
        (
            &TENANT,
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM audit_logs)",
            Err("42501"),
        ),
        (&ADMIN_WHO, "SELECT count(*) FROM audit_logs", Ok(None)),
        // mask-email: masked for tenants, clear for admins, refused where it cannot be applied.
        (
            &TENANT,
            "SELECT id, email FROM users",
            Ok(Some("SELECT id, '***' AS email FROM users")),
        ),
        (&ADMIN_WHO, "SELECT id, email FROM users", Ok(None)),
        (&TENANT, "SELECT * FROM users", Err("42501")),
        // `TABLE users` is `SELECT * FROM users` to the plugins too (issue 18 opened it).
        (&TENANT, "TABLE users", Err("42501")),
        (&TENANT, "SELECT id FROM (TABLE users) u", Err("42501")),
        (&TENANT, "SELECT upper(email) FROM users", Err("42501")),
        // Whole rows carry the email: the plugin is told (`*`), the mask cannot apply.
        (&TENANT, "SELECT u FROM users u", Err("42501")),
        (&TENANT, "SELECT row_to_json(u) FROM users u", Err("42501")),
        (&TENANT, "SELECT u::text FROM users u", Err("42501")),
        (
            &TENANT,
            "SELECT row_to_json(u.*) FROM users u",
            Err("42501"),
        ),
        (&TENANT, "COPY users TO STDOUT", Err("42501")),
        (&TENANT, "SELECT id, name FROM users", Ok(None)),
        // row-limit: uses its config.
        (&TENANT, "SELECT id FROM inventory_ledger", Err("54000")),
        (
            &TENANT,
            "SELECT id FROM inventory_ledger LIMIT 100",
            Ok(None),
        ),
        (
            &TENANT,
            "SELECT id FROM inventory_ledger LIMIT 101",
            Err("54000"),
        ),
        (&ADMIN_WHO, "SELECT id FROM inventory_ledger", Ok(None)),
        // Unparsable SQL is refused when plugins are configured.
        (&TENANT, "SELEC nonsense", Err("42601")),
    ];
    for (who, sql, want) in cases {
        let want = want.map(|o| o.map(str::to_string)).map_err(str::to_string);
        // Twice: the second answer comes from the decision cache and must be the same.
        assert_eq!(check(&e, who, sql), want, "{sql} as {:?}", who.role);
        assert_eq!(
            check(&e, who, sql),
            want,
            "{sql} as {:?} (cached)",
            who.role
        );
    }
    // The cache is keyed by fingerprint *and* literal LIMIT: same shape, different verdicts.
    assert_eq!(
        check(&e, &TENANT, "SELECT id FROM inventory_ledger LIMIT 5"),
        Ok(None)
    );
    assert_eq!(
        check(&e, &TENANT, "SELECT id FROM inventory_ledger LIMIT 5000"),
        Err("54000".into())
    );
    // Statements that differ only in what a lexical fingerprint drops (whitespace, case inside
    // quotes) or in their place in a multi-statement string must not share a cached verdict.
    let conflations: &[(&str, Result<Option<&str>, &str>)] = &[
        ("SELECT e mail FROM users", Ok(None)),
        (
            "SELECT email FROM users",
            Ok(Some("SELECT '***' AS email FROM users")),
        ),
        ("SELECT \"Email\" FROM users", Ok(None)),
        (
            "SELECT \"email\" FROM users",
            Ok(Some("SELECT '***' AS email FROM users")),
        ),
        ("SELECT 1; SELECT 1", Ok(None)),
        ("SELECT 1; DELETE FROM inventory_ledger", Err("42501")),
        (
            "SELECT 1 FROM items; SELECT 1 FROM audit_logs",
            Err("42501"),
        ),
        ("SELECT 1 FROM items--x\n", Ok(None)),
        ("SELECT 1 FROM items--x\nFROM audit_logs", Err("42601")),
        ("SELECT E'\\' FROM audit_logs --' FROM users", Ok(None)),
        ("SELECT E'x' FROM audit_logs --' FROM users", Err("42501")),
    ];
    for (sql, want) in conflations {
        let want = want.map(|o| o.map(str::to_string)).map_err(str::to_string);
        assert_eq!(check(&e, &TENANT, sql), want, "{sql}");
    }
}

#[test]
fn plugin_check_cli_reports_decisions() {
    use orgwall::policy::cli::{check, CheckArgs};
    let args = |plugin: std::path::PathBuf, sql: &str, config: &str| CheckArgs {
        plugin,
        sql: sql.into(),
        user: "app".into(),
        org: Some("org_a".into()),
        role: Role::Tenant,
        config: config.into(),
        fuel: 5_000_000,
    };
    let ledger = wasm("append_only_ledger");
    let (out, code) =
        check(&args(ledger.clone(), "DELETE FROM inventory_ledger", "{}")).expect("runs");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("decision: deny 42501"), "{out}");
    assert!(out.contains("statement: Delete"), "{out}");
    let (out, code) = check(&args(ledger, "SELECT 1", "{}")).expect("runs");
    assert_eq!((code, out.contains("decision: allow")), (0, true), "{out}");
    let (out, code) = check(&args(
        wasm("mask_email"),
        "SELECT email FROM users",
        r#"{"with":"hidden"}"#,
    ))
    .expect("runs");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("rewritten: SELECT 'hidden' AS email FROM users"),
        "{out}"
    );
    let (out, code) = check(&args(
        wasm("hostile"),
        "SELECT 'hostile'",
        r#"{"mode":"loop"}"#,
    ))
    .expect("runs");
    assert_eq!(code, 2, "a plugin that spins is a deny: {out}");
    assert!(check(&args("/nonexistent.wasm".into(), "SELECT 1", "{}")).is_err());
    assert!(check(&args(wasm("row_limit"), "SELECT 1", r#"{"max_rows":0}"#)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_through_the_proxy_in_both_protocols() {
    bounded(300, async {
        let db = tenant_db("plugins_examples").await;
        let plugins = plugin_toml("append-only-ledger", &wasm("append_only_ledger"), "")
            + &plugin_toml("audit-admin-only", &wasm("audit_admin_only"), "")
            + &plugin_toml("mask-email", &wasm("mask_email"), "with = \"***\"")
            + &plugin_toml(
                "row-limit",
                &wasm("row_limit"),
                "max_rows = 100, tables = [\"inventory_ledger\"]",
            );
        let proxy =
            TestProxy::start_with_extra(&db, ProxyOptions::default(), &(tenancy_toml() + &plugins))
                .await;
        let tenant = connect(&proxy.conn_str(TENANT_A)).await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;

        // append-only-ledger, simple and extended protocol.
        let e = tenant
            .simple_query("DELETE FROM inventory_ledger")
            .await
            .expect_err("ledger delete refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
        assert!(format!("{e:?}").contains("append-only"), "{e:?}");
        expect_db_error(
            tenant
                .execute("UPDATE inventory_ledger SET reason = $1", &[&"x"])
                .await,
            "42501",
            "append-only",
        );
        expect_db_error(
            admin.execute("DELETE FROM inventory_ledger", &[]).await,
            "42501",
            "append-only",
        );

        // audit-admin-only.
        expect_db_error(
            tenant.query("SELECT count(*) FROM audit_logs", &[]).await,
            "42501",
            "requires role admin",
        );
        assert!(tenant
            .simple_query("SELECT count(*) FROM audit_logs")
            .await
            .is_err());
        let n: i64 = admin
            .query_one("SELECT count(*) FROM audit_logs", &[])
            .await
            .expect("admin reads audit logs")
            .get(0);
        assert!(n > 0);

        // mask-email: the tenant's own users, emails masked, in both protocols.
        let rows = tenant
            .query(
                "SELECT id, email FROM users WHERE id LIKE $1 ORDER BY id",
                &[&"u_%"],
            )
            .await
            .expect("masked select");
        let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            vec![
                ("u_a1".into(), "***".into()),
                ("u_a2".into(), "***".into()),
                ("u_a3".into(), "***".into())
            ]
        );
        let simple = tenant
            .simple_query("SELECT email FROM users ORDER BY id")
            .await
            .expect("masked simple select");
        let emails: Vec<String> = simple
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(emails, vec!["***"; 3]);
        let clear: String = admin
            .query_one("SELECT email FROM users WHERE id = 'u_a1'", &[])
            .await
            .expect("admin sees email")
            .get(0);
        assert_eq!(clear, "alice@shared.test");
        expect_db_error(
            tenant.query("SELECT * FROM users", &[]).await,
            "42501",
            "SELECT *",
        );

        // row-limit.
        expect_db_error(
            tenant.query("SELECT id FROM inventory_ledger", &[]).await,
            "54000",
            "LIMIT 100",
        );
        let rows = tenant
            .query("SELECT id FROM inventory_ledger LIMIT 10", &[])
            .await
            .expect("limited read");
        assert!(!rows.is_empty());

        // Refusals leave the session usable.
        let one: i32 = tenant
            .query_one("SELECT 1", &[])
            .await
            .expect("alive")
            .get(0);
        assert_eq!(one, 1);
    })
    .await;
}

/// Plugins decide for the tenant a statement runs as: a switcher that prepares a statement
/// as one tenant and runs it after switching to another gets the new tenant's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switcher_statement_is_checked_again_for_the_tenant_it_runs_as() {
    bounded(300, async {
        let e = PolicyEngine::new(&[spec("audit", "audit_admin_only", r#"{"orgs":["org_a"]}"#)])
            .expect("engine");
        let b = Who {
            org_id: Some("org_b"),
            ..TENANT
        };
        let sql = "SELECT count(*) FROM audit_logs";
        assert_eq!(check(&e, &TENANT, sql), Ok(None), "org_a is listed");
        assert_eq!(check(&e, &b, sql), Err("42501".into()), "org_b is not");

        let db = tenant_db("plugins_switcher").await;
        let plugins = plugin_toml(
            "audit-admin-only",
            &wasm("audit_admin_only"),
            "orgs = [\"org_a\"]",
        );
        let proxy =
            TestProxy::start_with_extra(&db, ProxyOptions::default(), &(tenancy_toml() + &plugins))
                .await;
        let c = connect(&proxy.conn_str(SWITCHER)).await;
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind org_a");
        let stmt = c.prepare(sql).await.expect("org_a may prepare");
        let n: i64 = c.query_one(&stmt, &[]).await.expect("org_a reads").get(0);
        assert!(n > 0, "org_a has audit rows");
        c.batch_execute("SET orgwall.org_id = 'org_b'")
            .await
            .expect("bind org_b");
        expect_db_error(c.query_one(&stmt, &[]).await, "42501", "requires role");
        c.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind org_a again");
        let again: i64 = c.query_one(&stmt, &[]).await.expect("org_a again").get(0);
        assert_eq!(again, n);
    })
    .await;
}
