//! `orgwall bench balances`: a load test of balance lookups a user runs against any running
//! Orgwall (a tenant login) or, with `--org`, against PostgreSQL itself (the same statements
//! with the `org_id` filter Orgwall's rewrite adds), to compare the two.
//!
//! Readers look up random keys (read from `inventory_balances` at start) in the chosen shape
//! and protocol. Writers (`--writers-pct` of the clients) each own one key: they append +1
//! ledger rows and, after each commit, read the balance back from another connection of
//! their own (simple protocol, the point lookup): any other value than the one they wrote is a
//! stale read. A progress line each second; at the end lookups/s, p50/p99/p99.9 latency,
//! writes/s, stale reads, and — with `--admin-url` — the proxy's cache counters over the run.
//! Plain TCP only (no TLS); clients use tokio-postgres.

mod report;
mod shapes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::balances::decimal::Decimal;
use report::{cache_stats, pct_ms, progress, stat};
pub use shapes::{Protocol, Shape};

/// Flags of `orgwall bench balances`.
#[derive(Debug, Clone, clap::Args)]
pub struct BalancesArgs {
    /// Where the clients connect: an Orgwall tenant login (or PostgreSQL itself with --org).
    #[arg(long)]
    pub url: String,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, value_enum, default_value_t = Protocol::Prepared)]
    pub protocol: Protocol,
    /// Percentage of the clients that write (each also reads its writes back).
    #[arg(long, default_value_t = 0)]
    pub writers_pct: u8,
    #[arg(long, value_enum, default_value_t = Shape::Point)]
    pub shape: Shape,
    /// Add `org_id = ORG` to every statement and write it into ledger rows: for runs directly
    /// against PostgreSQL (what Orgwall's tenant rewrite adds).
    #[arg(long)]
    pub org: Option<String>,
    /// An admin login of the same Orgwall: report its `SHOW orgwall_balances` counters.
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Keys read from inventory_balances at start (at most).
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
}

/// A balance key.
#[derive(Debug, Clone)]
pub struct Key {
    pub item: String,
    pub location: String,
    pub lot: Option<String>,
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| "connecting to --url / --admin-url")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "bench connection ended");
        }
    });
    Ok(client)
}

fn first_cell(msgs: &[SimpleQueryMessage]) -> Option<Option<String>> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    })
}

async fn load_keys(c: &Client, a: &BalancesArgs) -> anyhow::Result<Vec<Key>> {
    let filter = a.org.as_ref().map_or(String::new(), |o| {
        format!(" WHERE org_id = {}", shapes::lit(o))
    });
    let rows = c
        .simple_query(&format!(
            "SELECT item_id, location_id, lot_id FROM inventory_balances{filter} LIMIT {}",
            a.keys
        ))
        .await
        .context("reading keys from inventory_balances")?;
    let keys: Vec<Key> = rows
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(Key {
                item: r.get(0)?.to_string(),
                location: r.get(1)?.to_string(),
                lot: r.get(2).map(str::to_string),
            }),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        bail!("inventory_balances has no rows to look up (for this login)");
    }
    Ok(keys)
}

/// Counters shared with the progress line.
#[derive(Default)]
struct Live {
    lookups: AtomicU64,
    writes: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
}

