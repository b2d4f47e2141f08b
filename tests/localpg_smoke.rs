//! Smoke tests of the harness itself, talking straight to the test PostgreSQL (no proxy):
//! the server starts, has `wal_level=logical`, and each test gets its own database.

use orgwall_e2e::{bounded, connect, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_postgres_serves_a_fresh_database_with_logical_wal() {
    bounded(120, async {
        let db = TestDb::create("smoke").await;
        let client = connect(&db.direct_conn_str()).await;
        let row = client
            .query_one(
                "SELECT current_database(), current_setting('wal_level')",
                &[],
            )
            .await
            .expect("query direct");
        assert_eq!(row.get::<_, String>(0), db.name);
        assert_eq!(row.get::<_, String>(1), "logical");
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .expect("count tables")
            .get(0);
        assert_eq!(tables, 0, "a fresh database has no tables");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_test_database_is_isolated_and_psql_helper_works() {
    bounded(120, async {
        let a = TestDb::create("iso").await;
        let b = TestDb::create("iso").await;
        assert_ne!(a.name, b.name);
        a.psql("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (7);")
            .await;
        let out = a.psql("SELECT x FROM only_in_a").await;
        assert!(out.contains('7'), "psql output: {out:?}");
        let client_b = connect(&b.direct_conn_str()).await;
        let err = client_b
            .query("SELECT * FROM only_in_a", &[])
            .await
            .expect_err("table must not exist in the other database");
        assert_eq!(orgwall_e2e::sqlstate(&err).as_deref(), Some("42P01"));
    })
    .await;
}
