//! The balance cache against an upstream that misbehaves or cannot feed it, each on a dedicated
//! PostgreSQL: a restart in the middle of a stream of ledger writes (the cache resyncs, and
//! afterwards equals `SUM(ledger)` and `inventory_balances` for every key), and a server with
//! `wal_level = replica` (the cache stays off and PostgreSQL answers every lookup).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgwall_e2e::balances::{
    assert_cache_matches_ledger, cached_proxy, compare_simple, counter, first_column, lookup_sql,
    movement, stats, wait_caught_up, wait_serving, wait_stats, TENANT_INSERT,
};
use orgwall_e2e::clients::try_connect;
use orgwall_e2e::proxy::Login;
use orgwall_e2e::tenancy::{self, RawValue, TENANT_A, TENANT_B};
use orgwall_e2e::{
    bounded, connect, dedicated_postgres, dedicated_postgres_with, expect_db_error, ProxyOptions,
    ADMIN,
};

/// What one writer saw.
#[derive(Debug, Default)]
struct Written {
    ok: u64,
    failed: u64,
}

/// Appends ledger rows through the proxy until `stop`, reconnecting after any error (the
/// upstream restarts under it). Counts successes and failures; the ledger itself is the truth.
async fn resilient_writer(conn: String, login: Login, w: usize, stop: Arc<AtomicBool>) -> Written {
    let mut out = Written::default();
    let mut client = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let c = match client.take() {
            Some(c) => c,
            None => match try_connect(&conn).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (item, loc, lot, delta) = movement(login, w, n);
        n += 1;
        match c.execute(TENANT_INSERT, &[&item, &loc, &lot, &delta]).await {
            Ok(_) => {
                out.ok += 1;
                client = Some(c);
            }
            Err(_) => {
                out.failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_mid_stream_resyncs_and_loses_or_doubles_nothing() {
    bounded(300, async {
        let pg = dedicated_postgres().await;
        let db = tenancy::tenant_db_on(pg.server.clone(), "bal_restart").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;

        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for (w, login) in [TENANT_A, TENANT_B, TENANT_A, TENANT_B]
            .into_iter()
            .enumerate()
        {
            writers.push(tokio::spawn(resilient_writer(
                proxy.conn_str(login),
                login,
                w,
                stop.clone(),
            )));
        }
        // Mid-stream: the cache has been applying the writers' movements.
        let before = wait_stats(&proxy, 600, "writers' rows never applied", |s| {
            counter(s, "rows_applied") >= 50
        })
        .await;
        assert_eq!(counter(&before, "resyncs"), 0, "{before:?}");

        let server = pg.server.clone();
        tokio::task::spawn_blocking(move || server.restart())
            .await
            .expect("restart task");
        let restarted = Instant::now();
        let resynced = wait_stats(&proxy, 1200, "the cache did not resync", |s| {
            counter(s, "resyncs") >= 1 && s["serving"] == "true"
        })
        .await;
        let resync_time = restarted.elapsed();
        // Keep writing after it came back, then quiesce.
        let applied_at_resync = counter(&resynced, "rows_applied");
        wait_stats(&proxy, 600, "no writes applied after the resync", |s| {
            counter(s, "rows_applied") >= applied_at_resync + 50
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        for w in writers {
            let r = w.await.expect("writer");
            ok += r.ok;
            failed += r.failed;
        }

        wait_caught_up(&db, &proxy).await;
        let keys = assert_cache_matches_ledger(&db, &proxy).await;
        let ledger_rows: i64 = tenancy::admin_direct(&db)
            .await
            .query_one("SELECT count(*) FROM inventory_ledger", &[])
            .await
            .expect("count")
            .get(0);
        let s = stats(&proxy).await;
        println!(
            "upstream restart: serving again {:.2}s after the restart returned; {ok} inserts \
             acknowledged, {failed} failed across the restart, {ledger_rows} ledger rows; \
             {keys} keys compared; resyncs {}",
            resync_time.as_secs_f64(),
            s["resyncs"]
        );
        drop(proxy);
        drop(pg);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wal_level_replica_the_cache_stays_off_and_postgres_answers() {
    bounded(240, async {
        let pg = dedicated_postgres_with(&[("wal_level", "replica")]).await;
        let db = tenancy::tenant_db_on(pg.server.clone(), "bal_replica").await;
        let cached = cached_proxy(&db).await;
        let plain = tenancy::tenant_proxy(&db, ProxyOptions::pool(4, "transaction")).await;
        let s = wait_stats(&cached, 400, "the cache never said why it is off", |s| {
            !s["off_reason"].is_empty()
        })
        .await;
        assert_eq!(s["serving"], "false", "{s:?}");
        assert!(
            s["off_reason"].contains("wal_level = replica")
                && s["off_reason"].contains("wal_level = logical"),
            "off_reason should name the setting: {s:?}"
        );

        // Lookups through the cached proxy are PostgreSQL's answers, byte for byte.
        let mut sqls = vec![
            lookup_sql("i_a1", "l_a1", None),
            lookup_sql("i_a2", "l_a2", Some("LOT-7")),
            lookup_sql("i_b1", "l_b1", None),
            lookup_sql("i_missing", "l_a1", None),
        ];
        for item in ["i_a1", "i_a2", "i_b1"] {
            sqls.push(format!(
                "SELECT sum(quantity) FROM inventory_balances WHERE item_id = '{item}'"
            ));
        }
        compare_simple(&cached, &plain, &sqls).await;

        // A tenant writes and reads its write back, through the cached proxy.
        let c = connect(&cached.conn_str(TENANT_A)).await;
        c.execute(TENANT_INSERT, &[&"i_a1", &"l_a1", &None::<String>, &"2.5"])
            .await
            .expect("insert");
        let got = first_column(
            &c.simple_query(&lookup_sql("i_a1", "l_a1", None))
                .await
                .expect("read back"),
        );
        assert_eq!(got, vec![Some("87.5".to_string())], "seed 85 + 2.5");
        // Extended protocol (binary numeric): the same bytes as through the plain proxy.
        let p = connect(&plain.conn_str(TENANT_A)).await;
        let sql = "SELECT quantity FROM inventory_balances \
                   WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";
        let x: RawValue = c
            .query_one(sql, &[&"i_a1", &"l_a1"])
            .await
            .expect("cached")
            .get(0);
        let y: RawValue = p
            .query_one(sql, &[&"i_a1", &"l_a1"])
            .await
            .expect("plain")
            .get(0);
        assert_eq!(x, y, "extended lookup with the cache off");

        let s = stats(&cached).await;
        assert_eq!(
            counter(&s, "hits"),
            0,
            "nothing may be served from memory: {s:?}"
        );
        assert_eq!(
            counter(&s, "resyncs"),
            0,
            "the feed gives up once, it does not retry: {s:?}"
        );
        let admin = connect(&cached.conn_str(ADMIN)).await;
        let msg = expect_db_error(
            admin.simple_query("SHOW orgwall.balances_drift").await,
            "55000",
            "drift check with the cache off",
        );
        assert!(
            msg.contains("not serving") && msg.contains("wal_level"),
            "{msg}"
        );
        let publications = db.psql("SELECT count(*) FROM pg_publication").await;
        assert_eq!(
            publications, "0",
            "no publication is created when the cache is off"
        );
        drop((cached, plain));
        drop(pg);
    })
    .await;
}
