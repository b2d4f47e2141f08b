//! The second wall (DESIGN.md §4a): PostgreSQL's own row-level security over a signed tenant
//! context. This module owns the context's format and signing key, the messages that set it on
//! a server connection, what a server connection is known to carry, and the tripwire on
//! PostgreSQL's reports.
//!
//! Invariant: a tenant or switcher statement runs on a server connection logged in as the tenant
//! identity whose `orgwall.tenant` setting Orgwall set (as a Bind parameter, never in SQL text)
//! to a token for the session's current org, or to nothing; a token for one org cannot be
//! turned into one for another without the key, which only the owner login can read.

mod check;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, Mac};

pub use check::{establish, WallError};

use crate::upstream::{Pool, UpstreamError};

/// How long a token is valid (seconds).
pub const LIFETIME_SECS: u64 = 3600;
/// A connection whose token expires sooner than this gets a fresh one before the next statement.
pub const RENEW_SECS: u64 = 300;

/// The statement that sets the context; `$1` is the token (text).
const SET_SQL: &str = "SELECT pg_catalog.set_config('orgwall.tenant', $1, false)";

/// Run with every context change: `currval` on a pooled server connection would otherwise show
/// the value the connection drew last, possibly for another tenant. After it, `currval` answers
/// only for a sequence this tenant drew from since its context was set (else PostgreSQL's
/// `55000`, "not yet defined in this session").
const DISCARD_SQL: &str = "DISCARD SEQUENCES";

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

/// What the second wall needs at run time: the signing key, the tokens already registered
/// (per org), and the tenant identity's name (for the tripwire). Built by [`establish`] once the
/// start-up check has passed.
#[derive(Debug)]
pub struct Wall {
    key: Vec<u8>,
    tenant_user: String,
    /// The newest registered token of each org, with its expiry.
    tokens: Mutex<Issued>,
}

/// Registered tokens: org → (token, expiry).
type Issued = HashMap<Arc<str>, (Arc<str>, u64)>;

/// A context to set and the token that sets it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub context: Context,
    pub token: Arc<str>,
}

/// Registers a token (owner login): `$1` token, `$2` org, `$3` expiry; expired ones go.
const REGISTER_SQL: &str =
    "WITH gone AS (DELETE FROM orgwall.tenant_tokens WHERE expires < now()) \
     INSERT INTO orgwall.tenant_tokens (token, org, expires) \
     VALUES ($1, $2, pg_catalog.to_timestamp($3::bigint)) ON CONFLICT (token) DO NOTHING";

impl Wall {
    pub fn new(key: Vec<u8>, tenant_user: String) -> Wall {
        Wall {
            key,
            tenant_user,
            tokens: Mutex::default(),
        }
    }

    /// The token `orgwall.current_org()` accepts for `org` until `expires`:
    /// `<hex HMAC-SHA256(key, "<expires>.<org>")>.<expires>.<org>`.
    pub fn sign(&self, org: &str, expires: u64) -> String {
        sign(&self.key, org, expires)
    }

