//! Load generator for the balance cache (issue 5 item 6): C concurrent clients doing point
//! lookups on random keys — and optionally writers appending ledger rows, each reading its own
//! key back right after (read-your-writes: a stale read is counted, and must stay 0) — for a
//! fixed time, through Orgwall with the cache and directly against PostgreSQL in the same run.
//! Prints progress every second, then lookups/s, p50/p99/p99.9 latency, writes/s, stale reads
//! and the orgwall/direct ratio.
//!
//! Run: `cargo run --release -p orgwall-benches --bin balances_load -- [--clients 32]
//! [--seconds 5] [--writers-pct 0] [--balances 100000] [--protocol simple,extended,prepared]
//! [--pool 16] [--uncached] [--shape point|no-lot|star]`.
//! A private PostgreSQL (wal_level = logical) gets the migrated schema and `--balances`
//! balances of tenant `org_bench`; the proxy runs in this process on its own 2-thread runtime,
//! the clients (tokio-postgres) on another. Through Orgwall the tenant login sends
//! `SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id
//! IS NULL` (`--shape no-lot`: `SELECT quantity, lot_id … WHERE item_id = $1 AND
//! location_id = $2`; `--shape star`: `SELECT * …` with the point key); directly, the
//! superuser sends the same with `AND org_id = 'org_bench'` — what Orgwall sends upstream when the cache does not answer. `--uncached` adds a third target: a
//! proxy without the cache. Protocols: `simple` (literals), `extended` (unnamed statement,
//! one round trip: `query_typed`), `prepared` (named statement prepared once per client).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{Cluster, Dataset, InProcessProxy, DB, ORG, PASSWORD};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Statement};

struct Args {
    clients: u64,
    seconds: u64,
    writers_pct: u64,
    balances: u64,
    protocols: Vec<Protocol>,
    pool: u32,
    uncached: bool,
    shape: Shape,
}

/// Which lookup the clients send (and where its quantity column is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Point,
    NoLot,
    Star,
}

