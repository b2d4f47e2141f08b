//! Arbitrary frontend message sequences against the session state machine: random mixes of
//! well-formed and malformed Query, Parse, Bind, Describe, Execute, Close, Sync, Flush and
//! garbage frames (bad lengths, unknown tags, odd format codes, negative lengths), from tenant
//! and admin logins, on a small multiplexed pool. Whatever a client sends, the proxy never
//! panics or aborts (a panic hook counts panics in the process, where the proxy runs), never
//! hangs, and a bystander on another connection keeps getting answers.
//! Bounded for CI (`FUZZ_CONNECTIONS`, default 150; `FUZZ_SEED` for another sequence).

use orgwall_e2e::rng::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use orgwall_e2e::clients::connect;
use orgwall_e2e::raw::RawConn;
use orgwall_e2e::tenancy::{run_simple, tenant_db, tenant_proxy, Outcome, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, ProxyOptions, ADMIN};

static PANICS: AtomicUsize = AtomicUsize::new(0);

const SQL: &[&str] = &[
    "SELECT 1",
    "SELECT id FROM items WHERE id = $1",
    "SELECT 1/0",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET statement_timeout = 1000",
    "SELECT pg_sleep(0.01)",
    "DECLARE c CURSOR FOR SELECT 1",
    "INSERT INTO items (id) VALUES ($1)",
    "COPY items TO STDOUT",
    "not sql at all",
    "",
];

fn frame(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

/// One random message (or malformed bytes) appended to `out`.
fn message(rng: &mut Rng, out: &mut BytesMut) {
    let names = ["", "s1", "s2"];
    let mut b = Vec::new();
    match rng.below(12) {
        0 => {
            cstr(&mut b, SQL[rng.below(SQL.len())]);
            frame(out, b'Q', &b);
        }
        1 => {
            cstr(&mut b, names[rng.below(3)]);
            cstr(&mut b, SQL[rng.below(SQL.len())]);
            let n = rng.below(3) as i16;
            b.extend_from_slice(&n.to_be_bytes());
            for _ in 0..n {
                b.extend_from_slice(&[0, 0, 0, [0u8, 23, 25][rng.below(3)]]);
            }
            frame(out, b'P', &b);
        }
        2 => {
            cstr(&mut b, names[rng.below(2)]);
            cstr(&mut b, names[rng.below(3)]);
            let fmts = rng.below(4) as i16;
            b.extend_from_slice(&fmts.to_be_bytes());
            for _ in 0..fmts {
                b.extend_from_slice(&[0i16, 1, 7, -1][rng.below(4)].to_be_bytes());
            }
            let params = rng.below(3) as i16;
            b.extend_from_slice(&params.to_be_bytes());
            for _ in 0..params {
                match rng.below(4) {
                    0 => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    1 => b.extend_from_slice(&(-2i32).to_be_bytes()),
                    2 => {
                        b.extend_from_slice(&2i32.to_be_bytes());
                        b.extend_from_slice(b"\xff\x00");
                    }
                    _ => {
                        b.extend_from_slice(&1i32.to_be_bytes());
                        b.push(b'7');
                    }
                }
            }
            b.extend_from_slice(&(rng.below(2) as i16).to_be_bytes());
            if b.len() > 4 && rng.below(5) == 0 {
                b.truncate(rng.below(b.len()));
            }
            frame(out, b'B', &b);
        }
        3 => {
            b.push([b'S', b'P', b'X'][rng.below(3)]);
            cstr(&mut b, names[rng.below(3)]);
            frame(out, b'D', &b);
        }
        4 => {
            cstr(&mut b, names[rng.below(2)]);
            b.extend_from_slice(&(rng.below(3) as i32).to_be_bytes());
            frame(out, b'E', &b);
        }
        5 => {
            b.push([b'S', b'P'][rng.below(2)]);
            cstr(&mut b, names[rng.below(3)]);
            frame(out, b'C', &b);
        }
        6 | 7 => frame(out, b'S', &[]),
        8 => frame(out, b'H', &[]),
        9 => {
            // An unknown tag, or a known one with a length that lies.
            out.put_u8([b'z', b'Q', b'd', 0][rng.below(4)]);
            out.put_i32([0, 3, 5, 100, i32::MAX, -7][rng.below(6)]);
            out.put_slice(b"junk");
        }
        10 => frame(out, b'd', b"copy data"),
        _ => frame(out, b'c', &[]),
    }
}

/// Reads whatever comes back for a while; the proxy may close the connection.
async fn drain(raw: &mut RawConn) {
    loop {
        match tokio::time::timeout(Duration::from_millis(300), raw.read_msg()).await {
            Ok(Ok(Some(_))) => continue,
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_message_sequences_never_crash_the_proxy() {
    fuzz("exclusive", 0, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_message_sequences_on_multiplexed_connections() {
    fuzz("multiplexed", 2, 100).await;
}

/// `connections` raw clients (`FUZZ_CONNECTIONS` overrides) against a proxy with `multiplex`.
async fn fuzz(label: &str, multiplex: usize, connections: usize) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    });
    if std::env::var("FUZZ_VERBOSE").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("orgwall=debug"))
            .try_init();
    }
    bounded(600, async {
        let db = tenant_db(&format!("protocol_fuzz_{label}")).await;
        let opts = ProxyOptions {
            multiplex,
            ..ProxyOptions::pool(3, "transaction")
        };
        let proxy = tenant_proxy(&db, opts).await;
        let bystander = connect(&proxy.conn_str(TENANT_B)).await;
        let connections: usize = std::env::var("FUZZ_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(connections);
        let seed: u64 = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0xf022);
        let mut rng = Rng::new(seed);
        let mut messages = 0;
        for i in 0..connections {
            let login = if i % 5 == 4 { ADMIN } else { TENANT_A };
            let mut raw = RawConn::connect(proxy.port).await;
            if raw
                .login(login.name, login.password, &proxy.dbname)
                .await
                .is_err()
            {
                panic!("login {i} refused");
            }
            let mut out = BytesMut::new();
            for _ in 0..1 + rng.below(12) {
                message(&mut rng, &mut out);
                messages += 1;
            }
            if rng.below(2) == 0 {
                frame(&mut out, b'S', &[]);
            }
            if std::env::var("FUZZ_VERBOSE").is_ok() {
                eprintln!("connection {i}: {:?}", out.as_ref());
            }
            let _ = raw.send(&out).await;
            drain(&mut raw).await;
            let every: usize = std::env::var("FUZZ_CHECK_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            if i % every == every - 1 {
                if std::env::var("FUZZ_VERBOSE").is_ok() {
                    eprintln!("bystander after {i}");
                }
                let o = tokio::time::timeout(
                    Duration::from_secs(30),
                    run_simple(&bystander, "SELECT id FROM items"),
                )
                .await
                .unwrap_or_else(|_| panic!("bystander hung after connection {i}"));
                assert!(matches!(o, Outcome::Rows(_)), "bystander after {i}: {o:?}");
            }
        }
        if std::env::var("FUZZ_VERBOSE").is_ok() {
            eprintln!("fresh login");
        }
        let fresh = connect(&proxy.conn_str(TENANT_A)).await;
        let o = run_simple(&fresh, "SELECT 1").await;
        assert!(matches!(o, Outcome::Rows(_)), "{o:?}");
        println!(
            "protocol fuzz ({label}): {connections} connections, {messages} messages, seed {seed}"
        );
    })
    .await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the proxy panicked");
}
