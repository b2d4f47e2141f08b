//! Which tenant a statement runs as: the login's org for `tenant` roles; for `switcher` roles the
//! org bound with `SET [LOCAL] orgwall.org_id = '…'` or `SET [LOCAL] orgwall.tenant_token = '<JWT>'`
//! (HS256/RS256, claim `org_id`). Orgwall answers these commands itself; PostgreSQL never sees them.

use crate::config::{JwtKeys, Role};
use crate::errors::{code, ClientError};
use crate::sql;

/// A command Orgwall answers itself: a `SET`/`RESET` of an `orgwall.*` setting, or a
/// `DEALLOCATE` of the client's own prepared statements (`commands.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgwallCommand {
    Bind {
        org: Source,
        local: bool,
    },
    Reset,
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` (`None`).
    Deallocate {
        name: Option<String>,
    },
}

/// Where a bound tenant comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    OrgId(String),
    Token(String),
}

/// Recognises an `orgwall.*` command. `None`: not one. A string that mixes one with other
/// statements is refused, so a binding can never be half-applied.
pub fn parse_command(text: &str) -> Option<Result<OrgwallCommand, ClientError>> {
    if !text.to_ascii_lowercase().contains("orgwall.") {
        return None;
    }
    let stmts = sql::split_statements(text);
    let cmds: Vec<Option<Result<OrgwallCommand, ClientError>>> =
        stmts.iter().map(|s| parse_one(s)).collect();
    if !cmds.iter().any(Option::is_some) {
        return None;
    }
    if stmts.len() != 1 {
        return Some(Err(ClientError::error(
            code::FEATURE_NOT_SUPPORTED,
            "SET orgwall.* must be sent as its own statement",
        )));
    }
    cmds.into_iter().next().flatten()
}

fn parse_one(stmt: &str) -> Option<Result<OrgwallCommand, ClientError>> {
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
    let bad = |why: &str| {
        Some(Err(ClientError::error(
            code::INSUFFICIENT_PRIVILEGE,
            why.to_string(),
        )))
    };
    match verb.as_str() {
        "reset" => Some(Ok(OrgwallCommand::Reset)),
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
        _ => bad("only SET and RESET of orgwall.* settings are supported"),
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

/// Resolves a binding to an org id, verifying tokens; only switcher logins may bind.
pub fn resolve(role: Role, source: &Source, keys: &JwtKeys) -> Result<String, ClientError> {
    if role != Role::Switcher {
        return Err(ClientError::error(
            code::INSUFFICIENT_PRIVILEGE,
            "only switcher logins may change the tenant (this login is bound to its own org)",
        ));
    }
    let org = match source {
        Source::OrgId(o) => o.clone(),
        Source::Token(t) => verify_token(t, keys)?,
    };
    if org.is_empty() {
        return Err(ClientError::error(
            code::INSUFFICIENT_PRIVILEGE,
            "empty tenant id",
        ));
    }
    Ok(org)
}

#[derive(serde::Deserialize)]
struct Claims {
    org_id: String,
}

fn verify_token(token: &str, keys: &JwtKeys) -> Result<String, ClientError> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let refuse = |why: String| {
        ClientError::error(
            code::INSUFFICIENT_PRIVILEGE,
            format!("tenant token rejected: {why}"),
        )
    };
    let header = decode_header(token).map_err(|e| refuse(e.to_string()))?;
    let key = match header.alg {
        Algorithm::HS256 => keys
            .hs256_secret
            .as_deref()
            .map(DecodingKey::from_secret)
            .ok_or_else(|| refuse("no HS256 key configured".into()))?,
        Algorithm::RS256 => keys
            .rs256_public_pem
            .as_deref()
            .ok_or_else(|| refuse("no RS256 key configured".into()))
            .and_then(|pem| DecodingKey::from_rsa_pem(pem).map_err(|e| refuse(e.to_string())))?,
        other => return Err(refuse(format!("algorithm {other:?} is not accepted"))),
    };
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    let data = decode::<Claims>(token, &key, &validation).map_err(|e| refuse(e.to_string()))?;
    Ok(data.claims.org_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(org: &str, local: bool) -> Option<Result<OrgwallCommand, ClientError>> {
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
        use jsonwebtoken::{encode, EncodingKey, Header};
        let keys = JwtKeys {
            hs256_secret: Some(b"s3cret".to_vec()),
            rs256_public_pem: None,
        };
        let claims = serde_json::json!({ "org_id": "org_b" });
        let good = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let bad = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        assert_eq!(
            resolve(Role::Switcher, &Source::Token(good.clone()), &keys).unwrap(),
            "org_b"
        );
        assert_eq!(
            resolve(Role::Switcher, &Source::Token(bad), &keys)
                .unwrap_err()
                .code,
            "42501"
        );
        assert_eq!(
            resolve(Role::Tenant, &Source::Token(good), &keys)
                .unwrap_err()
                .code,
            "42501"
        );
        assert_eq!(
            resolve(Role::Switcher, &Source::OrgId("o".into()), &keys).unwrap(),
            "o"
        );
    }
}