impl Shape {
    fn sql(self) -> &'static str {
        match self {
            Shape::Point => {
                "SELECT quantity FROM inventory_balances \
                 WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL"
            }
            Shape::NoLot => {
                "SELECT quantity, lot_id FROM inventory_balances \
                 WHERE item_id = $1 AND location_id = $2"
            }
            Shape::Star => {
                "SELECT * FROM inventory_balances WHERE item_id = $1 AND location_id = $2 \
                 AND lot_id IS NULL"
            }
        }
    }

    fn quantity_column(self) -> usize {
        match self {
            Shape::Point | Shape::NoLot => 0,
            Shape::Star => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Simple,
    Extended,
    Prepared,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        clients: 32,
        seconds: 5,
        writers_pct: 0,
        balances: 100_000,
        protocols: vec![Protocol::Simple, Protocol::Extended, Protocol::Prepared],
        pool: 16,
        uncached: false,
        shape: Shape::Point,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--uncached" {
            a.uncached = true;
            continue;
        }
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => a.clients = val.parse()?,
            "--seconds" => a.seconds = val.parse()?,
            "--writers-pct" => a.writers_pct = val.parse()?,
            "--balances" => a.balances = val.parse()?,
            "--pool" => a.pool = val.parse()?,
            "--shape" => {
                a.shape = match val.as_str() {
                    "point" => Shape::Point,
                    "no-lot" => Shape::NoLot,
                    "star" => Shape::Star,
                    _ => bail!("--shape takes point, no-lot, star"),
                }
            }
            "--protocol" => {
                a.protocols = val
                    .split(',')
                    .map(|p| match p {
                        "simple" => Ok(Protocol::Simple),
                        "extended" => Ok(Protocol::Extended),
                        "prepared" => Ok(Protocol::Prepared),
                        _ => bail!("--protocol takes simple, extended, prepared"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.clients == 0 || a.writers_pct > 100 {
        bail!("--clients must be positive and --writers-pct at most 100");
    }
    Ok(a)
}

/// Where a workload runs.
#[derive(Clone)]
struct Target {
    name: &'static str,
    conn: String,
    /// Direct connections add the tenant filter themselves and write `org_id` explicitly.
    direct: bool,
    /// The proxy's admin port, for the cache's hit counters.
    admin_port: Option<u16>,
    shape: Shape,
}

impl Target {
    fn lookup_sql(&self) -> String {
        let org = if self.direct {
            format!(" AND org_id = '{ORG}'")
        } else {
            String::new()
        };
        format!("{}{org}", self.shape.sql())
    }

    fn insert_sql(&self) -> String {
        if self.direct {
            format!(
                "INSERT INTO inventory_ledger (org_id, item_id, location_id, lot_id, quantity_delta, reason) \
                 VALUES ('{ORG}', $1, $2, NULL, 1, 'bench')"
            )
        } else {
            "INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, reason) \
             VALUES ($1, $2, NULL, 1, 'bench')"
                .into()
        }
    }
}

/// A column value as raw bytes (whatever its type), for checks without decoding `numeric`.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// An integral `numeric` in binary form (`numeric_send`) as i64.
fn numeric_integer(b: &[u8]) -> Option<i64> {
    let word = |i: usize| Some(i16::from_be_bytes([*b.get(2 * i)?, *b.get(2 * i + 1)?]));
    let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)?);
    let mut v: i64 = 0;
    for d in 0..ndigits.max(0) {
        let exp = i32::from(weight) - i32::from(d);
        if exp < 0 {
            return None;
        }
        v += i64::from(word(4 + d as usize)?) * 10_000i64.checked_pow(exp as u32)?;
    }
    Some(if sign == 0x4000 { -v } else { v })
}

/// One client's connection and statements.
struct Conn {
    client: Client,
    protocol: Protocol,
    lookup_sql: String,
    insert_sql: String,
    prepared: Option<(Statement, Statement)>,
    quantity: usize,
}

impl Conn {
    async fn open(target: &Target, protocol: Protocol) -> anyhow::Result<Conn> {
        let (client, c) = tokio_postgres::connect(&target.conn, NoTls)
            .await
            .with_context(|| format!("connecting to {}", target.name))?;
        tokio::spawn(c);
        let (lookup_sql, insert_sql) = (target.lookup_sql(), target.insert_sql());
        let prepared = match protocol {
            Protocol::Prepared => Some((
                client
                    .prepare_typed(&lookup_sql, &[Type::TEXT, Type::TEXT])
                    .await?,
                client
                    .prepare_typed(&insert_sql, &[Type::TEXT, Type::TEXT])
                    .await?,
            )),
            _ => None,
        };
        Ok(Conn {
            client,
            protocol,
            lookup_sql,
            insert_sql,
            prepared,
            quantity: target.shape.quantity_column(),
        })
    }

    /// The key's quantity as an integer when integral, `Some(None)` when fractional, `None`
    /// when there is no row.
    async fn lookup(&self, item: &str, loc: &str) -> anyhow::Result<Option<Option<i64>>> {
        match (self.protocol, &self.prepared) {
            (Protocol::Simple, _) => {
                let sql = literal_sql(&self.lookup_sql, item, loc);
                let msgs = self.client.simple_query(&sql).await?;
                Ok(msgs.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        Some(r.get(self.quantity).and_then(|t| t.parse().ok()))
                    }
                    _ => None,
                }))
            }
            (Protocol::Extended, _) | (Protocol::Prepared, None) => {
                let rows = self
                    .client
                    .query_typed(&self.lookup_sql, &[(&item, Type::TEXT), (&loc, Type::TEXT)])
                    .await?;
                Ok(rows
                    .first()
                    .map(|r| numeric_integer(&r.get::<_, Raw>(self.quantity).0)))
            }
            (Protocol::Prepared, Some((stmt, _))) => {
                let rows = self.client.query(stmt, &[&item, &loc]).await?;
                Ok(rows
                    .first()
                    .map(|r| numeric_integer(&r.get::<_, Raw>(self.quantity).0)))
            }
        }
    }

    async fn insert(&self, item: &str, loc: &str) -> anyhow::Result<()> {
        match (self.protocol, &self.prepared) {
            (Protocol::Simple, _) => {
                self.client
                    .simple_query(&literal_sql(&self.insert_sql, item, loc))
                    .await?;
            }
            (Protocol::Extended, _) | (Protocol::Prepared, None) => {
                self.client
                    .query_typed(&self.insert_sql, &[(&item, Type::TEXT), (&loc, Type::TEXT)])
                    .await?;
            }
            (Protocol::Prepared, Some((_, stmt))) => {
                self.client.execute(stmt, &[&item, &loc]).await?;
            }
        }
        Ok(())
    }
}

/// `$1`/`$2` replaced by quoted literals (the ids are digits: nothing to escape).
fn literal_sql(sql: &str, a: &str, b: &str) -> String {
    sql.replace("$1", &format!("'{a}'"))
        .replace("$2", &format!("'{b}'"))
}

