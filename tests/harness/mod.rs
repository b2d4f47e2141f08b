//! Shared end-to-end harness: a real throw-away PostgreSQL per test binary, a fresh database per
//! test, an in-process Orgwall proxy per test, and helpers for the clients that talk to it
//! (tokio-postgres, `psql`, `pgbench`, and a raw wire-protocol socket for malformed input).
//!
//! Nothing here is mocked: every test talks to PostgreSQL through the real proxy over TCP.
//! Run with `cargo test -p orgwall-e2e -- --test-threads=2`; the PostgreSQL server and client
//! binaries must be installed (`apt-get install -y postgresql`), or the tests fail saying so.

pub mod balances;
pub mod clients;
pub mod drivers;
pub mod ops;
pub mod pg;
pub mod proxy;
pub mod raw;
pub mod rng;
pub mod tenancy;
pub mod tls;

use std::future::Future;
use std::time::Duration;

pub use clients::{connect, expect_db_error, sqlstate, CliOutput};
pub use pg::{
    dedicated_postgres, dedicated_postgres_with, shared_postgres, DedicatedPostgres, TestDb,
};
pub use proxy::{ProxyOptions, TestProxy, ADMIN, TENANT};

/// Runs a test body, panicking if it has not finished after `secs` seconds.
///
/// This is a guard against a hung proxy stalling the whole suite, not a performance assertion:
/// the bounds are generous multiples of what the work needs.
pub async fn bounded<T>(secs: u64, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), body).await {
        Ok(v) => v,
        Err(_) => panic!("test body did not finish within {secs}s: the proxy probably hung"),
    }
}

/// Starts a database and a proxy in front of it: the common first two lines of a test. The
/// database has none of Orgwall's migrations, so the proxy runs without the second wall.
pub async fn db_and_proxy(label: &str, opts: ProxyOptions) -> (TestDb, TestProxy) {
    let db = TestDb::create(label).await;
    let opts = ProxyOptions {
        second_wall: false,
        ..opts
    };
    let proxy = TestProxy::start(&db, opts).await;
    (db, proxy)
}
