//! Operations end to end (the reload test swaps policy plugins: it builds `plugins/`): `/metrics` scraped and parsed before and after real traffic (tenant,
//! switcher, admin, a refused statement, a failed login), the per-tenant series bounded by
//! `[admin] tenant_metrics` against a switcher that binds more orgs than that, and `/healthz`
//! following PostgreSQL up and down.

#[path = "plugins_common/mod.rs"]
mod plugins_common;

use orgwall_e2e::ops::{free_port, http_get, sample, scrape};
use orgwall_e2e::pg::{dedicated_postgres, TestDb};
use orgwall_e2e::tenancy::{tenancy_toml, tenant_db, SWITCHER, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy, ADMIN};
use plugins_common::{plugin_toml, wasm};

fn admin_toml(port: u16, tenant_metrics: usize) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:{port}\"\ntenant_metrics = {tenant_metrics}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_tenant_series_stay_bounded() {
    bounded(300, async {
        let db = tenant_db("ops_metrics").await;
        let port = free_port();
        let extra = tenancy_toml() + &admin_toml(port, 2);
        let proxy = TestProxy::start_with_extra(&db, ProxyOptions::default(), &extra).await;

        // The second wall's check runs at start; healthz waits for it.
        let (status, body) = http_get(port, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("postgres: ok") && body.contains("second_wall: ok"),
            "{body}"
        );
        assert_eq!(http_get(port, "/nope").await.0, 404);

        let before = scrape(port).await;
        let tenant = connect(&proxy.conn_str(TENANT_A)).await;
        for _ in 0..3 {
            tenant
                .simple_query("SELECT count(*) FROM items")
                .await
                .unwrap();
        }
        tenant
            .simple_query("DROP TABLE users")
            .await
            .expect_err("DDL is refused for tenants");
        // A switcher binding more orgs than `tenant_metrics` (2): the third and later share
        // `other`, however many there are.
        let switcher = connect(&proxy.conn_str(SWITCHER)).await;
        for org in ["org_a", "org_b", "org_c", "org_d", "org_e"] {
            switcher
                .simple_query(&format!("SET orgwall.org_id = '{org}'"))
                .await
                .unwrap();
            switcher
                .simple_query("SELECT count(*) FROM items")
                .await
                .unwrap();
        }
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        admin.simple_query("SELECT 1").await.unwrap();
        let refused_login = orgwall_e2e::clients::try_connect(&proxy.conn_str_with(
            TENANT_A.name,
            "wrong-password",
            "disable",
        ))
        .await;
        assert!(refused_login.is_err());

        let after = scrape(port).await;
        let delta = |name: &str, labels: &[(&str, &str)]| {
            sample(&after, name, labels) - sample(&before, name, labels)
        };
        let statements = "orgwall_statements_total";
        assert_eq!(
            delta(statements, &[("role", "tenant"), ("outcome", "routed")]),
            3.0
        );
        assert_eq!(
            delta(statements, &[("role", "tenant"), ("outcome", "refused")]),
            1.0
        );
        assert_eq!(
            delta(statements, &[("role", "switcher"), ("outcome", "routed")]),
            5.0
        );
        assert!(delta(statements, &[("role", "admin"), ("outcome", "routed")]) >= 1.0);
        assert_eq!(
            delta("orgwall_refusals_total", &[("sqlstate", "42501")]),
            1.0
        );
        for (role, n) in [("tenant", 1.0), ("switcher", 1.0), ("admin", 1.0)] {
            assert_eq!(
                sample(&after, "orgwall_client_connections", &[("role", role)]),
                n,
                "{role}"
            );
        }
        assert_eq!(
            delta(
                "orgwall_client_connections_refused_total",
                &[("reason", "authentication")]
            ),
            1.0
        );
        // Per tenant: org_a (tenant A, then the switcher) and one more org have their own
        // series; every other org is `other`.
        let orgs: Vec<&str> = after
            .keys()
            .filter(|s| s.name == "orgwall_tenant_statements_total")
            .filter_map(|s| s.labels.get("org_id").map(String::as_str))
            .collect();
        assert_eq!(orgs.len(), 3, "{orgs:?}");
        assert!(
            orgs.contains(&"org_a") && orgs.contains(&"other"),
            "{orgs:?}"
        );
        assert_eq!(
            sample(
                &after,
                "orgwall_tenant_statements_total",
                &[("org_id", "org_a")]
            ),
            4.0
        );
        assert_eq!(
            sample(
                &after,
                "orgwall_tenant_statements_total",
                &[("org_id", "other")]
            ),
            3.0
        );
        assert_eq!(
            sample(
                &after,
                "orgwall_tenant_refusals_total",
                &[("org_id", "org_a")]
            ),
            1.0
        );
        // The rewrite cache: the same SELECT text again is a hit.
        let lookups = |r| delta("orgwall_rewrite_cache_lookups_total", &[("result", r)]);
        assert!(lookups("hit") >= 6.0, "{}", lookups("hit"));
        assert!(sample(&after, "orgwall_rewrite_cache_entries", &[]) >= 1.0);
        // Pools: the tenant pool was checked out and its waits recorded.
        assert!(delta("orgwall_pool_checkouts_total", &[("pool", "tenant")]) >= 8.0);
        assert!(delta("orgwall_pool_wait_seconds_count", &[("pool", "tenant")]) >= 8.0);
        let conns = |state| {
            sample(
                &after,
                "orgwall_server_connections",
                &[("pool", "tenant"), ("state", state)],
            )
        };
        assert!(conns("idle") + conns("active") >= 1.0);
        assert!(conns("idle") + conns("active") <= 4.0);

        drop((tenant, switcher, admin));
        proxy.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_postgres() {
    bounded(300, async {
        let pg = dedicated_postgres().await;
        let db = TestDb::create_on(pg.server.clone(), "ops_health").await;
        let port = free_port();
        let opts = ProxyOptions {
            second_wall: false,
            ..Default::default()
        };
        let proxy = TestProxy::start_with_extra(&db, opts, &admin_toml(port, 0)).await;
        let (status, body) = http_get(port, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("second_wall: off"), "{body}");
        pg.server.stop();
        let (status, body) = http_get(port, "/healthz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("postgres: FAILED"), "{body}");
        let m = scrape(port).await;
        assert!(
            sample(
                &m,
                "orgwall_upstream_connect_errors_total",
                &[("pool", "owner")]
            ) >= 1.0,
            "{m:?}"
        );
        proxy.shutdown().await.unwrap();
    })
    .await;
}

/// The rows of an admin console statement through the extended protocol (a named prepared
/// statement, run twice) and the simple one, as maps column → value; both must agree on the
/// columns.
async fn console(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Vec<std::collections::BTreeMap<String, Option<String>>> {
    let statement = client
        .prepare(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut extended = Vec::new();
    for _ in 0..2 {
        extended = client
            .query(&statement, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert!(
        !extended.is_empty() || sql.eq_ignore_ascii_case("reload"),
        "{sql}: no rows"
    );
    let simple = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: Vec<_> = simple
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .map(|r| {
            let names: Vec<String> = r.columns().iter().map(|c| c.name().to_string()).collect();
            assert_eq!(names, columns, "{sql}: simple and extended columns differ");
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), r.get(i).map(str::to_string)))
                .collect()
        })
        .collect();
    assert_eq!(
        rows.len(),
        extended.len(),
        "{sql}: row counts differ between protocols"
    );
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_answers_in_both_protocols_and_only_admins() {
    bounded(300, async {
        let db = tenant_db("ops_console").await;
        let opts = ProxyOptions {
            config_file: true,
            ..Default::default()
        };
        let proxy = TestProxy::start_with_extra(&db, opts, &tenancy_toml()).await;
        let tenant = connect(&proxy.conn_str(TENANT_A)).await;
        tenant
            .simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        let switcher = connect(&proxy.conn_str(SWITCHER)).await;
        switcher
            .simple_query("SET orgwall.org_id = 'org_b'")
            .await
            .unwrap();
        switcher
            .simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        let admin = connect(&proxy.conn_str(ADMIN)).await;

        let clients = console(&admin, "SHOW CLIENTS").await;
        let by_user = |u: &str| {
            clients
                .iter()
                .find(|r| r["user"].as_deref() == Some(u))
                .unwrap_or_else(|| panic!("{u} not in SHOW CLIENTS: {clients:?}"))
        };
        let a = by_user(TENANT_A.name);
        assert_eq!(a["role"].as_deref(), Some("tenant"));
        assert_eq!(a["org_id"].as_deref(), Some("org_a"));
        assert_eq!(a["statements"].as_deref(), Some("1"));
        let s = by_user(SWITCHER.name);
        assert_eq!(s["current_org_id"].as_deref(), Some("org_b"));
        assert_eq!(by_user(ADMIN.name)["role"].as_deref(), Some("admin"));

        // The server connections: the tenant pool's run as orgwall_tenant, with real backend
        // pids (the ones pg_stat_activity shows for that role).
        let servers = console(&admin, "SHOW SERVERS").await;
        let tenant_pids: Vec<String> = servers
            .iter()
            .filter(|r| r["pool"].as_deref() == Some("tenant"))
            .map(|r| {
                assert_eq!(r["user"].as_deref(), Some("orgwall_tenant"));
                r["remote_pid"].clone().unwrap()
            })
            .collect();
        assert!(!tenant_pids.is_empty(), "{servers:?}");
        let direct = orgwall_e2e::tenancy::admin_direct(&db).await;
        for pid in &tenant_pids {
            let rows = direct
                .query(
                    "SELECT usename::text FROM pg_stat_activity WHERE pid = $1::text::int",
                    &[pid],
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "pid {pid} is not a backend");
            assert_eq!(rows[0].get::<_, String>(0), "orgwall_tenant");
        }

        let pools = console(&admin, "SHOW POOLS").await;
        let names: Vec<_> = pools.iter().filter_map(|r| r["pool"].clone()).collect();
        assert_eq!(names, ["owner", "tenant"]);
        let tenant_pool = &pools[1];
        assert_eq!(tenant_pool["pool_size"].as_deref(), Some("4"));
        assert_eq!(tenant_pool["cl_active"].as_deref(), Some("2"));
        assert_eq!(tenant_pool["user"].as_deref(), Some("orgwall_tenant"));

        let stats = console(&admin, "SHOW STATS").await;
        let tenant_stats = stats
            .iter()
            .find(|r| r["role"].as_deref() == Some("tenant"))
            .expect("tenant row");
        assert_eq!(tenant_stats["total_query_count"].as_deref(), Some("1"));

        let config = console(&admin, "SHOW CONFIG").await;
        let value = |k: &str| {
            config
                .iter()
                .find(|r| r["key"].as_deref() == Some(k))
                .and_then(|r| r["value"].clone())
        };
        assert_eq!(value("upstream.pool_size").as_deref(), Some("4"));
        assert_eq!(value("users").as_deref(), Some("4"));
        // Never a secret: passwords, the tenant identity's password, JWT keys.
        let all: String = config
            .iter()
            .flat_map(|r| r.values().flatten().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        for secret in [
            ADMIN.password,
            TENANT_A.password,
            orgwall_e2e::proxy::TENANT_ROLE_PASSWORD,
        ] {
            assert!(!all.contains(secret), "{secret} in SHOW CONFIG");
        }

        console(&admin, "RELOAD").await;
        // The catalog is rediscovered and the wall checked again: tenants carry on.
        let n = tenant
            .simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        assert!(!n.is_empty());

        // Other logins are refused, in both protocols, and the statement never runs upstream.
        for sql in [
            "SHOW CLIENTS",
            "SHOW POOLS",
            "SHOW STATS",
            "SHOW CONFIG",
            "RELOAD",
        ] {
            for c in [&tenant, &switcher] {
                let e = c.simple_query(sql).await.expect_err(sql);
                assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e}");
                let e = c.prepare(sql).await.expect_err(sql);
                assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e}");
            }
        }
        tenant
            .simple_query("SELECT 1")
            .await
            .expect("the session goes on");
        drop((tenant, switcher, admin));
        proxy.shutdown().await.unwrap();
    })
    .await;
}

/// One client running `SELECT count(*) FROM items` until told to stop: (statements, errors).
async fn steady_client(
    conn_str: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Vec<String>) {
    let client = connect(&conn_str).await;
    let (mut ok, mut errors) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match client.simple_query("SELECT count(*) FROM items").await {
            Ok(_) => ok += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    (ok, errors)
}

fn pool_sizes(pools: &[std::collections::BTreeMap<String, Option<String>>]) -> Vec<String> {
    pools
        .iter()
        .filter_map(|r| r["pool_size"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_users_rotates_passwords_shrinks_pools_and_swaps_plugins_under_load() {
    bounded(600, async {
        let db = tenant_db("ops_reload").await;
        let opts = ProxyOptions {
            config_file: true,
            ..ProxyOptions::pool(4, "transaction")
        };
        let port = free_port();
        let guard = plugin_toml(
            "ledger-guard",
            &wasm("append_only_ledger"),
            "tables = [\"inventory_ledger\"]",
        );
        let extra = tenancy_toml() + &guard + &admin_toml(port, 0);
        let proxy = TestProxy::start_with_extra(&db, opts, &extra).await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        let delete = "DELETE FROM inventory_ledger WHERE false";
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let e = a
            .simple_query(delete)
            .await
            .expect_err("append-only ledger");
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
        let m = scrape(port).await;
        assert!(
            sample(
                &m,
                "orgwall_plugin_decisions_total",
                &[("decision", "deny")]
            ) >= 1.0
        );
        assert!(sample(&m, "orgwall_plugin_check_seconds_count", &[]) >= 1.0);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let login = if i % 2 == 0 { TENANT_A } else { TENANT_B };
                tokio::spawn(steady_client(proxy.conn_str(login), stop.clone()))
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        // A new user, TENANT_B's password rotated, both pools shrunk from 4 to 2.
        let path = proxy.config_path();
        let original = std::fs::read_to_string(&path).unwrap();
        let edited = original
            .replace("pool_size = 4", "pool_size = 2")
            .replace(
                &format!("password = \"{}\"", TENANT_B.password),
                "password = \"globex-rotated\"",
            )
            // The ledger guard swapped for a row limit on a table the clients do not read.
            .replace(
                &guard,
                &plugin_toml("row-limit", &wasm("row_limit"), "tables = [\"audit_logs\"]"),
            )
            + "[[users]]\nname = \"late\"\npassword = \"late-pw\"\norg_id = \"org_a\"\n";
        assert_ne!(edited, original);
        std::fs::write(&path, &edited).unwrap();
        admin.simple_query("RELOAD").await.expect("RELOAD");

        let late = connect(&proxy.conn_str_with("late", "late-pw", "disable")).await;
        late.simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        let old = orgwall_e2e::clients::try_connect(&proxy.conn_str(TENANT_B)).await;
        assert_eq!(
            old.err()
                .and_then(|e| e.code().map(|c| c.code().to_string()))
                .as_deref(),
            Some("28P01"),
            "the old password still works"
        );
        connect(&proxy.conn_str_with(TENANT_B.name, "globex-rotated", "disable")).await;
        assert_eq!(pool_sizes(&console(&admin, "SHOW POOLS").await), ["2", "2"]);
        a.simple_query(delete)
            .await
            .expect("the ledger guard is gone after the reload");
        let m = scrape(port).await;
        assert!(
            sample(
                &m,
                "orgwall_plugin_decisions_total",
                &[("decision", "allow")]
            ) >= 1.0
        );

        // A config that fails validation is refused whole; the running one stays.
        std::fs::write(
            &path,
            edited.replace("pool_size = 2", "pool_size = \"two\""),
        )
        .unwrap();
        let e = admin
            .simple_query("RELOAD")
            .await
            .expect_err("a bad config is refused");
        assert_eq!(e.code().map(|c| c.code()), Some("F0000"), "{e}");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains("pool_size"), "{message}");
        connect(&proxy.conn_str_with("late", "late-pw", "disable")).await;
        assert_eq!(pool_sizes(&console(&admin, "SHOW POOLS").await), ["2", "2"]);

        // Sessions that were running carried on through both reloads without an error.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            let (ok, errors) = c.await.unwrap();
            assert!(errors.is_empty(), "client errors: {errors:?}");
            assert!(ok > 0);
        }
        // Once the clients are gone, each pool keeps at most its new size of connections.
        let pools = console(&admin, "SHOW POOLS").await;
        for p in &pools {
            let n = |k: &str| p[k].as_deref().unwrap_or("0").parse::<usize>().unwrap();
            assert!(n("sv_idle") <= 2, "{p:?}");
        }
        drop((admin, late, a));
        proxy.shutdown().await.unwrap();
    })
    .await;
}

/// `[[users]] max_client_connections`: a login past its own limit gets FATAL 53300 naming it,
/// other logins are not affected, and a slot comes back when a session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_s_own_session_limit() {
    bounded(120, async {
        let db = tenant_db("ops_user_limit").await;
        let extra = tenancy_toml()
            + "[[users]]\nname = \"capped\"\npassword = \"capped-pw\"\norg_id = \"org_a\"\n\
               max_client_connections = 1\nmax_server_connections = 1\n";
        let proxy = TestProxy::start_with_extra(&db, ProxyOptions::default(), &extra).await;
        let capped = proxy.conn_str_with("capped", "capped-pw", "disable");
        let first = connect(&capped).await;
        first
            .simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        let Err(e) = orgwall_e2e::clients::try_connect(&capped).await else {
            panic!("a second session of the capped login was accepted");
        };
        let db_error = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(db_error.code().code(), "53300");
        assert!(
            db_error.message().contains("max_client_connections"),
            "{}",
            db_error.message()
        );
        // Other logins are not limited by it.
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        a.simple_query("SELECT 1").await.unwrap();
        drop(first);
        // The slot is given back once the session has ended (asynchronously).
        let mut again = None;
        for _ in 0..100 {
            if let Ok(c) = orgwall_e2e::clients::try_connect(&capped).await {
                again = Some(c);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let again = again.expect("the capped login connects again after its session ended");
        again
            .simple_query("SELECT count(*) FROM items")
            .await
            .unwrap();
        drop((a, again));
        proxy.shutdown().await.unwrap();
    })
    .await;
}
