//! Issue "Hostile clients on shared connections", multiplexing: a client's batch that is not a
//! well-formed unit (extended messages, then a Query, no Sync) never shares a connection, so
//! no answer reaches another client; a connection taken for multiplexing carries none of the
//! settings a previous client left; and a property test — random message sequences from
//! several clients at once through a multiplexed connection — checks that each client's
//! transcript equals what it gets alone on an unshared proxy.

use std::time::Duration;

use bytes::BytesMut;
use orgwall_e2e::raw::{Msg, RawConn};
use orgwall_e2e::tenancy::{run_simple, tenant_db, tenant_proxy, Outcome, TENANT_A, TENANT_B};
use orgwall_e2e::{bounded, connect, db_and_proxy, ProxyOptions, TestProxy, ADMIN};
use postgres_protocol::message::frontend;

fn mux(pool: usize) -> ProxyOptions {
    ProxyOptions {
        multiplex: 1,
        ..ProxyOptions::pool(pool, "transaction")
    }
}

/// Reads messages until `n` ReadyForQuery have arrived (or 10 s pass).
async fn read_rfqs(raw: &mut RawConn, n: usize) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(10), raw.read_msg()).await {
            Ok(Ok(Some(m))) => {
                seen += usize::from(m.tag == b'Z');
                out.push(m);
            }
            _ => break,
        }
    }
    out
}

/// The data rows' first columns in `msgs`.
fn values(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| String::from_utf8_lossy(&m.body[6..]).into_owned())
        .collect()
}

