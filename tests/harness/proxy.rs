//! An in-process Orgwall in front of one test database: config written as TOML, loaded through
//! `Config::from_toml`, served by `orgwall::server::run` on an ephemeral port, shut down on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg::TestDb;
use crate::tls::TestCert;

/// The password of `orgwall_tenant` in every test cluster (the role is cluster-wide; the
/// harness's migrations set it).
pub const TENANT_ROLE_PASSWORD: &str = "orgwall-tenant-e2e";

/// A configured login: name, password, org and role as written in `[[users]]`.
#[derive(Debug, Clone, Copy)]
pub struct Login {
    pub name: &'static str,
    pub password: &'static str,
    pub org_id: &'static str,
    pub role: &'static str,
}

/// The operator login every test proxy has: statements pass through unrewritten.
pub const ADMIN: Login = Login {
    name: "ops_admin",
    password: "admin-pw",
    org_id: "org_ops",
    role: "admin",
};

/// A tenant login every test proxy has (org `org_a`).
pub const TENANT: Login = Login {
    name: "acme",
    password: "acme-pw",
    org_id: "org_a",
    role: "tenant",
};

/// What varies between test proxies; `Default` is transaction pooling with 4 connections.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub pool_size: usize,
    /// `"transaction"` or `"session"`.
    pub pool_mode: &'static str,
    /// Serve TLS with this certificate; `require` refuses plaintext clients.
    pub tls: Option<(TestCert, bool)>,
    pub max_message_bytes: Option<usize>,
    pub max_client_connections: Option<usize>,
    pub max_startup_connections: Option<usize>,
    pub reserved_admin_connections: Option<usize>,
    pub startup_timeout_secs: Option<u64>,
    pub idle_client_timeout_secs: Option<u64>,
    pub idle_in_transaction_timeout_secs: Option<u64>,
    pub checkout_timeout_secs: u64,
    /// Reach PostgreSQL over its Unix socket instead of TCP.
    pub unix_upstream: bool,
    /// `[upstream] multiplex` (0 = off).
    pub multiplex: usize,
    /// Also listen on a Unix-domain socket in the proxy's folder (`unix_socket_dir`).
    pub unix_listener: bool,
    /// `[upstream] prepare_unnamed` (0 = off); `None`: off unless `ORGWALL_E2E_PREPARE_UNNAMED`.
    pub prepare_unnamed: Option<usize>,
    /// `[upstream] max_prepared_statements`; `None`: the default (200) unless
    /// `ORGWALL_E2E_MAX_PREPARED`.
    pub max_prepared_statements: Option<usize>,
    /// Orgwall's rewrite of tenant SQL (the first wall); off only to show the second holds.
    pub first_wall: bool,
    /// `[tenancy] enforce_in_postgres` (the second wall): tenant traffic as `orgwall_tenant`
    /// under row-level security. Needs migration 0004 (the tenant databases have it).
    pub second_wall: bool,
    /// `[upstream] tenant_user` and `tenant_password` instead of `orgwall_tenant`.
    pub tenant_login: Option<(&'static str, &'static str)>,
    /// Load the config from a file (`TestProxy::config_path`), so `RELOAD` can read it again.
    pub config_file: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            pool_size: 4,
            pool_mode: "transaction",
            tls: None,
            max_message_bytes: None,
            max_client_connections: None,
            max_startup_connections: None,
            reserved_admin_connections: None,
            startup_timeout_secs: None,
            idle_client_timeout_secs: None,
            idle_in_transaction_timeout_secs: None,
            checkout_timeout_secs: 20,
            unix_upstream: false,
            multiplex: 0,
            unix_listener: false,
            prepare_unnamed: None,
            max_prepared_statements: None,
            first_wall: true,
            second_wall: true,
            tenant_login: None,
            config_file: false,
        }
    }
}

