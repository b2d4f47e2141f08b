//! Configuration: the TOML file plus environment overrides, validated once at load.
//!
//! Invariant: a `Config` that exists is usable — every file it names was readable, the upstream
//! URL parsed, every user has an org and a SCRAM verifier. Nothing here reads the environment
//! itself: callers pass `EnvOverrides`, so tests and reloads never depend on process globals.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::scram::{self, Verifier};

mod limits;
mod plugins;
mod reference;
mod reload;
pub use reference::settings;
pub use reload::{changeable, merge_reloadable};
mod sections;
mod upstream;

use limits::ClientLimits;
pub use plugins::{load_plugin_specs, PluginSpec};
use plugins::{plugin_specs, RawPlugin};
use sections::RawJwt;
pub use sections::{AdminConfig, BalancesConfig, JwtConfig, JwtKey, Tenancy};
use upstream::{parse_upstream, RawUpstream};
pub use upstream::{SslMode, UpstreamConfig};

/// Errors that stop Orgwall from starting; each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config key `{key}`: {why}")]
    Invalid { key: String, why: String },
    #[error("cannot read file {path} (from `{key}`): {source}")]
    File {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Values the process environment may supply (`DATABASE_URL`, `DEFAULT_ORG_ID`).
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub database_url: Option<String>,
    pub default_org_id: Option<String>,
    /// `ORGWALL_TENANT_PASSWORD`: the tenant identity's password (over `[upstream]`'s).
    pub tenant_password: Option<String>,
}

impl EnvOverrides {
    /// Reads the overrides from the process environment (call once, in `main`).
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        EnvOverrides {
            database_url: get("DATABASE_URL"),
            default_org_id: get("DEFAULT_ORG_ID"),
            tenant_password: get("ORGWALL_TENANT_PASSWORD"),
        }
    }
}

/// How long a server connection stays with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Transaction,
    Session,
}

/// What a principal may do (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Tenant,
    Switcher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::Switcher => "switcher",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    unix_socket_dir: Option<PathBuf>,
    workers: Option<usize>,
    max_client_connections: Option<usize>,
    max_startup_connections: Option<usize>,
    reserved_admin_connections: Option<usize>,
    startup_timeout_secs: Option<u64>,
    idle_client_timeout_secs: Option<u64>,
    idle_in_transaction_timeout_secs: Option<u64>,
    shutdown_timeout_secs: Option<u64>,
    max_message_bytes: Option<usize>,
    log_format: Option<crate::logging::LogFormat>,
    audit_admin_statements: Option<bool>,
    upstream: RawUpstream,
    tls: Option<RawTls>,
    #[serde(default)]
    tenancy: Tenancy,
    jwt: Option<RawJwt>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    balances: BalancesConfig,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    #[serde(default)]
    admin: AdminConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    require: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: String,
    org_id: Option<String>,
    role: Option<Role>,
    max_client_connections: Option<usize>,
    max_server_connections: Option<usize>,
}

/// The TLS certificate chain and key, already read from disk.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub require: bool,
}

/// One login Orgwall accepts.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub verifier: Verifier,
    /// Empty for an admin configured without one (admins are never confined).
    pub org_id: String,
    pub role: Role,
    /// This login's sessions at once (`None`: only `max_client_connections` applies).
    pub max_client_connections: Option<usize>,
    /// Server connections this login's sessions hold at once (tenants and switchers; `None`:
    /// `[tenancy] max_server_connections_per_user`).
    pub max_server_connections: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Also listen on `<dir>/.s.PGSQL.<port>` (`unix_socket_dir`), as PostgreSQL does.
    pub unix_socket_dir: Option<PathBuf>,
    /// Threads of the async runtime (`workers`; see [`default_workers`]).
    pub workers: usize,
    /// Logged-in clients at once (`max_client_connections`).
    pub max_client_connections: usize,
    /// Connections still logging in at once (`max_startup_connections`); beyond it the one
    /// that has been logging in longest is closed.
    pub max_startup_connections: usize,
    /// Of `max_client_connections`, slots only admin logins may take.
    pub reserved_admin_connections: usize,
    /// A client must finish TLS, startup and authentication within this time.
    pub startup_timeout: Duration,
    /// `None` disables the idle-client timeout.
    pub idle_client_timeout: Option<Duration>,
    /// A client idle inside a transaction longer than this is disconnected (`25P03`) and its
    /// server connection closed; `None` disables it.
    pub idle_in_transaction_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    /// The largest protocol message Orgwall buffers, from a client or from PostgreSQL.
    pub max_message_bytes: usize,
    /// How log lines are written (`log_format`).
    pub log_format: crate::logging::LogFormat,
    /// Admin statements logged at INFO (by fingerprint) instead of DEBUG.
    pub audit_admin_statements: bool,
    pub upstream: UpstreamConfig,
    pub tls: Option<TlsConfig>,
    pub tenancy: Tenancy,
    pub jwt: JwtConfig,
    pub users: Vec<User>,
    /// The balance cache (`[balances]`).
    pub balances: BalancesConfig,
    /// Policy plugins (`[[plugins]]`), in the order they run.
    pub plugins: Vec<PluginSpec>,
    /// `/metrics` and `/healthz` (`[admin]`).
    pub admin: AdminConfig,
    /// The file this config was loaded from (watched for plugin hot reload; read again on
    /// reload).
    pub source: Option<PathBuf>,
    /// The environment overrides it was loaded with (a reload applies the same ones).
    pub env: EnvOverrides,
}

