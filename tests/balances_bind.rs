//! Hostile Binds of a statement the balance cache answers (issue "Hostile clients on shared
//! connections", item 8): each is sent through a raw socket to PostgreSQL directly and to a
//! proxy with the cache on, and both must answer with the same messages, the same SQLSTATE
//! and the same ReadyForQuery status — the cache never answers what PostgreSQL rejects.

use bytes::{BufMut, BytesMut};
use orgwall_e2e::balances::{cached_proxy, counter, stats, wait_serving};
use orgwall_e2e::pg::SUPERUSER_PASSWORD;
use orgwall_e2e::raw::{error_code, ready_status, tags, Msg, RawConn};
use orgwall_e2e::tenancy::{self, TENANT_A};
use orgwall_e2e::{bounded, TestProxy};
use postgres_protocol::message::frontend;

const LOOKUP: &str = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";

/// A Bind built byte by byte, so any field may be wrong: parameters as `(length, bytes)`.
fn bind(portal: &str, formats: &[i16], params: &[(i32, &[u8])], results: &[i16]) -> BytesMut {
    let mut body = BytesMut::new();
    for name in [portal, "s"] {
        body.put_slice(name.as_bytes());
        body.put_u8(0);
    }
    body.put_i16(formats.len() as i16);
    formats.iter().for_each(|&f| body.put_i16(f));
    body.put_i16(params.len() as i16);
    for &(len, bytes) in params {
        body.put_i32(len);
        body.put_slice(bytes);
    }
    body.put_i16(results.len() as i16);
    results.iter().for_each(|&f| body.put_i16(f));
    let mut out = BytesMut::new();
    out.put_u8(b'B');
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(&body);
    out
}

fn text(v: &[u8]) -> (i32, &[u8]) {
    (v.len() as i32, v)
}

const GOOD: [(i32, &[u8]); 2] = [(4, b"i_a1"), (4, b"l_a1")];

fn execute_sync(out: &mut BytesMut, portal: &str) {
    frontend::execute(portal, 0, out).expect("execute");
    frontend::sync(out);
}

/// One case: the bytes after Parse, the SQLSTATE PostgreSQL answers (None: no error) and how
/// many of its Binds the cache answers (those before the bad one).
struct Case {
    name: &'static str,
    bytes: BytesMut,
    code: Option<&'static str>,
    hits: u64,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut case = |name, binds: Vec<BytesMut>, portal: &str, code: Option<&'static str>| {
        let mut bytes = BytesMut::new();
        binds.iter().for_each(|b| bytes.extend_from_slice(b));
        execute_sync(&mut bytes, portal);
        // Every Bind is answered locally when all are valid; else all but the last.
        let hits = binds.len() as u64 - u64::from(code.is_some());
        out.push(Case {
            name,
            bytes,
            code,
            hits,
        });
    };
    case("valid", vec![bind("", &[], &GOOD, &[])], "", None);
    let bad_utf8 = [text(b"i_a1\xff"), GOOD[1]];
    case(
        "invalid UTF-8",
        vec![bind("", &[], &bad_utf8, &[])],
        "",
        Some("22021"),
    );
    let nul = [text(b"i_a\x001"), GOOD[1]];
    case(
        "NUL byte",
        vec![bind("", &[], &nul, &[])],
        "",
        Some("22021"),
    );
    let binary_utf8 = [text(b"\xc3("), GOOD[1]];
    case(
        "binary invalid UTF-8",
        vec![bind("", &[1], &binary_utf8, &[])],
        "",
        Some("22021"),
    );
    case(
        "format code 7",
        vec![bind("", &[7], &GOOD, &[])],
        "",
        Some("22023"),
    );
    case(
        "format code -1",
        vec![bind("", &[0, -1], &GOOD, &[])],
        "",
        Some("22023"),
    );
    let null_first = [(-1, &b""[..]), GOOD[1]];
    case(
        "format 7 on NULL",
        vec![bind("", &[7], &null_first, &[])],
        "",
        Some("22023"),
    );
    case(
        "three formats, two parameters",
        vec![bind("", &[0, 0, 0], &GOOD, &[])],
        "",
        Some("08P01"),
    );
    case(
        "one parameter of two",
        vec![bind("", &[], &GOOD[..1], &[])],
        "",
        Some("08P01"),
    );
    let three = [GOOD[0], GOOD[1], GOOD[1]];
    case(
        "three parameters of two",
        vec![bind("", &[], &three, &[])],
        "",
        Some("08P01"),
    );
    let minus_two = [(-2, &b""[..]), GOOD[1]];
    case(
        "length -2",
        vec![bind("", &[], &minus_two, &[])],
        "",
        Some("08P01"),
    );
    case(
        "result format 7",
        vec![bind("", &[], &GOOD, &[7])],
        "",
        Some("22023"),
    );
    case(
        "two result formats, one column",
        vec![bind("", &[], &GOOD, &[0, 1])],
        "",
        Some("08P01"),
    );
    case(
        "binary results",
        vec![bind("", &[0], &GOOD, &[1])],
        "",
        None,
    );
    let twice = vec![bind("p", &[], &GOOD, &[]), bind("p", &[], &GOOD, &[])];
    case("named portal bound twice", twice, "p", Some("42P03"));
    let twice = vec![bind("", &[], &GOOD, &[]), bind("", &[], &GOOD, &[])];
    case("unnamed portal bound twice", twice, "", None);
    // The named portal of the case before last ended with its Sync: binding it again is fine.
    case(
        "named portal after Sync",
        vec![bind("p", &[], &GOOD, &[])],
        "p",
        None,
    );
    let twice = vec![
        bind("q", &[], &GOOD, &[]),
        bind("q", &[0, 0, 0], &GOOD, &[]),
    ];
    case("format count before portal", twice, "q", Some("08P01"));
    let twice = vec![
        bind("r", &[], &GOOD, &[]),
        bind("r", &[], &[text(b"\xff"), GOOD[1]], &[]),
    ];
    case("portal before encoding", twice, "r", Some("42P03"));
    out
}

