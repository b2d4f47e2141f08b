//! The session's state machine over an in-memory pipe: client messages in, the messages the
//! client gets back out, as tables of `(login, messages) → expected answers`. The upstream is
//! unreachable on purpose: these are the answers the session gives itself (protocol order,
//! refusals, local commands, errors when PostgreSQL cannot be reached), never a mock of it.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::run;
use crate::config::{Config, EnvOverrides, Role};
use crate::frontend::{Login, Principal};
use crate::state::ProxyState;
use crate::wire;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[upstream]
url = "postgres://owner@127.0.0.1:1/app"
connect_timeout_secs = 1
[tenancy]
max_statement_bytes = 64
[[users]]
name = "ops"
password = "pw"
role = "admin"
[[users]]
name = "acme"
password = "pw"
org_id = "org_a"
[[users]]
name = "sw"
password = "pw"
org_id = "org_s"
role = "switcher"
"#;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p.as_bytes());
        b.push(0);
    }
    b
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstrs(&[sql]))
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstrs(&[name, sql]);
    b.extend_from_slice(&0u16.to_be_bytes());
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal, stmt]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // no formats, no parameters, no result formats
    msg(b'B', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstrs(&[portal]);
    b.extend_from_slice(&0u32.to_be_bytes());
    msg(b'E', &b)
}

fn close_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(&cstrs(&[name]));
    msg(b'C', &b)
}

fn describe_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(&cstrs(&[name]));
    msg(b'D', &b)
}

fn describe_portal(name: &str) -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend_from_slice(&cstrs(&[name]));
    msg(b'D', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

/// One server message as the tables spell it: the type letter, and for an error its SQLSTATE,
/// for CommandComplete its tag, for ReadyForQuery the transaction status.
fn spell(frame: &[u8]) -> String {
    let body = &frame[5..];
    let text =
        |b: &[u8]| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(b)).into_owned();
    match frame[0] {
        b'E' | b'N' => {
            let code = body
                .split(|&c| c == 0)
                .find(|f| f.first() == Some(&b'C'))
                .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                .unwrap_or_default();
            format!("{} {code}", frame[0] as char)
        }
        b'C' => format!("C {}", text(body)),
        b'Z' => format!("Z {}", body[0] as char),
        other => (other as char).to_string(),
    }
}

/// The values of a DataRow (text; NULL is `None`).
fn row_values(frame: &[u8]) -> Vec<Option<String>> {
    let body = &frame[5..];
    let count = u16::from_be_bytes([body[0], body[1]]);
    let mut at = 2;
    (0..count)
        .map(|_| {
            let len = i32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
            at += 4;
            let len = usize::try_from(len).ok()?;
            at += len;
            Some(String::from_utf8_lossy(&body[at - len..at]).into_owned())
        })
        .collect()
}

/// Runs a session for `user` (role as configured), sends `messages` and then Terminate, and
/// spells what came back until the session closed the pipe.
async fn converse(user: &str, messages: &[Vec<u8>]) -> Vec<String> {
    let got = exchange(user, messages).await;
    let mut frames = wire::frames(&got);
    std::iter::from_fn(|| frames.next_whole().map(spell)).collect()
}

/// [`converse`], with each DataRow spelled `D` and its values.
async fn converse_rows(user: &str, messages: &[Vec<u8>]) -> Vec<String> {
    let got = exchange(user, messages).await;
    let mut frames = wire::frames(&got);
    let spell_rows = |f: &[u8]| match f[0] {
        b'D' => format!("D {:?}", row_values(f)),
        _ => spell(f),
    };
    std::iter::from_fn(|| frames.next_whole().map(spell_rows)).collect()
}