/// Runtime threads when `workers` is not set: one per CPU. (One thread on the 2-core benchmark
/// machine used no less CPU per statement and forwarded about 5% fewer statements per second
/// than two, measured on a quiet machine: the default stays one per CPU.)
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Loads and validates a config file; relative TLS paths resolve against its folder.
    pub fn load(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::from_toml(&text, base, env)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates TOML text; `base` is the folder relative paths start from.
    pub fn from_toml(text: &str, base: &Path, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
        let limits = ClientLimits::from_raw(&raw)?;
        let invalid = |key: &str, why: String| ConfigError::Invalid {
            key: key.into(),
            why,
        };
        let listen_s = raw.listen.as_deref().unwrap_or("127.0.0.1:6432");
        let listen = listen_s
            .parse()
            .map_err(|e| invalid("listen", format!("`{listen_s}` is not host:port ({e})")))?;
        let unix_socket_dir = raw.unix_socket_dir.map(|d| base.join(d));
        if let Some(d) = &unix_socket_dir {
            // sockaddr_un holds 107 bytes of path; the longest name is `.s.PGSQL.65535`.
            let longest = socket_file(d, u16::MAX);
            if longest.as_os_str().len() > 107 {
                return Err(invalid(
                    "unix_socket_dir",
                    format!("`{}` is too long for a socket path", d.display()),
                ));
            }
        }
        let workers = match raw.workers {
            None => default_workers(),
            Some(n @ 1..=256) => n,
            Some(n) => return Err(invalid("workers", format!("{n} is not between 1 and 256"))),
        };
        let url = env
            .database_url
            .clone()
            .or(raw.upstream.url.clone())
            .ok_or_else(|| invalid("upstream.url", "missing (and DATABASE_URL unset)".into()))?;
        let mut upstream = parse_upstream(&url, &raw.upstream, base, env.tenant_password.clone())?;
        let max_message_bytes = raw.max_message_bytes.unwrap_or(64 << 20);
        if max_message_bytes < 1024 {
            return Err(invalid(
                "max_message_bytes",
                format!("{max_message_bytes} is below 1024"),
            ));
        }
        upstream.max_message_bytes = max_message_bytes;
        for (key, value, field) in [
            (
                "tenancy.max_server_connections_per_org",
                raw.tenancy.max_server_connections_per_org,
                &mut upstream.max_per_org,
            ),
            (
                "tenancy.max_server_connections_per_user",
                raw.tenancy.max_server_connections_per_user,
                &mut upstream.max_per_user,
            ),
        ] {
            match value {
                Some(0) => return Err(invalid(key, "must be at least 1".into())),
                Some(n) => *field = n,
                None => {}
            }
        }
        let tls = match raw.tls {
            None => None,
            Some(t) => Some(TlsConfig {
                cert_pem: read_file("tls.cert", &base.join(&t.cert))?,
                key_pem: read_file("tls.key", &base.join(&t.key))?,
                require: t.require,
            }),
        };
        let mut seen = HashSet::new();
        let mut users = Vec::with_capacity(raw.users.len());
        for u in raw.users {
            if !seen.insert(u.name.clone()) {
                return Err(invalid(
                    "users.name",
                    format!("user `{}` listed twice", u.name),
                ));
            }
            let role = u.role.unwrap_or(Role::Tenant);
            // Admin statements are never confined: an admin needs no org.
            let org_id = u
                .org_id
                .or_else(|| env.default_org_id.clone())
                .or_else(|| (role == Role::Admin).then(String::new))
                .ok_or_else(|| {
                    invalid(
                        "users.org_id",
                        format!(
                            "user `{}` has no org_id and DEFAULT_ORG_ID is unset",
                            u.name
                        ),
                    )
                })?;
            let verifier = if u.password.starts_with("SCRAM-SHA-256$") {
                Verifier::parse(&u.password)
                    .map_err(|why| invalid("users.password", format!("user `{}`: {why}", u.name)))?
            } else {
                scram::Verifier::from_password(&u.password)
            };
            for (key, v) in [
                ("users.max_client_connections", u.max_client_connections),
                ("users.max_server_connections", u.max_server_connections),
            ] {
                if v == Some(0) {
                    return Err(invalid(
                        key,
                        format!("user `{}`: must be at least 1", u.name),
                    ));
                }
            }
            users.push(User {
                name: u.name,
                verifier,
                org_id,
                role,
                max_client_connections: u.max_client_connections,
                max_server_connections: u.max_server_connections,
            });
        }
        let jwt = match raw.jwt {
            None => JwtConfig::default(),
            Some(j) => j.load(base)?,
        };
        if raw.tenancy.column.is_empty() || raw.tenancy.schemas.is_empty() {
            return Err(invalid(
                "tenancy",
                "column and schemas must not be empty".into(),
            ));
        }
        let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
        let optional_secs = |v: Option<u64>, d: u64| match v.unwrap_or(d) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        Ok(Config {
            listen,
            unix_socket_dir,
            workers,
            max_client_connections: limits.max_clients,
            max_startup_connections: limits.max_startup,
            reserved_admin_connections: limits.reserved_admin,
            startup_timeout: limits.startup_timeout,
            idle_client_timeout: optional_secs(raw.idle_client_timeout_secs, 0),
            idle_in_transaction_timeout: optional_secs(raw.idle_in_transaction_timeout_secs, 60),
            shutdown_timeout: secs(raw.shutdown_timeout_secs, 30),
            max_message_bytes,
            log_format: raw.log_format.unwrap_or_default(),
            audit_admin_statements: raw.audit_admin_statements.unwrap_or(false),
            upstream,
            tls,
            tenancy: raw.tenancy,
            jwt,
            users,
            balances: raw.balances.validated()?,
            plugins: plugin_specs(raw.plugins, base)?,
            admin: raw.admin,
            source: None,
            env: env.clone(),
        })
    }

    /// Finds a configured user by login name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::File {
        key: key.into(),
        path: path.to_path_buf(),
        source,
    })
}

