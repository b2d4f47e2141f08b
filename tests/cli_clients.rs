//! The stock PostgreSQL command-line clients through the proxy: `psql` (simple protocol,
//! multi-statement scripts, `\copy` both ways, error reporting) and `pgbench` (`-i`, then
//! `-M simple|extended|prepared` with more clients than pooled connections).

use orgwall_e2e::clients::{assert_pgbench_clean, pgbench, psql};
use orgwall_e2e::{bounded, db_and_proxy, ProxyOptions, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_a_multi_statement_script() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("psql_script", ProxyOptions::default()).await;
        let script = "\
CREATE TABLE fruit (id int PRIMARY KEY, name text);
INSERT INTO fruit VALUES (1, 'apple'), (2, 'banana');
INSERT INTO fruit VALUES (3, 'cherry'); UPDATE fruit SET name = upper(name) WHERE id = 2;
BEGIN;
DELETE FROM fruit WHERE id = 1;
ROLLBACK;
SELECT id || ':' || name FROM fruit ORDER BY id;
";
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &["-v", "ON_ERROR_STOP=1", "-A", "-t", "-q", "-f", "-"],
            Some(script),
        )
        .await;
        out.assert_success("psql script");
        let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, vec!["1:apple", "2:BANANA", "3:cherry"], "{out:?}");

        // `-c` with several statements is sent as one simple Query message.
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &[
                "-A",
                "-t",
                "-c",
                "SELECT 1; SELECT 'two'; SELECT count(*) FROM fruit",
            ],
            None,
        )
        .await;
        out.assert_success("psql -c multi-statement");
        // psql >= 15 prints every result, older versions only the last; both end with it.
        assert_eq!(out.stdout.trim().lines().last(), Some("3"), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_in_and_out_round_trips_a_file() {
    bounded(180, async {
        let (db, proxy) = db_and_proxy("psql_copy", ProxyOptions::default()).await;
        let dir = proxy.dir().to_path_buf();
        let input = dir.join("in.csv");
        let output = dir.join("out.csv");
        let mut csv = String::new();
        for i in 0..2500 {
            csv.push_str(&format!("{i},\"name, with comma {i}\",{}\n", i % 7));
        }
        std::fs::write(&input, &csv).expect("write input csv");
        let script = format!(
            "CREATE TABLE c (id int, name text, k int);\n\
             \\copy c FROM '{}' WITH (FORMAT csv)\n\
             \\copy (SELECT id, name, k FROM c ORDER BY id) TO '{}' WITH (FORMAT csv)\n\
             SELECT count(*), sum(k) FROM c;\n",
            input.display(),
            output.display()
        );
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &["-v", "ON_ERROR_STOP=1", "-A", "-t", "-f", "-"],
            Some(&script),
        )
        .await;
        out.assert_success("psql \\copy script");
        assert!(out.stdout.contains("COPY 2500"), "{out:?}");
        let expected_sum: i32 = (0..2500).map(|i| i % 7).sum();
        assert!(
            out.stdout.contains(&format!("2500|{expected_sum}")),
            "{out:?}"
        );
        let copied = std::fs::read_to_string(&output).expect("read output csv");
        assert_eq!(copied, csv);
        // The data really is in PostgreSQL, not just echoed by the proxy.
        let direct = db.psql("SELECT count(DISTINCT name) FROM c").await;
        assert!(direct.contains("2500"), "direct count: {direct:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reports_errors_and_keeps_going() {
    bounded(180, async {
        let (_db, proxy) = db_and_proxy("psql_errors", ProxyOptions::default()).await;
        let out = psql(&proxy, ADMIN, "disable", &["-c", "SELECT 1/0"], None).await;
        assert!(!out.status.success(), "division by zero must fail: {out:?}");
        assert!(out.stderr.contains("division by zero"), "{out:?}");

        // Without ON_ERROR_STOP psql reports each error and continues on the same connection.
        let script = "\
CREATE TABLE z (x int);
SELEC broken;
INSERT INTO z VALUES (1);
SELECT * FROM missing_table;
BEGIN;
INSERT INTO z VALUES (2);
SELECT 1/0;
COMMIT;
SELECT 'rows=' || count(*) FROM z;
";
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &["-A", "-t", "-f", "-"],
            Some(script),
        )
        .await;
        assert!(out.stderr.contains("syntax error"), "{out:?}");
        assert!(out.stderr.contains("missing_table"), "{out:?}");
        assert!(out.stderr.contains("division by zero"), "{out:?}");
        assert!(
            out.stdout.contains("rows=1"),
            "aborted transaction must not commit: {out:?}"
        );

        // ON_ERROR_STOP exits with status 3 at the first error.
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &["-v", "ON_ERROR_STOP=1", "-f", "-"],
            Some("SELECT 1;\nSELECT nope();\nSELECT 'unreached';\n"),
        )
        .await;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(!out.stdout.contains("unreached"), "{out:?}");
    })
    .await;
}

async fn pgbench_through_pool(mode: &str) {
    bounded(600, async {
        let (_db, proxy) = db_and_proxy(
            &format!("pgbench_{mode}"),
            ProxyOptions::pool(4, "transaction"),
        )
        .await;
        let init = pgbench(&proxy, ADMIN, &["-i", "-s", "1", "-q"]).await;
        init.assert_success("pgbench -i -s 1");
        let run = pgbench(
            &proxy,
            ADMIN,
            &["-M", mode, "-c", "8", "-j", "2", "-t", "200", "-n"],
        )
        .await;
        assert_pgbench_clean(&run, 1600, &format!("pgbench -M {mode}"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_protocol_8_clients_through_pool_of_4_has_no_failures() {
    pgbench_through_pool("simple").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_extended_protocol_8_clients_through_pool_of_4_has_no_failures() {
    pgbench_through_pool("extended").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_statements_8_clients_through_pool_of_4_has_no_failures() {
    pgbench_through_pool("prepared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_notices_and_startup_parameter_status() {
    bounded(120, async {
        let (_db, proxy) = db_and_proxy("psql_notice", ProxyOptions::default()).await;
        let script = "\
DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$;
\\echo version=:SERVER_VERSION_NAME
SHOW server_version;
";
        let out = psql(
            &proxy,
            ADMIN,
            "disable",
            &["-v", "ON_ERROR_STOP=1", "-A", "-t", "-f", "-"],
            Some(script),
        )
        .await;
        out.assert_success("psql notice script");
        assert!(
            out.stderr.contains("NOTICE:  hello from plpgsql"),
            "NoticeResponse not passed through: {out:?}"
        );
        // psql takes SERVER_VERSION_NAME from the startup ParameterStatus messages.
        let lines: Vec<&str> = out.stdout.lines().collect();
        let reported = lines
            .iter()
            .find_map(|l| l.strip_prefix("version="))
            .expect("echo line");
        assert!(
            !reported.is_empty(),
            "server_version ParameterStatus missing: {out:?}"
        );
        assert!(
            lines.contains(&reported),
            "ParameterStatus server_version {reported:?} differs from SHOW server_version: {out:?}"
        );
    })
    .await;
}
