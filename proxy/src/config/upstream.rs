//! `[upstream]`: the PostgreSQL URL (with `sslmode`/`sslrootcert`) and pool settings.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) url: Option<String>,
    pool_size: Option<usize>,
    pool_mode: Option<PoolMode>,
    multiplex: Option<usize>,
    group_reads: Option<usize>,
    prepare_unnamed: Option<usize>,
    max_prepared_statements: Option<usize>,
    connect_timeout_secs: Option<u64>,
    checkout_timeout_secs: Option<u64>,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
    tenant_user: Option<String>,
    tenant_password: Option<String>,
}

/// TLS towards PostgreSQL, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// Where and how to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub pool_size: usize,
    pub pool_mode: PoolMode,
    /// Server connections (of `pool_size`) that carry several clients' implicit transactions
    /// at once, pipelined (`upstream::mux`); 0 = off.
    pub multiplex: usize,
    /// Read-only statements of at most this many clients run in one implicit transaction on a
    /// multiplexed connection (`upstream::mux::group`); 1 = each alone.
    pub group_reads: usize,
    /// A client's unnamed statement with parameters is prepared under its server name (as a
    /// named one is) while a server connection holds fewer than this many; 0 = off.
    pub prepare_unnamed: usize,
    /// The most statements Orgwall keeps prepared on one server connection: beyond it the least
    /// recently used is closed (on a multiplexed connection, the statement runs unnamed).
    pub max_prepared_statements: usize,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
    pub sslmode: SslMode,
    /// PEM CA bundle for `verify-full`.
    pub ssl_root_cert: Option<Vec<u8>>,
    /// The least-privilege login tenant and switcher traffic runs as (DESIGN.md §4a), on the
    /// same host and database (`[upstream] tenant_user`, default `orgwall_tenant`).
    pub tenant_user: String,
    pub tenant_password: Option<String>,
    /// Exclusive server connections one tenant org, and one tenant or switcher login, may hold
    /// at once (`[tenancy] max_server_connections_per_org` / `_per_user`; default half of
    /// `pool_size`, rounded up). Filled in by `Config::from_toml`.
    pub max_per_org: usize,
    pub max_per_user: usize,
    /// The largest message from PostgreSQL a session or multiplexed connection buffers (the
    /// top-level `max_message_bytes`). Filled in by `Config::from_toml`.
    pub max_message_bytes: usize,
}

impl UpstreamConfig {
    /// The same upstream, logged in as the tenant identity: tenant and switcher traffic.
    pub fn for_tenants(&self) -> UpstreamConfig {
        UpstreamConfig {
            user: self.tenant_user.clone(),
            password: self.tenant_password.clone(),
            ..self.clone()
        }
    }
}

pub(super) fn parse_upstream(
    url: &str,
    raw: &RawUpstream,
    base: &Path,
    tenant_password: Option<String>,
) -> Result<UpstreamConfig, ConfigError> {
    let bad = |why: String| ConfigError::Invalid {
        key: "upstream.url".into(),
        why,
    };
    let u = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
    if u.scheme() != "postgres" && u.scheme() != "postgresql" {
        return Err(bad(format!(
            "scheme must be postgres://, got `{}`",
            u.scheme()
        )));
    }
    // libpq's forms: `host` in the authority (percent-encoded for a socket directory) or
    // `?host=/socket/dir`; a host starting with `/` is a Unix-socket directory.
    let mut host = percent_decode(u.host_str().unwrap_or(""))
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let user = percent_decode(u.username());
    if user.is_empty() {
        return Err(bad("missing user name".into()));
    }
    let database = u.path().trim_start_matches('/');
    if database.is_empty() {
        return Err(bad("missing database name".into()));
    }
    let pool_size = raw.pool_size.unwrap_or(20);
    if pool_size == 0 {
        return Err(ConfigError::Invalid {
            key: "upstream.pool_size".into(),
            why: "must be at least 1".into(),
        });
    }
    let pool_mode = raw.pool_mode.unwrap_or(PoolMode::Transaction);
    let multiplex = raw.multiplex.unwrap_or(0);
    if multiplex > 0 && (multiplex >= pool_size || pool_mode != PoolMode::Transaction) {
        return Err(ConfigError::Invalid {
            key: "upstream.multiplex".into(),
            why: format!(
                "needs pool_mode = \"transaction\" and must be less than pool_size ({pool_size}), \
                 which also serves transactions and other statements"
            ),
        });
    }
    let group_reads = raw.group_reads.unwrap_or(4);
    if group_reads == 0 {
        return Err(ConfigError::Invalid {
            key: "upstream.group_reads".into(),
            why: "must be at least 1 (1 runs every statement in its own transaction)".into(),
        });
    }
    let max_prepared_statements = raw.max_prepared_statements.unwrap_or(200);
    if max_prepared_statements == 0 {
        return Err(ConfigError::Invalid {
            key: "upstream.max_prepared_statements".into(),
            why: "must be at least 1".into(),
        });
    }
    let mut sslmode = raw.sslmode.unwrap_or(SslMode::Disable);
    let mut rootcert = raw.sslrootcert.as_ref().map(|p| base.join(p));
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                sslmode = match v.as_ref() {
                    "disable" | "allow" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" | "verify-full" => SslMode::VerifyFull,
                    other => return Err(bad(format!("unknown sslmode `{other}`"))),
                }
            }
            "sslrootcert" => rootcert = Some(PathBuf::from(v.as_ref())),
            "host" => host = v.into_owned(),
            other => return Err(bad(format!("unsupported URL parameter `{other}`"))),
        }
    }
    if host.is_empty() {
        return Err(bad("missing host".into()));
    }
    let ssl_root_cert = match (&rootcert, sslmode) {
        (Some(p), _) => Some(read_file("upstream.sslrootcert", p)?),
        (None, SslMode::VerifyFull) => {
            return Err(ConfigError::Invalid {
                key: "upstream.sslrootcert".into(),
                why: "sslmode verify-full needs a CA certificate file".into(),
            })
        }
        (None, _) => None,
    };
    Ok(UpstreamConfig {
        sslmode,
        ssl_root_cert,
        host,
        port: u.port().unwrap_or(5432),
        user,
        password: u.password().map(percent_decode),
        database: percent_decode(database),
        pool_size,
        pool_mode,
        multiplex,
        group_reads,
        prepare_unnamed: raw.prepare_unnamed.unwrap_or(0),
        max_prepared_statements,
        connect_timeout: Duration::from_secs(raw.connect_timeout_secs.unwrap_or(5)),
        checkout_timeout: Duration::from_secs(raw.checkout_timeout_secs.unwrap_or(5)),
        tenant_user: match raw.tenant_user.as_deref() {
            None => "orgwall_tenant".into(),
            Some("") => {
                return Err(ConfigError::Invalid {
                    key: "upstream.tenant_user".into(),
                    why: "must not be empty".into(),
                })
            }
            Some(u) => u.into(),
        },
        tenant_password: tenant_password.or_else(|| raw.tenant_password.clone()),
        max_per_org: pool_size.div_ceil(2),
        max_per_user: pool_size.div_ceil(2),
        max_message_bytes: usize::MAX,
    })
}

/// Undoes a URL's `%XX` escapes (user, password, database, and a socket-directory host, which
/// the url crate leaves encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