async fn parse_s(conn: &mut RawConn, what: &str) {
    let mut out = BytesMut::new();
    frontend::parse("s", LOOKUP, std::iter::empty::<u32>(), &mut out).expect("parse");
    frontend::sync(&mut out);
    let msgs = conn.exchange(&out, what).await;
    assert_eq!(tags(&msgs), "1Z", "{what}: {msgs:?}");
}

fn describe(msgs: &[Msg]) -> String {
    msgs.iter().map(Msg::summary).collect::<Vec<_>>().join(", ")
}

/// DataRow bodies: both sides must answer the same rows (A's seed: 100 - 15).
fn rows(msgs: &[Msg]) -> Vec<Vec<u8>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.body.clone())
        .collect()
}

async fn hits(proxy: &TestProxy) -> u64 {
    counter(&stats(proxy).await, "hits")
}

#[tokio::test]
async fn malformed_binds_get_postgres_answers_from_the_cache_path() {
    bounded(180, async {
        let db = tenancy::tenant_db("bal_bind").await;
        let proxy = cached_proxy(&db).await;
        wait_serving(&proxy).await;
        let mut direct = RawConn::connect(db.server.port()).await;
        direct
            .login("postgres", SUPERUSER_PASSWORD, &db.name)
            .await
            .unwrap_or_else(|e| panic!("direct login: {}", e.summary()));
        let mut cached = RawConn::connect(proxy.port).await;
        cached
            .login(TENANT_A.name, TENANT_A.password, &proxy.dbname)
            .await
            .unwrap_or_else(|e| panic!("proxy login: {}", e.summary()));
        parse_s(&mut direct, "parse directly").await;
        parse_s(&mut cached, "parse through the proxy").await;

        for case in cases() {
            let before = hits(&proxy).await;
            let want = direct.exchange(&case.bytes, case.name).await;
            let got = cached.exchange(&case.bytes, case.name).await;
            let hit = hits(&proxy).await - before;
            let (want_s, got_s) = (describe(&want), describe(&got));
            let name = case.name;
            assert_eq!(
                error_code(&want).as_deref(),
                case.code,
                "{name}: PostgreSQL {want_s}"
            );
            assert_eq!(
                error_code(&got),
                error_code(&want),
                "{name}: {got_s} vs {want_s}"
            );
            assert_eq!(tags(&got), tags(&want), "{name}: proxy {got_s} vs {want_s}");
            assert_eq!(ready_status(&got), Some(b'I'), "{name}: {got_s}");
            assert_eq!(rows(&got), rows(&want), "{name}");
            assert_eq!(hit, case.hits, "{name}: Binds the cache answered");
            if case.code.is_none() {
                assert_eq!(rows(&got).len(), 1, "{name}: {got_s}");
            }
            if case.code == Some("42P03") {
                // Orgwall's own refusal (PostgreSQL never saw the portal) says so.
                let msg = got.iter().find_map(|m| m.field(b'M')).unwrap_or_default();
                assert!(msg.starts_with("orgwall: cursor \""), "{name}: {msg}");
                assert!(msg.ends_with("\" already exists"), "{name}: {msg}");
            }
        }

        // Inside a transaction block the state after the error is PostgreSQL's too.
        let mut bytes = BytesMut::new();
        frontend::query("BEGIN", &mut bytes).expect("begin");
        for conn in [&mut direct, &mut cached] {
            let msgs = conn.exchange(&bytes, "BEGIN").await;
            assert_eq!(ready_status(&msgs), Some(b'T'));
        }
        let mut bytes = bind("t", &[], &GOOD, &[]);
        bytes.extend_from_slice(&bind("t", &[], &GOOD, &[]));
        execute_sync(&mut bytes, "t");
        let want = direct.exchange(&bytes, "in a transaction").await;
        let got = cached.exchange(&bytes, "in a transaction").await;
        assert_eq!(
            error_code(&want).as_deref(),
            Some("42P03"),
            "{}",
            describe(&want)
        );
        assert_eq!(error_code(&got), error_code(&want), "{}", describe(&got));
        assert_eq!((tags(&got), ready_status(&got)), (tags(&want), Some(b'E')));
        let mut bytes = BytesMut::new();
        frontend::query("ROLLBACK", &mut bytes).expect("rollback");
        for conn in [&mut direct, &mut cached] {
            let msgs = conn.exchange(&bytes, "ROLLBACK").await;
            assert_eq!(ready_status(&msgs), Some(b'I'));
        }
    })
    .await;
}
