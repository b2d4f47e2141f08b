//! Plugins that misbehave (spin, grow memory, trap, call WASI, answer nonsense, never finish
//! init, are not components) refuse only the statements they misbehave on, the proxy stays
//! healthy and other sessions are unaffected; plugins swap under load without a failed
//! statement that should have passed, and a broken replacement keeps the old version.

#[path = "plugins_common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{plugin_toml, wasm};
use orgwall_e2e::clients::{expect_db_error, sqlstate};
use orgwall_e2e::tenancy::{tenancy_toml, tenant_db, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, ProxyOptions, TestProxy};

const MODES: [&str; 6] = ["loop", "grow", "trap", "wasi", "bad-sqlstate", "bad-mask"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_refuse_only_their_statements() {
    bounded(300, async {
        let db = tenant_db("plugins_hostile").await;
        let hostile = wasm("hostile");
        let mut toml = tenancy_toml();
        for m in MODES {
            toml += &plugin_toml(
                &format!("hostile-{m}"),
                &hostile,
                &format!("mode = \"{m}\", trigger = \"hostile_{m}\""),
            );
        }
        let proxy = TestProxy::start_with_extra(&db, ProxyOptions::default(), &toml).await;

        // Another session keeps working the whole time.
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let other = connect(&proxy.conn_str(TENANT_B)).await;
        let bystander = {
            let (stop, ok) = (stop.clone(), ok.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n: i64 = other
                        .query_one("SELECT count(*) FROM items", &[])
                        .await
                        .expect("bystander statement failed")
                        .get(0);
                    assert_eq!(n, 3);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        };

        let client = connect(&proxy.conn_str(TENANT_A)).await;
        for m in MODES {
            for round in 0..2 {
                let sql = format!("SELECT 'hostile_{m}' AS x");
                let e = client.simple_query(&sql).await.expect_err("refused");
                assert_eq!(
                    sqlstate(&e).as_deref(),
                    Some("42501"),
                    "{m} round {round}: {e:?}"
                );
                expect_db_error(client.query(sql.as_str(), &[]).await, "42501", m);
                // The same session goes on; the failed instance was replaced.
                let v: i32 = client
                    .query_one("SELECT 7", &[])
                    .await
                    .expect("alive")
                    .get(0);
                assert_eq!(v, 7, "{m}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        bystander.await.expect("bystander ran without failures");
        assert!(ok.load(Ordering::Relaxed) > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_cannot_load_refuse_everything_and_the_proxy_stays_up() {
    bounded(300, async {
        let db = tenant_db("plugins_noload").await;
        let dir = tempdir("noload");
        let garbage = dir.join("garbage.wasm");
        std::fs::write(&garbage, b"\0asm not really").expect("write");
        for (name, path, config) in [
            ("slow-init", wasm("hostile"), "mode = \"slow-init\""),
            ("init-error", wasm("hostile"), "mode = \"init-error\""),
            ("garbage", garbage.clone(), ""),
            ("missing", dir.join("missing.wasm"), ""),
        ] {
            let toml = tenancy_toml() + &plugin_toml(name, &path, config);
            let proxy = TestProxy::start_with_extra(&db, ProxyOptions::default(), &toml).await;
            for _ in 0..2 {
                let client = connect(&proxy.conn_str(TENANT_A)).await;
                let msg = expect_db_error(client.query("SELECT 1", &[]).await, "42501", name);
                assert!(
                    msg.contains(name) && msg.contains("not loaded"),
                    "{name}: {msg}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_swap_under_load_and_a_broken_swap_keeps_the_old_one() {
    bounded(300, async {
        let db = tenant_db("plugins_reload").await;
        let dir = tempdir("reload");
        let live = dir.join("policy.wasm");
        replace(&live, &wasm("append_only_ledger"));
        let toml = tenancy_toml() + &plugin_toml("live", &live, "");
        let proxy = TestProxy::start_with_extra(&db, ProxyOptions::default(), &toml).await;

        // Load: statements every version allows, from several sessions, must never fail.
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let c = connect(&proxy.conn_str(TENANT_A)).await;
            let (stop, done) = (stop.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let rows = c
                        .query("SELECT id FROM items WHERE id LIKE $1", &[&"i_%"])
                        .await
                        .expect("a statement every plugin version allows failed");
                    assert_eq!(rows.len(), 3);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let probe = connect(&proxy.conn_str(TENANT_A)).await;
        let audit = "SELECT count(*) FROM audit_logs";
        assert!(
            probe.query(audit, &[]).await.is_ok(),
            "audit readable before the swap"
        );

        // Swap in audit-admin-only: within a few polls, audit reads are refused.
        replace(&live, &wasm("audit_admin_only"));
        wait_until(|| async { probe.query(audit, &[]).await.is_err() }).await;

        // A broken file: the old version keeps running.
        let junk = dir.join("junk.wasm");
        std::fs::write(&junk, b"not wasm").expect("write");
        replace(&live, &junk);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        expect_db_error(
            probe.query(audit, &[]).await,
            "42501",
            "old plugin still in force",
        );

        // And back to append-only-ledger: audit readable again.
        replace(&live, &wasm("append_only_ledger"));
        wait_until(|| async { probe.query(audit, &[]).await.is_ok() }).await;

        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("worker saw no failure");
        }
        assert!(done.load(Ordering::Relaxed) > 10);
    })
    .await;
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("orgwall-plugins-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Replaces `to` atomically (write beside it, then rename), as a deploy would.
fn replace(to: &std::path::Path, from: &std::path::Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, to).expect("rename plugin");
}

async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..120 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("condition not reached within 30s");
}
