//! Python drivers through the proxy, differentially: each script in `tests/python/` runs once
//! against PostgreSQL directly and once through Orgwall (admin login, transaction pooling with
//! fewer server connections than the script's pool), and the two transcripts must be equal.
//! They cover protocol habits tokio-postgres does not have: psycopg's `DEALLOCATE ALL` after a
//! rollback, its pipeline mode and binary COPY; asyncpg's pool reset (several statements
//! ending in `RESET ALL`), its binary-everything statement cache and binary COPY FROM.
//! asyncpg, SQLAlchemy's and Django's ORMs also run as a tenant: through Orgwall and directly
//! under row-level security.

use orgwall_e2e::clients::python;
use orgwall_e2e::drivers::{same_as_row_level_security, Target};
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

/// SQLAlchemy 2 (ORM over psycopg 3): what it does on connect (type lookups), reflection,
/// ORM reads and writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(
        300,
        same_as_row_level_security("sqla", "sqlalchemy_flow.py", |t| async move {
            python("sqlalchemy_flow.py", &[t.url()], 120).await
        }),
    )
    .await;
}

/// asyncpg: its type introspection (JIT turned off and back with `set_config`, the second
/// time with a `$1`), prepared statements, executemany, transactions, a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(
        300,
        same_as_row_level_security("apg_tenant", "asyncpg_tenant_flow.py", |t| async move {
            python("asyncpg_tenant_flow.py", &[t.url()], 120).await
        }),
    )
    .await;
}

/// Django 5 (ORM over psycopg 3): it sets `TimeZone` with `set_config` on every new
/// connection, introspects, and runs querysets, atomic blocks and bulk writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_as_a_tenant_sees_what_row_level_security_shows() {
    bounded(
        300,
        same_as_row_level_security("django", "django_flow.py", |t: Target| async move {
            python("django_flow.py", &t.args(), 120).await
        }),
    )
    .await;
}
