//! tokio-postgres through the proxy: simple and extended protocol, binary parameters and NULLs,
//! pipelining, named prepared statements shared across a small transaction pool, COPY in/out,
//! cancel, and error recovery on the same connection.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, TryStreamExt};
use orgwall_e2e::raw::{bind_execute_no_params, parse, tags, Msg, RawConn};
use orgwall_e2e::{bounded, connect, db_and_proxy, expect_db_error, ProxyOptions, ADMIN};
use postgres_protocol::message::frontend;
use tokio_postgres::{NoTls, SimpleQueryMessage};

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn command_counts(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_runs_multi_statement_strings() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("simple_multi", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        let msgs = c
            .simple_query(
                "CREATE TABLE t (id int PRIMARY KEY, name text);\
                 INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, NULL);\
                 UPDATE t SET name = 'TWO' WHERE id = 2;\
                 SELECT id, name FROM t ORDER BY id;\
                 SELECT 'a;b' AS semicolon_in_literal",
            )
            .await
            .expect("multi-statement simple query");
        // CREATE TABLE, INSERT 3, UPDATE 1, SELECT 3, SELECT 1
        assert_eq!(command_counts(&msgs), vec![0, 3, 1, 3, 1]);
        assert_eq!(
            simple_rows(&msgs),
            vec![
                vec![Some("1".into()), Some("one".into())],
                vec![Some("2".into()), Some("TWO".into())],
                vec![Some("3".into()), None],
                vec![Some("a;b".into())],
            ]
        );
        // An empty query string is answered (EmptyQueryResponse) and the session stays usable.
        let empty = c.simple_query("").await.expect("empty query");
        assert!(simple_rows(&empty).is_empty());
        let after = c.simple_query("SELECT 42").await.expect("after empty");
        assert_eq!(simple_rows(&after), vec![vec![Some("42".into())]]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_query_round_trips_binary_params_and_nulls() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("extended_binary", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.batch_execute(
            "CREATE TABLE v (i4 int4, i8 int8, t text, b bytea, n numeric, ts timestamp, tz timestamptz)",
        )
        .await
        .expect("create table");
        let when = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let blob: Vec<u8> = (0u8..=255).chain([0, 0, 255]).collect();
        let text = "héllo\twörld 'quoted' \\ back";
        let inserted = c
            .execute(
                "INSERT INTO v VALUES ($1, $2, $3, $4, $5::text::numeric, $6, $7)",
                &[
                    &-2_147_483_648i32,
                    &9_007_199_254_740_993i64,
                    &text,
                    &blob,
                    &"-12345678901234567890.000000000123",
                    &when,
                    &when,
                ],
            )
            .await
            .expect("insert with binary params");
        assert_eq!(inserted, 1);
        let nulls = c
            .execute(
                "INSERT INTO v VALUES ($1, $2, $3, $4, $5::text::numeric, $6, $7)",
                &[
                    &None::<i32>,
                    &None::<i64>,
                    &None::<&str>,
                    &None::<Vec<u8>>,
                    &None::<&str>,
                    &None::<SystemTime>,
                    &None::<SystemTime>,
                ],
            )
            .await
            .expect("insert NULL params");
        assert_eq!(nulls, 1);

        let rows = c
            .query(
                "SELECT i4, i8, t, b, n::text, ts, tz FROM v ORDER BY i4 NULLS LAST",
                &[],
            )
            .await
            .expect("select back");
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        assert_eq!(r.get::<_, i32>(0), -2_147_483_648);
        assert_eq!(r.get::<_, i64>(1), 9_007_199_254_740_993);
        assert_eq!(r.get::<_, &str>(2), text);
        assert_eq!(r.get::<_, Vec<u8>>(3), blob);
        assert_eq!(r.get::<_, &str>(4), "-12345678901234567890.000000000123");
        assert_eq!(r.get::<_, SystemTime>(5), when);
        assert_eq!(r.get::<_, SystemTime>(6), when);
        let n = &rows[1];
        assert_eq!(n.get::<_, Option<i32>>(0), None);
        assert_eq!(n.get::<_, Option<i64>>(1), None);
        assert_eq!(n.get::<_, Option<&str>>(2), None);
        assert_eq!(n.get::<_, Option<Vec<u8>>>(3), None);
        assert_eq!(n.get::<_, Option<&str>>(4), None);
        assert_eq!(n.get::<_, Option<SystemTime>>(5), None);
        assert_eq!(n.get::<_, Option<SystemTime>>(6), None);

        // Parameters used in expressions, with the result coming back in binary.
        let row = c
            .query_one(
                "SELECT $1::int8 * 2, $2::text || '!', length($3::bytea), $4::int4 IS NULL",
                &[&21i64, &"hi", &vec![1u8, 2, 3], &None::<i32>],
            )
            .await
            .expect("expression params");
        assert_eq!(row.get::<_, i64>(0), 42);
        assert_eq!(row.get::<_, &str>(1), "hi!");
        assert_eq!(row.get::<_, i32>(2), 3);
        assert!(row.get::<_, bool>(3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_extended_queries_answer_in_order() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("pipelined", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        // tokio-postgres writes all of these before reading any answer (pipelining).
        let futs = (0..50i32).map(|i| {
            let c = &c;
            async move {
                let row = c
                    .query_one("SELECT $1::int4 * 10, $2::text", &[&i, &format!("q{i}")])
                    .await
                    .expect("pipelined query");
                (row.get::<_, i32>(0), row.get::<_, String>(1))
            }
        });
        let results = futures_util::future::join_all(futs).await;
        for (i, (n, s)) in results.into_iter().enumerate() {
            assert_eq!(n, i as i32 * 10);
            assert_eq!(s, format!("q{i}"));
        }
    })
    .await;
}

/// Six clients share a pool of two server connections in transaction mode. tokio-postgres names
/// its statements `s0`, `s1`, … per connection, so the same name means different SQL on
/// different clients, and every statement has to follow its client onto whichever server
/// connection the next transaction gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_survive_transaction_pooling_with_small_pool() {
    bounded(300, async {
        let (_db, proxy) =
            db_and_proxy("prepared_pool", ProxyOptions::pool(2, "transaction")).await;
        let setup = connect(&proxy.conn_str(ADMIN)).await;
        setup
            .batch_execute("CREATE TABLE hits (client int, n int)")
            .await
            .expect("create table");
        let conn_str = proxy.conn_str(ADMIN);
        let mut tasks = Vec::new();
        for client_no in 0..6i32 {
            let conn_str = conn_str.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = connect(&conn_str).await;
                // Same text on every client, different text per client, in different orders so
                // that the per-connection names collide with different SQL.
                let own_sql = format!("SELECT $1::text || '-client-{client_no}', {client_no}");
                let (shared, own) = if client_no % 2 == 0 {
                    let s = c
                        .prepare("SELECT $1::int4 + 1")
                        .await
                        .expect("prepare shared");
                    let o = c.prepare(&own_sql).await.expect("prepare own");
                    (s, o)
                } else {
                    let o = c.prepare(&own_sql).await.expect("prepare own");
                    let s = c
                        .prepare("SELECT $1::int4 + 1")
                        .await
                        .expect("prepare shared");
                    (s, o)
                };
                let insert = c
                    .prepare("INSERT INTO hits VALUES ($1, $2)")
                    .await
                    .expect("prepare insert");
                for i in 0..60i32 {
                    if i % 3 == 0 {
                        let tx = c.transaction().await.expect("begin");
                        let v: i32 = tx
                            .query_one(&shared, &[&i])
                            .await
                            .expect("shared in tx")
                            .get(0);
                        assert_eq!(v, i + 1);
                        let r = tx
                            .query_one(&own, &[&format!("v{i}")])
                            .await
                            .expect("own in tx");
                        assert_eq!(r.get::<_, String>(0), format!("v{i}-client-{client_no}"));
                        assert_eq!(r.get::<_, i32>(1), client_no);
                        tx.execute(&insert, &[&client_no, &i])
                            .await
                            .expect("insert in tx");
                        tx.commit().await.expect("commit");
                    } else {
                        let v: i32 = c.query_one(&shared, &[&i]).await.expect("shared").get(0);
                        assert_eq!(v, i + 1);
                        let r = c.query_one(&own, &[&format!("v{i}")]).await.expect("own");
                        assert_eq!(r.get::<_, String>(0), format!("v{i}-client-{client_no}"));
                        c.execute(&insert, &[&client_no, &i]).await.expect("insert");
                    }
                    if i % 20 == 19 {
                        // A statement prepared late, after many pool hand-overs.
                        let late = c
                            .prepare(&format!(
                                "SELECT count(*) FROM hits WHERE client = {client_no}"
                            ))
                            .await
                            .expect("prepare late");
                        let n: i64 = c.query_one(&late, &[]).await.expect("late").get(0);
                        assert_eq!(n, i64::from(i) + 1);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        let rows = setup
            .query(
                "SELECT client, count(*) FROM hits GROUP BY client ORDER BY client",
                &[],
            )
            .await
            .expect("count hits");
        let counts: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(counts, (0..6).map(|c| (c, 60)).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_then_copy_out_round_trips_thousands_of_rows() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("copy", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text, qty numeric)")
            .await
            .expect("create table");
        let mut expected = String::new();
        for i in 0..4000 {
            let name = if i % 97 == 0 {
                "\\N".to_string()
            } else {
                format!("item\\t{i} é")
            };
            expected.push_str(&format!("{i}\t{name}\t{}.{:02}\n", i * 3, i % 100));
        }
        let sink = c
            .copy_in::<_, Bytes>("COPY items (id, name, qty) FROM STDIN")
            .await
            .expect("start COPY IN");
        futures_util::pin_mut!(sink);
        for chunk in expected.as_bytes().chunks(7000) {
            sink.send(Bytes::copy_from_slice(chunk))
                .await
                .expect("send copy data");
        }
        let n = sink.finish().await.expect("finish COPY IN");
        assert_eq!(n, 4000);

        let (count, nulls): (i64, i64) = {
            let r = c
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE name IS NULL) FROM items",
                    &[],
                )
                .await
                .expect("count");
            (r.get(0), r.get(1))
        };
        assert_eq!((count, nulls), (4000, 42));

        let stream = c
            .copy_out("COPY (SELECT id, name, qty FROM items ORDER BY id) TO STDOUT")
            .await
            .expect("start COPY OUT");
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("COPY OUT data");
        let out: Vec<u8> = chunks.concat();
        assert_eq!(String::from_utf8(out).expect("utf8"), expected);

        // The connection is usable after both COPYs.
        let v: i64 = c
            .query_one("SELECT sum(id)::int8 FROM items", &[])
            .await
            .expect("sum")
            .get(0);
        assert_eq!(v, (0..4000i64).sum::<i64>());
    })
    .await;
}

/// A bad row fails the COPY while the client is still sending (PostgreSQL's error arrives
/// before its CopyDone): the CopyDone and Sync that follow get exactly one ReadyForQuery, and
/// the next messages their own answers (this once left the session one answer behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_failing_before_copy_done_keeps_answers_in_order() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("copy_fail_early", ProxyOptions::default()).await;
        let mut raw = RawConn::admin(&proxy).await;
        raw.query("CREATE TABLE n (x int)").await;

        let mut out = BytesMut::new();
        parse(&mut out, "cp", "COPY n FROM STDIN");
        bind_execute_no_params(&mut out, "cp");
        frontend::sync(&mut out);
        raw.send(&out).await.expect("send");
        let mut seen = Vec::new();
        while seen.last().is_none_or(|m: &Msg| m.tag != b'G') {
            seen.push(raw.expect_msg(30, "CopyInResponse").await);
        }
        assert_eq!(tags(&seen), "12G");

        let mut out = BytesMut::new();
        frontend::CopyData::new(&b"1\nnot-a-number\n"[..])
            .expect("copy data")
            .write(&mut out);
        raw.send(&out).await.expect("send");
        let err = raw.expect_msg(30, "COPY error").await;
        assert_eq!(
            err.field(b'C').as_deref(),
            Some("22P02"),
            "{}",
            err.summary()
        );

        let mut out = BytesMut::new();
        frontend::copy_done(&mut out);
        frontend::sync(&mut out);
        assert_eq!(tags(&raw.exchange(&out, "CopyDone, Sync").await), "Z");
        let mut out = BytesMut::new();
        frontend::close(b'S', "cp", &mut out).expect("close");
        frontend::sync(&mut out);
        assert_eq!(tags(&raw.exchange(&out, "Close, Sync").await), "3Z");
        let msgs = raw.query("SELECT count(*) FROM n").await;
        assert_eq!(tags(&msgs), "TDCZ");
        assert!(msgs[1].body.ends_with(b"0"), "{}", msgs[1].summary());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_failure_is_reported_and_connection_recovers() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("copy_fail", ProxyOptions::default()).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.batch_execute("CREATE TABLE n (x int)")
            .await
            .expect("create");
        let sink = c
            .copy_in::<_, Bytes>("COPY n FROM STDIN")
            .await
            .expect("start COPY IN");
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\nnot-a-number\n"))
            .await
            .expect("send");
        expect_db_error(sink.finish().await, "22P02", "COPY with a bad row");
        let count: i64 = c
            .query_one("SELECT count(*) FROM n", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(count, 0, "a failed COPY leaves no rows");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_interrupts_pg_sleep_with_57014() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("cancel", ProxyOptions::pool(2, "transaction")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        // A neighbour holding its own query, to check the cancel hits the right backend.
        let neighbour = connect(&proxy.conn_str(ADMIN)).await;
        let token = c.cancel_token();
        // Prepared first: the cancel must find the sleep itself in flight, not its Parse (which,
        // on a multiplexed connection, may wait behind the neighbour's statement and end
        // before the cancel can be delivered, when PostgreSQL would ignore it too).
        let sleep = c.prepare("SELECT pg_sleep(10)").await.expect("prepare");
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel_query(NoTls).await
        });
        let neighbour_task = tokio::spawn(async move {
            neighbour
                .query_one("SELECT pg_sleep(1.5), 'neighbour'::text", &[])
                .await
                .map(|r| r.get::<_, String>(1))
        });
        let r = tokio::time::timeout(Duration::from_secs(8), c.query_one(&sleep, &[]))
            .await
            .expect("the cancelled query must end well before pg_sleep(10) would (8s guard)");
        expect_db_error(r, "57014", "cancelled pg_sleep");
        canceller
            .await
            .expect("cancel task")
            .expect("cancel request accepted");
        let n = neighbour_task.await.expect("neighbour task");
        assert_eq!(
            n.expect("the neighbour's query must not be cancelled"),
            "neighbour"
        );
        let v: i32 = c
            .query_one("SELECT 7", &[])
            .await
            .expect("after cancel")
            .get(0);
        assert_eq!(v, 7);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_then_recovery_on_the_same_connection() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("errors", ProxyOptions::pool(1, "transaction")).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        c.batch_execute("CREATE TABLE e (x int)")
            .await
            .expect("create");

        // Syntax error in both protocols, then the connection still works.
        expect_db_error(
            c.simple_query("SELEC 1").await,
            "42601",
            "simple syntax error",
        );
        expect_db_error(
            c.query("SELEC 1", &[]).await,
            "42601",
            "extended syntax error",
        );
        let v: i32 = c
            .query_one("SELECT 1", &[])
            .await
            .expect("after syntax error")
            .get(0);
        assert_eq!(v, 1);

        // Division by zero inside a transaction: the transaction is aborted (25P02) until
        // ROLLBACK, and nothing it did is kept.
        c.batch_execute("BEGIN; INSERT INTO e VALUES (1)")
            .await
            .expect("begin+insert");
        expect_db_error(
            c.query_one("SELECT 1 / $1::int4", &[&0i32]).await,
            "22012",
            "division by zero",
        );
        expect_db_error(
            c.simple_query("SELECT 2").await,
            "25P02",
            "aborted transaction",
        );
        c.batch_execute("ROLLBACK").await.expect("rollback");
        let n: i64 = c
            .query_one("SELECT count(*) FROM e", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0);

        // An error in the middle of a multi-statement simple query stops the rest of it.
        expect_db_error(
            c.batch_execute("INSERT INTO e VALUES (2); SELECT 1/0; INSERT INTO e VALUES (3)")
                .await,
            "22012",
            "error mid-batch",
        );
        let n: i64 = c
            .query_one("SELECT count(*) FROM e", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(
            n, 0,
            "an implicit transaction of a failed batch is rolled back"
        );

        // Errors inside a pipeline of extended queries do not derail the following ones.
        let (a, b, d) = futures_util::join!(
            c.query_one("SELECT 10", &[]),
            c.query_one("SELECT * FROM no_such_table", &[]),
            c.query_one("SELECT 30", &[]),
        );
        assert_eq!(a.expect("first").get::<_, i32>(0), 10);
        expect_db_error(b, "42P01", "missing table in pipeline");
        assert_eq!(d.expect("third").get::<_, i32>(0), 30);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_fetch_in_batches_inside_a_transaction() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("portals", ProxyOptions::pool(1, "transaction")).await;
        let mut c = connect(&proxy.conn_str(ADMIN)).await;
        // A second client shares the single server connection between our transactions.
        let other = connect(&proxy.conn_str(ADMIN)).await;
        for round in 0..2 {
            let tx = c.transaction().await.expect("begin");
            let stmt = tx
                .prepare("SELECT g FROM generate_series(1, $1::int4) AS g")
                .await
                .expect("prepare");
            let portal = tx.bind(&stmt, &[&25i32]).await.expect("bind portal");
            let mut seen = Vec::new();
            loop {
                // Execute with a row limit: PortalSuspended between batches.
                let batch = tx.query_portal(&portal, 10).await.expect("fetch batch");
                if batch.is_empty() {
                    break;
                }
                seen.extend(batch.iter().map(|r| r.get::<_, i32>(0)));
            }
            assert_eq!(seen, (1..=25).collect::<Vec<_>>(), "round {round}");
            tx.commit().await.expect("commit");
            let v: i32 = other
                .query_one("SELECT 99", &[])
                .await
                .expect("other")
                .get(0);
            assert_eq!(v, 99);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_without_sync_gets_answers_before_sync() {
    use bytes::BytesMut;
    use orgwall_e2e::raw::{bind_execute_sync, RawConn};
    use postgres_protocol::message::frontend;

    bounded(120, async {
        let (_db, proxy) = db_and_proxy("flush", ProxyOptions::pool(1, "transaction")).await;
        let mut raw = RawConn::admin(&proxy).await;
        // Parse + Describe + Flush: ParseComplete, ParameterDescription, RowDescription must
        // arrive without a Sync (drivers such as asyncpg and JDBC rely on this).
        let mut out = BytesMut::new();
        frontend::parse("", "SELECT $1::int4 + 1 AS n", [23u32], &mut out).expect("parse");
        frontend::describe(b'S', "", &mut out).expect("describe");
        frontend::flush(&mut out);
        raw.send(&out).await.expect("send");
        let tags: Vec<u8> = [
            raw.expect_msg(10, "ParseComplete after Flush").await.tag,
            raw.expect_msg(10, "ParameterDescription after Flush")
                .await
                .tag,
            raw.expect_msg(10, "RowDescription after Flush").await.tag,
        ]
        .to_vec();
        assert_eq!(tags, b"1tT".to_vec());

        let mut out = BytesMut::new();
        bind_execute_sync(&mut out, 41);
        raw.send(&out).await.expect("send");
        let mut msgs = Vec::new();
        loop {
            let m = raw.expect_msg(10, "Bind/Execute/Sync").await;
            let done = m.tag == b'Z';
            msgs.push(m);
            if done {
                break;
            }
        }
        let tags: Vec<u8> = msgs.iter().map(|m| m.tag).collect();
        assert_eq!(tags, b"2DCZ".to_vec());
        let data = &msgs[1].body;
        // DataRow: 1 column, length 2, "42".
        assert_eq!(&data[..], &[0, 1, 0, 0, 0, 2, b'4', b'2']);
    })
    .await;
}
