//! Which tenant a statement runs as: the login's org for `tenant` roles; for `switcher` roles the
//! org bound with `SET [LOCAL] orgwall.org_id = '…'` or `SET [LOCAL] orgwall.tenant_token = '<JWT>'`
//! (verified by `crate::jwt`). Orgwall answers these commands itself; PostgreSQL never sees them;
//! the session tracks the binding with its settings (`settings.rs`), so it follows PostgreSQL's
//! SET semantics (undone by ROLLBACK and ROLLBACK TO, SET LOCAL ending with the transaction).

use crate::config::{JwtConfig, Role};
use crate::errors::{code, UserFacing};
use crate::jwt::{self, TokenError};
use crate::sql;

/// Why an `orgwall.*` command or a binding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("SET orgwall.* must be sent as its own statement")]
    NotAlone,
    /// A form of `orgwall.*` command that is not supported (the message says which are).
    #[error("{0}")]
    Command(&'static str),
    #[error("only switcher logins may change the tenant (this login is bound to its own org)")]
    NotSwitcher,
    #[error("SET orgwall.org_id is disabled (jwt.require_token): bind the tenant with SET orgwall.tenant_token")]
    TokenRequired,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("empty tenant id")]
    EmptyOrg,
}

impl UserFacing for TenantError {
    fn sqlstate(&self) -> &'static str {
        match self {
            TenantError::NotAlone => code::FEATURE_NOT_SUPPORTED,
            TenantError::Token(t) => t.sqlstate(),
            _ => code::INSUFFICIENT_PRIVILEGE,
        }
    }
    fn client_message(&self) -> String {
        match self {
            TenantError::Token(t) => t.client_message(),
            _ => self.to_string(),
        }
    }
}

/// A command Orgwall answers itself: a `SET`/`RESET` of an `orgwall.*` setting, or a
/// `DEALLOCATE` of the client's own prepared statements (`commands.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgwallCommand {
    Bind {
        org: Source,
        local: bool,
    },
    Reset,
    /// `SHOW orgwall.org_id`: the tenant statements run as now (empty when none is bound).
    Show,
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` (`None`).
    Deallocate {
        name: Option<String>,
    },
    /// An admin console statement prepared in the extended protocol (`admin.rs`).
    Admin(super::admin::AdminCommand),
}

/// Where a bound tenant comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    OrgId(String),
    Token(String),
}

/// Recognises an `orgwall.*` command. `None`: not one. A string that mixes one with other
/// statements is refused, so a binding can never be half-applied.
pub fn parse_command(text: &str) -> Option<Result<OrgwallCommand, TenantError>> {
    if !text.to_ascii_lowercase().contains("orgwall.") {
        return None;
    }
    let stmts = sql::split_statements(text);
    let cmds: Vec<Option<Result<OrgwallCommand, TenantError>>> =
        stmts.iter().map(|s| parse_one(s)).collect();
    if !cmds.iter().any(Option::is_some) {
        return None;
    }
    if stmts.len() != 1 {
        return Some(Err(TenantError::NotAlone));
    }
    cmds.into_iter().next().flatten()
}

fn parse_one(stmt: &str) -> Option<Result<OrgwallCommand, TenantError>> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let (verb, rest) = lower.split_first()?;
    let (local, rest) = match rest.first().map(String::as_str) {
        Some("local") => (true, &rest[1..]),
        Some("session") => (false, &rest[1..]),
        _ => (false, rest),
    };
    let name = rest.first()?;
    let name = name.split(['=', ';']).next().unwrap_or_default();
    if !name.starts_with("orgwall.") {
        return None;
    }
    let bad = |why: &'static str| Some(Err(TenantError::Command(why)));
    match verb.as_str() {
        "reset" => Some(Ok(OrgwallCommand::Reset)),
        "show" if name == "orgwall.org_id" && rest.len() == 1 => Some(Ok(OrgwallCommand::Show)),
        "show" => bad("SHOW of orgwall.* is supported for orgwall.org_id only"),
        "set" => {
            let Some(value) = value_after_name(stmt, name) else {
                return bad("SET orgwall.* needs a quoted string value");
            };
            let org = match name {
                "orgwall.org_id" => Source::OrgId(value),
                "orgwall.tenant_token" => Source::Token(value),
                _ => return bad("unknown orgwall setting (orgwall.org_id, orgwall.tenant_token)"),
            };
            Some(Ok(OrgwallCommand::Bind { org, local }))
        }
        _ => bad("only SET, RESET and SHOW of orgwall.* settings are supported"),
    }
}

/// The single-quoted string after `name TO|=`, unescaped.
fn value_after_name(stmt: &str, name: &str) -> Option<String> {
    let lower = stmt.to_ascii_lowercase();
    let at = lower.find(name)? + name.len();
    let rest = stmt[at..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| {
            rest.get(..2)
                .filter(|t| t.eq_ignore_ascii_case("to"))
                .map(|_| &rest[2..])
        })?
        .trim();
    let inner = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

/// A tenant binding: the org, and for one made with a token, the unix time from which it is no
/// longer honoured (the token's `exp` plus `[jwt] leeway_secs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub org: String,
    pub expires: Option<u64>,
}

