//! `orgwall demo`: a private PostgreSQL, the seed schema, two demo tenants, the proxy.
//!
//! Everything lives in `<work_dir>/.orgwall/`: the cluster (`pgdata/`, kept between runs so data
//! written through the proxy survives), its log, and `demo.state` (port and superuser password).
//! The migrations are applied by `orgwall migrate`'s runner (compiled in, recorded in
//! `orgwall.schema_migrations`); the demo rows are inserted idempotently.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, EnvOverrides};
use crate::localpg::{self, LocalPgError, LocalPgOptions, LocalPostgres};

/// The port the demo's PostgreSQL uses when it is free.
pub const DEFAULT_PG_PORT: u16 = 54329;
/// The database the demo app (and the proxy's upstream) uses.
pub const DEMO_DB: &str = "app";
/// The demo logins: (user, password, org_id, role).
pub const DEMO_USERS: &[(&str, &str, &str, &str)] = &[
    ("acme", "acme-pw", "org_acme", "tenant"),
    ("globex", "globex-pw", "org_globex", "tenant"),
    ("admin", "admin-pw", "org_default", "admin"),
];

/// Runs the demo until Ctrl-C or SIGTERM, then stops the proxy and PostgreSQL.
pub async fn run(work_dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    run_until(work_dir, listen, shutdown_signal()).await
}

/// [`run`] with an explicit shutdown trigger.
pub async fn run_until(
    work_dir: &Path,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let work_dir = std::path::absolute(work_dir).context("bad work dir")?;
    let wd = work_dir.clone();
    let demo = tokio::task::spawn_blocking(move || prepare(&wd, None))
        .await
        .context("demo setup panicked")??;
    let served = serve(&work_dir, listen, &demo, shutdown).await;
    tokio::task::spawn_blocking(move || drop(demo)).await.ok();
    tracing::info!("demo stopped");
    served
}

async fn serve(
    work_dir: &Path,
    listen: SocketAddr,
    demo: &Demo,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pg = &demo.pg;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another orgwall running?)"))?;
    let addr = listener.local_addr()?;
    let config = demo_config(&pg.url(DEMO_DB), &demo.tenant_password, addr, work_dir)?;
    println!("{}", banner(addr, pg));
    let listener = crate::listen::Listeners::bind(listener, None)?;
    crate::server::run(listener, Arc::new(config), shutdown)
        .await
        .context("proxy failed")
}

/// The proxy configuration for the demo users, with `upstream_url` as the upstream (the owner
/// login) and `orgwall_tenant` with `tenant_password` as the tenant identity.
pub fn demo_config(
    upstream_url: &str,
    tenant_password: &str,
    listen: SocketAddr,
    base: &Path,
) -> anyhow::Result<Config> {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut toml = format!(
        "listen = {}\n\n[upstream]\nurl = {}\ntenant_password = {}\npool_size = 10\npool_mode = \"transaction\"\n",
        q(&listen.to_string()),
        q(upstream_url),
        q(tenant_password)
    );
    for (name, password, org, role) in DEMO_USERS {
        toml += &format!(
            "\n[[users]]\nname = {}\npassword = {}\norg_id = {}\nrole = {}\n",
            q(name),
            q(password),
            q(org),
            q(role)
        );
    }
    // The balance cache on: the demo's PostgreSQL runs with wal_level = logical.
    toml += "\n[balances]\nenabled = true\n";
    Config::from_toml(&toml, base, &EnvOverrides::default()).context("demo config")
}

fn banner(addr: SocketAddr, pg: &LocalPostgres) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let proxy = SocketAddr::new(host, addr.port());
    let mut b = format!("\nOrgwall demo is listening on {addr}. Connect through the proxy:\n\n");
    for (name, password, org, role) in DEMO_USERS {
        let url = format!("postgres://{name}:{password}@{proxy}/{DEMO_DB}");
        b += &format!("  psql {:<52} # {role}, {org}\n", format!("\"{url}\""));
    }
    b += &format!(
        "\nAcme and Globex both have items W-100 and W-200, location Main/A-01 and count CNT-0001:\n\
         compare `SELECT item_number, description FROM items;` as each. PostgreSQL itself\n\
         (superuser, not through Orgwall):\n\
         \n  psql \"{}\"\n\nData and logs: {}. Press Ctrl-C to stop.\n",
        pg.url(DEMO_DB),
        pg.data_dir.parent().unwrap_or(&pg.data_dir).display()
    );
    b
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(t) => drop(t.recv().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}

