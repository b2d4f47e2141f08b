//! `[upstream] prepare_unnamed`: a client's unnamed statement with parameters runs as a named
//! statement on the server connection (parsed once per connection), up to the configured
//! number per connection; without parameters, beyond the cap or with the setting off it stays
//! unnamed. Errors still arrive where the client's Parse was.

use bytes::BytesMut;
use orgwall_e2e::clients::prepared_statements;
use orgwall_e2e::raw::{bind_execute_sync, tags, RawConn};
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, ADMIN, TENANT};
use postgres_protocol::message::frontend;
use tokio_postgres::types::Type;

fn options(prepare_unnamed: usize) -> ProxyOptions {
    ProxyOptions {
        prepare_unnamed: Some(prepare_unnamed),
        max_prepared_statements: Some(200),
        ..ProxyOptions::pool(1, "transaction")
    }
}

const PLUS_ONE: &str = "SELECT $1::int4 + 1";
const SUFFIX: &str = "SELECT $1::text || 'x'";
const DOUBLE: &str = "SELECT $1::int8 * 2";

/// Runs the three parameterized statements (10, 5 and 3 times) and one without parameters,
/// all unnamed (`query_typed`), checking every answer.
async fn run_unnamed(c: &tokio_postgres::Client) {
    for i in 0..10i32 {
        let r = c.query_typed(PLUS_ONE, &[(&i, Type::INT4)]).await.unwrap();
        assert_eq!(r[0].get::<_, i32>(0), i + 1);
    }
    for s in ["a", "b", "c", "d", "e"] {
        let r = c.query_typed(SUFFIX, &[(&s, Type::TEXT)]).await.unwrap();
        assert_eq!(r[0].get::<_, String>(0), format!("{s}x"));
    }
    for i in 0..3i64 {
        let r = c.query_typed(DOUBLE, &[(&i, Type::INT8)]).await.unwrap();
        assert_eq!(r[0].get::<_, i64>(0), i * 2);
    }
    let r = c.query_typed("SELECT 7", &[]).await.unwrap();
    assert_eq!(r[0].get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_with_parameters_are_prepared_up_to_the_cap() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("prepare_unnamed", options(2)).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        run_unnamed(&c).await;
        // The first two parameterized texts fill the cap; the third and `SELECT 7` stay unnamed.
        assert_eq!(prepared_statements(&c).await, [PLUS_ONE, SUFFIX]);

        // Another client reuses them on the same server connection without preparing again.
        let other = connect(&proxy.conn_str(ADMIN)).await;
        run_unnamed(&other).await;
        assert_eq!(prepared_statements(&other).await, [PLUS_ONE, SUFFIX]);

        // A tenant login sending the same text (no tenant table in it, so the rewriter leaves it
        // as it is) uses the same server statement: sharing is by SQL text, and a statement on
        // tenant data has the tenant's org in its rewritten text.
        let t = connect(&proxy.conn_str(TENANT)).await;
        let r = t
            .query_typed(PLUS_ONE, &[(&1i32, Type::INT4)])
            .await
            .unwrap();
        assert_eq!(r[0].get::<_, i32>(0), 2);
        assert_eq!(prepared_statements(&c).await, [PLUS_ONE, SUFFIX]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prepare_unnamed_nothing_is_prepared() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("prepare_unnamed_off", options(0)).await;
        let c = connect(&proxy.conn_str(ADMIN)).await;
        run_unnamed(&c).await;
        assert!(prepared_statements(&c).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_unnamed_parse_errors_in_place_and_is_not_remembered() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("prepare_unnamed_error", options(8)).await;
        let mut raw = RawConn::admin(&proxy).await;
        let exchange = |sql: &'static str| {
            let mut out = BytesMut::new();
            frontend::parse("", sql, [23u32], &mut out).expect("parse");
            bind_execute_sync(&mut out, 5);
            out
        };
        // PostgreSQL rejects the Parse (a missing column): the error comes instead of
        // ParseComplete and the rest is skipped up to Sync, as without Orgwall.
        for _ in 0..2 {
            let msgs = raw
                .exchange(&exchange("SELECT $1 + nope"), "bad Parse")
                .await;
            assert_eq!(tags(&msgs), "EZ", "{msgs:?}");
            assert_eq!(msgs[0].field(b'C').as_deref(), Some("42703"));
        }
        let msgs = raw.exchange(&exchange("SELECT $1 + 1"), "good Parse").await;
        assert_eq!(tags(&msgs), "12DCZ", "{msgs:?}");
        assert_eq!(&msgs[2].body[..], &[0, 1, 0, 0, 0, 1, b'6']);
        drop(raw);

        let c = connect(&proxy.conn_str(ADMIN)).await;
        assert_eq!(prepared_statements(&c).await, ["SELECT $1 + 1"]);
    })
    .await;
}
