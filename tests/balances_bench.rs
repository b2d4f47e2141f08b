//! `orgwall bench balances` against a running Orgwall with the cache (and PostgreSQL itself
//! with `--org`): every shape it offers runs without errors, its writers never read a stale
//! balance from their second connection, and the proxy's counters show the cache answering.
use orgwall::bench::{balances, BalancesArgs, Protocol, Shape};
use orgwall_e2e::balances::{cached_proxy, wait_serving};
use orgwall_e2e::tenancy::{self, TENANT_A};
use orgwall_e2e::{bounded, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_test_runs_every_shape_and_finds_no_stale_reads() {
    bounded(300, async {
        let db = tenancy::tenant_db("bal_bench").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;
        let args = |shape, protocol, writers_pct| BalancesArgs {
            url: proxy.conn_str(TENANT_A),
            clients: 4,
            duration: 1,
            protocol,
            writers_pct,
            shape,
            org: None,
            admin_url: Some(proxy.conn_str(ADMIN)),
            keys: 1000,
        };
        for (shape, protocol, writers) in [
            (Shape::Point, Protocol::Prepared, 50),
            (Shape::NoLot, Protocol::Simple, 25),
            (Shape::Any, Protocol::Extended, 0),
            (Shape::Any, Protocol::Simple, 0),
            (Shape::ItemTotal, Protocol::Prepared, 0),
            (Shape::LocationTotal, Protocol::Extended, 0),
            (Shape::Star, Protocol::Prepared, 0),
            (Shape::Star, Protocol::Simple, 0),
        ] {
            let r = balances(args(shape, protocol, writers))
                .await
                .expect("bench");
            let what = format!("{shape:?} {protocol:?}: {r:?}");
            assert_eq!((r.errors, r.stale_reads), (0, 0), "{what}");
            assert!(r.lookups > 0, "{what}");
            let (hits, _) = r.cache.expect("counters");
            assert!(hits > 0, "the cache answered none: {what}");
            if writers > 0 {
                assert!(r.writes > 0, "{what}");
            }
        }
        // Directly against PostgreSQL, with the org filter Orgwall would add.
        let mut direct = args(Shape::Point, Protocol::Prepared, 50);
        direct.url = db.direct_conn_str();
        direct.org = Some(TENANT_A.org_id.to_string());
        direct.admin_url = None;
        let r = balances(direct).await.expect("bench direct");
        assert_eq!((r.errors, r.stale_reads), (0, 0), "{r:?}");
        assert!(r.lookups > 0 && r.writes > 0, "{r:?}");
    })
    .await;
}
