//! Setup shared by the end-to-end bench binaries: a private PostgreSQL, an in-process proxy on
//! its own runtime, pgbench runs, and the balance-cache dataset (schema from `migrations/`,
//! one tenant with N balances).
//!
//! Each binary uses a subset of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub mod pgbouncer;
use orgwall::config::{Config, EnvOverrides};
use orgwall::localpg::{LocalPgOptions, LocalPostgres};

/// The superuser password of the bench cluster, also used for the proxy's logins.
pub const PASSWORD: &str = "bench-pw";

/// A scratch directory and a private PostgreSQL in it (removed on drop).
pub struct Cluster {
    pub dir: PathBuf,
    pub pg: Option<LocalPostgres>,
}

impl Cluster {
    /// Starts PostgreSQL (wal_level = logical, as `localpg` configures it) under
    /// `/tmp/orgwall-<tag>-<pid>` with room for `max_connections`.
    pub fn start(tag: &str, max_connections: u32) -> anyhow::Result<Cluster> {
        let dir = std::env::temp_dir().join(format!("orgwall-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let pg = LocalPostgres::start(LocalPgOptions {
            data_dir: dir.join("pgdata"),
            port: None,
            superuser_password: PASSWORD.into(),
            extra_conf: vec![("max_connections".into(), max_connections.to_string())],
        })?;
        Ok(Cluster { dir, pg: Some(pg) })
    }

    pub fn pg(&self) -> &LocalPostgres {
        self.pg.as_ref().expect("running until drop")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.pg.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The proxy running in this process on its own runtime (2 worker threads, like a small
/// deployment), so the bench's own clients do not share its scheduler.
pub struct InProcessProxy {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl InProcessProxy {
    /// Starts `orgwall::server::run` with the configuration `toml` (whose `listen` is ignored),
    /// on its own runtime driven by its own thread. Its threads are the config's `workers`.
    pub fn start(toml: &str, base: &Path) -> anyhow::Result<InProcessProxy> {
        let config = Config::from_toml(toml, base, &EnvOverrides::default())?;
        let rt = orgwall::server::runtime(config.workers)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::Builder::new()
            .name("proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let listener = orgwall::listen::Listeners::bind(
                        listener,
                        config.unix_socket_dir.as_deref(),
                    )?;
                    orgwall::server::run(listener, Arc::new(config), async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .map_err(anyhow::Error::from)
                })
            })?;
        Ok(InProcessProxy {
            port,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }
}

impl Drop for InProcessProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// The value after the command-line flag `name` (`--rows 1000`), or `default` without it.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("missing value")?
            .parse()
            .map_err(|_| anyhow::anyhow!("bad {name}")),
        None => Ok(default),
    }
}

/// `-h 127.0.0.1 -p <port>`.
pub fn host_args(port: u16) -> Vec<String> {
    vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]
}

/// Runs pgbench, returning its stdout.
pub fn pgbench(args: &[String], password: &str) -> anyhow::Result<String> {
    let out = Command::new("pgbench")
        .args(args)
        .env("PGPASSWORD", password)
        .output()
        .context("running pgbench (Debian: apt-get install -y postgresql)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text.into_owned())
}

/// A `name = value ...` figure from pgbench's summary (`tps`, `latency average`, ...).
pub fn pgbench_figure(output: &str, name: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix("= "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no `{name}` in pgbench output: {output}"))
}

/// Transactions a pgbench run completed (`number of transactions actually processed: N`).
pub fn pgbench_transactions(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no transaction count in pgbench output: {output}"))
}

/// CPU time (user + system) this process has used so far, in seconds, from `/proc/self/stat`
/// (clock ticks of 1/100 s, Linux's `USER_HZ`).
pub fn process_cpu_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u + s) / 100.0),
        _ => anyhow::bail!("unexpected /proc/self/stat: {stat}"),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The balance-cache dataset: one tenant (`org_bench`) with `balances` balances, ids that are
/// decimal numbers as text (item `i`, location `l`), all without a lot, so pgbench can pick
/// keys with `\set` and pass them as parameters or quoted literals.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub balances: u64,
    pub locations: u64,
    /// Writer `w` owns item `items + w` at location 0 (its own key, for the staleness check).
    pub writers: u64,
}

pub const ORG: &str = "org_bench";
pub const DB: &str = "bench";

impl Dataset {
    pub fn new(balances: u64, writers: u64) -> Dataset {
        Dataset {
            balances: balances.max(1),
            locations: balances.clamp(1, 100),
            writers,
        }
    }

    /// Items with a balance at every location (the last may be partial).
    pub fn items(&self) -> u64 {
        self.balances.div_ceil(self.locations)
    }

    /// The key of balance `n` (`0 ≤ n < balances`) as (item, location).
    pub fn key(&self, n: u64) -> (String, String) {
        (
            (n / self.locations).to_string(),
            (n % self.locations).to_string(),
        )
    }

    /// The item a writer owns.
    pub fn writer_item(&self, w: u64) -> String {
        (self.items() + w).to_string()
    }

