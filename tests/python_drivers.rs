//! Python drivers through the proxy, differentially: each script in `tests/python/` runs once
//! against PostgreSQL directly and once through Orgwall (admin login, transaction pooling with
//! fewer server connections than the script's pool), and the two transcripts must be equal.
//! They cover protocol habits tokio-postgres does not have: psycopg's `DEALLOCATE ALL` after a
//! rollback, its pipeline mode and binary COPY; asyncpg's pool reset (several statements
//! ending in `RESET ALL`), its binary-everything statement cache and binary COPY FROM.
//! SQLAlchemy's ORM runs as a tenant: through Orgwall and directly under row-level security.

use orgwall_e2e::clients::python;
use orgwall_e2e::tenancy::{
    admin_direct, org_checksums, setup_rls, tenant_db, tenant_proxy, TENANT_A,
};
use orgwall_e2e::{bounded, db_and_proxy, ProxyOptions, ADMIN};

async fn same_through_orgwall(script: &str, label: &str) {
    let (db, proxy) = db_and_proxy(label, ProxyOptions::pool(3, "transaction")).await;
    let direct = python(script, &[db.upstream_url()], 120).await;
    assert!(
        direct.status.success(),
        "{script} directly: {}\n{}",
        direct.stderr,
        direct.stdout
    );
    let proxied = python(script, &[proxy.url(ADMIN)], 120).await;
    assert!(
        proxied.status.success(),
        "{script} through Orgwall: {}\n{}",
        proxied.stderr,
        proxied.stdout
    );
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

/// An app on SQLAlchemy 2 (ORM over psycopg 3) that knows nothing about tenants, logged in as
/// tenant org_a: what it does on connect (type lookups), schema reflection, ORM reads and
/// writes must give the transcript it gives directly as a role that PostgreSQL row-level
/// security confines to org_a (a second copy of the database), org_b's rows must not change,
/// and org_a's data must end up the same in both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(300, async {
        let reference = tenant_db("sqla_rls").await;
        let role = setup_rls(&reference).await;
        let direct_url = format!(
            "postgresql://{role}:rls-pw@127.0.0.1:{}/{}?sslmode=disable&options=-c%20app.org_id%3Dorg_a",
            reference.server.port(),
            reference.name
        );
        let db = tenant_db("sqla").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let admin = admin_direct(&db).await;
        let b_before = org_checksums(&admin, "org_b", false).await;

        let direct = python("sqlalchemy_flow.py", &[direct_url], 120).await;
        assert!(
            direct.status.success(),
            "directly under RLS: {}\n{}",
            direct.stderr,
            direct.stdout
        );
        let proxied = python("sqlalchemy_flow.py", &[proxy.url(TENANT_A)], 120).await;
        assert!(
            proxied.status.success(),
            "through Orgwall: {}\n{}",
            proxied.stderr,
            proxied.stdout
        );
        assert!(direct.stdout.lines().count() > 15, "{}", direct.stdout);
        assert_eq!(proxied.stdout, direct.stdout);

        assert_eq!(org_checksums(&admin, "org_b", false).await, b_before);
        let reference_admin = admin_direct(&reference).await;
        assert_eq!(
            org_checksums(&admin, "org_a", true).await,
            org_checksums(&reference_admin, "org_a", true).await
        );
    })
    .await;
}
