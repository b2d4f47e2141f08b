//! `[upstream] multiplex`: several clients' implicit transactions pipelined on shared server
//! connections. Answers reach the right client in every protocol; transactions, session
//! settings, errors and COPY never share a connection; a slow statement does not hold up other
//! clients and can still be cancelled; a cancel fails no other client's statement; a lost
//! multiplexed connection fails only the batches on it; pgbench runs clean.

use std::collections::HashSet;
use std::time::Duration;

use orgwall_e2e::clients::{assert_pgbench_clean, describe, pgbench};
use orgwall_e2e::{
    bounded, connect, db_and_proxy, expect_db_error, ProxyOptions, TestDb, TestProxy, ADMIN,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

fn opts(pool_size: usize, multiplex: usize) -> ProxyOptions {
    ProxyOptions {
        multiplex,
        ..ProxyOptions::pool(pool_size, "transaction")
    }
}

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

/// A counter from `SHOW orgwall_pool` (admin login).
/// Runs `body(client, connection)` for clients `0..n`, each on a connection of its own to
/// `proxy` as the admin, all at once; returns what each returned, in client order.
async fn each_client<T, F, Fut>(proxy: &TestProxy, n: i32, body: F) -> Vec<T>
where
    F: Fn(i32, tokio_postgres::Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = Vec::new();
    for client in 0..n {
        let (conn, body) = (proxy.conn_str(ADMIN), body.clone());
        tasks.push(tokio::spawn(async move {
            let c = connect(&conn).await;
            body(client, c).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

async fn pool_stat(c: &tokio_postgres::Client, name: &str) -> u64 {
    let msgs = c
        .simple_query("SHOW orgwall_pool")
        .await
        .expect("SHOW orgwall_pool");
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get(0) == Some(name) => r.get(1)?.parse().ok(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in SHOW orgwall_pool"))
}

/// 24 clients on a pool of 4 (2 multiplexed): every answer belongs to the client that asked,
/// in the simple, extended and prepared protocols, and the statements really shared backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_the_client_that_asked_in_every_protocol() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("mux_answers", opts(4, 2)).await;
        let per_client = each_client(&proxy, 24, |client, c| async move {
            let stmt = c
                .prepare("SELECT $1::int * 1000 + $2::int, pg_backend_pid()")
                .await
                .expect("prepare");
            let mut pids = HashSet::new();
            for i in 0..60i32 {
                let row = c.query_one(&stmt, &[&client, &i]).await.expect("prepared");
                assert_eq!(row.get::<_, i32>(0), client * 1000 + i, "prepared");
                pids.insert(row.get::<_, i32>(1));
                let row = c
                    .query_one(
                        "SELECT $1::text || ':' || $2::text",
                        &[&client.to_string(), &i.to_string()],
                    )
                    .await
                    .expect("extended");
                assert_eq!(row.get::<_, String>(0), format!("{client}:{i}"), "extended");
                let sql = format!("SELECT {client}; SELECT {i}, 'x' || {client}");
                let msgs = c.simple_query(&sql).await.expect("simple");
                assert_eq!(
                    simple_rows(&msgs),
                    vec![client.to_string(), i.to_string()],
                    "simple multi-statement"
                );
            }
            pids
        })
        .await;
        let pids: HashSet<i32> = per_client.into_iter().flatten().collect();
        assert!(pids.len() <= 4, "statements ran on {} backends", pids.len());
        // 24 × (1 prepare + 60 × 3 statements); a batch meeting a slow head goes exclusive.
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        let shared = pool_stat(&admin, "multiplexed_batches").await;
        assert!(
            shared >= 24 * 181 / 4,
            "only {shared} batches were multiplexed"
        );
        assert!(pool_stat(&admin, "multiplexed_connections").await <= 2);
    })
    .await;
}

/// A client's open transaction, failing batch or session SET never reaches the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_errors_and_settings_stay_with_their_client() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("mux_isolation", opts(4, 2)).await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        admin
            .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
            .await
            .expect("create");
        let mut a = connect(&proxy.conn_str(ADMIN)).await;
        let tx = a.transaction().await.expect("begin");
        tx.execute("INSERT INTO t VALUES (1)", &[])
            .await
            .expect("insert");
        let mut others = Vec::new();
        for _ in 0..6 {
            let conn = proxy.conn_str(ADMIN);
            others.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                for _ in 0..40 {
                    let n: i64 = c
                        .query_one("SELECT count(*) FROM t", &[])
                        .await
                        .expect("count")
                        .get(0);
                    assert_eq!(n, 0, "saw another client's uncommitted row");
                    let st: String = c
                        .query_one("SHOW statement_timeout", &[])
                        .await
                        .expect("show")
                        .get(0);
                    assert_eq!(st, "0", "saw another client's setting");
                    let e = c.query_one("SELECT 1 / (random() * 0)::int", &[]).await;
                    expect_db_error(e, "22012", "division by zero");
                    let msgs = c
                        .simple_query("SELECT 'after error'")
                        .await
                        .expect("recovers");
                    assert_eq!(simple_rows(&msgs), vec!["after error"]);
                }
            }));
        }
        let b = connect(&proxy.conn_str(ADMIN)).await;
        b.batch_execute("SET statement_timeout = '4321ms'")
            .await
            .expect("SET");
        for _ in 0..20 {
            let st: String = b
                .query_one("SHOW statement_timeout", &[])
                .await
                .expect("show")
                .get(0);
            assert_eq!(st, "4321ms", "B lost its own setting");
        }
        for t in others {
            t.await.expect("other client");
        }
        tx.rollback().await.expect("rollback");
        let n: i64 = admin
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0);
    })
    .await;
}

