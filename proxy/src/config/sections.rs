//! Optional sections: `[tenancy]`, `[jwt]` and `[balances]`.

use jsonwebtoken::{Algorithm, DecodingKey};

use super::*;

/// Which tables are tenant data and how they are recognised (`[tenancy]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Tenancy {
    /// The tenant column (`org_id`).
    pub column: String,
    /// Schemas whose tables are protected; unqualified names resolve in this order.
    pub schemas: Vec<String>,
    /// Tables without the tenant column that every tenant may read.
    pub global_tables: Vec<String>,
    /// Functions tenants may call beyond the built-in list.
    pub allowed_functions: Vec<String>,
    /// Statements whose rewrite is cached.
    pub rewrite_cache_size: usize,
    /// The second wall (DESIGN.md §4a): tenant traffic runs as `[upstream] tenant_user` under
    /// PostgreSQL's row-level security with a signed tenant context, checked at start. `false`
    /// runs it as the owner login, confined by Orgwall's rewrite alone (a warning at start).
    pub enforce_in_postgres: bool,
    /// Tenants may run plain `EXPLAIN` (its estimates count every tenant's rows). `EXPLAIN
    /// ANALYZE` is refused regardless: its row counts reveal other tenants' rows.
    pub allow_explain: bool,
    /// Longest SQL text (bytes) a tenant or switcher may send in one Query or Parse; longer is
    /// refused (54000) before it is parsed.
    pub max_statement_bytes: usize,
    /// Exclusive server connections (of a pool) that one tenant org may hold at once; its next
    /// checkout waits (up to `checkout_timeout_secs`) and then fails. `None`: half of
    /// `[upstream] pool_size`, rounded up. Admin logins are not capped.
    pub max_server_connections_per_org: Option<usize>,
    /// The same for one tenant or switcher login.
    pub max_server_connections_per_user: Option<usize>,
    /// Orgwall's rewrite (the first wall). Not a config key: only tests turn it off, to show
    /// that the second wall holds alone.
    #[serde(skip)]
    pub rewrite: bool,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            column: "org_id".into(),
            schemas: vec!["public".into()],
            global_tables: Vec::new(),
            allowed_functions: Vec::new(),
            rewrite_cache_size: 10_000,
            enforce_in_postgres: true,
            allow_explain: false,
            max_statement_bytes: 4 << 20,
            max_server_connections_per_org: None,
            max_server_connections_per_user: None,
            rewrite: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    hs256_secret: Option<String>,
    rs256_public_key: Option<PathBuf>,
    #[serde(default)]
    keys: Vec<RawJwtKey>,
    max_lifetime_secs: Option<u64>,
    leeway_secs: Option<u64>,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    require_token: bool,
}

/// One `[[jwt.keys]]` entry: a key tokens name by their `kid` header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtKey {
    kid: String,
    hs256_secret: Option<String>,
    rs256_public_key: Option<PathBuf>,
}