async fn login(proxy: &TestProxy, who: orgwall_e2e::proxy::Login) -> RawConn {
    let mut raw = RawConn::connect(proxy.port).await;
    raw.login(who.name, who.password, &proxy.dbname)
        .await
        .unwrap_or_else(|e| panic!("login: {:?}", e.field(b'M')));
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_behind_unsynced_extended_messages_never_shifts_answers() {
    bounded(120, async {
        let db = tenant_db("shared_unsynced").await;
        let proxy = tenant_proxy(&db, mux(3)).await;
        for round in 0..3 {
            let mut attacker = login(&proxy, TENANT_A).await;
            let mut a2 = login(&proxy, TENANT_A).await;
            let mut b = login(&proxy, TENANT_B).await;
            // Each victim prepares its statement first.
            for (raw, sql) in [
                (&mut a2, "SELECT 'a2-' || $1::text"),
                (&mut b, "SELECT 'b-' || $1::text"),
            ] {
                let mut out = BytesMut::new();
                frontend::parse("v", sql, [25u32], &mut out).unwrap();
                frontend::sync(&mut out);
                raw.exchange(&out, "prepare").await;
            }
            // The attacker: Parse/Bind/Execute of a failing statement, then a Query, no Sync.
            let mut out = BytesMut::new();
            frontend::parse("", "SELECT 1/0", std::iter::empty::<u32>(), &mut out).unwrap();
            orgwall_e2e::raw::bind_execute_no_params(&mut out, "");
            frontend::query("SELECT 'attacker'", &mut out).unwrap();
            attacker.send(&out).await.unwrap();
            let mut victims = Vec::new();
            for (i, raw) in [&mut a2, &mut b].into_iter().enumerate() {
                let mut out = BytesMut::new();
                let arg = format!("r{round}v{i}");
                frontend::bind(
                    "",
                    "v",
                    [0i16],
                    [arg.as_str()],
                    |v, buf| {
                        buf.extend_from_slice(v.as_bytes());
                        Ok(postgres_protocol::IsNull::No)
                    },
                    [0i16],
                    &mut out,
                )
                .map_err(|_| "bind")
                .unwrap();
                frontend::execute("", 0, &mut out).unwrap();
                frontend::sync(&mut out);
                raw.send(&out).await.unwrap();
                victims.push(arg);
            }
            let got_a2 = values(&read_rfqs(&mut a2, 1).await);
            let got_b = values(&read_rfqs(&mut b, 1).await);
            assert_eq!(got_a2, vec![format!("a2-{}", victims[0])], "round {round}");
            assert_eq!(got_b, vec![format!("b-{}", victims[1])], "round {round}");
            // The attacker gets its own error, then (after its own Sync) a working connection.
            let mut out = BytesMut::new();
            frontend::sync(&mut out);
            attacker.send(&out).await.unwrap();
            let got = read_rfqs(&mut attacker, 1).await;
            assert!(got.iter().any(|m| m.tag == b'E'), "attacker: {got:?}");
            assert!(!values(&got)
                .iter()
                .any(|v| v.contains("a2-") || v.contains("b-")));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplexed_connection_carries_no_previous_client_settings() {
    bounded(120, async {
        let db = tenant_db("shared_settings").await;
        // Two server connections, one of them shared: whatever A set on the exclusive one must
        // be gone when the pool hands it out for sharing.
        let proxy = tenant_proxy(&db, mux(2)).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        for sql in [
            "SET statement_timeout = 1",
            "SET default_transaction_read_only = on",
            "SET TimeZone = 'Asia/Tokyo'",
            "SET DateStyle = 'SQL, DMY'",
            "SET app.x = 'from-a'",
        ] {
            assert!(run_simple(&a, sql).await.code().is_none(), "{sql}");
        }
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let admin = connect(&proxy.conn_str(ADMIN)).await;
        for c in [&b, &admin] {
            // What A left must not show: each value is the server's default.
            for (sql, leaked) in [
                ("SHOW statement_timeout", "'1ms'"),
                ("SHOW default_transaction_read_only", "'on'"),
                ("SHOW TimeZone", "'Asia/Tokyo'"),
                ("SELECT '01/02/2024'::date::text", "'2024-02-01'"),
            ] {
                for _ in 0..3 {
                    match run_simple(c, sql).await {
                        Outcome::Rows(rs) => assert_ne!(rs.rows[0][0], leaked, "{sql}"),
                        other => panic!("{sql}: {other:?}"),
                    }
                }
            }
            let o = run_simple(c, "CREATE TEMP TABLE IF NOT EXISTS w (x int)").await;
            assert_ne!(o.code(), Some("25006"), "read-only leaked: {o:?}");
        }
        let o = run_simple(&b, "SELECT current_setting('app.x', true)").await;
        assert!(!format!("{o:?}").contains("from-a"), "{o:?}");
    })
    .await;
}

/// One unit of the property test: a Query, or extended messages ending in Sync (or, for
/// what must never share a connection, ending without one and then a Query).
fn unit(rng: &mut u64, client: usize, k: usize, out: &mut BytesMut) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let tag = format!("c{client}k{k}");
    match *rng % 6 {
        0 => {
            frontend::query(&format!("SELECT '{tag}'"), out).unwrap();
            1
        }
        1 => {
            frontend::query(&format!("SELECT '{tag}'; SELECT 1/0; SELECT 'never'"), out).unwrap();
            1
        }
        2 | 3 => {
            let sql = if *rng % 6 == 2 {
                "SELECT $1::text"
            } else {
                "SELECT 1/length($1::text)::int - 1/0"
            };
            frontend::parse("", sql, [25u32], out).unwrap();
            frontend::bind(
                "",
                "",
                [0i16],
                [tag.as_str()],
                |v, buf| {
                    buf.extend_from_slice(v.as_bytes());
                    Ok(postgres_protocol::IsNull::No)
                },
                [0i16],
                out,
            )
            .map_err(|_| "bind")
            .unwrap();
            frontend::describe(b'P', "", out).unwrap();
            frontend::execute("", 0, out).unwrap();
            frontend::sync(out);
            1
        }
        4 => {
            frontend::parse("", "SELECT 1/0", std::iter::empty::<u32>(), out).unwrap();
            orgwall_e2e::raw::bind_execute_no_params(out, "");
            frontend::query(&format!("SELECT '{tag}'"), out).unwrap();
            frontend::sync(out);
            1 // the failed Execute makes PostgreSQL skip the Query: one ReadyForQuery
        }
        _ => {
            frontend::sync(out);
            1
        }
    }
}

/// Tags, SQLSTATEs and row contents a client saw (notices and parameter reports left out).
fn transcript(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| !matches!(m.tag, b'N' | b'S'))
        .map(|m| match m.tag {
            b'E' => match m.field(b'C').unwrap_or_default() {
                c if c.starts_with("53") => format!("E{c} {}", m.field(b'M').unwrap_or_default()),
                c => format!("E{c}"),
            },
            _ => format!("{}{:?}", m.tag as char, m.body),
        })
        .collect()
}

async fn run_client(
    port: u16,
    dbname: String,
    client: usize,
    seed: u64,
    units: usize,
) -> Vec<String> {
    let mut raw = RawConn::connect(port).await;
    raw.login(ADMIN.name, ADMIN.password, &dbname)
        .await
        .unwrap_or_else(|e| panic!("login: {:?}", e.field(b'M')));
    let mut rng = seed | 1;
    let mut all = Vec::new();
    for k in 0..units {
        let mut out = BytesMut::new();
        let rfqs = unit(&mut rng, client, k, &mut out);
        raw.send(&out).await.unwrap();
        all.extend(read_rfqs(&mut raw, rfqs).await);
    }
    transcript(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_what_it_gets_alone() {
    bounded(300, async {
        // Enough exclusive connections for every client's non-shareable units.
        let (db, shared) = db_and_proxy("shared_property", mux(6)).await;
        let alone = TestProxy::start(
            &db,
            ProxyOptions {
                second_wall: false,
                ..ProxyOptions::pool(6, "transaction")
            },
        )
        .await;
        let clients = 4;
        let units = 40;
        for round in 0..3u64 {
            let mut tasks = Vec::new();
            for client in 0..clients {
                let seed = round * 1000 + client as u64 * 7 + 11;
                let port = shared.port;
                let dbname = shared.dbname.clone();
                tasks.push(tokio::spawn(run_client(port, dbname, client, seed, units)));
            }
            let mut together = Vec::new();
            for t in tasks {
                together.push(t.await.expect("client task"));
            }
            for (client, got) in together.iter().enumerate() {
                let seed = round * 1000 + client as u64 * 7 + 11;
                let want = run_client(alone.port, alone.dbname.clone(), client, seed, units).await;
                assert_eq!(got, &want, "client {client}, round {round}");
            }
        }
    })
    .await;
}

/// The previous holder's settings may make Orgwall's own settings restore fail: tenant A
/// leaves a 1 ms `statement_timeout` and thousands of custom settings on the only server
/// connection, and B's statements alternate with A's on it. Whether or not a restore is
/// cancelled (Orgwall now waits for it and, if it fails, closes the connection and tries
/// another), none of B's statements may run with A's settings. (This machine's PostgreSQL
/// finishes `RESET ALL` within the 1 ms, so the failing path is exercised only under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_settings_restore_never_runs_a_statement_with_anothers_settings() {
    bounded(180, async {
        let db = tenant_db("restore_fails").await;
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "transaction")).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let sets: String = (0..3000)
            .map(|i| format!("SET app.k{i} = 'secret-of-a';"))
            .collect();
        assert!(run_simple(&a, &sets).await.code().is_none());
        assert!(run_simple(&a, "SET statement_timeout = 1")
            .await
            .code()
            .is_none());
        let (mut leaks, mut refused, mut clean) = (0, 0, 0);
        for _ in 0..40 {
            // A takes the connection back (its own statement may time out: that is A's).
            let _ = run_simple(&a, "SELECT 1").await;
            match run_simple(
                &b,
                "SELECT current_setting('app.k7', true), current_setting('statement_timeout')",
            )
            .await
            {
                Outcome::Rows(rs) => {
                    let row = &rs.rows[0];
                    if row
                        .iter()
                        .any(|v| v.contains("secret-of-a") || v == "'1ms'")
                    {
                        leaks += 1;
                    } else {
                        clean += 1;
                    }
                }
                Outcome::Error { code, message } => {
                    assert_eq!(code, "08006", "B's error: {message}");
                    refused += 1;
                }
                other => panic!("B: {other:?}"),
            }
        }
        eprintln!("B: {clean} clean, {refused} refused, {leaks} with A's settings");
        assert_eq!(
            leaks, 0,
            "B ran with A's settings ({clean} clean, {refused} refused)"
        );
        assert!(
            clean > 0,
            "B never got a clean connection ({refused} refused)"
        );
    })
    .await;
}