/// The file name PostgreSQL and libpq use for a server socket on `port` (in
/// `unix_socket_dir`).
pub fn socket_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
listen = "127.0.0.1:6432"
[upstream]
url = "postgres://app_proxy:s%40cret@127.0.0.1:5433/app"
[[users]]
name = "acme"
password = "acme-pw"
org_id = "org_a"
"#;

    fn load(text: &str, env: &EnvOverrides) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("."), env)
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = load(MIN, &EnvOverrides::default()).unwrap();
        assert_eq!(c.upstream.port, 5433);
        assert_eq!(c.upstream.password.as_deref(), Some("s@cret"));
        assert_eq!(c.upstream.database, "app");
        assert_eq!(c.upstream.pool_mode, PoolMode::Transaction);
        assert_eq!(c.upstream.max_prepared_statements, 200);
        assert_eq!(c.users[0].role, Role::Tenant);
        assert!(c.users[0].verifier.check_password("acme-pw"));
        assert_eq!(c.workers, default_workers());
        assert!(c.workers >= 1);
        assert_eq!(c.max_client_connections, 1000);
        assert_eq!(c.max_startup_connections, 100);
        assert_eq!(c.reserved_admin_connections, 3);
        assert_eq!(c.startup_timeout, Duration::from_secs(5));
        assert_eq!(c.idle_client_timeout, None);
        assert_eq!(c.idle_in_transaction_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.upstream.pool_size, 20);
        assert_eq!((c.upstream.max_per_org, c.upstream.max_per_user), (10, 10));
        assert_eq!(c.max_message_bytes, 64 << 20);
        assert_eq!(c.upstream.max_message_bytes, c.max_message_bytes);
        let c = load(
            &format!("{MIN}\n[tenancy]\nmax_server_connections_per_user = 3"),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!((c.upstream.max_per_org, c.upstream.max_per_user), (10, 3));
        assert_eq!(c.upstream.for_tenants().max_per_user, 3);
        let c = load(
            &MIN.replace(
                "listen =",
                "max_client_connections = 2\nidle_in_transaction_timeout_secs = 0\nlisten =",
            ),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.reserved_admin_connections, 1, "never the whole limit");
        assert_eq!(c.idle_in_transaction_timeout, None, "0 disables it");
        let c = load(
            &MIN.replace("listen =", "workers = 3\nlisten ="),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.unix_socket_dir, None);
        let c = Config::from_toml(
            &MIN.replace("listen =", "unix_socket_dir = \"run\"\nlisten ="),
            Path::new("/etc/orgwall"),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.unix_socket_dir.as_deref(),
            Some(Path::new("/etc/orgwall/run"))
        );
    }

    #[test]
    fn unix_socket_directories_in_both_libpq_forms() {
        for url in [
            "postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/app",
            "postgres://u@localhost:5433/app?host=/var/run/postgresql",
            "postgres://u@db:5433/app?host=%2Fvar%2Frun%2Fpostgresql",
        ] {
            let env = EnvOverrides {
                database_url: Some(url.into()),
                default_org_id: None,
                ..Default::default()
            };
            let c = load(MIN, &env).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(c.upstream.host, "/var/run/postgresql", "{url}");
            assert_eq!(c.upstream.port, 5433, "{url}");
            assert_eq!(c.upstream.database, "app", "{url}");
        }
        let env = EnvOverrides {
            database_url: Some("postgres://u@/app".into()),
            default_org_id: None,
            ..Default::default()
        };
        let err = load(MIN, &env).unwrap_err().to_string();
        assert!(
            err.contains("upstream.url") && err.contains("host"),
            "{err}"
        );
    }

    #[test]
    fn database_url_overrides_and_default_org_fills() {
        let env = EnvOverrides {
            database_url: Some("postgres://u@db.internal/other".into()),
            default_org_id: Some("org_default".into()),
            ..Default::default()
        };
        let text = MIN.replace("org_id = \"org_a\"", "");
        let c = load(&text, &env).unwrap();
        assert_eq!(c.upstream.host, "db.internal");
        assert_eq!(c.upstream.database, "other");
        assert_eq!(c.users[0].org_id, "org_default");
    }

    #[test]
    fn admins_need_no_org() {
        let text = MIN.replace("org_id = \"org_a\"", "role = \"admin\"");
        let c = load(&text, &EnvOverrides::default()).unwrap();
        assert_eq!(
            (c.users[0].role, c.users[0].org_id.as_str()),
            (Role::Admin, "")
        );
        let tenant = MIN.replace("org_id = \"org_a\"", "role = \"tenant\"");
        let err = load(&tenant, &EnvOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("users.org_id"), "{err}");
    }

    #[test]
    fn refusals_name_the_key_or_file() {
        let env = EnvOverrides::default();
        let cases = [
            (format!("{MIN}\nbogus = 1"), "bogus"),
            (MIN.replace("url = ", "urll = "), "urll"),
            (MIN.replace("postgres://", "mysql://"), "upstream.url"),
            (MIN.replace("/app\"", "\""), "upstream.url"),
            (MIN.replace("org_id = \"org_a\"", ""), "users.org_id"),
            (
                format!("{MIN}\n[tls]\ncert = \"/nonexistent.crt\"\nkey = \"k\""),
                "tls.cert",
            ),
            (MIN.replace("127.0.0.1:6432", "nowhere"), "listen"),
            (MIN.replace("listen =", "workers = 0\nlisten ="), "workers"),
            (
                MIN.replace(
                    "listen =",
                    "max_client_connections = 5\nreserved_admin_connections = 5\nlisten =",
                ),
                "reserved_admin_connections",
            ),
            (
                MIN.replace("listen =", "max_startup_connections = 0\nlisten ="),
                "max_startup_connections",
            ),
            (
                MIN.replace("listen =", "max_message_bytes = 10\nlisten ="),
                "max_message_bytes",
            ),
            (
                MIN.replace("listen =", "startup_timeout_secs = 0\nlisten ="),
                "startup_timeout_secs",
            ),
            (
                MIN.replace("/app\"", "/app\"\nmax_prepared_statements = 0"),
                "upstream.max_prepared_statements",
            ),
            (
                MIN.replace(
                    "listen =",
                    &format!("unix_socket_dir = \"/{}\"\nlisten =", "d".repeat(100)),
                ),
                "unix_socket_dir",
            ),
            (format!("{MIN}\n[tenancy]\ncolumns = \"x\""), "columns"),
            (
                format!("{MIN}\n[tenancy]\nmax_server_connections_per_org = 0"),
                "tenancy.max_server_connections_per_org",
            ),
            (
                format!("{MIN}\n[jwt]\nrs256_public_key = \"/nonexistent.pem\""),
                "jwt.rs256_public_key",
            ),
            (
                MIN.replace("org_id = \"org_a\"", "org_id = \"a\"\nrole = \"root\""),
                "root",
            ),
            (format!("{MIN}\n[jwt]\nrequire_token = true"), "jwt.require_token"),
            (format!("{MIN}\n[jwt]\nhs256_secret = \"\""), "jwt.hs256_secret"),
            (
                format!("{MIN}\n[jwt]\nhs256_secret = \"s\"\nmax_lifetime_secs = 0"),
                "jwt.max_lifetime_secs",
            ),
            (
                format!("{MIN}\n[jwt]\nhs256_secret = \"s\"\nissuer = \"\""),
                "jwt.issuer",
            ),
            (
                format!("{MIN}\n[jwt]\n[[jwt.keys]]\nkid = \"a\"\nhs256_secret = \"s\"\n[[jwt.keys]]\nkid = \"a\"\nhs256_secret = \"t\""),
                "jwt.keys.kid",
            ),
            (
                format!("{MIN}\n[jwt]\n[[jwt.keys]]\nkid = \"a\""),
                "jwt.keys",
            ),
            (
                format!("{MIN}\n[jwt]\n[[jwt.keys]]\nkid = \"a\"\nrs256_public_key = \"/nonexistent.pem\""),
                "jwt.keys.rs256_public_key",
            ),
            (
                format!("{MIN}\n[jwt]\n[[jwt.keys]]\nkid = \"a\"\nsecret = \"s\""),
                "secret",
            ),
        ];
        for (text, needle) in cases {
            let err = load(&text, &env).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn jwt_section_defaults_and_keys() {
        let env = EnvOverrides::default();
        let c = load(MIN, &env).unwrap();
        assert!(c.jwt.keys.is_empty());
        assert_eq!(
            (
                c.jwt.max_lifetime_secs,
                c.jwt.leeway_secs,
                c.jwt.require_token
            ),
            (86_400, 30, false)
        );
        let text = format!(
            "{MIN}\n[jwt]\nhs256_secret = \"s\"\nmax_lifetime_secs = 600\nleeway_secs = 5\n\
             issuer = \"https://idp\"\naudience = \"orgwall\"\nrequire_token = true\n\
             [[jwt.keys]]\nkid = \"2026-01\"\nhs256_secret = \"t\"\n"
        );
        let c = load(&text, &env).unwrap();
        let kids: Vec<_> = c.jwt.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [None, Some("2026-01")]);
        assert_eq!((c.jwt.max_lifetime_secs, c.jwt.leeway_secs), (600, 5));
        assert_eq!(c.jwt.issuer.as_deref(), Some("https://idp"));
        assert_eq!(c.jwt.audience.as_deref(), Some("orgwall"));
        assert!(c.jwt.require_token);
        // A file that is not an RSA public key is refused at load, naming the key.
        let bad = std::env::temp_dir().join(format!("orgwall-bad-{}.pem", std::process::id()));
        std::fs::write(&bad, "not a key").unwrap();
        let text = format!("{MIN}\n[jwt]\nrs256_public_key = \"{}\"", bad.display());
        let err = load(&text, &env).unwrap_err().to_string();
        let _ = std::fs::remove_file(&bad);
        assert!(err.contains("jwt.rs256_public_key"), "{err}");
    }
}