    /// The context for `want` (`None`: cleared) good from `now`, with a token for it that is
    /// signed and registered in `orgwall.tenant_tokens` (through `owner`, the first time an org
    /// needs one and again before it expires): `orgwall.current_org()`, which the policies
    /// call, accepts only registered tokens.
    pub async fn ticket(
        &self,
        want: Option<&str>,
        now: u64,
        owner: &Pool,
    ) -> Result<Ticket, UpstreamError> {
        let Some(org) = want else {
            return Ok(Ticket {
                context: Context::Cleared,
                token: Arc::from(""),
            });
        };
        let cached = self.lock().get(org).cloned();
        let (token, expires) = match cached {
            Some((token, expires)) if expires > now + RENEW_SECS => (token, expires),
            _ => {
                let expires = now + LIFETIME_SECS;
                let token: Arc<str> = Arc::from(self.sign(org, expires));
                let mut lease = owner.acquire().await?;
                let done = lease
                    .conn
                    .execute_params(REGISTER_SQL, &[&token, org, &expires.to_string()])
                    .await;
                owner.release(lease);
                done?;
                let mut tokens = self.lock();
                tokens.retain(|_, (_, e)| *e > now);
                tokens.insert(Arc::from(org), (token.clone(), expires));
                (token, expires)
            }
        };
        Ok(Ticket {
            context: Context::Org {
                org: Arc::from(org),
                expires,
            },
            token,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Issued> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a ParameterStatus report (`name`, `value`) on a tenant server connection is
    /// one Orgwall never asks for: a superuser session, another session user, or backslashes
    /// read differently in string literals. Such a connection is closed (the tripwire).
    pub fn trips(&self, name: &str, value: &str) -> bool {
        match name {
            "is_superuser" => value != "off",
            "session_authorization" => value != self.tenant_user,
            "standard_conforming_strings" => value != "on",
            _ => false,
        }
    }
}

/// See [`Wall::sign`].
pub fn sign(key: &[u8], org: &str, expires: u64) -> String {
    let rest = format!("{expires}.{org}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(rest.as_bytes());
    let mut out = String::with_capacity(65 + rest.len());
    for b in mac.finalize().into_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('.');
    out.push_str(&rest);
    out
}

/// The server-side name of the statement and portal that set the context. Named, so setting it
/// between a client's Parse and Bind of its unnamed statement (or Bind and Execute of its unnamed
/// portal) leaves those alone.
pub const SET_NAME: &str = "orgwall_tenant_context";

/// CloseComplete messages PostgreSQL sends for [`put_set_context`] (its statements, its portals).
pub const SET_CLOSES: u8 = 4;

/// Appends the messages that set the context to `token` (a Bind parameter): Close of
/// [`SET_NAME`] (so it never exists already), Parse of `set_config('orgwall.tenant', $1, false)`
/// under that name, Bind to the portal of that name, Execute, Close of the portal; the same for
/// `DISCARD SEQUENCES`; and a Sync when `sync`. PostgreSQL answers CloseComplete,
/// ParseComplete, BindComplete, DataRow, CommandComplete, CloseComplete, then CloseComplete,
/// ParseComplete, BindComplete, CommandComplete, CloseComplete (and ReadyForQuery).
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
    msg(b'C', &|b| {
        b.put_u8(b'S');
        name(b);
    });
    msg(b'P', &|b| {
        name(b);
        b.extend_from_slice(DISCARD_SQL.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
    });
    msg(b'B', &|b| {
        name(b); // portal
        name(b); // statement
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
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
    fn tokens_sign_expiry_and_org() {
        let key = b"k".repeat(32);
        let a = sign(&key, "org_a", 100);
        assert_eq!(a.len(), 64 + 1 + "100.org_a".len());
        assert!(a.ends_with(".100.org_a"));
        assert_ne!(sign(&key, "org_b", 100)[..64], a[..64]);
        assert_ne!(sign(&key, "org_a", 101)[..64], a[..64]);
        assert_ne!(sign(b"other", "org_a", 100)[..64], a[..64]);
    }

    #[test]
    fn a_context_serves_its_org_until_near_expiry() {
        let ctx = Context::Org {
            org: Arc::from("org_a"),
            expires: 1000 + LIFETIME_SECS,
        };
        assert!(ctx.serves(Some("org_a"), 1000));
        assert!(!ctx.serves(Some("org_b"), 1000));
        assert!(!ctx.serves(None, 1000));
        assert!(!ctx.serves(Some("org_a"), 1000 + LIFETIME_SECS - 30));
        assert!(Context::Cleared.serves(None, 5));
        assert!(!Context::Unknown.serves(None, 5));
        assert_eq!(ctx.org(), Some("org_a"));
    }

    #[test]
    fn tripwire_reports() {
        let wall = Wall::new(vec![], "orgwall_tenant".into());
        assert!(wall.trips("is_superuser", "on"));
        assert!(!wall.trips("is_superuser", "off"));
        assert!(wall.trips("session_authorization", "postgres"));
        assert!(!wall.trips("session_authorization", "orgwall_tenant"));
        assert!(wall.trips("standard_conforming_strings", "off"));
        assert!(!wall.trips("application_name", "x"));
    }

    #[test]
    fn set_context_messages_are_framed() {
        let mut out = BytesMut::new();
        put_set_context(&mut out, "tok", true);
        let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
        assert_eq!(tags, b"CPBECCPBECS");
        let mut out = BytesMut::new();
        put_set_context(&mut out, "", false);
        let tags: Vec<u8> = crate::wire::frames(&out).map(|(t, _)| t).collect();
        assert_eq!(tags, b"CPBECCPBEC");
        assert_eq!(
            tags.iter().filter(|&&t| t == b'C').count(),
            usize::from(SET_CLOSES)
        );
    }
}