/// One client's results.
#[derive(Default)]
struct Tally {
    lookup_us: Vec<u32>,
    readback_us: Vec<u32>,
    first_error: Option<String>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A small xorshift generator: key choice only.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn reader(
    c: Client,
    a: Arc<BalancesArgs>,
    keys: Arc<Vec<Key>>,
    seed: u64,
    until: Instant,
    live: Arc<Live>,
) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut runner = shapes::Runner::new(a.protocol, a.shape, a.org.clone());
    while Instant::now() < until {
        let key = &keys[rng.below(keys.len())];
        let other = &keys[rng.below(keys.len())];
        let start = Instant::now();
        match runner.run(&c, key, other).await {
            Ok(()) => {
                t.lookup_us.push(micros(start.elapsed()));
                live.lookups.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                t.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    t
}

/// Appends +1 to its key, then reads it back from its other connection.
async fn writer(
    w: Client,
    r: Client,
    a: Arc<BalancesArgs>,
    key: Key,
    until: Instant,
    live: Arc<Live>,
) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let point = shapes::point_sql(&key, a.org.as_deref());
    // The starting balance from PostgreSQL (inside a transaction Orgwall never answers locally).
    let msgs = w
        .simple_query(&format!("BEGIN; {point}; COMMIT"))
        .await
        .context("writer: reading the starting balance")?;
    let start = first_cell(&msgs).flatten().unwrap_or_else(|| "0".into());
    let one = Decimal::parse("1").context("decimal")?;
    let mut expected = Decimal::parse(&start).context("writer: starting balance")?;
    let insert = shapes::insert_sql(&key, a.org.as_deref());
    while Instant::now() < until {
        if let Err(e) = w.simple_query(&insert).await {
            live.errors.fetch_add(1, Ordering::Relaxed);
            t.first_error.get_or_insert_with(|| e.to_string());
            continue;
        }
        expected = expected.checked_add(one).context("balance overflow")?;
        live.writes.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let got = r
            .simple_query(&point)
            .await
            .map(|m| first_cell(&m).flatten());
        t.readback_us.push(micros(began.elapsed()));
        match got {
            Ok(Some(v)) if v == expected.to_text() => {}
            Ok(v) => {
                live.stale.fetch_add(1, Ordering::Relaxed);
                // Counted once: follow what was read from here on.
                if let Some(d) = v.as_deref().and_then(Decimal::parse) {
                    expected = d;
                }
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                t.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Ok(t)
}

/// What a run measured (also printed).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lookups: u64,
    pub lookups_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub writes: u64,
    pub stale_reads: u64,
    pub errors: u64,
    /// The proxy's counters over the run (with `--admin-url`): hits, fallbacks.
    pub cache: Option<(u64, u64)>,
}

/// Runs the load test and prints its report on stdout.
pub async fn balances(a: BalancesArgs) -> anyhow::Result<Report> {
    if a.clients == 0 || a.writers_pct > 100 {
        bail!("--clients must be positive and --writers-pct at most 100");
    }
    let a = Arc::new(a);
    let keys = Arc::new(load_keys(&connect(&a.url).await?, &a).await?);
    let writers = (a.clients * usize::from(a.writers_pct)).div_ceil(100);
    let before = match &a.admin_url {
        Some(u) => Some(cache_stats(u).await?),
        None => None,
    };
    println!(
        "orgwall bench balances: {} clients ({writers} writers), {:?} protocol, shape {:?}, \
         {} keys, {} s",
        a.clients,
        a.protocol,
        a.shape,
        keys.len(),
        a.duration
    );
    // Every connection first: the clock starts when all clients can run.
    let mut conns = Vec::new();
    for n in 0..a.clients {
        let second = if n < writers {
            Some(connect(&a.url).await?)
        } else {
            None
        };
        conns.push((connect(&a.url).await?, second));
    }
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(a.duration);
    let mut tasks = Vec::new();
    for (n, (c, second)) in conns.into_iter().enumerate() {
        let (a2, live2) = (a.clone(), live.clone());
        match second {
            Some(r) => {
                let key = keys[n % keys.len()].clone();
                tasks.push(tokio::spawn(writer(c, r, a2, key, until, live2)));
            }
            None => {
                let k = keys.clone();
                tasks.push(tokio::spawn(async move {
                    Ok(reader(c, a2, k, n as u64 + 1, until, live2).await)
                }));
            }
        }
    }
    let progress = tokio::spawn(progress(live.clone(), started, until));
    let mut lookups = Vec::new();
    let mut readbacks = Vec::new();
    let mut first_error = None;
    for t in tasks {
        let t = t.await.context("client task")??;
        lookups.extend(t.lookup_us);
        readbacks.extend(t.readback_us);
        first_error = first_error.or(t.first_error);
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    lookups.sort_unstable();
    readbacks.sort_unstable();
    let l = |p| pct_ms(&lookups, p);
    let mut report = Report {
        lookups: lookups.len() as u64,
        lookups_per_sec: lookups.len() as f64 / secs,
        p50_ms: l(0.5),
        p99_ms: l(0.99),
        p999_ms: l(0.999),
        writes: live.writes.load(Ordering::Relaxed),
        stale_reads: live.stale.load(Ordering::Relaxed),
        errors: live.errors.load(Ordering::Relaxed),
        cache: None,
    };
    println!(
        "lookups {} ({:.0}/s), latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        lookups.len(),
        lookups.len() as f64 / secs,
        l(0.5),
        l(0.99),
        l(0.999),
        l(1.0)
    );
    let w = live.writes.load(Ordering::Relaxed);
    let r = |p| pct_ms(&readbacks, p);
    if writers > 0 {
        println!(
            "writes {w} ({:.0}/s), read-backs ms p50 {:.3} p99 {:.3} max {:.3}, stale reads {}",
            w as f64 / secs,
            r(0.5),
            r(0.99),
            r(1.0),
            live.stale.load(Ordering::Relaxed)
        );
    }
    let errors = live.errors.load(Ordering::Relaxed);
    if let Some(e) = first_error {
        println!("errors {errors}, the first: {e}");
    }
    if let (Some(u), Some(before)) = (&a.admin_url, before) {
        let after = cache_stats(u).await?;
        let d = |k| stat(&after, k).saturating_sub(stat(&before, k));
        report.cache = Some((d("hits"), d("fallbacks")));
        println!(
            "cache: hits {}, fallbacks {}, waits {} (timeouts {}), longest wait {} us, \
             resyncs {}, replication lag {} bytes",
            d("hits"),
            d("fallbacks"),
            d("read_your_writes_waits"),
            d("read_your_writes_timeouts"),
            stat(&after, "longest_wait_us"),
            d("resyncs"),
            stat(&after, "replication_lag_bytes")
        );
    }
    Ok(report)
}
