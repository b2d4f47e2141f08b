//! psycopg 3's own tests (the connection, prepared, transaction, cursor, COPY, notify and
//! two-phase-commit modules, vendored in `tests/psycopg/`) through Orgwall's admin login in
//! both pool modes: every test must pass except the documented refusals listed in
//! `tests/psycopg/refusals.txt` (issue 23). `benches/psycopg_suite.py` runs the whole suite
//! and compares with PgBouncer.

use orgwall_e2e::clients::psycopg_suite;
use orgwall_e2e::{bounded, dedicated_postgres_with, ProxyOptions, TestDb, TestProxy, ADMIN};

const MODULES: &[&str] = &[
    "test_connection.py",
    "test_prepared.py",
    "test_transaction.py",
    "test_cursor.py",
    "test_copy.py",
    "test_notify.py",
    "test_tpc.py",
];

/// The refusals for `mode` (and `any`): test ids (an id without parameters covers all its
/// cases, a module all its tests).
fn refusals(mode: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/psycopg/refusals.txt");
    let text = std::fs::read_to_string(path).expect("read tests/psycopg/refusals.txt");
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(m, _)| *m == mode || *m == "any")
        .map(|(_, id)| id.trim().to_string())
        .collect()
}

fn refused(id: &str, refusals: &[String]) -> bool {
    refusals.iter().any(|r| {
        let rest = id.strip_prefix(r.as_str());
        id == r
            || rest.is_some_and(|p| p.starts_with('['))
            || (r.ends_with(".py") && rest.is_some_and(|p| p.starts_with("::")))
    })
}

/// The test ids pytest's short summary reports as failed or errored (`FAILED id - why`).
fn failures(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            l.strip_prefix("FAILED ")
                .or_else(|| l.strip_prefix("ERROR "))
        })
        .map(|rest| rest.split(" - ").next().unwrap_or(rest).trim().to_string())
        .collect()
}

/// How many tests passed, from pytest's last line (`312 passed, 4 skipped … in 20.1s`).
fn passed(out: &str) -> usize {
    out.lines()
        .rev()
        .find_map(|l| {
            let words: Vec<&str> = l.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let i = words.iter().position(|w| *w == "passed")?;
            words.get(i.checked_sub(1)?)?.parse().ok()
        })
        .unwrap_or(0)
}

async fn suite_through_orgwall(mode: &'static str) {
    // Two-phase commit needs prepared transactions; the notify and concurrency tests open
    // several connections at once.
    let pg = dedicated_postgres_with(&[("max_prepared_transactions", "10")]).await;
    let db = TestDb::create_on(pg.server.clone(), &format!("psycopg_{mode}")).await;
    let proxy = TestProxy::start(&db, ProxyOptions::pool(10, mode)).await;
    let dsn = proxy.conn_str(ADMIN);
    let extra = [
        "-m",
        "not slow and not timing and not proxy",
        "--timeout=60",
    ];
    let out = psycopg_suite(&dsn, MODULES, &extra, 540).await;
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let refusals = refusals(mode);
    let failed = failures(&out.stdout);
    let unexpected: Vec<&String> = failed.iter().filter(|t| !refused(t, &refusals)).collect();
    assert!(
        unexpected.is_empty(),
        "{mode} pooling: psycopg tests failing through Orgwall that are no documented \
         refusal: {unexpected:#?}\n{text}"
    );
    // The selection ran (a deselected or uncollected suite passes nothing).
    assert!(
        passed(&out.stdout) > 250,
        "{mode}: too few tests passed\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_suite_through_session_pooling() {
    bounded(600, suite_through_orgwall("session")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_suite_through_transaction_pooling() {
    bounded(600, suite_through_orgwall("transaction")).await;
}

#[test]
fn refusal_ids_cover_parametrised_cases_only() {
    let r = vec!["tests/a.py::test_x".to_string()];
    assert!(refused("tests/a.py::test_x", &r));
    assert!(refused("tests/a.py::test_x[asyncio]", &r));
    assert!(!refused("tests/a.py::test_x_more", &r));
    let module = vec!["tests/n.py".to_string()];
    assert!(refused("tests/n.py::test_z[1]", &module));
    assert!(!refused("tests/n.py.bak::test_z", &module));
    assert_eq!(
        failures("FAILED tests/a.py::test_x[1] - boom\nERROR tests/b.py::test_y\n. [100%]"),
        ["tests/a.py::test_x[1]", "tests/b.py::test_y"]
    );
    assert_eq!(
        passed("==== 312 passed, 4 skipped, 2 deselected in 20.1s ===="),
        312
    );
}