/// What a re-run needs to find and log in to the cluster it created before.
struct DemoState {
    port: u16,
    password: String,
    /// The password of `orgwall_tenant`, the login tenant traffic runs as (the second wall).
    tenant_password: String,
}

impl DemoState {
    fn load(path: &Path) -> Option<DemoState> {
        let text = std::fs::read_to_string(path).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        Some(DemoState {
            port: get("port")?.parse().ok()?,
            password: get("password").filter(|p| !p.is_empty())?.to_string(),
            // (A state file from before the second wall has none: a new one is set.)
            tenant_password: get("tenant_password")
                .filter(|p| !p.is_empty())
                .map_or_else(random_password, str::to_string),
        })
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(
            f,
            "port={}\npassword={}\ntenant_password={}",
            self.port, self.password, self.tenant_password
        )?;
        Ok(())
    }
}

/// Starts (creating on first run) the demo cluster under `<work_dir>/.orgwall`, migrates
/// database `app` and inserts the demo tenants. `default_port` applies only on a first run
/// (`None`: 54329 when free, else any free port).
pub fn prepare(work_dir: &Path, default_port: Option<u16>) -> anyhow::Result<Demo> {
    let state_dir = work_dir.join(".orgwall");
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let state_path = state_dir.join("demo.state");
    let mut state = match DemoState::load(&state_path) {
        Some(s) => s,
        None => DemoState {
            port: match default_port {
                Some(p) => p,
                None if std::net::TcpListener::bind(("127.0.0.1", DEFAULT_PG_PORT)).is_ok() => {
                    DEFAULT_PG_PORT
                }
                None => localpg::free_port()?,
            },
            password: random_password(),
            tenant_password: random_password(),
        },
    };
    let mut data_dir = state_dir.join("pgdata");
    let mut port = Some(state.port);
    let pg = loop {
        let opts = LocalPgOptions {
            data_dir: data_dir.clone(),
            port,
            superuser_password: state.password.clone(),
            extra_conf: vec![],
        };
        tracing::info!(data_dir = %data_dir.display(), port = ?port, "starting PostgreSQL");
        match LocalPostgres::start(opts) {
            Ok(pg) => break pg,
            // The remembered port was taken by something else meanwhile: use another.
            Err(LocalPgError::Start { log_tail, .. })
                if port.is_some() && log_tail.contains("could not bind") =>
            {
                tracing::warn!(port = ?port, "port in use; picking another");
                port = None;
            }
            // As root, the postgres user may be unable to reach the work dir (e.g. under /root).
            Err(e @ LocalPgError::DataDirNotReachable(_)) if data_dir.starts_with(work_dir) => {
                data_dir = std::env::temp_dir()
                    .join(format!("orgwall-demo-{:016x}", fnv1a(work_dir)))
                    .join("pgdata");
                tracing::warn!(error = %e, data_dir = %data_dir.display(), "using a data dir outside the work dir");
            }
            Err(e) => return Err(e.into()),
        }
    };
    state.port = pg.port;
    state.save(&state_path)?;
    pg.create_database(DEMO_DB)?;
    apply_migrations(&pg, DEMO_DB, &state.tenant_password)?;
    pg.psql(DEMO_DB, SEED_SQL)
        .context("inserting the demo tenants")?;
    Ok(Demo {
        pg,
        tenant_password: state.tenant_password,
    })
}

/// The demo's PostgreSQL and the password of the tenant identity on it.
pub struct Demo {
    pub pg: LocalPostgres,
    pub tenant_password: String,
}

