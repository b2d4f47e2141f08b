//! End-to-end throughput: pgbench against PostgreSQL directly and through Orgwall, in the
//! same run, for each query mode; prints tps and the proxy/direct ratio.
//!
//! Run: `cargo run --release -p orgwall-benches --bin pgbench_ratio -- [--clients 16]
//! [--seconds 10] [--modes simple,extended,prepared] [--scale 10] [--pool 16] [--rounds 3]
//! [--tenant] [--script select-only|balances] [--balances 100000] [--multiplex N]
//! [--workers N] [--group-reads N] [--prepare-unnamed N] [--unix-upstream] [--unix] [--plugins]
//! [--no-second-wall]`.
//! `--no-second-wall`: tenant traffic runs as the owner login without row-level security
//! (`[tenancy] enforce_in_postgres = false`), i.e. Orgwall's rewrite alone.
//! `--multiplex`, `--group-reads`, `--prepare-unnamed` and `--workers` set the proxy's
//! `[upstream] multiplex`, `group_reads` (default 4), `prepare_unnamed` (default 0) and
//! `workers`. `--unix-upstream`: the proxy reaches PostgreSQL over its Unix socket; `--unix`:
//! that, and pgbench reaches both PostgreSQL and the proxy (`unix_socket_dir`) over Unix
//! sockets too, so every hop of both sides is local IPC.
//! Rounds alternate direct and proxied runs so drift on a shared machine hits both sides; the
//! reported figure per mode is the median of the rounds. The proxy runs in this process on its
//! own tokio runtime (the config's `workers`); pgbench and PostgreSQL are separate processes, so
//! this process's CPU time over a proxied run, divided by its transactions, is the proxy's CPU
//! per statement (`µs CPU/stmt`; pgbench -S runs one statement per transaction).
//!
//! `--script select-only` (default): `pgbench -S` on `pgbench -i` tables. `--tenant` (issue 3):
//! every pgbench table gets `org_id text NOT NULL DEFAULT 'bench'` after `pgbench -i`, and the
//! proxied login is a `tenant` of org `bench`, so every statement pgbench sends through Orgwall
//! is rewritten. The tables also get the second wall's row-level-security policy, so the tenant
//! identity's traffic pays for it (unless `--no-second-wall`). Direct runs use the same tables
//! as the superuser, unconfined.
//!
//! `--script balances` (issue 5): the migrated schema with `--balances` balances for tenant
//! `org_bench`, and a `pgbench -f` point-lookup script (`SELECT quantity FROM
//! inventory_balances WHERE item_id = :i AND location_id = :l AND lot_id IS NULL`, random key).
//! Through Orgwall the tenant `bench` runs it with the balance cache on; directly, the
//! superuser runs it with `AND org_id = 'org_bench'` added — the statement Orgwall would send
//! upstream without the cache. pgbench reports the average latency only; `balances_load` prints
//! percentiles.
//!
//! `--pgbouncer`: PgBouncer (the Debian package; transaction pooling, the same pool size, TCP)
//! in front of the same PostgreSQL runs the direct side's workload in the same rounds, as a third
//! target; its tps and ratio to direct are printed too.
//!
//! `--plugins` (issue 6): a second proxy with the three example policy plugins
//! (append-only-ledger, audit-admin-only, row-limit; built from `plugins/` first) runs in
//! the same rounds; its tps and its loss against the proxy without plugins are printed too.

mod common;
#[path = "wasm.rs"]
mod wasm;

use anyhow::{bail, Context};
use common::{host_args, median, pgbench, pgbench_figure, Cluster, InProcessProxy, PASSWORD};

const USAGE: &str = "usage: pgbench_ratio [--clients 16] [--seconds 10] \
[--modes simple,extended,prepared] [--scale 10] [--pool 16] [--rounds 3] [--tenant] \
[--script select-only|balances] [--balances 100000] [--multiplex N] [--workers N] \
[--group-reads N] [--prepare-unnamed N] [--unix-upstream] [--unix] [--plugins] [--no-second-wall] \
[--pgbouncer]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    SelectOnly,
    Balances,
}

