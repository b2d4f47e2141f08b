//! Tenant tokens (`SET orgwall.tenant_token = '<JWT>'`, switcher logins): the signature is
//! checked with the configured key the token names (`kid`), or with every key of its algorithm
//! when it names none, then the claim rules: `exp` required and not past, `nbf` and `iat` not
//! in the future (each with `[jwt] leeway_secs`), a lifetime within `max_lifetime_secs`, `iss`
//! and `aud` when configured, and a non-empty `org_id`. Pure: the caller passes the clock.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::Value;

use crate::config::{JwtConfig, JwtKey};
use crate::errors::{code, UserFacing};

/// Why a token was refused (shown to the client, prefixed `tenant token rejected:`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token ({0})")]
    Malformed(String),
    #[error("algorithm {0} is not accepted (HS256, RS256)")]
    Algorithm(String),
    #[error("no {0} key is configured")]
    NoKey(&'static str),
    #[error("unknown key id (kid) \"{0}\"")]
    UnknownKid(String),
    #[error("key \"{kid}\" is not a {alg} key")]
    KidAlgorithm { kid: String, alg: &'static str },
    #[error("invalid signature")]
    Signature,
    #[error("malformed claims ({0})")]
    Claims(String),
    #[error("no exp claim (tokens must expire)")]
    NoExp,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("issued in the future (iat)")]
    IssuedInFuture,
    #[error("lifetime of {0}s exceeds the configured maximum of {1}s")]
    TooLong(i64, u64),
    #[error("issuer (iss) is not the configured one")]
    Issuer,
    #[error("audience (aud) does not include the configured one")]
    Audience,
    #[error("no org_id claim")]
    NoOrg,
}

impl UserFacing for TokenError {
    fn sqlstate(&self) -> &'static str {
        code::INSUFFICIENT_PRIVILEGE
    }
    fn client_message(&self) -> String {
        format!("tenant token rejected: {self}")
    }
}

/// A token that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub org: String,
    /// Unix time from which the binding it makes is no longer honoured (`exp` + leeway).
    pub expires: u64,
}

/// Verifies `token` at unix time `now`.
pub fn verify(token: &str, cfg: &JwtConfig, now: u64) -> Result<Verified, TokenError> {
    let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let alg = match header.alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        other => return Err(TokenError::Algorithm(format!("{other:?}"))),
    };
    let candidates: Vec<&JwtKey> = match &header.kid {
        Some(kid) => {
            let key = cfg
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| TokenError::UnknownKid(kid.clone()))?;
            if key.alg != header.alg {
                return Err(TokenError::KidAlgorithm {
                    kid: kid.clone(),
                    alg,
                });
            }
            vec![key]
        }
        // Unnamed keys come first in `keys`.
        None => cfg.keys.iter().filter(|k| k.alg == header.alg).collect(),
    };
    if candidates.is_empty() {
        return Err(TokenError::NoKey(alg));
    }
    // Signature only: the claims are checked below, against the caller's clock.
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut claims = None;
    for key in candidates {
        match decode::<Value>(token, &key.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
            Err(e) => return Err(TokenError::Malformed(e.to_string())),
        }
    }
    let claims = claims.ok_or(TokenError::Signature)?;
    check_claims(&claims, cfg, now)
}

/// The claim rules, on a token whose signature holds.
pub fn check_claims(claims: &Value, cfg: &JwtConfig, now: u64) -> Result<Verified, TokenError> {
    let claims = claims
        .as_object()
        .ok_or_else(|| TokenError::Claims("not a JSON object".into()))?;
    let date = |name: &str| -> Result<Option<i64>, TokenError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => numeric_date(v)
                .map(Some)
                .ok_or_else(|| TokenError::Claims(format!("{name} is not a number"))),
        }
    };
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let leeway = i64::try_from(cfg.leeway_secs).unwrap_or(i64::MAX);
    let exp = date("exp")?.ok_or(TokenError::NoExp)?;
    if now.saturating_sub(leeway) >= exp {
        return Err(TokenError::Expired);
    }
    if date("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    let iat = date("iat")?;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    let lifetime = exp.saturating_sub(iat.unwrap_or(now));
    if lifetime > i64::try_from(cfg.max_lifetime_secs).unwrap_or(i64::MAX) {
        return Err(TokenError::TooLong(lifetime, cfg.max_lifetime_secs));
    }
    if let Some(want) = &cfg.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
            return Err(TokenError::Issuer);
        }
    }
    if let Some(want) = &cfg.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(want.as_str())),
            _ => false,
        };
        if !ok {
            return Err(TokenError::Audience);
        }
    }
    let org = match claims.get("org_id") {
        Some(Value::String(o)) if !o.is_empty() => o.clone(),
        _ => return Err(TokenError::NoOrg),
    };
    Ok(Verified {
        org,
        expires: u64::try_from(exp.saturating_add(leeway)).unwrap_or(0),
    })
}