/// Applies the pending migrations with [`crate::migrate::up`], giving the tenant identity
/// (`orgwall_tenant`) `tenant_password`. No backup guard: the demo's private cluster is
/// disposable.
pub fn apply_migrations(pg: &LocalPostgres, db: &str, tenant_password: &str) -> anyhow::Result<()> {
    use crate::migrate::{self, backup::BackupPolicy, RunOptions, Target};
    let target = Target::from_url(&pg.url(db))?;
    let opts = RunOptions {
        backup: BackupPolicy::Skip,
        tenant_password: Some(
            tenant_password
                .parse()
                .map_err(|e| anyhow::anyhow!("tenant password: {e}"))?,
        ),
        ..RunOptions::default()
    };
    let run = migrate::up(&target, None, &opts);
    // `prepare` runs on a blocking thread; reuse the caller's runtime when there is one.
    let report = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(run),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for the migrations")?
            .block_on(run),
    }
    .context("applying the migrations")?;
    for m in &report.migrations {
        tracing::info!(migration = %m, db, "applied migration");
    }
    Ok(())
}

fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn fnv1a(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
}

/// Two tenants with overlapping business keys (both have item W-100, site Main / A-01,
/// count CNT-0001); fixed ids make it idempotent.
const SEED_SQL: &str = r#"
BEGIN;
INSERT INTO organizations (id, name) VALUES ('org_acme', 'Acme'), ('org_globex', 'Globex')
ON CONFLICT DO NOTHING;
INSERT INTO users (id, org_id, email, name, role) VALUES
  ('usr_acme_alice',  'org_acme',   'alice@acme.test',  'Alice Anders', 'admin'),
  ('usr_acme_bob',    'org_acme',   'bob@acme.test',    'Bob Brown',    'member'),
  ('usr_globex_gina', 'org_globex', 'gina@globex.test', 'Gina Gold',    'admin'),
  ('usr_globex_hank', 'org_globex', 'hank@globex.test', 'Hank Hill',    'member')
ON CONFLICT DO NOTHING;
INSERT INTO items (id, org_id, item_number, description, unit_of_measure) VALUES
  ('itm_acme_w100',   'org_acme',   'W-100', 'Anvil, 50 kg',           'EA'),
  ('itm_acme_w200',   'org_acme',   'W-200', 'Rocket skates',          'PR'),
  ('itm_acme_w300',   'org_acme',   'W-300', 'Giant horseshoe magnet', 'EA'),
  ('itm_globex_w100', 'org_globex', 'W-100', 'Hammock, deluxe',        'EA'),
  ('itm_globex_w200', 'org_globex', 'W-200', 'Doomsday device parts',  'KIT')
ON CONFLICT DO NOTHING;
INSERT INTO locations (id, org_id, site, name, description) VALUES
  ('loc_acme_a01',   'org_acme',   'Main', 'A-01', 'Aisle A, bay 1'),
  ('loc_acme_b01',   'org_acme',   'Main', 'B-01', 'Aisle B, bay 1'),
  ('loc_globex_a01', 'org_globex', 'Main', 'A-01', 'Cypress Creek, bay 1')
ON CONFLICT DO NOTHING;
INSERT INTO inventory_ledger (id, org_id, item_id, location_id, lot_id, quantity_delta, reason, reference, user_id) VALUES
  ('led_acme_1',   'org_acme',   'itm_acme_w100',   'loc_acme_a01',   NULL,    100, 'receipt', 'PO-1001', 'usr_acme_alice'),
  ('led_acme_2',   'org_acme',   'itm_acme_w100',   'loc_acme_a01',   NULL,    -15, 'issue',   'SO-2001', 'usr_acme_bob'),
  ('led_acme_3',   'org_acme',   'itm_acme_w200',   'loc_acme_b01',   'LOT-7',  40, 'receipt', 'PO-1002', 'usr_acme_alice'),
  ('led_acme_4',   'org_acme',   'itm_acme_w300',   'loc_acme_a01',   NULL,      5, 'receipt', 'PO-1003', 'usr_acme_alice'),
  ('led_globex_1', 'org_globex', 'itm_globex_w100', 'loc_globex_a01', NULL,      7, 'receipt', 'PO-9001', 'usr_globex_gina'),
  ('led_globex_2', 'org_globex', 'itm_globex_w200', 'loc_globex_a01', 'LOT-1',  12, 'receipt', 'PO-9002', 'usr_globex_gina'),
  ('led_globex_3', 'org_globex', 'itm_globex_w200', 'loc_globex_a01', 'LOT-1',  -2, 'issue',   'SO-9901', 'usr_globex_hank')