/// xorshift64*: a key picker with no dependency and no shared state.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Counters shared with the progress printer.
#[derive(Default)]
struct Live {
    lookups: AtomicU64,
    writes: AtomicU64,
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    /// Lookup latencies in microseconds.
    lookup_us: Vec<u32>,
    /// Read-your-write lookups (after the writer's own insert), microseconds.
    ryw_us: Vec<u32>,
    writes: u64,
    stale: u64,
    missing: u64,
    errors: u64,
    /// Errors by what failed (reader lookup, writer insert, writer read-back).
    error_kinds: std::collections::BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        *self.error_kinds.entry(e.to_string()).or_default() += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }

    fn merge(&mut self, o: Tally) {
        self.lookup_us.extend(o.lookup_us);
        self.ryw_us.extend(o.ryw_us);
        self.writes += o.writes;
        self.stale += o.stale;
        self.missing += o.missing;
        self.errors += o.errors;
        for (k, n) in o.error_kinds {
            *self.error_kinds.entry(k).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

async fn reader(conn: Conn, data: Dataset, seed: u64, until: Instant, live: Arc<Live>) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let full = data.balances / data.locations * data.locations;
    while Instant::now() < until {
        let (item, loc) = data.key(rng.below(full));
        let start = Instant::now();
        match conn.lookup(&item, &loc).await {
            Ok(found) => {
                t.lookup_us.push(micros(start.elapsed()));
                t.missing += u64::from(found.is_none());
                live.lookups.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => t.error(e.context("reader lookup")),
        }
    }
    t
}

/// Appends +1 to its own key, then reads the key back: anything but `baseline + writes` is
/// a stale read.
async fn writer(conn: Conn, item: String, baseline: i64, until: Instant, live: Arc<Live>) -> Tally {
    let mut t = Tally::default();
    let mut expected = baseline;
    while Instant::now() < until {
        if let Err(e) = conn.insert(&item, "0").await {
            t.error(e.context("writer insert"));
            continue;
        }
        expected += 1;
        t.writes += 1;
        live.writes.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        match conn.lookup(&item, "0").await {
            Ok(found) => {
                t.ryw_us.push(micros(start.elapsed()));
                if found != Some(Some(expected)) {
                    t.stale += 1;
                    // Re-sync so one stale read is counted once, not for every later write.
                    if let Some(Some(v)) = found {
                        expected = v;
                    }
                }
            }
            Err(e) => t.error(e.context("writer read-back")),
        }
    }
    t
}

/// Percentile of sorted microseconds, in milliseconds.
fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// One target × protocol run.
struct Report {
    target: &'static str,
    lookups_per_s: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    writes_per_s: f64,
    ryw_p99: f64,
    tally: Tally,
    cache: Option<common::CacheCounters>,
}

async fn run(
    target: &Target,
    protocol: Protocol,
    data: Dataset,
    args: &Args,
    admin_direct: &Client,
) -> anyhow::Result<Report> {
    let writers = data.writers;
    let readers = args.clients - writers;
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        conns.push(Conn::open(target, protocol).await?);
    }
    // Writers' keys as PostgreSQL has them now (earlier runs wrote to them too).
    let mut baselines = Vec::new();
    for w in 0..writers {
        let row = admin_direct
            .query_one(
                "SELECT quantity::bigint FROM inventory_balances \
                 WHERE org_id = $1 AND item_id = $2 AND location_id = '0' AND lot_id IS NULL",
                &[&ORG, &data.writer_item(w)],
            )
            .await?;
        baselines.push(row.get::<_, i64>(0));
    }
    let before = match target.admin_port {
        Some(p) => Some(common::cache_counters(p).await?),
        None => None,
    };
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let live = live.clone();
        let i = i as u64;
        tasks.push(if i < readers {
            tokio::spawn(reader(conn, data, i + 1, until, live))
        } else {
            let w = i - readers;
            tokio::spawn(writer(
                conn,
                data.writer_item(w),
                baselines[w as usize],
                until,
                live,
            ))
        });
    }
    let label = format!("{} {protocol:?}", target.name).to_lowercase();
    let progress = tokio::spawn(progress(label, live.clone(), until));
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    let after = match target.admin_port {
        Some(p) => Some(common::cache_counters(p).await?),
        None => None,
    };
    total.lookup_us.sort_unstable();
    total.ryw_us.sort_unstable();
    Ok(Report {
        target: target.name,
        lookups_per_s: total.lookup_us.len() as f64 / elapsed,
        p50: pct_ms(&total.lookup_us, 0.50),
        p99: pct_ms(&total.lookup_us, 0.99),
        p999: pct_ms(&total.lookup_us, 0.999),
        writes_per_s: total.writes as f64 / elapsed,
        ryw_p99: pct_ms(&total.ryw_us, 0.99),
        cache: before.zip(after).map(|(b, a)| a.since(b)),
        tally: total,
    })
}