/// A JWT NumericDate: seconds since the epoch, possibly with a fraction (dropped).
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, DecodingKey, EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const N: i64 = NOW as i64;

    fn cfg() -> JwtConfig {
        JwtConfig {
            keys: vec![
                key(None, b"plain"),
                key(Some("k1"), b"one"),
                key(Some("k2"), b"two"),
            ],
            ..JwtConfig::default()
        }
    }

    fn key(kid: Option<&str>, secret: &[u8]) -> JwtKey {
        JwtKey {
            kid: kid.map(str::to_string),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        }
    }

    fn token(kid: Option<&str>, secret: &[u8], claims: Value) -> String {
        let header = Header {
            kid: kid.map(str::to_string),
            ..Header::default()
        };
        encode(&header, &claims, &EncodingKey::from_secret(secret)).expect("encode")
    }

    #[test]
    fn claim_rules() {
        let with_iss_aud = JwtConfig {
            issuer: Some("https://idp".into()),
            audience: Some("orgwall".into()),
            ..cfg()
        };
        let base = JwtConfig::default();
        let ok = |expires: i64| {
            Ok(Verified {
                org: "org_a".into(),
                expires: expires as u64,
            })
        };
        type Case = (&'static str, Value, Result<Verified, TokenError>);
        let cases: Vec<(&JwtConfig, Case)> = vec![
            (
                &base,
                (
                    "exp in an hour",
                    json!({"org_id": "org_a", "exp": N + 3600}),
                    ok(N + 3630),
                ),
            ),
            (
                &base,
                (
                    "fractional exp",
                    json!({"org_id": "org_a", "exp": (N + 60) as f64 + 0.5}),
                    ok(N + 90),
                ),
            ),
            (
                &base,
                ("no exp", json!({"org_id": "org_a"}), Err(TokenError::NoExp)),
            ),
            (
                &base,
                (
                    "null exp",
                    json!({"org_id": "org_a", "exp": null}),
                    Err(TokenError::NoExp),
                ),
            ),
            (
                &base,
                (
                    "string exp",
                    json!({"org_id": "org_a", "exp": "soon"}),
                    Err(TokenError::Claims("exp is not a number".into())),
                ),
            ),
            (
                &base,
                (
                    "expired an hour ago",
                    json!({"org_id": "org_a", "exp": N - 3600}),
                    Err(TokenError::Expired),
                ),
            ),
            (
                &base,
                (
                    "expired within the leeway",
                    json!({"org_id": "org_a", "exp": N - 10}),
                    ok(N + 20),
                ),
            ),
            (
                &base,
                (
                    "expired just past the leeway",
                    json!({"org_id": "org_a", "exp": N - 30}),
                    Err(TokenError::Expired),
                ),
            ),
            (
                &base,
                (
                    "nbf in the future",
                    json!({"org_id": "org_a", "exp": N + 600, "nbf": N + 300}),
                    Err(TokenError::NotYetValid),
                ),
            ),
            (
                &base,
                (
                    "nbf within the leeway",
                    json!({"org_id": "org_a", "exp": N + 600, "nbf": N + 30}),
                    ok(N + 630),
                ),
            ),
            (
                &base,
                (
                    "nbf past",
                    json!({"org_id": "org_a", "exp": N + 600, "nbf": N - 300}),
                    ok(N + 630),
                ),
            ),
            (
                &base,
                (
                    "iat in the future",
                    json!({"org_id": "org_a", "exp": N + 600, "iat": N + 300}),
                    Err(TokenError::IssuedInFuture),
                ),
            ),
            (
                &base,
                (
                    "lifetime from iat too long",
                    json!({"org_id": "org_a", "iat": N - 86_000, "exp": N + 1000}),
                    Err(TokenError::TooLong(87_000, 86_400)),
                ),
            ),
            (
                &base,
                (
                    "lifetime from iat at the limit",
                    json!({"org_id": "org_a", "iat": N - 86_000, "exp": N + 400}),
                    ok(N + 430),
                ),
            ),
            (
                &base,
                (
                    "no iat: lifetime from now too long",
                    json!({"org_id": "org_a", "exp": N + 86_401}),
                    Err(TokenError::TooLong(86_401, 86_400)),
                ),
            ),
            (
                &base,
                (
                    "ten-year token",
                    json!({"org_id": "org_a", "iat": N, "exp": N + 315_360_000}),
                    Err(TokenError::TooLong(315_360_000, 86_400)),
                ),
            ),
            (
                &base,
                ("no org_id", json!({"exp": N + 60}), Err(TokenError::NoOrg)),
            ),
            (
                &base,
                (
                    "empty org_id",
                    json!({"org_id": "", "exp": N + 60}),
                    Err(TokenError::NoOrg),
                ),
            ),
            (
                &base,
                (
                    "numeric org_id",
                    json!({"org_id": 7, "exp": N + 60}),
                    Err(TokenError::NoOrg),
                ),
            ),
            (
                &base,
                (
                    "iss/aud ignored when not configured",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "x", "aud": "y"}),
                    ok(N + 90),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "iss and aud match",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://idp", "aud": "orgwall"}),
                    ok(N + 90),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "aud array contains",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://idp", "aud": ["other", "orgwall"]}),
                    ok(N + 90),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "wrong iss",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://evil", "aud": "orgwall"}),
                    Err(TokenError::Issuer),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "no iss",
                    json!({"org_id": "org_a", "exp": N + 60, "aud": "orgwall"}),
                    Err(TokenError::Issuer),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "wrong aud",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://idp", "aud": "other"}),
                    Err(TokenError::Audience),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "aud array without it",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://idp", "aud": ["a", "b"]}),
                    Err(TokenError::Audience),
                ),
            ),
            (
                &with_iss_aud,
                (
                    "no aud",
                    json!({"org_id": "org_a", "exp": N + 60, "iss": "https://idp"}),
                    Err(TokenError::Audience),
                ),
            ),
            (
                &base,
                (
                    "not an object",
                    json!(["org_a"]),
                    Err(TokenError::Claims("not a JSON object".into())),
                ),
            ),
        ];
        for (cfg, (what, claims, want)) in cases {
            assert_eq!(check_claims(&claims, cfg, NOW), want, "{what}");
        }
    }

    #[test]
    fn keys_are_chosen_by_kid() {
        let cfg = cfg();
        let claims = || json!({"org_id": "org_b", "exp": N + 60});
        let cases: Vec<(&str, String, Result<&str, TokenError>)> = vec![
            (
                "no kid, unnamed key",
                token(None, b"plain", claims()),
                Ok("org_b"),
            ),
            (
                "no kid, a named key",
                token(None, b"two", claims()),
                Ok("org_b"),
            ),
            (
                "no kid, unknown secret",
                token(None, b"nope", claims()),
                Err(TokenError::Signature),
            ),
            (
                "kid k1, its key",
                token(Some("k1"), b"one", claims()),
                Ok("org_b"),
            ),
            (
                "kid k1, another configured key",
                token(Some("k1"), b"two", claims()),
                Err(TokenError::Signature),
            ),
            (
                "kid k1, the unnamed key",
                token(Some("k1"), b"plain", claims()),
                Err(TokenError::Signature),
            ),
            (
                "unknown kid",
                token(Some("k9"), b"one", claims()),
                Err(TokenError::UnknownKid("k9".into())),
            ),
            (
                "garbage",
                "not.a.jwt".into(),
                Err(TokenError::Malformed("".into())),
            ),
        ];
        for (what, token, want) in cases {
            let got = verify(&token, &cfg, NOW).map(|v| v.org);
            match (&got, want) {
                (Err(TokenError::Malformed(_)), Err(TokenError::Malformed(_))) => {}
                (got, want) => assert_eq!(*got, want.map(str::to_string), "{what}"),
            }
        }
        // A named RS256 key is not an HS256 key, whatever the token says.
        let rsa = JwtConfig {
            keys: vec![JwtKey {
                kid: Some("r".into()),
                alg: Algorithm::RS256,
                key: DecodingKey::from_rsa_components("AQAB", "AQAB").expect("components"),
            }],
            ..JwtConfig::default()
        };
        assert_eq!(
            verify(&token(Some("r"), b"AQAB", claims()), &rsa, NOW),
            Err(TokenError::KidAlgorithm {
                kid: "r".into(),
                alg: "HS256"
            })
        );
        assert_eq!(
            verify(&token(None, b"x", claims()), &rsa, NOW),
            Err(TokenError::NoKey("HS256"))
        );
        // Claims are checked after the signature.
        assert_eq!(
            verify(
                &token(Some("k2"), b"two", json!({"org_id": "o"})),
                &cfg,
                NOW
            ),
            Err(TokenError::NoExp)
        );
    }
}
