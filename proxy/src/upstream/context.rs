//! The tenant context a server connection carries (the second wall's setting,
//! `orgwall.tenant`) and the messages that set it. `boundary` signs and registers the tokens;
//! this is what a connection knows of them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

/// The statement that sets the context; `$1` is the token (text).
const SET_SQL: &str = "SELECT pg_catalog.set_config('orgwall.tenant', $1, false)";

/// Run with every context change: `currval` on a pooled server connection would otherwise show
/// the value the connection drew last, possibly for another tenant. After it, `currval` answers
/// only for a sequence this tenant drew from since its context was set (else PostgreSQL's
/// `55000`, "not yet defined in this session").
const DISCARD_SQL: &str = "DISCARD SEQUENCES";

/// Also run with every context change: temporary objects the previous tenant left on the
/// connection are dropped before another tenant's statement runs. Tenants cannot create them
/// through Orgwall, but the second wall assumes a statement Orgwall misread: a table or view in
/// `pg_temp` shadows every unqualified relation or type of the same name (`pg_type`, `text`)
/// for whoever runs on the connection next, and could catch what they write there.
const DISCARD_TEMP_SQL: &str = "DISCARD TEMP";

/// Run first when a connection just taken from the pool changes tenant (then followed by the
/// settings' replay, `RESET ALL` first): the previous tenant's server-side prepared statements
/// are dropped, so none of them — Orgwall's statements for another tenant, or one a misread
/// statement put in their place (a DO block can `PREPARE`) — ever runs with this tenant's
/// parameters, and `pg_prepared_statements` shows this tenant none of another's texts.
const DEALLOCATE_SQL: &str = "DEALLOCATE ALL";

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tenant context a server connection carries, as far as Orgwall knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Context {
    /// Never set, or possibly changed since (a rollback, `RESET ALL`, an error).
    #[default]
    Unknown,
    /// Set to the empty string: `orgwall.current_org()` is NULL, no tenant row is visible.
    Cleared,
    /// A token for `org`, valid until `expires` (Unix seconds).
    Org { org: Arc<str>, expires: u64 },
}

impl Context {
    /// The org it is for (`None`: cleared or unknown).
    pub fn org(&self) -> Option<&str> {
        match self {
            Context::Org { org, .. } => Some(org),
            _ => None,
        }
    }

    /// Whether this is what a session whose current org is `want` needs at time `now`.
    pub fn serves(&self, want: Option<&str>, now: u64) -> bool {
        match (self, want) {
            (Context::Cleared, None) => true,
            (Context::Org { org, expires }, Some(w)) => &**org == w && *expires > now + 60,
            _ => false,
        }
    }
}

/// A context to set and the token that sets it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub context: Context,
    pub token: Arc<str>,
}

/// The server-side name of the statement and portal that set the context. Named, so setting it
/// between a client's Parse and Bind of its unnamed statement (or Bind and Execute of its unnamed
/// portal) leaves those alone.
pub const SET_NAME: &str = "orgwall_tenant_context";

/// Appends the messages that set the context to `token` (a Bind parameter), after
/// `DEALLOCATE ALL` and the statements of `reset` when given (a settings' replay, `RESET ALL`
/// first; the caller forgets the connection's statements and settings), and returns the number
/// of CloseComplete messages PostgreSQL answers them with. Each statement is a run: Close of
/// [`SET_NAME`] (so it never exists already), Parse of `set_config('orgwall.tenant', $1, false)`
/// under that name, Bind to the portal of that name, Execute, Close of the portal; the same for
/// `DISCARD TEMP` and `DISCARD SEQUENCES`; and a Sync when `sync`. PostgreSQL answers
/// CloseComplete, ParseComplete, BindComplete, DataRow, CommandComplete, CloseComplete, then
/// twice CloseComplete, ParseComplete, BindComplete, CommandComplete, CloseComplete (and
/// ReadyForQuery). An error in any of them skips the rest up to the Sync (the client's, when
/// not `sync`), so no statement of the client's runs on a connection half reset.
pub fn put_set_context(
    out: &mut BytesMut,
    token: &str,
    sync: bool,
    reset: Option<&[String]>,
) -> u8 {
    let mut runs = 0u8;
    let mut run = |out: &mut BytesMut, sql: &str, param: Option<&str>| {
        put_named_run(out, sql, param);
        runs = runs.saturating_add(1);
    };
    if let Some(statements) = reset {
        run(out, DEALLOCATE_SQL, None);
        for s in statements {
            run(out, s, None);
        }
    }
    run(out, SET_SQL, Some(token));
    run(out, DISCARD_TEMP_SQL, None);
    run(out, DISCARD_SQL, None);
    if sync {
        put_msg(out, b'S', &|_| {});
    }
    // (A statement and a portal closed per run.)
    runs.saturating_mul(2)
}

/// Close of the statement [`SET_NAME`], Parse of `sql` under that name (one text parameter when
/// `param` is given), Bind to the portal of that name, Execute, Close of the portal.
fn put_named_run(out: &mut BytesMut, sql: &str, param: Option<&str>) {
    let name = |b: &mut BytesMut| {
        b.extend_from_slice(SET_NAME.as_bytes());
        b.put_u8(0);
    };
    put_msg(out, b'C', &|b| {
        b.put_u8(b'S');
        name(b);
    });
    put_msg(out, b'P', &|b| {
        name(b);
        b.extend_from_slice(sql.as_bytes());
        b.put_u8(0);
        match param {
            Some(_) => {
                b.put_i16(1);
                b.put_u32(25); // text
            }
            None => b.put_i16(0),
        }
    });
    put_msg(out, b'B', &|b| {
        name(b); // portal
        name(b); // statement
        b.put_i16(0); // parameter formats: all text
        match param {
            Some(v) => {
                b.put_i16(1);
                b.put_i32(v.len() as i32);
                b.extend_from_slice(v.as_bytes());
            }
            None => b.put_i16(0),
        }
        b.put_i16(0); // result formats: all text
    });
    put_msg(out, b'E', &|b| {
        name(b);
        b.put_i32(0);
    });
    put_msg(out, b'C', &|b| {
        b.put_u8(b'P');
        name(b);
    });
}

/// One frontend message: `tag`, length, and the body `body` writes.
fn put_msg(out: &mut BytesMut, tag: u8, body: &dyn Fn(&mut BytesMut)) {
    let mut b = BytesMut::new();
    body(&mut b);
    out.put_u8(tag);
    out.put_i32(b.len() as i32 + 4);
    out.extend_from_slice(&b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_context_messages_are_framed() {
        let mut out = BytesMut::new();
        put_set_context(&mut out, "tok", true, None);
        let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
        assert_eq!(tags, b"CPBECCPBECCPBECS");
        let replay = ["RESET ALL".to_string(), "SET a TO 'b'".to_string()];
        for (reset, runs) in [(None, 3), (Some(&replay[..]), 6)] {
            let mut out = BytesMut::new();
            let closes = put_set_context(&mut out, "", false, reset);
            let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
            assert_eq!(tags, b"CPBEC".repeat(runs));
            let counted = tags.iter().filter(|&&t| t == b'C').count();
            assert_eq!(counted, usize::from(closes));
        }
    }
}