struct Args {
    clients: u32,
    seconds: u32,
    modes: Vec<String>,
    scale: u32,
    pool: u32,
    rounds: usize,
    tenant: bool,
    no_second_wall: bool,
    plugins: bool,
    pgbouncer: bool,
    unix_upstream: bool,
    unix: bool,
    multiplex: u32,
    group_reads: u32,
    prepare_unnamed: u32,
    workers: Option<u32>,
    script: Script,
    balances: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        clients: 16,
        seconds: 10,
        modes: vec!["simple".into(), "extended".into(), "prepared".into()],
        scale: 10,
        pool: 16,
        rounds: 3,
        tenant: false,
        no_second_wall: false,
        plugins: false,
        pgbouncer: false,
        unix_upstream: false,
        unix: false,
        multiplex: 0,
        group_reads: 4,
        prepare_unnamed: 0,
        workers: None,
        script: Script::SelectOnly,
        balances: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            // The module documentation's usage lines.
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--tenant" {
            a.tenant = true;
            continue;
        }
        if flag == "--unix-upstream" || flag == "--unix" {
            a.unix_upstream = true;
            a.unix |= flag == "--unix";
            continue;
        }
        if flag == "--no-second-wall" {
            a.no_second_wall = true;
            continue;
        }
        if flag == "--plugins" {
            a.plugins = true;
            continue;
        }
        if flag == "--pgbouncer" {
            a.pgbouncer = true;
            continue;
        }
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => a.clients = val.parse()?,
            "--multiplex" => a.multiplex = val.parse()?,
            "--group-reads" => a.group_reads = val.parse()?,
            "--prepare-unnamed" => a.prepare_unnamed = val.parse()?,
            "--workers" => a.workers = Some(val.parse()?),
            "--seconds" => a.seconds = val.parse()?,
            "--modes" => a.modes = val.split(',').map(str::to_string).collect(),
            "--scale" => a.scale = val.parse()?,
            "--pool" => a.pool = val.parse()?,
            "--rounds" => a.rounds = val.parse()?,
            "--balances" => a.balances = val.parse()?,
            "--script" => {
                a.script = match val.as_str() {
                    "select-only" => Script::SelectOnly,
                    "balances" => Script::Balances,
                    _ => bail!("--script is select-only or balances"),
                }
            }
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    Ok(a)
}

