//! Issue 18: `COPY … FROM STDIN` for tenants. PostgreSQL refuses COPY FROM into a table under
//! row-level security, so Orgwall stages the stream in a temporary table and inserts it as the
//! tenant. Differential: the rows tenant A ends with after COPYs through Orgwall (text, csv and
//! binary, extended protocol through tokio-postgres, simple protocol through psql `\copy`)
//! equal the rows after the same INSERTs under forced row-level security, and B's rows are
//! byte-identical. Hostile: another org's id in the stream, a bad row, CopyFail, a COPY in a
//! rolled-back transaction — nothing written, the session goes on, no staging table left.

use bytes::Bytes;
use futures_util::SinkExt;
use orgwall_e2e::clients::{connect, psql};
use orgwall_e2e::tenancy::{
    admin_direct, org_checksums, rls_client, run_simple, setup_rls, tenant_db, tenant_proxy,
    Outcome, SWITCHER, TENANT_A,
};
use orgwall_e2e::{bounded, ProxyOptions};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// Ledger rows for A's items (the balance trigger moves `inventory_balances`), as COPY text.
fn ledger_rows(n: usize) -> Vec<[String; 6]> {
    (0..n)
        .map(|i| {
            let item = ["i_a1", "i_a2", "i_a3"][i % 3];
            let lot = if i % 4 == 0 { "LOT-9" } else { "\\N" };
            [
                format!("led_copy_{i}"),
                item.to_string(),
                "l_a1".to_string(),
                lot.to_string(),
                format!("{}.{}", i % 50, i % 10),
                "receipt".to_string(),
            ]
        })
        .collect()
}

/// COPY data (text format) for `rows`.
fn text_data(rows: &[[String; 6]]) -> String {
    rows.iter().map(|r| r.join("\t") + "\n").collect()
}

/// The same rows as one INSERT for the row-level-security reference.
fn ledger_insert(rows: &[[String; 6]]) -> String {
    let lit = |v: &str| {
        if v == "\\N" {
            "NULL".to_string()
        } else {
            format!("'{v}'")
        }
    };
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "({})",
                r.iter().map(|v| lit(v)).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    format!(
        "INSERT INTO inventory_ledger (id, item_id, location_id, lot_id, quantity_delta, reason) VALUES {}",
        values.join(", ")
    )
}

/// COPY FROM STDIN through tokio-postgres (`copy_in`: the extended protocol); the row count.
async fn copy_in(c: &Client, sql: &str, data: &str) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(1000) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