impl ProxyOptions {
    pub fn pool(pool_size: usize, pool_mode: &'static str) -> Self {
        ProxyOptions {
            pool_size,
            pool_mode,
            ..Default::default()
        }
    }
}

/// A running proxy; dropping it triggers shutdown and removes its config folder.
pub struct TestProxy {
    pub port: u16,
    /// The database clients ask for (the same one the proxy's upstream URL names).
    pub dbname: String,
    dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

const CONFIG_FILE: &str = "orgwall.toml";

static PROXY_SEQ: AtomicUsize = AtomicUsize::new(0);

impl TestProxy {
    /// Writes a config for `db`, loads it with the proxy's own loader and starts serving.
    pub async fn start(db: &TestDb, opts: ProxyOptions) -> TestProxy {
        Self::start_with_extra(db, opts, "").await
    }

    /// Like [`start`](Self::start), with `extra_toml` appended to the generated config (more
    /// `[[users]]`, `[tenancy]`, `[jwt]` …); it must not repeat a table the config already has.
    pub async fn start_with_extra(db: &TestDb, opts: ProxyOptions, extra_toml: &str) -> TestProxy {
        let dir = std::env::temp_dir().join(format!(
            "orgwall-e2e-{}-proxy{}",
            std::process::id(),
            PROXY_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create proxy temp dir");
        let url = if opts.unix_upstream {
            db.upstream_socket_url()
        } else {
            db.upstream_url()
        };
        let toml = config_toml(&url, &opts, &dir) + extra_toml;
        let mut cfg = orgwall::config::Config::from_toml(
            &toml,
            &dir,
            &orgwall::config::EnvOverrides::default(),
        )
        .unwrap_or_else(|e| panic!("proxy config rejected: {e}\n---\n{toml}"));
        cfg.tenancy.rewrite = opts.first_wall;
        cfg.tenancy.enforce_in_postgres = opts.second_wall;
        if opts.config_file {
            let path = dir.join(CONFIG_FILE);
            std::fs::write(&path, &toml).expect("write the proxy's config file");
            cfg.source = Some(path);
        }
        if let Some((user, password)) = opts.tenant_login {
            cfg.upstream.tenant_user = user.into();
            cfg.upstream.tenant_password = Some(password.into());
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener");
        let port = listener.local_addr().expect("listener address").port();
        let listener = orgwall::listen::Listeners::bind(listener, cfg.unix_socket_dir.as_deref())
            .expect("bind the proxy's Unix socket");
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(orgwall::server::run(listener, Arc::new(cfg), shutdown));
        TestProxy {
            port,
            dbname: db.name.clone(),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A libpq/tokio-postgres key=value connection string for `login` (plaintext).
    pub fn conn_str(&self, login: Login) -> String {
        self.conn_str_with(login.name, login.password, "disable")
    }

    /// A `postgresql://` URL for `login` (plaintext), for drivers that take only URLs.
    pub fn url(&self, login: Login) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
            login.name, login.password, self.port, self.dbname
        )
    }

    /// A connection string with an explicit user, password and `sslmode`.
    pub fn conn_str_with(&self, user: &str, password: &str, sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={} \
             sslmode={sslmode} connect_timeout=10 application_name=orgwall-e2e",
            self.port, self.dbname
        )
    }

    /// Resolves the shutdown future passed to `server::run` (as SIGTERM would in `main`).
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `server::run` has returned.
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits up to `secs` for `server::run` to return and yields its result.
    pub async fn wait_stopped(&mut self, secs: u64) -> std::io::Result<()> {
        let task = self.task.take().expect("proxy task not yet awaited");
        match tokio::time::timeout(std::time::Duration::from_secs(secs), task).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => panic!("proxy task panicked: {join}"),
            Err(_) => panic!("proxy did not finish shutting down within {secs}s"),
        }
    }

    /// Triggers shutdown and waits (bounded) for `server::run` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.trigger_shutdown();
        self.wait_stopped(60).await
    }

