//! The second wall (DESIGN.md §4a): PostgreSQL's own row-level security over a signed tenant
//! context. This module owns the token's format and signing key, the registry of issued
//! tokens, the start-up check and the tripwire on PostgreSQL's reports. What a server
//! connection is known to carry and the messages that set it are `upstream::context` (below
//! this module, which uses the pools), re-exported here.
//!
//! Invariant: a tenant or switcher statement runs on a server connection logged in as the tenant
//! identity whose `orgwall.tenant` setting Orgwall set (as a Bind parameter, never in SQL text)
//! to a token for the session's current org, or to nothing; a token for one org cannot be
//! turned into one for another without the key, which only the owner login can read.

mod check;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};

pub use check::{establish, WallError};

pub use crate::upstream::context::{put_set_context, unix_now, Context, Ticket, SET_NAME};
use crate::upstream::{Pool, UpstreamError};

/// How long a token is valid (seconds).
pub const LIFETIME_SECS: u64 = 3600;
/// A connection whose token expires sooner than this gets a fresh one before the next statement.
pub const RENEW_SECS: u64 = 300;

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
}
