//! The tenant context a server connection carries (the second wall's setting,
//! `orgwall.tenant`) and the messages that set it. `boundary` signs and registers the tokens;
//! this is what a connection knows of them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

/// The statement that sets the context; `$1` is the token (text).
const SET_SQL: &str = "SELECT pg_catalog.set_config('orgwall.tenant', $1, false)";

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

/// CloseComplete messages PostgreSQL sends for [`put_set_context`] (its statement, its portal).
pub const SET_CLOSES: u8 = 2;

/// Appends the messages that set the context to `token` (a Bind parameter): Close of
/// [`SET_NAME`] (so it never exists already), Parse of `set_config('orgwall.tenant', $1, false)`
/// under that name, Bind to the portal of that name, Execute, Close of the portal, and a Sync
/// when `sync`. PostgreSQL answers CloseComplete, ParseComplete, BindComplete, DataRow,
/// CommandComplete, CloseComplete (and ReadyForQuery).
pub fn put_set_context(out: &mut BytesMut, token: &str, sync: bool) {
    let mut msg = |tag: u8, body: &dyn Fn(&mut BytesMut)| {
        let mut b = BytesMut::new();
        body(&mut b);
        out.put_u8(tag);
        out.put_i32(b.len() as i32 + 4);
        out.extend_from_slice(&b);
    };
    let name = |b: &mut BytesMut| {
        b.extend_from_slice(SET_NAME.as_bytes());
        b.put_u8(0);
    };
    msg(b'C', &|b| {
        b.put_u8(b'S');
        name(b);
    });
    msg(b'P', &|b| {
        name(b);
        b.extend_from_slice(SET_SQL.as_bytes());
        b.put_u8(0);
        b.put_i16(1);
        b.put_u32(25); // text
    });
    msg(b'B', &|b| {
        name(b); // portal
        name(b); // statement
        b.put_i16(0); // parameter formats: all text
        b.put_i16(1);
        b.put_i32(token.len() as i32);
        b.extend_from_slice(token.as_bytes());
        b.put_i16(0); // result formats: all text
    });
    msg(b'E', &|b| {
        name(b);
        b.put_i32(0);
    });
    msg(b'C', &|b| {
        b.put_u8(b'P');
        name(b);
    });
    if sync {
        msg(b'S', &|_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_context_messages_are_framed() {
        let mut out = BytesMut::new();
        put_set_context(&mut out, "tok", true);
        let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
        assert_eq!(tags, b"CPBECS");
        let mut out = BytesMut::new();
        put_set_context(&mut out, "", false);
        let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
        assert_eq!(tags, b"CPBEC");
        assert_eq!(
            tags.iter().filter(|&&t| t == b'C').count(),
            usize::from(SET_CLOSES)
        );
    }
}
