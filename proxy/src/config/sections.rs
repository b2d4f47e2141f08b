//! Optional sections: `[tenancy]`, `[jwt]` and `[balances]`.

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
    pub(super) hs256_secret: Option<String>,
    pub(super) rs256_public_key: Option<PathBuf>,
}

/// Keys that verify `SET orgwall.tenant_token` JWTs (claim `org_id`).
#[derive(Debug, Clone, Default)]
pub struct JwtKeys {
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM-encoded RSA public key.
    pub rs256_public_pem: Option<Vec<u8>>,
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
    /// How long a session that wrote the ledger waits for the cache to catch up before its
    /// read goes to PostgreSQL instead.
    pub read_your_writes_timeout_ms: u64,
    /// Upper bound of the reconnect backoff.
    pub max_backoff_ms: u64,
}

impl Default for BalancesConfig {
    fn default() -> Self {
        BalancesConfig {
            enabled: false,
            publication: "orgwall_ledger".into(),
            schema: "public".into(),
            read_your_writes_timeout_ms: 1000,
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
        Ok(self)
    }
}