async fn progress(label: String, live: Arc<Live>, until: Instant) {
    let (mut last_l, mut last_w) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut second = 0;
    while Instant::now() < until {
        tick.tick().await;
        second += 1;
        let (l, w) = (
            live.lookups.load(Ordering::Relaxed),
            live.writes.load(Ordering::Relaxed),
        );
        println!(
            "  [{label}] {second:>3}s  {:>8} lookups/s  {:>6} writes/s",
            l - last_l,
            w - last_w
        );
        (last_l, last_w) = (l, w);
    }
}

fn print_report(r: &Report) {
    let t = &r.tally;
    print!(
        "  {:<10} {:>10.0} lookups/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms",
        r.target, r.lookups_per_s, r.p50, r.p99, r.p999
    );
    if t.writes > 0 || r.writes_per_s > 0.0 {
        print!(
            "  | {:.0} writes/s, read-own-write p99 {:.3} ms, stale reads {}",
            r.writes_per_s, r.ryw_p99, t.stale
        );
    }
    if let Some(c) = r.cache {
        print!("  | {c}");
    }
    println!();
    if t.missing > 0 {
        println!("    {} lookups found no row (unexpected)", t.missing);
    }
    if let Some(e) = &t.first_error {
        println!("    {} errors {:?}, first: {e}", t.errors, t.error_kinds);
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let writers = args.clients * args.writers_pct / 100;
    let data = Dataset::new(args.balances, writers);
    let cluster = Cluster::start("balances-load", 300)?;
    let pg = cluster.pg();
    data.load(pg)?;
    let cached = InProcessProxy::start(
        &common::balances_proxy_toml(pg, args.pool, true),
        &cluster.dir,
    )?;
    let uncached = if args.uncached {
        Some(InProcessProxy::start(
            &common::balances_proxy_toml(pg, args.pool, false),
            &cluster.dir,
        )?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()?;
    let conn = |port: u16, user: &str| {
        format!(
            "host=127.0.0.1 port={port} user={user} password={PASSWORD} dbname={DB} \
             sslmode=disable application_name=balances_load"
        )
    };
    let mut targets = vec![
        Target {
            name: "direct",
            conn: conn(pg.port, "postgres"),
            direct: true,
            admin_port: None,
            shape: args.shape,
        },
        Target {
            name: "orgwall",
            conn: conn(cached.port, "bench"),
            direct: false,
            admin_port: Some(cached.port),
            shape: args.shape,
        },
    ];
    if let Some(u) = &uncached {
        targets.push(Target {
            name: "no-cache",
            conn: conn(u.port, "bench"),
            direct: false,
            admin_port: None,
            shape: args.shape,
        });
    }
    let result = rt.block_on(async {
        let stats = common::wait_cache_serving(cached.port, Duration::from_secs(300)).await?;
        println!(
            "balance cache serving: {} balances, {} bytes/balance (estimate)",
            common::stat(&stats, "balances"),
            common::stat(&stats, "bytes_per_balance")
        );
        println!(
            "{} clients ({} readers, {} writers), {} s per run, proxy pool {}",
            args.clients,
            args.clients - writers,
            writers,
            args.seconds,
            args.pool
        );
        let (admin, c) = tokio_postgres::connect(&conn(pg.port, "postgres"), NoTls).await?;
        tokio::spawn(c);
        let mut summary = Vec::new();
        for &protocol in &args.protocols {
            println!("protocol {protocol:?}:");
            let mut reports = Vec::new();
            for target in &targets {
                let r = run(target, protocol, data, &args, &admin).await?;
                print_report(&r);
                reports.push(r);
            }
            summary.push((protocol, reports));
        }
        println!("\nsummary (lookups/s; ratio = orgwall / direct):");
        for (protocol, reports) in &summary {
            let qps = |name: &str| {
                reports
                    .iter()
                    .find(|r| r.target == name)
                    .map_or(f64::NAN, |r| r.lookups_per_s)
            };
            let p99 = |name: &str| {
                reports
                    .iter()
                    .find(|r| r.target == name)
                    .map_or(f64::NAN, |r| r.p99)
            };
            let stale: u64 = reports.iter().map(|r| r.tally.stale).sum();
            println!(
                "  {:<9} direct {:>8.0} (p99 {:.3} ms)  orgwall {:>8.0} (p99 {:.3} ms)  ratio {:.2}  stale reads {stale}",
                format!("{protocol:?}").to_lowercase(),
                qps("direct"),
                p99("direct"),
                qps("orgwall"),
                p99("orgwall"),
                qps("orgwall") / qps("direct")
            );
        }
        anyhow::Ok(())
    });
    drop(uncached);
    drop(cached);
    drop(rt);
    drop(cluster);
    result
}