/// What a pgbench run needs besides the mode.
struct Side {
    /// `127.0.0.1`, or a Unix-socket directory with `--unix`.
    host: String,
    port: u16,
    user: &'static str,
    /// `-S`, or `-f <file>`.
    workload: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let cluster = Cluster::start("bench", 300)?;
    let pg = cluster.pg();
    let (toml, role) = match args.script {
        Script::SelectOnly => (select_only_setup(&args, pg)?, args.tenant),
        Script::Balances => {
            let data = common::Dataset::new(args.balances, 0);
            data.load(pg)?;
            (common::balances_proxy_toml(pg, args.pool, true), true)
        }
    };
    // Top-level keys go before the first table.
    let toml = match args.workers {
        Some(w) => format!("workers = {w}\n{toml}"),
        None => toml,
    };
    let toml = if args.unix {
        format!("unix_socket_dir = \"{}\"\n{toml}", cluster.dir.display())
    } else {
        toml
    };
    let (pg_host, proxy_host) = if args.unix {
        (
            pg.data_dir.display().to_string(),
            cluster.dir.display().to_string(),
        )
    } else {
        ("127.0.0.1".to_string(), "127.0.0.1".to_string())
    };
    let proxy = InProcessProxy::start(&toml, &cluster.dir)?;
    let with_plugins = if args.plugins {
        let wasm = wasm::build_plugins();
        let mut t = toml.clone();
        for name in ["append_only_ledger", "audit_admin_only", "row_limit"] {
            t += &format!(
                "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\n",
                wasm.join(format!("{name}.wasm")).display()
            );
        }
        Some(InProcessProxy::start(&t, &cluster.dir)?)
    } else {
        None
    };
    let bouncer = if args.pgbouncer {
        Some(common::pgbouncer::PgBouncer::start(
            &cluster.dir,
            pg.port,
            args.pool,
            "postgres",
            PASSWORD,
        )?)
    } else {
        None
    };
    let role = if role { "tenant" } else { "admin" };
    let per_mode = |mode: &str| -> anyhow::Result<(Side, Side)> {
        Ok(match args.script {
            Script::SelectOnly => (
                Side {
                    host: pg_host.clone(),
                    port: pg.port,
                    user: "postgres",
                    workload: vec!["-S".into()],
                },
                Side {
                    host: proxy_host.clone(),
                    port: proxy.port,
                    user: "bench",
                    workload: vec!["-S".into()],
                },
            ),
            Script::Balances => {
                let data = common::Dataset::new(args.balances, 0);
                let direct = balances_script(&cluster.dir, &data, mode, true)?;
                let proxied = balances_script(&cluster.dir, &data, mode, false)?;
                (
                    Side {
                        host: pg_host.clone(),
                        port: pg.port,
                        user: "postgres",
                        workload: vec!["-f".into(), direct],
                    },
                    Side {
                        host: proxy_host.clone(),
                        port: proxy.port,
                        user: "bench",
                        workload: vec!["-f".into(), proxied],
                    },
                )
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let balances = args.script == Script::Balances;
    if balances {
        let stats = rt.block_on(common::wait_cache_serving(
            proxy.port,
            std::time::Duration::from_secs(300),
        ))?;
        println!(
            "balance cache serving: {} balances, {} bytes/balance (estimate)",
            common::stat(&stats, "balances"),
            common::stat(&stats, "bytes_per_balance")
        );
    }

    let what = match args.script {
        Script::SelectOnly => format!("pgbench -S, scale {}", args.scale),
        Script::Balances => format!(
            "pgbench -f balance point lookup, {} balances, cache on",
            args.balances
        ),
    };
    println!(
        "{what}, {} clients, -j 2, {} s per run, pool {}, multiplex {}, group_reads {}, \
         prepare_unnamed {}, {} rounds (median), proxy login: {role}, {}",
        args.clients,
        args.seconds,
        args.pool,
        args.multiplex,
        args.group_reads,
        args.prepare_unnamed,
        args.rounds,
        match (args.unix, args.unix_upstream) {
            (true, _) => "Unix sockets everywhere",
            (false, true) => "clients over TCP, proxy to PostgreSQL over a Unix socket",
            (false, false) => "TCP everywhere",
        }
    );
    println!(
        "{:<10} {:>12} {:>12} {:>8} {:>14} {:>14} {:>11}{}",
        "mode",
        "direct tps",
        "orgwall tps",
        "ratio",
        "direct lat ms",
        "orgwall lat ms",
        "µs CPU/stmt",
        if args.plugins {
            "  +3 plugins tps    ratio  plugin loss"
        } else {
            ""
        }
    );
    if bouncer.is_some() {
        println!(
            "(last two columns: {}, transaction pooling, pool {}, TCP)",
            common::pgbouncer::PgBouncer::version(),
            args.pool
        );
    }
    for mode in &args.modes {
        let (direct_side, proxied_side) = per_mode(mode)?;
        // tps, latency, and the CPU this process (the proxy) spent per transaction, in µs.
        let run = |side: &Side| -> anyhow::Result<(f64, f64, f64)> {
            let mut a = vec![
                "-h".into(),
                side.host.clone(),
                "-p".into(),
                side.port.to_string(),
            ];
            a.extend(["-U", side.user, "-n", "-j", "2", "-M", mode].map(String::from));
            a.extend(side.workload.iter().cloned());
            a.extend([
                "-c".into(),
                args.clients.to_string(),
                "-T".into(),
                args.seconds.to_string(),
                common::DB.into(),
            ]);
            let cpu = common::process_cpu_secs()?;
            let out = pgbench(&a, PASSWORD)?;
            let cpu = common::process_cpu_secs()? - cpu;
            let done = common::pgbench_transactions(&out)?;
            Ok((
                pgbench_figure(&out, "tps")?,
                pgbench_figure(&out, "latency average")?,
                cpu * 1e6 / done.max(1.0),
            ))
        };
        let counters = || -> anyhow::Result<common::CacheCounters> {
            if balances {
                rt.block_on(common::cache_counters(proxy.port))
            } else {
                Ok(common::CacheCounters::default())
            }
        };
        let plugged_side = with_plugins.as_ref().map(|w| Side {
            host: proxy_host.clone(),
            port: w.port,
            user: proxied_side.user,
            workload: proxied_side.workload.clone(),
        });
        let bouncer_side = bouncer.as_ref().map(|b| Side {
            host: "127.0.0.1".into(),
            port: b.port,
            user: direct_side.user,
            workload: direct_side.workload.clone(),
        });
        let (mut direct, mut proxied, mut plugged) = (Vec::new(), Vec::new(), Vec::new());
        let mut bounced = Vec::new();
        let before = counters()?;
        for _ in 0..args.rounds {
            direct.push(run(&direct_side)?);
            proxied.push(run(&proxied_side)?);
            if let Some(side) = &plugged_side {
                plugged.push(run(side)?.0);
            }
            if let Some(side) = &bouncer_side {
                // PgBouncer 1.18 cannot run prepared statements in transaction pooling.
                bounced.push(run(side).map_or(f64::NAN, |r| r.0));
            }
        }
        let after = counters()?;
        let d = median(direct.iter().map(|r| r.0).collect());
        let p = median(proxied.iter().map(|r| r.0).collect());
        let dl = median(direct.iter().map(|r| r.1).collect());
        let pl = median(proxied.iter().map(|r| r.1).collect());
        let cpu = median(proxied.iter().map(|r| r.2).collect());
        print!(
            "{mode:<10} {d:>12.0} {p:>12.0} {:>8.3} {dl:>14.3} {pl:>14.3} {cpu:>11.1}",
            p / d
        );
        if !plugged.is_empty() {
            let w = median(plugged);
            print!(
                "  {w:>14.0} {:>8.3} {:>11.1}%",
                w / d,
                100.0 * (1.0 - w / p)
            );
        }
        if !bounced.is_empty() {
            let b = median(bounced);
            if b.is_nan() {
                print!("  pgbouncer: failed");
            } else {
                print!("  pgbouncer {b:>8.0} {:>6.3}", b / d);
            }
        }
        if balances {
            print!("   ({})", after.since(before));
        }
        println!();
    }
    drop(with_plugins);
    drop(bouncer);
    drop(proxy);
    drop(cluster);
    Ok(())
}

/// `pgbench -i` tables (and `org_id` columns with `--tenant`); returns the proxy config.
fn select_only_setup(args: &Args, pg: &orgwall::localpg::LocalPostgres) -> anyhow::Result<String> {
    pg.create_database(common::DB)?;
    let mut init = host_args(pg.port);
    init.extend(["-U", "postgres", "-i", "-q", "-s"].map(String::from));
    init.extend([args.scale.to_string(), "bench".into()]);
    pgbench(&init, PASSWORD).context("pgbench -i")?;
    if args.tenant {
        // Before the proxy starts: it discovers tenant tables from the catalog at start. The
        // migrations bring the second wall's role and `orgwall.current_org()`; the pgbench
        // tables get its policy, as the README tells an operator to do for their own tables.
        orgwall::demo::apply_migrations(pg, "bench", PASSWORD)?;
        let mut sql = String::new();
        for t in [
            "pgbench_accounts",
            "pgbench_branches",
            "pgbench_tellers",
            "pgbench_history",
        ] {
            sql += &format!(
                "ALTER TABLE {t} ADD COLUMN org_id text NOT NULL DEFAULT 'bench';\n\
                 ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;\n\
                 CREATE POLICY orgwall_tenant_isolation ON {t} FOR ALL TO orgwall_tenant \
                   USING (org_id = (SELECT orgwall.current_org())) \
                   WITH CHECK (org_id = (SELECT orgwall.current_org()));\n\
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO orgwall_tenant;\n"
            );
        }
        sql += "VACUUM ANALYZE;";
        pg.psql("bench", &sql)
            .context("adding org_id to the pgbench tables")?;
    }
    let role = if args.tenant { "tenant" } else { "admin" };
    Ok(format!(
        "listen = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\npool_size = {}\nmultiplex = {}\ngroup_reads = {}\nprepare_unnamed = {}\n\
         tenant_password = \"{PASSWORD}\"\n[tenancy]\nenforce_in_postgres = {}\n\
         [[users]]\nname = \"bench\"\npassword = \"{PASSWORD}\"\norg_id = \"bench\"\nrole = \"{role}\"\n",
        if args.unix_upstream {
            pg.socket_url("bench")
                .context("the data directory's path is too long for a Unix socket")?
        } else {
            pg.url("bench")
        },
        args.pool,
        args.multiplex,
        args.group_reads,
        args.prepare_unnamed,
        !args.no_second_wall
    ))
}

/// Writes the point-lookup script for `mode` and returns its path. pgbench substitutes
/// `:var` textually in simple mode (so the ids, which are text, are quoted there) and turns it
/// into `$n` in extended/prepared mode (where quotes would make it a literal `'$1'`).
/// `\gset` makes a lookup that finds no row an error, so a wrong key cannot pass unnoticed.
fn balances_script(
    dir: &std::path::Path,
    data: &common::Dataset,
    mode: &str,
    direct: bool,
) -> anyhow::Result<String> {
    let v = |name: &str| {
        if mode == "simple" {
            format!("':{name}'")
        } else {
            format!(":{name}")
        }
    };
    let org = if direct {
        format!(" AND org_id = '{}'", common::ORG)
    } else {
        String::new()
    };
    let script = format!(
        "\\set i random(0, {items} - 1)\n\\set l random(0, {locs} - 1)\n\
         SELECT quantity FROM inventory_balances WHERE item_id = {i} AND location_id = {l} \
         AND lot_id IS NULL{org} \\gset\n",
        items = data.balances / data.locations,
        locs = data.locations,
        i = v("i"),
        l = v("l"),
    );
    let path = dir.join(format!(
        "balances-{mode}-{}.sql",
        if direct { "direct" } else { "orgwall" }
    ));
    std::fs::write(&path, script)?;
    Ok(path.display().to_string())
}