    /// Creates database `bench`, applies `migrations/` and loads the dataset through the
    /// ledger (the balance trigger fills `inventory_balances`); prints how long it took.
    pub fn load(&self, pg: &LocalPostgres) -> anyhow::Result<()> {
        let started = Instant::now();
        pg.create_database(DB)?;
        orgwall::demo::apply_migrations(pg, DB, PASSWORD)?;
        let (n, locs, items) = (self.balances, self.locations, self.items());
        let all_items = items + self.writers;
        let sql = format!(
            "INSERT INTO organizations (id, name) VALUES ('{ORG}', 'Bench'), ('org_other', 'Other');
             INSERT INTO items (id, org_id, item_number)
               SELECT g::text, '{ORG}', 'W-' || g FROM generate_series(0, {all_items} - 1) g;
             INSERT INTO locations (id, org_id, site, name)
               SELECT g::text, '{ORG}', 'Main', 'L-' || g FROM generate_series(0, {locs} - 1) g;
             INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta, reason)
               SELECT '{ORG}', (g / {locs})::text, (g % {locs})::text, NULL,
                      (g % 1000) + (g % 4) * 0.25, 'seed'
               FROM generate_series(0, {n} - 1) g;
             INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta, reason)
               SELECT '{ORG}', g::text, '0', NULL, 0, 'seed'
               FROM generate_series({items}, {all_items} - 1) g;
             VACUUM ANALYZE;"
        );
        pg.psql(DB, &sql).context("loading the balances")?;
        println!(
            "dataset: {n} balances ({items} items × {locs} locations, org {ORG}) + {} writer keys, loaded in {:.1} s",
            self.writers,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Proxy configuration: tenant `bench` (org `org_bench`), admin `admin`, the balance cache on
/// or off, `pool` upstream connections.
pub fn balances_proxy_toml(pg: &LocalPostgres, pool: u32, cache: bool) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\npool_size = {pool}\n\
         pool_mode = \"transaction\"\ntenant_password = \"{PASSWORD}\"\n\
         [balances]\nenabled = {cache}\n\
         [[users]]\nname = \"bench\"\npassword = \"{PASSWORD}\"\norg_id = \"{ORG}\"\nrole = \"tenant\"\n\
         [[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\norg_id = \"org_default\"\nrole = \"admin\"\n",
        pg.url(DB)
    )
}

/// Waits (up to `limit`) until the proxy's balance cache serves; returns its
/// `SHOW orgwall_balances` figures.
pub async fn wait_cache_serving(
    port: u16,
    limit: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    let conn = format!(
        "host=127.0.0.1 port={port} user=admin password={PASSWORD} dbname={DB} sslmode=disable"
    );
    let (client, c) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(c);
    let deadline = Instant::now() + limit;
    loop {
        let mut stats = Vec::new();
        for m in client.simple_query("SHOW orgwall_balances").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                let cell = |i| r.get(i).unwrap_or_default().to_string();
                stats.push((cell(0), cell(1)));
            }
        }
        if stats.iter().any(|(k, v)| k == "serving" && v == "true") {
            return Ok(stats);
        }
        if Instant::now() > deadline {
            bail!("the balance cache did not start serving: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One figure of `SHOW orgwall_balances` (`?` when absent).
pub fn stat(stats: &[(String, String)], key: &str) -> String {
    stats
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| "?".to_string(), |(_, v)| v.clone())
}

/// The cache's counters that tell whether a run was served from memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounters {
    pub hits: u64,
    pub fallbacks: u64,
    pub resyncs: u64,
    pub ryw_timeouts: u64,
    /// Reads that waited for the fence.
    pub ryw_waits: u64,
    /// The longest such wait since the proxy started, in µs (a maximum: not a difference).
    pub longest_wait_us: u64,
    /// Server positions the fence's prober read.
    pub probes: u64,
}

impl CacheCounters {
    /// `self − earlier`.
    pub fn since(self, earlier: CacheCounters) -> CacheCounters {
        CacheCounters {
            hits: self.hits.saturating_sub(earlier.hits),
            fallbacks: self.fallbacks.saturating_sub(earlier.fallbacks),
            resyncs: self.resyncs.saturating_sub(earlier.resyncs),
            ryw_timeouts: self.ryw_timeouts.saturating_sub(earlier.ryw_timeouts),
            ryw_waits: self.ryw_waits.saturating_sub(earlier.ryw_waits),
            longest_wait_us: self.longest_wait_us,
            probes: self.probes.saturating_sub(earlier.probes),
        }
    }
}

impl std::fmt::Display for CacheCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cache hits {}, fallbacks {}, resyncs {}, read-your-writes waits {} (timeouts {}, \
             longest so far {} µs), probes {}",
            self.hits,
            self.fallbacks,
            self.resyncs,
            self.ryw_waits,
            self.ryw_timeouts,
            self.longest_wait_us,
            self.probes
        )
    }
}

/// The cache's counters now (waits until it serves).
pub async fn cache_counters(port: u16) -> anyhow::Result<CacheCounters> {
    let stats = wait_cache_serving(port, Duration::from_secs(30)).await?;
    let n = |k: &str| stat(&stats, k).parse().unwrap_or(0);
    Ok(CacheCounters {
        hits: n("hits"),
        fallbacks: n("fallbacks"),
        resyncs: n("resyncs"),
        ryw_timeouts: n("read_your_writes_timeouts"),
        ryw_waits: n("read_your_writes_waits"),
        longest_wait_us: n("longest_wait_us"),
        probes: n("probes"),
    })
}
