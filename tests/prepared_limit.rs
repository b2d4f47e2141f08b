//! `[upstream] max_prepared_statements`: a server connection keeps at most that many of the
//! statements Orgwall prepares. On a connection a session holds alone the least recently used
//! one is closed to make room; on a multiplexed one a statement beyond the bound runs unnamed.
//! Clients notice neither: every statement keeps answering.

use bytes::BytesMut;
use orgwall_e2e::clients::prepared_statements;
use orgwall_e2e::raw::{bind_execute, parse, tags, RawConn};
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, ADMIN};
use postgres_protocol::message::frontend;

/// `SELECT $1::int4 + k`, the text of statement `k`.
fn plus(k: i32) -> String {
    format!("SELECT $1::int4 + {k}")
}

/// The `k`s of the statements prepared on the server connection the next implicit transaction
/// of `c` runs on, in order.
async fn prepared_on_server(c: &tokio_postgres::Client) -> Vec<i32> {
    let mut ks: Vec<i32> = prepared_statements(c)
        .await
        .iter()
        .map(|sql| {
            let k = sql.strip_prefix("SELECT $1::int4 + ").expect("one of ours");
            k.parse().expect("k")
        })
        .collect();
    ks.sort_unstable();
    ks
}

/// Runs statement `k` of `stmts` with `value`, checking the answer.
async fn run(c: &tokio_postgres::Client, stmts: &[tokio_postgres::Statement], k: i32, value: i32) {
    let row = c
        .query_one(&stmts[k as usize - 1], &[&value])
        .await
        .unwrap_or_else(|e| panic!("statement {k}: {e}"));
    assert_eq!(row.get::<_, i32>(0), value + k, "statement {k}");
}

async fn prepare_all(c: &tokio_postgres::Client, n: i32) -> Vec<tokio_postgres::Statement> {
    let mut stmts = Vec::new();
    for k in 1..=n {
        stmts.push(c.prepare(&plus(k)).await.expect("prepare"));
    }
    stmts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_closes_its_least_recently_used_statement() {
    bounded(120, async {
        for mode in ["transaction", "session"] {
            let opts = ProxyOptions {
                max_prepared_statements: Some(3),
                prepare_unnamed: Some(0),
                ..ProxyOptions::pool(1, mode)
            };
            let (_db, proxy) = db_and_proxy("prepared_limit_lru", opts).await;
            let c = connect(&proxy.conn_str(ADMIN)).await;
            let stmts = prepare_all(&c, 6).await;
            for k in 1..=6 {
                run(&c, &stmts, k, 10).await;
            }
            assert_eq!(prepared_on_server(&c).await, [4, 5, 6], "{mode}");
            // 4 is used again, so 1 replaces 5 (now the least recently used), then 2 replaces 6.
            run(&c, &stmts, 4, 1).await;
            run(&c, &stmts, 1, 2).await;
            assert_eq!(prepared_on_server(&c).await, [1, 4, 6], "{mode}");
            run(&c, &stmts, 2, 3).await;
            assert_eq!(prepared_on_server(&c).await, [1, 2, 4], "{mode}");

            // Pipelined (tokio-postgres sends the next Bind before the last answer): every
            // statement, twice, in one burst, evicting as it goes.
            let burst = (0..12).map(|i| run(&c, &stmts, i % 6 + 1, i));
            futures_util::future::join_all(burst).await;
            assert_eq!(prepared_on_server(&c).await.len(), 3, "{mode}");

            // Inside an explicit transaction too, and the transaction's work is intact.
            c.batch_execute("BEGIN").await.expect("begin");
            for k in (1..=6).rev() {
                run(&c, &stmts, k, 7).await;
            }
            c.batch_execute("COMMIT").await.expect("commit");
            assert_eq!(prepared_on_server(&c).await, [1, 2, 3], "{mode}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_skipped_after_an_error_leaves_the_statement_known() {
    bounded(120, async {
        let opts = ProxyOptions {
            max_prepared_statements: Some(1),
            prepare_unnamed: Some(0),
            ..ProxyOptions::pool(1, "transaction")
        };
        let (_db, proxy) = db_and_proxy("prepared_limit_skip", opts).await;
        let mut raw = RawConn::admin(&proxy).await;
        let mut out = BytesMut::new();
        parse(&mut out, "div", "SELECT 100 / $1::int4");
        parse(&mut out, "two", "SELECT $1::int4 + 2");
        frontend::sync(&mut out);
        assert_eq!(tags(&raw.exchange(&out, "parse").await), "11Z");

        // `div` fails (division by zero, found when its Bind plans it), so PostgreSQL skips the
        // rest: the Close that would have evicted `div` to make room for `two`, and `two`'s
        // Parse and Bind.
        let mut out = BytesMut::new();
        bind_execute(&mut out, "div", 0);
        bind_execute(&mut out, "two", 1);
        frontend::sync(&mut out);
        let msgs = raw.exchange(&out, "failing pipeline").await;
        assert_eq!(tags(&msgs), "EZ", "{msgs:?}");
        assert_eq!(msgs[0].field(b'C').as_deref(), Some("22012"));

        // `div` is still prepared, and Orgwall knows it: no second Parse (which would fail
        // with 42P05, "already exists"); then `two` evicts it for real, and `div` comes back.
        for (stmt, value, answer) in [("div", 4, "25"), ("two", 1, "3"), ("div", 5, "20")] {
            let mut out = BytesMut::new();
            bind_execute(&mut out, stmt, value);
            frontend::sync(&mut out);
            let msgs = raw.exchange(&out, stmt).await;
            assert_eq!(tags(&msgs), "2DCZ", "{stmt}: {msgs:?}");
            assert!(
                msgs[1].body.ends_with(answer.as_bytes()),
                "{stmt}: {msgs:?}"
            );
        }
        drop(raw);
        let c = connect(&proxy.conn_str(ADMIN)).await;
        assert_eq!(prepared_statements(&c).await, ["SELECT 100 / $1::int4"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_multiplexed_connection_runs_further_statements_unnamed() {
    bounded(180, async {
        const CLIENTS: i32 = 4;
        const STATEMENTS: i32 = 10;
        const CAP: usize = 2;
        // Clients that check the bound at the same moment may each prepare one more.
        const BOUND: usize = CAP + CLIENTS as usize - 1;
        let opts = ProxyOptions {
            max_prepared_statements: Some(CAP),
            prepare_unnamed: Some(0),
            multiplex: 1,
            ..ProxyOptions::pool(2, "transaction")
        };
        let (_db, proxy) = db_and_proxy("prepared_limit_mux", opts).await;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let conn = proxy.conn_str(ADMIN);
            tasks.push(tokio::spawn(async move {
                let c = connect(&conn).await;
                let stmts = prepare_all(&c, STATEMENTS).await;
                for round in 0..10 {
                    for k in 1..=STATEMENTS {
                        run(&c, &stmts, (k + client) % STATEMENTS + 1, round).await;
                    }
                }
                prepared_on_server(&c).await
            }));
        }
        for t in tasks {
            let on_server = t.await.expect("client task");
            assert!(on_server.len() <= BOUND, "{on_server:?}");
        }
        let c = connect(&proxy.conn_str(ADMIN)).await;
        let stmts = prepare_all(&c, STATEMENTS).await;
        for k in 1..=STATEMENTS {
            run(&c, &stmts, k, k).await;
        }
        assert!(prepared_on_server(&c).await.len() <= BOUND);
    })
    .await;
}