/// Runs a session for `user`, sends `messages` and then Terminate; all that came back.
async fn exchange(user: &str, messages: &[Vec<u8>]) -> Vec<u8> {
    let config = Config::from_toml(CONFIG, std::path::Path::new("."), &EnvOverrides::default())
        .expect("config");
    let state = ProxyState::new(Arc::new(config), None).expect("state");
    let u = state.config.user(user).expect("user");
    let principal = Principal {
        user: u.name.clone(),
        org_id: u.org_id.clone(),
        role: u.role,
        max_server_connections: None,
        max_client_connections: None,
    };
    let (mut client, ours) = tokio::io::duplex(64 * 1024);
    let login = Login {
        stream: ours,
        buf: BytesMut::new(),
        settings: Vec::new(),
        reported: Vec::new(),
        cancel: state.cancel.register(),
        wall: None,
        slot: state.clients.take(u.role == Role::Admin).expect("slot"),
        user_slot: state.registry.reserve(&u.name, None).expect("user slot"),
        principal,
    };
    let talk = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut out = BytesMut::new();
        for m in messages {
            out.put_slice(m);
        }
        out.put_slice(&msg(b'X', &[]));
        client.write_all(&out).await.expect("write");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        got
    };
    let ((), got) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(run(login, &state), talk)
    })
    .await
    .expect("the session answered and closed");
    got
}

async fn check(user: &str, messages: &[Vec<u8>], expected: &[&str]) {
    let got = converse(user, messages).await;
    assert_eq!(got, expected, "{user}: {} messages", messages.len());
}

#[tokio::test]
async fn extended_protocol_answered_without_a_server() {
    // A named Parse outside a transaction takes no server connection; Sync answers idle.
    check("ops", &[sync()], &["Z I"]).await;
    check("ops", &[parse("s1", "SELECT 1"), sync()], &["1", "Z I"]).await;
    check(
        "ops",
        &[parse("s1", "SELECT 1"), close_statement("s1"), sync()],
        &["1", "3", "Z I"],
    )
    .await;
    // After an error everything up to Sync is skipped, as PostgreSQL skips it.
    check(
        "ops",
        &[
            parse("s1", "SELECT 1"),
            parse("s1", "SELECT 2"),
            bind("", "s1"),
            execute(""),
            sync(),
            sync(),
        ],
        &["1", "E 42P05", "Z I", "Z I"],
    )
    .await;
}

#[tokio::test]
async fn upstream_unreachable_fails_the_statement_not_the_session() {
    check(
        "ops",
        &[query("SELECT 1"), query("SELECT 2")],
        &["E 08006", "Z I", "E 08006", "Z I"],
    )
    .await;
    check(
        "ops",
        &[
            parse("s1", "SELECT 1"),
            describe_statement("s1"),
            sync(),
            sync(),
        ],
        &["1", "E 08006", "Z I", "Z I"],
    )
    .await;
}

#[tokio::test]
async fn tenant_refusals_keep_the_session_usable() {
    // Longer than `max_statement_bytes` (64): refused before any parse.
    let long = format!("SELECT '{}'", "x".repeat(80));
    check("acme", &[query(&long), sync()], &["E 54000", "Z I", "Z I"]).await;
    // A tenant login may not switch tenants.
    check(
        "acme",
        &[query("SET orgwall.org_id = 'org_b'"), query(&long)],
        &["E 42501", "Z I", "E 54000", "Z I"],
    )
    .await;
}

#[tokio::test]
async fn a_switcher_binds_its_tenant_locally() {
    check(
        "sw",
        &[
            query("SET orgwall.org_id = 'org_b'"),
            query("RESET orgwall.org_id"),
        ],
        &["C SET", "Z I", "C RESET", "Z I"],
    )
    .await;
}

#[tokio::test]
async fn admin_console_answers_locally() {
    let got = converse("ops", &[query("SHOW orgwall_pool")]).await;
    assert_eq!(got.first().map(String::as_str), Some("T"), "{got:?}");
    let rows = got.iter().filter(|m| *m == "D").count();
    assert!(rows > 0, "{got:?}");
    assert_eq!(
        &got[got.len() - 2..],
        [format!("C SELECT {rows}"), "Z I".into()]
    );
    check("acme", &[query("SHOW orgwall_pool")], &["E 42501", "Z I"]).await;
}

#[tokio::test]
async fn broken_messages_end_the_session_with_a_protocol_error() {
    // A Bind whose body ends inside its statement name.
    check("ops", &[msg(b'B', b"p\0s")], &["E 08P01"]).await;
    // A message type clients never send.
    check("ops", &[msg(b'y', b"")], &["E 08P01"]).await;
}