impl Binding {
    /// Whether the binding may still be used at unix time `now`.
    pub fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// Only switcher logins may change their tenant.
pub fn may_switch(role: Role) -> Result<(), TenantError> {
    match role {
        Role::Switcher => Ok(()),
        _ => Err(TenantError::NotSwitcher),
    }
}

/// Resolves a binding at unix time `now`, verifying tokens; only switcher logins may bind, and
/// with `[jwt] require_token` only with a token.
pub fn resolve(
    role: Role,
    source: &Source,
    jwt: &JwtConfig,
    now: u64,
) -> Result<Binding, TenantError> {
    may_switch(role)?;
    let binding = match source {
        Source::OrgId(_) if jwt.require_token => return Err(TenantError::TokenRequired),
        Source::OrgId(o) => Binding {
            org: o.clone(),
            expires: None,
        },
        Source::Token(t) => {
            let v = jwt::verify(t, jwt, now)?;
            Binding {
                org: v.org,
                expires: Some(v.expires),
            }
        }
    };
    if binding.org.is_empty() {
        return Err(TenantError::EmptyOrg);
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(org: &str, local: bool) -> Option<Result<OrgwallCommand, TenantError>> {
        Some(Ok(OrgwallCommand::Bind {
            org: Source::OrgId(org.into()),
            local,
        }))
    }

    #[test]
    fn orgwall_commands_are_recognised() {
        assert_eq!(
            parse_command("SET orgwall.org_id = 'org_a'"),
            bind("org_a", false)
        );
        assert_eq!(
            parse_command("set local orgwall.org_id to 'it''s'"),
            bind("it's", true)
        );
        assert_eq!(
            parse_command("SET SESSION orgwall.org_id='x';"),
            bind("x", false)
        );
        assert_eq!(
            parse_command("RESET orgwall.org_id"),
            Some(Ok(OrgwallCommand::Reset))
        );
        assert_eq!(parse_command("select 1"), None);
        assert_eq!(parse_command("select 'orgwall.org_id'"), None);
        assert!(matches!(
            parse_command("SET orgwall.org_id = org_a"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_command("SET orgwall.other = 'x'"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_command("SET orgwall.org_id = 'a'; select 1"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_command("SET orgwall.org_id = 'a' || 'b'"),
            Some(Err(_))
        ));
    }

    #[test]
    fn tokens_verify_with_the_configured_key_only() {
        use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
        let now = 1_800_000_000u64;
        let mut cfg = JwtConfig {
            keys: vec![crate::config::JwtKey {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(b"s3cret"),
            }],
            ..JwtConfig::default()
        };
        let claims = serde_json::json!({ "org_id": "org_b", "exp": now + 60 });
        let sign = |secret: &[u8]| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let (good, bad) = (sign(b"s3cret"), sign(b"other"));
        let token = |t: &String| Source::Token(t.clone());
        let code = |r: Result<Binding, TenantError>| r.unwrap_err().sqlstate();
        assert_eq!(
            resolve(Role::Switcher, &token(&good), &cfg, now).unwrap(),
            Binding {
                org: "org_b".into(),
                expires: Some(now + 60 + 30)
            }
        );
        assert_eq!(
            code(resolve(Role::Switcher, &token(&bad), &cfg, now)),
            "42501"
        );
        assert_eq!(
            code(resolve(Role::Tenant, &token(&good), &cfg, now)),
            "42501"
        );
        let org = Source::OrgId("o".into());
        assert_eq!(
            resolve(Role::Switcher, &org, &cfg, now).unwrap(),
            Binding {
                org: "o".into(),
                expires: None
            }
        );
        let empty = Source::OrgId(String::new());
        assert_eq!(code(resolve(Role::Switcher, &empty, &cfg, now)), "42501");
        cfg.require_token = true;
        let refused = resolve(Role::Switcher, &org, &cfg, now).unwrap_err();
        assert_eq!(refused.sqlstate(), "42501");
        assert!(
            refused.client_message().contains("require_token"),
            "{refused}"
        );
        assert!(resolve(Role::Switcher, &token(&good), &cfg, now).is_ok());
    }

    #[test]
    fn bindings_from_tokens_expire() {
        let b = Binding {
            org: "o".into(),
            expires: Some(100),
        };
        assert!(b.live(99));
        assert!(!b.live(100));
        let forever = Binding {
            org: "o".into(),
            expires: None,
        };
        assert!(forever.live(u64::MAX));
    }
}