ON CONFLICT DO NOTHING;
INSERT INTO count_sheets (id, org_id, count_number, location_id, status, created_by) VALUES
  ('cnt_acme_1',   'org_acme',   'CNT-0001', 'loc_acme_a01',   'open', 'usr_acme_alice'),
  ('cnt_globex_1', 'org_globex', 'CNT-0001', 'loc_globex_a01', 'open', 'usr_globex_gina')
ON CONFLICT DO NOTHING;
INSERT INTO count_lines (id, org_id, count_sheet_id, item_id, expected_quantity, counted_quantity, counted_by) VALUES
  ('cl_acme_1',   'org_acme',   'cnt_acme_1',   'itm_acme_w100',   85, 84, 'usr_acme_bob'),
  ('cl_globex_1', 'org_globex', 'cnt_globex_1', 'itm_globex_w100',  7,  7, 'usr_globex_hank')
ON CONFLICT DO NOTHING;
INSERT INTO feature_flags (id, org_id, key, enabled, description) VALUES
  ('ff_acme_counts',   'org_acme',   'cycle_counts', true,  'Cycle counting'),
  ('ff_globex_counts', 'org_globex', 'cycle_counts', false, 'Cycle counting')
ON CONFLICT DO NOTHING;
INSERT INTO audit_logs (id, org_id, actor, action, entity_type, entity_id, payload) VALUES
  ('aud_acme_1',   'org_acme',   'alice@acme.test',  'item.create', 'item', 'itm_acme_w100',   '{"item_number": "W-100"}'),
  ('aud_globex_1', 'org_globex', 'gina@globex.test', 'item.create', 'item', 'itm_globex_w100', '{"item_number": "W-100"}')
ON CONFLICT DO NOTHING;
COMMIT;
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = PathBuf::from(format!("/tmp/orgwall-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_prepares_twice_and_serves() {
        let dir = scratch("demo-test");
        let d = dir.clone();
        let demo =
            tokio::task::spawn_blocking(move || prepare(&d, Some(localpg::free_port().unwrap())))
                .await
                .unwrap()
                .unwrap();
        let first_port = demo.pg.port;
        let first_tenant_password = demo.tenant_password.clone();
        drop(demo);
        // A re-run reuses the cluster, port and password, and changes nothing.
        let d = dir.clone();
        let demo = tokio::task::spawn_blocking(move || prepare(&d, None))
            .await
            .unwrap()
            .unwrap();
        let pg = &demo.pg;
        assert_eq!(pg.port, first_port);
        assert_eq!(demo.tenant_password, first_tenant_password);
        let q = |s: &str| pg.psql(DEMO_DB, s).unwrap();
        assert_eq!(
            q("SELECT count(*) FROM orgwall.schema_migrations"),
            crate::migrate::MIGRATIONS.len().to_string()
        );
        assert_eq!(
            q("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'orgwall_tenant'"),
            "f"
        );
        assert_eq!(
            q("SELECT org_id, count(*) FROM items GROUP BY 1 ORDER BY 1"),
            "org_acme|3\norg_globex|2"
        );
        assert_eq!(
            q("SELECT quantity FROM inventory_balances WHERE item_id = 'itm_acme_w100'"),
            "85"
        );
        let config = demo_config(
            &pg.url(DEMO_DB),
            &demo.tenant_password,
            "127.0.0.1:0".parse().unwrap(),
            &dir,
        )
        .unwrap();
        assert_eq!(config.upstream.tenant_user, "orgwall_tenant");
        assert!(config.tenancy.enforce_in_postgres);
        assert!(
            config.balances.enabled,
            "the demo turns the balance cache on"
        );
        assert_eq!(config.upstream.port, pg.port);
        assert_eq!(
            config.user("admin").unwrap().role,
            crate::config::Role::Admin
        );
        assert!(config
            .user("globex")
            .unwrap()
            .verifier
            .check_password("globex-pw"));
        drop(demo);

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = dir.clone();
        let demo = tokio::spawn(async move {
            run_until(&d, "127.0.0.1:0".parse().unwrap(), async { drop(rx.await) }).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        tx.send(()).unwrap();
        demo.await.unwrap().unwrap();
        let pid_file = dir.join(".orgwall/pgdata/postmaster.pid");
        assert!(
            !pid_file.exists(),
            "PostgreSQL still running after the demo stopped"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
