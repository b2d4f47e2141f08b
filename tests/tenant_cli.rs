//! Tenant confinement through the stock command-line clients: `psql` as a tenant and as a
//! switcher (simple protocol, scripts, error reporting), and `pgbench` as a tenant over tables
//! given an `org_id` column, in every query mode.

use orgwall_e2e::clients::{pgbench, psql};
use orgwall_e2e::proxy::Login;
use orgwall_e2e::tenancy::{tenant_db, tenant_proxy, SWITCHER, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, ProxyOptions, TestDb};

/// psql's catalog commands read the schema, which tenants share: `\dt`, `\di`, `\dn`, `\dT`
/// and `\dx` work as a tenant and list what they list for the database's owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_commands_work_for_tenants() {
    bounded(300, async {
        let db = tenant_db("tenant_psql_describe").await;
        let proxy = tenant_proxy(&db, ProxyOptions::default()).await;
        for command in ["\\dt", "\\di", "\\dn", "\\dT", "\\dx"] {
            let out = psql(
                &proxy,
                TENANT_A,
                "disable",
                &["-A", "-t", "-c", command],
                None,
            )
            .await;
            out.assert_success(command);
            let direct = db
                .psql(&format!(
                    "\\pset format unaligned\n\\pset tuples_only on\n{command}\n"
                ))
                .await;
            assert_eq!(out.stdout.trim(), direct.trim(), "{command}");
        }
        let out = psql(
            &proxy,
            TENANT_A,
            "disable",
            &["-A", "-t", "-c", "\\dt"],
            None,
        )
        .await;
        for table in ["items", "inventory_ledger", "organizations", "users"] {
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.split('|').nth(1) == Some(table)),
                "{table}: {out:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_tenants_see_only_their_rows() {
    bounded(300, async {
        let db = tenant_db("tenant_psql").await;
        let proxy = tenant_proxy(&db, ProxyOptions::default()).await;
        let q = "SELECT item_number || ':' || id FROM items ORDER BY 1";
        for (login, want) in [
            (TENANT_A, vec!["W-100:i_a1", "W-200:i_a2", "W-300:i_a3"]),
            (TENANT_B, vec!["W-100:i_b1", "W-200:i_b2", "W-400:i_b4"]),
        ] {
            let out = psql(&proxy, login, "disable", &["-A", "-t", "-c", q], None).await;
            out.assert_success("psql as tenant");
            let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(lines, want, "{}: {out:?}", login.name);
        }

        // A script: refusals are reported with their SQLSTATE and the session goes on.
        let script = "\\set VERBOSITY verbose\n\
            SET orgwall.org_id = 'org_b';\n\
            DROP TABLE users;\n\
            SELECT count(*) FROM users WHERE org_id = 'org_b';\n\
            SELECT 'still-alive';\n";
        let out = psql(
            &proxy,
            TENANT_A,
            "disable",
            &["-A", "-t", "-f", "-"],
            Some(script),
        )
        .await;
        assert!(out.stderr.matches("42501").count() >= 2, "{out:?}");
        assert!(out.stderr.contains("orgwall:"), "{out:?}");
        let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, vec!["0", "still-alive"], "{out:?}");

        // A switcher script binding per transaction.
        let script = "\\set ON_ERROR_STOP 1\n\
            SET orgwall.org_id = 'org_b';\n\
            SELECT string_agg(id, ',' ORDER BY id) FROM users;\n\
            BEGIN;\n\
            SET LOCAL orgwall.org_id = 'org_a';\n\
            SELECT string_agg(id, ',' ORDER BY id) FROM users;\n\
            COMMIT;\n\
            SELECT string_agg(id, ',' ORDER BY id) FROM users;\n";
        let out = psql(
            &proxy,
            SWITCHER,
            "disable",
            &["-A", "-t", "-q", "-f", "-"],
            Some(script),
        )
        .await;
        out.assert_success("psql switcher script");
        let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            vec!["u_b1,u_b2,u_b3", "u_a1,u_a2,u_a3", "u_b1,u_b2,u_b3"],
            "{out:?}"
        );
    })
    .await;
}

/// A tenant login for the pgbench org.
const BENCH_TENANT: Login = Login {
    name: "benchtenant",
    password: "benchtenant-pw",
    org_id: "bench",
    role: "tenant",
};

/// pgbench tables (scale 1) with an `org_id` column: all rows belong to `bench`, a few
/// `pgbench_accounts` rows are copied into another org with a huge balance.
async fn pgbench_db() -> TestDb {
    let db = TestDb::create("tenant_pgbench").await;
    // The role and `orgwall.current_org()` of the second wall (and the seed tables, unused).
    orgwall_e2e::tenancy::migrate(&db).await;
    let out = tokio::process::Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &db.server.port().to_string(),
        ])
        .args(["-U", "postgres", &db.name])
        .env("PGPASSWORD", orgwall_e2e::pg::SUPERUSER_PASSWORD)
        .output()
        .await
        .expect("run pgbench -i (apt-get install -y postgresql)");
    assert!(
        out.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sql = String::new();
    for t in [
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_tellers",
        "pgbench_history",
    ] {
        sql += &format!("ALTER TABLE {t} ADD COLUMN org_id text NOT NULL DEFAULT 'bench';\n");
        sql += &orgwall_e2e::tenancy::protect_sql(t, "org_id");
    }
    sql += "INSERT INTO pgbench_branches (bid, bbalance, org_id) VALUES (1000, 0, 'other');\n";
    db.psql(&sql).await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_as_a_tenant_in_every_mode() {
    bounded(600, async {
        let db = pgbench_db().await;
        let extra = format!(
            "[tenancy]\ncolumn = \"org_id\"\n[[users]]\nname = \"{}\"\npassword = \"{}\"\norg_id = \"{}\"\nrole = \"{}\"\n",
            BENCH_TENANT.name, BENCH_TENANT.password, BENCH_TENANT.org_id, BENCH_TENANT.role
        );
        let proxy =
            orgwall_e2e::TestProxy::start_with_extra(&db, ProxyOptions::pool(2, "transaction"), &extra)
                .await;
        for mode in ["simple", "extended", "prepared"] {
            let out = pgbench(&proxy, BENCH_TENANT, &["-S", "-n", "-M", mode, "-c", "4", "-j", "2", "-t", "50"]).await;
            out.assert_success(&format!("pgbench -S -M {mode} as a tenant"));
            assert!(
                out.stdout.contains("number of transactions actually processed: 200/200"),
                "{mode}: {}",
                out.stdout
            );
            // The scale pgbench detects comes from a confined count of pgbench_branches: the
            // other org's branch must not make it 2.
            assert!(out.stdout.contains("scaling factor: 1"), "{mode}: {}", out.stdout);
        }
        // The tpcb-like default script writes (UPDATE … SET abalance, INSERT INTO history).
        let out = pgbench(&proxy, BENCH_TENANT, &["-n", "-M", "prepared", "-c", "2", "-t", "20"]).await;
        out.assert_success("pgbench tpcb-like as a tenant");
        let history = db
            .psql("SELECT count(*) FILTER (WHERE org_id = 'bench') || '/' || count(*) FROM pgbench_history")
            .await;
        assert_eq!(history.trim(), "40/40", "history rows must all carry the tenant");
    })
    .await;
}
