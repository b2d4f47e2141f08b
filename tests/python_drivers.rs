//! Python drivers through the proxy, differentially: each script in `tests/python/` runs once
//! against PostgreSQL directly and once through Orgwall (admin login, transaction pooling with
//! fewer server connections than the script's pool), and the two transcripts must be equal.
//! They cover protocol habits tokio-postgres does not have: psycopg's `DEALLOCATE ALL` after a
//! rollback, its pipeline mode and binary COPY; asyncpg's pool reset (several statements
//! ending in `RESET ALL`), its binary-everything statement cache and binary COPY FROM.

use orgwall_e2e::clients::python;
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