#[tokio::test]
async fn a_name_that_is_not_utf8_is_refused_and_the_session_goes_on() {
    // As PostgreSQL: 22021, the rest skipped until Sync; nothing reaches the (absent) server.
    let bad_describe = msg(b'D', b"S\xff\0");
    let long = format!("SELECT '{}'", "x".repeat(80));
    check(
        "acme",
        &[bad_describe.clone(), execute(""), sync(), query(&long)],
        &["E 22021", "Z I", "E 54000", "Z I"],
    )
    .await;
    check("ops", &[bad_describe, sync()], &["E 22021", "Z I"]).await;
}

#[tokio::test]
async fn local_commands_through_the_extended_protocol() {
    // The admin console as a prepared statement: Parse, Bind, Describe, Execute answered here.
    let got = converse(
        "ops",
        &[
            parse("", "SHOW orgwall_pool"),
            bind("", ""),
            describe_portal(""),
            execute(""),
            sync(),
        ],
    )
    .await;
    let rows = got.iter().filter(|m| *m == "D").count();
    assert!(rows > 0, "{got:?}");
    let mut want = vec!["1".to_string(), "2".into(), "T".into()];
    want.extend((0..rows).map(|_| "D".to_string()));
    want.extend([format!("C SELECT {rows}"), "Z I".into()]);
    assert_eq!(got, want);
    // A switcher's binding, prepared and executed.
    check(
        "sw",
        &[
            parse("b", "SET orgwall.org_id = 'org_b'"),
            bind("", "b"),
            execute(""),
            sync(),
        ],
        &["1", "2", "C SET", "Z I"],
    )
    .await;
    // A tenant may not: refused at Parse, the rest skipped until Sync.
    check(
        "acme",
        &[
            parse("b", "SET orgwall.org_id = 'org_b'"),
            bind("", "b"),
            execute(""),
            sync(),
        ],
        &["E 42501", "Z I"],
    )
    .await;
}

/// What the responders (`respond.rs`) answer, in their order, and what none claims.
mod responders {
    use super::*;

    async fn check_rows(user: &str, messages: &[Vec<u8>], expected: &[&str]) {
        let got = converse_rows(user, messages).await;
        assert_eq!(got, expected, "{user}: {} messages", messages.len());
    }

    fn show(portal: &str) -> Vec<Vec<u8>> {
        vec![
            parse("", "SHOW orgwall.org_id"),
            bind(portal, ""),
            describe_portal(portal),
            execute(portal),
        ]
    }