/// A key that verifies tenant tokens.
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// `None`: the section's own `hs256_secret` / `rs256_public_key`, for tokens without `kid`.
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// How `SET orgwall.tenant_token` JWTs are verified (`[jwt]`; rules in `crate::jwt`).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub keys: Vec<JwtKey>,
    /// Longest accepted lifetime: `exp - iat`, or `exp - now` without `iat`.
    pub max_lifetime_secs: u64,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` (a string or an array) must contain it.
    pub audience: Option<String>,
    /// Switchers may bind a tenant only with a token (`SET orgwall.org_id` is refused).
    pub require_token: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            keys: Vec::new(),
            max_lifetime_secs: 86_400,
            leeway_secs: 30,
            issuer: None,
            audience: None,
            require_token: false,
        }
    }
}

impl RawJwt {
    /// Reads the key files (relative to `base`) and validates the section.
    pub(super) fn load(self, base: &Path) -> Result<JwtConfig, ConfigError> {
        let invalid = |key: &str, why: String| ConfigError::Invalid {
            key: key.into(),
            why,
        };
        let mut keys = key_pair(None, self.hs256_secret, self.rs256_public_key, "jwt.", base)?;
        let mut kids = HashSet::new();
        for k in self.keys {
            if k.kid.is_empty() || !kids.insert(k.kid.clone()) {
                return Err(invalid(
                    "jwt.keys.kid",
                    format!("`{}` is empty or listed twice", k.kid),
                ));
            }
            let found = key_pair(
                Some(k.kid.clone()),
                k.hs256_secret,
                k.rs256_public_key,
                "jwt.keys.",
                base,
            )?;
            if found.len() != 1 {
                return Err(invalid(
                    "jwt.keys",
                    format!(
                        "key `{}` needs exactly one of hs256_secret and rs256_public_key",
                        k.kid
                    ),
                ));
            }
            keys.extend(found);
        }
        let defaults = JwtConfig::default();
        let max_lifetime_secs = self.max_lifetime_secs.unwrap_or(defaults.max_lifetime_secs);
        if max_lifetime_secs == 0 {
            return Err(invalid("jwt.max_lifetime_secs", "must be positive".into()));
        }
        for (key, v) in [
            ("jwt.issuer", &self.issuer),
            ("jwt.audience", &self.audience),
        ] {
            if v.as_deref() == Some("") {
                return Err(invalid(
                    key,
                    "must not be empty (leave it out instead)".into(),
                ));
            }
        }
        if self.require_token && keys.is_empty() {
            return Err(invalid(
                "jwt.require_token",
                "no key is configured, so no token could ever bind a tenant".into(),
            ));
        }
        Ok(JwtConfig {
            keys,
            max_lifetime_secs,
            leeway_secs: self.leeway_secs.unwrap_or(defaults.leeway_secs),
            issuer: self.issuer,
            audience: self.audience,
            require_token: self.require_token,
        })
    }
}

/// The keys one table (`[jwt]` or a `[[jwt.keys]]` entry, `prefix` naming it) configures.
fn key_pair(
    kid: Option<String>,
    hs256_secret: Option<String>,
    rs256_public_key: Option<PathBuf>,
    prefix: &str,
    base: &Path,
) -> Result<Vec<JwtKey>, ConfigError> {
    let mut keys = Vec::new();
    if let Some(secret) = hs256_secret {
        if secret.is_empty() {
            return Err(ConfigError::Invalid {
                key: format!("{prefix}hs256_secret"),
                why: "must not be empty".into(),
            });
        }
        keys.push(JwtKey {
            kid: kid.clone(),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.as_bytes()),
        });
    }
    if let Some(path) = rs256_public_key {
        let name = format!("{prefix}rs256_public_key");
        let pem = read_file(&name, &base.join(path))?;
        let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| ConfigError::Invalid {
            key: name,
            why: format!("not an RSA public key in PEM form ({e})"),
        })?;
        keys.push(JwtKey {
            kid,
            alg: Algorithm::RS256,
            key,
        });
    }
    Ok(keys)
}

/// The balance cache (`[balances]`, DESIGN.md §5). Off unless `enabled = true`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BalancesConfig {
    pub enabled: bool,
    /// Publication on the ledger (created if absent).
    pub publication: String,
    /// Schema of `inventory_ledger` and `inventory_balances`.
    pub schema: String,
    /// How long a read waits for the cache to pass the fence (a ledger write through this
    /// proxy that ended before the read, or the staleness bound) before it goes to PostgreSQL.
    pub read_your_writes_timeout_ms: u64,
    /// Writes that bypass this proxy are seen by cached reads within this many milliseconds:
    /// a read is answered from memory only when the cache has applied everything the server
    /// had flushed at most this long ago.
    pub max_staleness_ms: u64,
    /// Upper bound of the reconnect backoff.
    pub max_backoff_ms: u64,
}

impl Default for BalancesConfig {
    fn default() -> Self {
        BalancesConfig {
            enabled: false,
            publication: "orgwall_ledger".into(),
            schema: "public".into(),
            read_your_writes_timeout_ms: 50,
            max_staleness_ms: 50,
            max_backoff_ms: 5000,
        }
    }
}

impl BalancesConfig {
    pub(super) fn validated(self) -> Result<Self, ConfigError> {
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() < 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        for (key, value) in [
            ("balances.publication", &self.publication),
            ("balances.schema", &self.schema),
        ] {
            if !ident(value) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    why: format!("`{value}` must be a lower-case identifier (a-z, 0-9, _)"),
                });
            }
        }
        if self.max_staleness_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "balances.max_staleness_ms".into(),
                why: "must be at least 1".into(),
            });
        }
        Ok(self)
    }
}

/// The operations endpoint (`[admin]`): `/metrics` and `/healthz` over HTTP. Off unless
/// `listen` is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the HTTP endpoint; `None`: no endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// Tenant orgs that get their own series in the per-tenant metrics (the first ones seen);
    /// the rest are counted under `org_id="other"`. 0: no per-tenant series.
    pub tenant_metrics: usize,
}