/// A long statement on a multiplexed connection: other clients are served meanwhile, and a
/// cancel request stops it (57014) without touching anyone else's statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_holds_up_nobody_and_can_be_cancelled() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("mux_slow", opts(4, 1)).await;
        let sleeper = connect(&proxy.conn_str(ADMIN)).await;
        let token = sleeper.cancel_token();
        let sleeping = tokio::spawn(async move { sleeper.query_one("SELECT pg_sleep(30)", &[]).await.map(|_| ()) });
        // Watched directly: a read sent through the proxy in the sleep's first 20 ms would
        // rightly queue behind it on the shared connection (README, Multiplexing).
        let watcher = connect(&db.direct_conn_str()).await;
        loop {
            let n: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if n == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Past the 20 ms after which the shared connection takes no new statements.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = connect(&proxy.conn_str(ADMIN)).await;
        for i in 0..50i32 {
            let v: i32 = other.query_one("SELECT $1::int", &[&i]).await.expect("quick").get(0);
            assert_eq!(v, i);
        }
        assert!(!sleeping.is_finished(), "the sleep ended early");
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send cancel");
        let r = tokio::time::timeout(Duration::from_secs(10), sleeping)
            .await
            .expect("cancel took effect")
            .expect("task");
        expect_db_error(r, "57014", "cancelled pg_sleep(30)");
        let v: i32 = other.query_one("SELECT 7", &[]).await.expect("after cancel").get(0);
        assert_eq!(v, 7);
    })
    .await;
}

/// The backend of a multiplexed connection is terminated: clients get an error for at most
/// the statement they had on it, then carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_multiplexed_connection_fails_only_its_batches() {
    bounded(120, async {
        let (db, proxy) = db_and_proxy("mux_lost", opts(3, 1)).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        let pid: i32 = c
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        let direct = connect(&db.direct_conn_str()).await;
        direct
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
        let mut failures = 0;
        for i in 0..20i32 {
            match c.query_one("SELECT $1::int", &[&i]).await {
                Ok(row) => assert_eq!(row.get::<_, i32>(0), i),
                Err(e) => {
                    failures += 1;
                    assert!(failures <= 1, "more than one failure: {}", describe(&e));
                    break;
                }
            }
        }
        let c = if failures > 0 {
            connect(&proxy.conn_str(ADMIN)).await
        } else {
            c
        };
        let pid2: i32 = c
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("after loss")
            .get(0);
        assert_ne!(pid, pid2);
    })
    .await;
}