    #[tokio::test]
    async fn show_org_id_in_both_protocols() {
        let simple = ["T", r#"D [Some("org_a")]"#, "C SHOW", "Z I"];
        check_rows("acme", &[query("SHOW orgwall.org_id")], &simple).await;
        let mut extended = show("");
        extended.push(sync());
        let want = ["1", "2", "T", r#"D [Some("org_a")]"#, "C SHOW", "Z I"];
        check_rows("acme", &extended, &want).await;
        // A switcher before it binds runs as no tenant (not its configured org), an admin
        // as none: the value is empty.
        let none = ["T", r#"D [Some("")]"#, "C SHOW", "Z I"];
        check_rows("sw", &[query("show orgwall.org_id;")], &none).await;
        check_rows("ops", &[query("SHOW orgwall.org_id")], &none).await;
    }

    #[tokio::test]
    async fn a_prepared_binding_is_answered_in_protocol_order() {
        // Parse, Describe, Bind, Execute of the SET, then a SHOW in the same batch: each
        // answered in turn, the SHOW seeing the binding the Execute made.
        let mut messages = vec![
            parse("b", "SET orgwall.org_id = 'org_b'"),
            describe_statement("b"),
            bind("", "b"),
            execute(""),
        ];
        messages.extend(show("p"));
        messages.extend([sync(), query("SHOW orgwall.org_id")]);
        let want = [
            "1",
            "t",
            "n",
            "2",
            "C SET",
            "1",
            "2",
            "T",
            r#"D [Some("org_b")]"#,
            "C SHOW",
            "Z I",
            // Committed with the implicit transaction at Sync.
            "T",
            r#"D [Some("org_b")]"#,
            "C SHOW",
            "Z I",
        ];
        check_rows("sw", &messages, &want).await;
    }

    #[tokio::test]
    async fn a_binding_in_a_failed_implicit_transaction_is_undone() {
        // The SET is executed, then a later statement of the same batch is refused: as
        // PostgreSQL rolls back a SET in a failed transaction, the binding does not stick.
        let long = format!("SELECT '{}'", "x".repeat(80));
        let mut messages = vec![
            parse("", "SET orgwall.org_id = 'org_b'"),
            bind("", ""),
            execute(""),
            parse("", &long),
            sync(),
        ];
        messages.extend(show(""));
        messages.push(sync());
        let want = [
            "1",
            "2",
            "C SET",
            "E 54000",
            "Z I",
            "1",
            "2",
            "T",
            r#"D [Some("")]"#,
            "C SHOW",
            "Z I",
        ];
        check_rows("sw", &messages, &want).await;
    }

    #[tokio::test]
    async fn the_console_is_refused_to_tenants_in_both_protocols() {
        for user in ["acme", "sw"] {
            for sql in ["SHOW CLIENTS", "RELOAD", "SHOW orgwall.balances_drift"] {
                check(user, &[query(sql)], &["E 42501", "Z I"]).await;
                let prepared = [
                    parse("", sql),
                    bind("", ""),
                    execute(""),
                    sync(),
                    query("SHOW orgwall_pool"),
                ];
                check(user, &prepared, &["E 42501", "Z I", "E 42501", "Z I"]).await;
            }
        }
    }

    #[tokio::test]
    async fn a_switcher_cannot_reuse_a_name_or_keep_a_closed_command() {
        // A second Parse under a command statement's name is 42P05, as in PostgreSQL.
        check(
            "sw",
            &[
                parse("b", "SET orgwall.org_id = 'org_b'"),
                parse("b", "SET orgwall.org_id = 'org_c'"),
                sync(),
            ],
            &["1", "E 42P05", "Z I"],
        )
        .await;
        // Once closed (or deallocated) the command is forgotten: its Bind passes on and
        // finds no such statement.
        let gone = &["1", "3", "E 26000", "Z I"];
        let closed = [
            parse("b", "SET orgwall.org_id = 'org_b'"),
            close_statement("b"),
            bind("", "b"),
            execute(""),
            sync(),
        ];
        check("sw", &closed, gone).await;
        let deallocated = [
            parse("b", "SET orgwall.org_id = 'org_b'"),
            sync(),
            query("DEALLOCATE b"),
            bind("", "b"),
            sync(),
        ];
        let want = &["1", "Z I", "C DEALLOCATE", "Z I", "E 26000", "Z I"];
        check("sw", &deallocated, want).await;
    }

    #[tokio::test]
    async fn statements_no_responder_claims_pass_on() {
        // They reach for the (unreachable) server, and fail as they do today.
        check("ops", &[query("SELECT 1")], &["E 08006", "Z I"]).await;
        let unnamed = [parse("", "SELECT 1"), bind("", ""), execute(""), sync()];
        check("ops", &unnamed, &["E 08006", "Z I"]).await;
        // A plain statement of the client's own, prepared without a server connection, is
        // deallocated here but its Bind is PostgreSQL's to answer.
        let named = [
            parse("s", "SELECT 1"),
            bind("", "s"),
            execute(""),
            sync(),
            query("DEALLOCATE s"),
            query("DEALLOCATE s"),
        ];
        let want = [
            "1",
            "E 08006",
            "Z I",
            "C DEALLOCATE",
            "Z I",
            "E 26000",
            "Z I",
        ];
        check("ops", &named, &want).await;
        // A tenant's statement is routed (the catalog is PostgreSQL's) before the balance
        // responder, absent here, is asked.
        check("acme", &[query("SELECT 1")], &["E 08006", "Z I"]).await;
    }
}