fn code(e: &tokio_postgres::Error) -> Outcome {
    Outcome::from_error(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_as_a_tenant_equals_inserts_under_row_level_security() {
    bounded(300, async {
        let reference = tenant_db("copy_rls").await;
        let role = setup_rls(&reference).await;
        let db = tenant_db("copy").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let admin = admin_direct(&db).await;
        let b_before = org_checksums(&admin, "org_b", false).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let rls = rls_client(&reference, &role, "org_a").await;

        // Text format into the ledger (the balance trigger runs for each row).
        let rows = ledger_rows(600);
        let n = copy_in(
            &a,
            "COPY inventory_ledger (id, item_id, location_id, lot_id, quantity_delta, reason) FROM STDIN",
            &text_data(&rows),
        )
        .await
        .expect("COPY ledger, text");
        assert_eq!(n, 600);
        rls.batch_execute(&ledger_insert(&rows))
            .await
            .expect("reference INSERT");

        // csv with a header, quoted fields and a custom NULL.
        let csv = "id,key,enabled,description\n\
                   ff_a_c1,csv_one,true,\"a, quoted \"\"description\"\"\"\n\
                   ff_a_c2,csv_two,false,NULL\n";
        let n = copy_in(
            &a,
            "COPY feature_flags (id, key, enabled, description) FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NULL')",
            csv,
        )
        .await
        .expect("COPY feature_flags, csv");
        assert_eq!(n, 2);
        rls.batch_execute(
            "INSERT INTO feature_flags (id, key, enabled, description) VALUES \
             ('ff_a_c1', 'csv_one', true, 'a, quoted \"description\"'), \
             ('ff_a_c2', 'csv_two', false, NULL)",
        )
        .await
        .expect("reference INSERT");

        // Binary format, with the tenant column given (A's own org).
        let sink = a
            .copy_in("COPY items (id, org_id, item_number, description, active) FROM STDIN (FORMAT binary)")
            .await
            .expect("COPY items, binary");
        let types = [Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL];
        let writer = BinaryCopyInWriter::new(sink, &types);
        futures_util::pin_mut!(writer);
        for i in 0..50 {
            let (id, number) = (format!("i_a_bin{i}"), format!("B-{i}"));
            let description: Option<&str> = (i % 2 == 0).then_some("binary ünïcode");
            writer
                .as_mut()
                .write(&[&id, &"org_a", &number, &description, &(i % 3 == 0)])
                .await
                .expect("binary row");
        }
        assert_eq!(writer.finish().await.expect("finish binary COPY"), 50);
        for i in 0..50 {
            let description: Option<&str> = (i % 2 == 0).then_some("binary ünïcode");
            rls.execute(
                "INSERT INTO items (id, org_id, item_number, description, active) VALUES ($1, 'org_a', $2, $3, $4)",
                &[&format!("i_a_bin{i}"), &format!("B-{i}"), &description, &(i % 3 == 0)],
            )
            .await
            .expect("reference INSERT");
        }

        // Simple protocol: psql's \copy, in the old option syntax psql users write.
        let file = std::env::temp_dir().join(format!("orgwall_copy_{}.csv", std::process::id()));
        std::fs::write(&file, "id,name,site\nl_a_p1,P-01,North\nl_a_p2,P-02,\"\"\n").expect("csv file");
        let out = psql(
            &proxy,
            TENANT_A,
            "disable",
            &[
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("\\copy locations (id, name, site) FROM '{}' CSV HEADER", file.display()),
            ],
            None,
        )
        .await;
        let _ = std::fs::remove_file(&file);
        out.assert_success("psql \\copy as a tenant");
        assert!(out.stdout.contains("COPY 2"), "{out:?}");
        rls.batch_execute(
            "INSERT INTO locations (id, name, site) VALUES ('l_a_p1', 'P-01', 'North'), ('l_a_p2', 'P-02', '')",
        )
        .await
        .expect("reference INSERT");

        let reference_admin = admin_direct(&reference).await;
        assert_eq!(
            org_checksums(&admin, "org_a", true).await,
            org_checksums(&reference_admin, "org_a", true).await,
            "A's rows after COPY through Orgwall differ from the same INSERTs under RLS"
        );
        assert_eq!(org_checksums(&admin, "org_b", false).await, b_before);
        assert_no_staging_table(&admin).await;
    })
    .await;
}

/// Another org's id in the stream, a malformed row, CopyFail, a rolled-back transaction:
/// nothing is written, the client gets PostgreSQL's error, and the session goes on. With the
/// first wall alone (no row-level security upstream) the staging table's CHECK still refuses
/// another org's rows. Transaction and session pooling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_failing_copies_write_nothing() {
    bounded(300, async {
        let db = tenant_db("copy_hostile").await;
        let admin = admin_direct(&db).await;
        for (second_wall, pool_mode) in [
            (true, "transaction"),
            (false, "transaction"),
            (true, "session"),
        ] {
            let proxy = tenant_proxy(
                &db,
                ProxyOptions {
                    second_wall,
                    ..ProxyOptions::pool(2, pool_mode)
                },
            )
            .await;
            let a = connect(&proxy.conn_str(TENANT_A)).await;
            let before_a = org_checksums(&admin, "org_a", false).await;
            let before_b = org_checksums(&admin, "org_b", false).await;

            // B's org in the tenant column, listed or implied by a COPY without columns.
            for (sql, data) in [
                (
                    "COPY feature_flags (id, org_id, key) FROM STDIN",
                    "ff_x1\torg_a\tfine\nff_x2\torg_b\tplanted\n",
                ),
                (
                    "COPY locations FROM STDIN",
                    "l_x1\tMain\tZ-01\t\\N\t2024-01-01\t2024-01-01\torg_b\n",
                ),
            ] {
                let e = copy_in(&a, sql, data).await.expect_err(sql);
                match code(&e) {
                    Outcome::Error { code, message }
                        if code == "42501" && message.contains("orgwall: tenant column") => {}
                    other => panic!("{sql} (second wall {second_wall}): {other}"),
                }
                assert_usable(&a).await;
            }
            // A row PostgreSQL cannot read: its own error, with the line.
            let e = copy_in(
                &a,
                "COPY feature_flags (id, key, enabled) FROM STDIN",
                "ff_y1\tk1\ttrue\nff_y2\tk2\tmaybe\n",
            )
            .await
            .expect_err("bad boolean");
            assert_eq!(code(&e).code(), Some("22P02"), "{e:?}");
            assert_usable(&a).await;
            // The client abandons the COPY (tokio-postgres sends CopyFail).
            {
                let sink = a
                    .copy_in::<_, Bytes>("COPY feature_flags (id, key) FROM STDIN")
                    .await
                    .expect("start COPY");
                futures_util::pin_mut!(sink);
                sink.send(Bytes::from_static(b"ff_z1\tk_z1\n"))
                    .await
                    .expect("data");
            }
            assert_usable(&a).await;
            // Inside the client's transaction: rolled back with it.
            a.batch_execute("BEGIN").await.expect("BEGIN");
            copy_in(
                &a,
                "COPY feature_flags (id, key) FROM STDIN",
                "ff_t1\tk_t1\n",
            )
            .await
            .expect("COPY in a transaction");
            copy_in(
                &a,
                "COPY feature_flags (id, key) FROM STDIN",
                "ff_t2\tk_t2\n",
            )
            .await
            .expect("a second COPY in the same transaction");
            a.batch_execute("ROLLBACK").await.expect("ROLLBACK");
            assert_eq!(org_checksums(&admin, "org_a", false).await, before_a);
            assert_eq!(org_checksums(&admin, "org_b", false).await, before_b);
            assert_no_staging_table(&admin).await;

            // Committed: written for A, with A's org.
            a.batch_execute("BEGIN").await.expect("BEGIN");
            copy_in(
                &a,
                "COPY feature_flags (id, key) FROM STDIN",
                "ff_c1\tk_c1\n",
            )
            .await
            .expect("COPY");
            a.batch_execute("COMMIT").await.expect("COMMIT");
            let org: String = admin
                .query_one("SELECT org_id FROM feature_flags WHERE id = 'ff_c1'", &[])
                .await
                .expect("the copied row")
                .get(0);
            assert_eq!(org, "org_a");
            admin
                .batch_execute("DELETE FROM feature_flags WHERE id = 'ff_c1'")
                .await
                .expect("clean up");

            // What stays refused: files, programs, the tenant's own temporary tables.
            for (sql, want) in [
                ("COPY items FROM '/etc/passwd'", "42501"),
                ("COPY items FROM PROGRAM 'id'", "42501"),
                ("COPY organizations FROM STDIN", "42501"),
                ("CREATE TEMP TABLE orgwall_copy (id text)", "42501"),
                (
                    "CREATE TEMP TABLE pg_temp.orgwall_copy AS SELECT * FROM items",
                    "42501",
                ),
                ("COPY items FROM STDIN; SELECT 1", "0A000"),
                ("SELECT * INTO TEMP orgwall_copy FROM items", "42501"),
            ] {
                match run_simple(&a, sql).await {
                    o @ Outcome::Error { .. } if o.code() == Some(want) => {
                        assert!(o.is_orgwall_refusal(), "{sql}: {o}")
                    }
                    other => panic!("{sql}: want {want}, got {other}"),
                }
            }
            // The staging table's name is Orgwall's: a tenant cannot name it.
            for sql in [
                "SELECT * FROM pg_temp.orgwall_copy",
                "INSERT INTO pg_temp.orgwall_copy (id) VALUES ('x')",
            ] {
                let o = run_simple(&a, sql).await;
                assert!(o.is_orgwall_refusal(), "{sql}: {o}");
            }
            assert_eq!(org_checksums(&admin, "org_a", false).await, before_a);
            assert_eq!(org_checksums(&admin, "org_b", false).await, before_b);
            assert_no_staging_table(&admin).await;
            drop(a);
            drop(proxy);
        }
    })
    .await;
}

/// A switcher's prepared COPY runs for the tenant bound when it is executed, not when it was
/// prepared (Orgwall routes its text again at Execute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchers_prepared_copy_runs_for_the_tenant_bound_at_execute() {
    bounded(120, async {
        let db = tenant_db("copy_switcher").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(2, "transaction")).await;
        let admin = admin_direct(&db).await;
        let svc = connect(&proxy.conn_str(SWITCHER)).await;
        // Unbound: refused (it would write tenant rows).
        let e = copy_in(
            &svc,
            "COPY feature_flags (id, key) FROM STDIN",
            "ff_u\tk_u\n",
        )
        .await
        .expect_err("unbound switcher");
        assert!(Outcome::from_error(&e).is_orgwall_refusal(), "{e:?}");
        svc.batch_execute("SET orgwall.org_id = 'org_a'")
            .await
            .expect("bind org_a");
        let stmt = svc
            .prepare("COPY feature_flags (id, key) FROM STDIN")
            .await
            .expect("prepare COPY");
        for (org, id) in [("org_a", "ff_sw_a"), ("org_b", "ff_sw_b")] {
            svc.batch_execute(&format!("SET orgwall.org_id = '{org}'"))
                .await
                .expect("bind");
            let sink = svc.copy_in::<_, Bytes>(&stmt).await.expect("COPY");
            futures_util::pin_mut!(sink);
            sink.send(Bytes::from(format!("{id}\tkey_{id}\n")))
                .await
                .expect("data");
            assert_eq!(sink.finish().await.expect("COPY done"), 1);
        }
        let rows: Vec<(String, String)> = admin
            .query(
                "SELECT id, org_id FROM feature_flags WHERE id LIKE 'ff_sw_%' ORDER BY id",
                &[],
            )
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            rows,
            [
                ("ff_sw_a".to_string(), "org_a".to_string()),
                ("ff_sw_b".to_string(), "org_b".to_string())
            ]
        );
    })
    .await;
}

async fn assert_usable(c: &Client) {
    let rows = c
        .query("SELECT id FROM feature_flags ORDER BY id", &[])
        .await
        .expect("the session goes on after a failed COPY");
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, ["ff_a1"], "A's flags");
}

/// No server connection keeps a staging table (they live in each backend's temporary schema).
async fn assert_no_staging_table(admin: &Client) {
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'orgwall_copy'",
            &[],
        )
        .await
        .expect("pg_class")
        .get(0);
    assert_eq!(n, 0, "a staging table was left behind");
}
