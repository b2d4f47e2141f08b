//! Python drivers through the proxy, differentially: each script in `tests/python/` runs once
//! against PostgreSQL directly and once through Orgwall (admin login, transaction pooling with
//! fewer server connections than the script's pool), and the two transcripts must be equal.
//! They cover protocol habits tokio-postgres does not have: psycopg's `DEALLOCATE ALL` after a
//! rollback, its pipeline mode and binary COPY; asyncpg's pool reset (several statements
//! ending in `RESET ALL`), its binary-everything statement cache and binary COPY FROM.
//! asyncpg, SQLAlchemy's and Django's ORMs also run as a tenant: through Orgwall and directly
//! under row-level security.

use orgwall_e2e::clients::python;
use orgwall_e2e::tenancy::{
    admin_direct, org_checksums, setup_rls, tenant_db, tenant_proxy, TENANT_A,
};
use orgwall_e2e::{bounded, db_and_proxy, ProxyOptions, ADMIN};

async fn same_through_orgwall(script: &str, label: &str) {
    let (db, proxy) = db_and_proxy(label, ProxyOptions::pool(3, "transaction")).await;
    let direct = python(script, &[db.upstream_url()], 120).await;
    direct.assert_success(&format!("{script} directly"));
    let proxied = python(script, &[proxy.url(ADMIN)], 120).await;
    proxied.assert_success(&format!("{script} through Orgwall"));
    assert!(direct.stdout.lines().count() > 5, "{}", direct.stdout);
    assert_eq!(proxied.stdout, direct.stdout, "{script}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_sees_what_it_sees_directly() {
    bounded(300, same_through_orgwall("psycopg_flow.py", "psycopg")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_sees_what_it_sees_directly() {
    bounded(300, same_through_orgwall("asyncpg_flow.py", "asyncpg")).await;
}

/// An app that knows nothing about tenants, logged in as tenant org_a, must see and do through
/// Orgwall exactly what it sees and does directly as a role that PostgreSQL row-level security
/// confines to org_a (on a second copy of the database); org_b's rows must not change, and
/// org_a's data must end up the same in both databases. `args(direct)` gives the script its
/// connection arguments.
async fn same_as_row_level_security(script: &str, label: &str, args: fn(Target) -> Vec<String>) {
    let reference = tenant_db(&format!("{label}_rls")).await;
    let role = setup_rls(&reference).await;
    let db = tenant_db(label).await;
    let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
    let admin = admin_direct(&db).await;
    let b_before = org_checksums(&admin, "org_b", false).await;

    let direct = Target {
        user: role.clone(),
        password: "rls-pw".into(),
        port: reference.server.port(),
        dbname: reference.name.clone(),
        options: Some("-c app.org_id=org_a".into()),
    };
    let direct = python(script, &args(direct), 120).await;
    direct.assert_success(&format!("{script} directly under RLS"));
    let through = Target {
        user: TENANT_A.name.into(),
        password: TENANT_A.password.into(),
        port: proxy.port,
        dbname: proxy.dbname.clone(),
        options: None,
    };
    let proxied = python(script, &args(through), 120).await;
    proxied.assert_success(&format!("{script} through Orgwall"));
    assert!(direct.stdout.lines().count() > 8, "{}", direct.stdout);
    assert_eq!(proxied.stdout, direct.stdout, "{script}");

    assert_eq!(org_checksums(&admin, "org_b", false).await, b_before);
    let reference_admin = admin_direct(&reference).await;
    assert_eq!(
        org_checksums(&admin, "org_a", true).await,
        org_checksums(&reference_admin, "org_a", true).await
    );
}

/// Where a script connects.
struct Target {
    user: String,
    password: String,
    port: u16,
    dbname: String,
    /// libpq `options` (the RLS reference's `-c app.org_id=…`).
    options: Option<String>,
}

/// The target as one URL argument (libpq's form, which SQLAlchemy and asyncpg read too).
fn url(t: Target) -> Vec<String> {
    let options = t
        .options
        .map(|o| format!("&options={}", o.replace(' ', "%20").replace('=', "%3D")))
        .unwrap_or_default();
    vec![format!(
        "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable{options}",
        t.user, t.password, t.port, t.dbname
    )]
}

/// SQLAlchemy 2 (ORM over psycopg 3): what it does on connect (type lookups), reflection,
/// ORM reads and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(
        300,
        same_as_row_level_security("sqlalchemy_flow.py", "sqla", url),
    )
    .await;
}

/// asyncpg: its type introspection (JIT turned off and back with `set_config`, the second
/// time with a `$1`), prepared statements, executemany, transactions, a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(
        300,
        same_as_row_level_security("asyncpg_tenant_flow.py", "apg_tenant", url),
    )
    .await;
}

/// Django 5 (ORM over psycopg 3): it sets `TimeZone` with `set_config` on every new
/// connection, introspects, and runs querysets, atomic blocks and bulk writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_as_a_tenant_sees_what_row_level_security_shows() {
    let args = |t: Target| {
        let mut a = vec![
            t.user,
            t.password,
            "127.0.0.1".into(),
            t.port.to_string(),
            t.dbname,
        ];
        a.extend(t.options);
        a
    };
    bounded(
        300,
        same_as_row_level_security("django_flow.py", "django", args),
    )
    .await;
}