/// pgbench's TPC-B-like script (explicit transactions: exclusive connections) and `-S`
/// (implicit ones: multiplexed) in all three protocols, 8 clients on a pool of 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_clean_with_multiplexing() {
    bounded(600, async {
        let (_db, proxy) = db_and_proxy("mux_pgbench", opts(3, 1)).await;
        pgbench(&proxy, ADMIN, &["-i", "-s", "1", "-q"])
            .await
            .assert_success("pgbench -i");
        for mode in ["simple", "extended", "prepared"] {
            for script in [&[][..], &["-S"][..]] {
                let mut args = vec!["-M", mode, "-c", "8", "-j", "2", "-t", "150", "-n"];
                args.extend_from_slice(script);
                let out = pgbench(&proxy, ADMIN, &args).await;
                assert_pgbench_clean(&out, 1200, &format!("pgbench -M {mode} {script:?}"));
            }
        }
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        // Reads share busy connections (to join a group); other statements only idle ones.
        assert!(pool_stat(&admin, "multiplexed_batches").await >= 1200);
    })
    .await;
}

/// Two sleeps submitted together on one multiplexed connection: whichever waits behind the other
/// keeps its cancel request until it starts, and the other one completes (it is written only
/// once the cancelled one is answered and the cancel can no longer land).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_for_a_queued_statement_waits_for_it_to_start() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("mux_cancel_queued", opts(2, 1)).await;
        for round in 0..2 {
            let c = connect(&proxy.conn_str(ADMIN)).await;
            let neighbour = connect(&proxy.conn_str(ADMIN)).await;
            // Prepared first, so the only batches in play are the two executions.
            let long = c.prepare("SELECT pg_sleep(10)").await.expect("prepare");
            let short = neighbour
                .prepare("SELECT pg_sleep(1), 'neighbour'::text")
                .await
                .expect("prepare");
            let token = c.cancel_token();
            let neighbour_task = tokio::spawn(async move {
                neighbour
                    .query_one(&short, &[])
                    .await
                    .map(|r| r.get::<_, String>(1))
            });
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                token.cancel_query(tokio_postgres::NoTls).await
            });
            let r = tokio::time::timeout(Duration::from_secs(8), c.query_one(&long, &[]))
                .await
                .unwrap_or_else(|_| panic!("round {round}: the cancel was lost"));
            expect_db_error(r, "57014", "cancelled pg_sleep");
            canceller.await.expect("task").expect("cancel sent");
            let n = neighbour_task.await.expect("neighbour task");
            assert_eq!(n.expect("the neighbour must not be cancelled"), "neighbour");
        }
    })
    .await;
}