    /// The config file of a proxy started with `config_file` (edit it, then `RELOAD`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// With `unix_listener`: the folder of the proxy's socket (libpq's `host`) and the socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// A connection string for `login` over the proxy's Unix-domain socket.
    pub fn unix_conn_str(&self, login: Login) -> String {
        format!(
            "host={} port={} user={} password={} dbname={} connect_timeout=10",
            self.dir.display(),
            self.port,
            login.name,
            login.password,
            self.dbname
        )
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_toml(upstream_url: &str, opts: &ProxyOptions, dir: &Path) -> String {
    // `listen` is required by the format but unused: the test binds the listener itself.
    let mut t = String::from("listen = \"127.0.0.1:0\"\nshutdown_timeout_secs = 5\n");
    if opts.unix_listener {
        t += &format!("unix_socket_dir = \"{}\"\n", dir.display());
    }
    if let Some(max) = opts.max_message_bytes {
        t += &format!("max_message_bytes = {max}\n");
    }
    let top_level = [
        ("max_client_connections", opts.max_client_connections),
        ("max_startup_connections", opts.max_startup_connections),
        (
            "reserved_admin_connections",
            opts.reserved_admin_connections,
        ),
        (
            "startup_timeout_secs",
            opts.startup_timeout_secs.map(|s| s as usize),
        ),
        (
            "idle_client_timeout_secs",
            opts.idle_client_timeout_secs.map(|s| s as usize),
        ),
        (
            "idle_in_transaction_timeout_secs",
            opts.idle_in_transaction_timeout_secs.map(|s| s as usize),
        ),
    ];
    for (key, value) in top_level {
        if let Some(v) = value {
            t += &format!("{key} = {v}\n");
        }
    }
    t += &format!(
        "[upstream]\n\
         url = \"{upstream_url}\"\n\
         pool_size = {}\n\
         pool_mode = \"{}\"\n\
         connect_timeout_secs = 10\n\
         checkout_timeout_secs = {}\n\
         multiplex = {}\n\
         prepare_unnamed = {}\n\
         max_prepared_statements = {}\n\
         tenant_password = \"{TENANT_ROLE_PASSWORD}\"\n",
        opts.pool_size,
        opts.pool_mode,
        opts.checkout_timeout_secs,
        multiplex(opts),
        opts.prepare_unnamed
            .unwrap_or_else(|| env_usize("ORGWALL_E2E_PREPARE_UNNAMED", 0)),
        opts.max_prepared_statements
            .unwrap_or_else(|| env_usize("ORGWALL_E2E_MAX_PREPARED", 200)),
    );
    if let Some((cert, require)) = &opts.tls {
        cert.write_to(dir);
        t += &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire = {require}\n",
            TestCert::CERT_FILE,
            TestCert::KEY_FILE
        );
    }
    for u in [ADMIN, TENANT] {
        t += &format!(
            "[[users]]\nname = \"{}\"\npassword = \"{}\"\norg_id = \"{}\"\nrole = \"{}\"\n",
            u.name, u.password, u.org_id, u.role
        );
    }
    t
}

/// The number in environment variable `var`, else `default`: `ORGWALL_E2E_PREPARE_UNNAMED=N`
/// and `ORGWALL_E2E_MAX_PREPARED=N` run the whole suite with those settings where a test does
/// not set them itself.
fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `opts.multiplex`, or 1 under `ORGWALL_E2E_MULTIPLEX=1` wherever the pool allows it (to run
/// the whole suite with multiplexing on).
fn multiplex(opts: &ProxyOptions) -> usize {
    let forced = std::env::var("ORGWALL_E2E_MULTIPLEX").is_ok_and(|v| v == "1");
    if opts.multiplex == 0 && forced && opts.pool_mode == "transaction" && opts.pool_size >= 2 {
        1
    } else {
        opts.multiplex
    }
}