/// A cancel for one client's statement never fails the other clients' statements waiting
/// behind it on the same connection, in either protocol: they are written only once the
/// postmaster has processed the cancel and a Sync has absorbed any signal still pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_fails_no_other_client_s_statement() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("mux_cancel_neighbours", opts(4, 1)).await;
        for round in 0..4 {
            let c = connect(&proxy.conn_str(ADMIN)).await;
            let mut clients = Vec::new();
            for _ in 0..4 {
                clients.push(connect(&proxy.conn_str(ADMIN)).await);
            }
            let token = c.cancel_token();
            let long = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(10)").await });
            // Within the 20 ms during which the long statement's connection takes new batches.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let mut neighbours = Vec::new();
            for (n, client) in clients.into_iter().enumerate() {
                neighbours.push(tokio::spawn(async move {
                    let text = format!("SELECT pg_sleep(0.05), 'n{n}'::text");
                    if n % 2 == 0 {
                        let msgs = client.simple_query(&text).await?;
                        let row = msgs.iter().find_map(|m| match m {
                            SimpleQueryMessage::Row(r) => r.get(1).map(str::to_string),
                            _ => None,
                        });
                        Ok(row.unwrap_or_default())
                    } else {
                        let row = client.query_one(&text, &[]).await?;
                        Ok::<_, tokio_postgres::Error>(row.get::<_, String>(1))
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            token
                .cancel_query(tokio_postgres::NoTls)
                .await
                .expect("cancel sent");
            let r = tokio::time::timeout(Duration::from_secs(8), long)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the cancel was lost"))
                .expect("task");
            expect_db_error(r, "57014", "cancelled pg_sleep");
            for (n, t) in neighbours.into_iter().enumerate() {
                let got = t.await.expect("task").unwrap_or_else(|e| {
                    panic!("round {round}: neighbour {n} failed: {}", describe(&e))
                });
                assert_eq!(got, format!("n{n}"));
            }
        }
    })
    .await;
}

/// Read-only statements of many clients run in groups (one implicit transaction, one Sync):
/// every client gets its own rows; a failing member gets its own error and the members after
/// it, which PostgreSQL skipped, run again; writes are never grouped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_reads_answer_each_client_and_survive_a_failing_member() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("mux_groups", opts(3, 1)).await;
        let setup = connect(&proxy.conn_str(ADMIN)).await;
        setup
            .batch_execute(
                "CREATE TABLE g (id int PRIMARY KEY, v text);
                 INSERT INTO g SELECT i, 'v' || i FROM generate_series(1, 1000) i;
                 CREATE TABLE w (client int, i int)",
            )
            .await
            .expect("setup");
        let fails = |client: i32, i: i32| (client + i) % 17 == 0;
        each_client(&proxy, 16, move |client, c| async move {
            let read = c
                .prepare("SELECT v, 1000 / $2::int FROM g WHERE id = $1")
                .await
                .expect("prepare");
            for i in 0..200i32 {
                let id = (client * 61 + i) % 1000 + 1;
                let divisor = if fails(client, i) { 0 } else { 1 + i % 3 };
                match c.query_one(&read, &[&id, &divisor]).await {
                    Ok(row) => {
                        assert_eq!(row.get::<_, String>(0), format!("v{id}"));
                        assert_eq!(row.get::<_, i32>(1), 1000 / divisor);
                    }
                    Err(e) => {
                        assert!(fails(client, i), "client {client}, statement {i}: {e}");
                        assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
                    }
                }
            }
        })
        .await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        let grouped = pool_stat(&admin, "multiplexed_grouped").await;
        assert!(grouped > 0, "no statement ran in a group");
        // Writes, however many arrive together, each run in their own transaction.
        each_client(&proxy, 16, |client, c| async move {
            let write = c
                .prepare("INSERT INTO w VALUES ($1, $2)")
                .await
                .expect("prepare");
            for i in 0..50i32 {
                c.execute(&write, &[&client, &i]).await.expect("insert");
            }
        })
        .await;
        let rows: i64 = admin
            .query_one("SELECT count(*) FROM w", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(rows, 16 * 50);
        assert_eq!(pool_stat(&admin, "multiplexed_grouped").await, grouped);
    })
    .await;
}

/// Where transactions are REPEATABLE READ (here the database's default), grouped statements
/// would share one snapshot: nothing is grouped; reads run multiplexed when the shared
/// connection is free, and on a connection of their own when it is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_grouped_only_under_read_committed() {
    bounded(120, async {
        let db = TestDb::create("mux_rr").await;
        db.psql(&format!(
            "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
            db.name
        ))
        .await;
        let proxy = TestProxy::start(&db, opts(3, 1)).await;
        each_client(&proxy, 16, |client, c| async move {
            let read = c.prepare("SELECT $1::int + 1").await.expect("prepare");
            for i in 0..50i32 {
                let row = c
                    .query_one(&read, &[&(client * 100 + i)])
                    .await
                    .expect("read");
                assert_eq!(row.get::<_, i32>(0), client * 100 + i + 1);
            }
        })
        .await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        assert!(pool_stat(&admin, "multiplexed_batches").await > 0);
        assert_eq!(pool_stat(&admin, "multiplexed_grouped").await, 0);
    })
    .await;
}
