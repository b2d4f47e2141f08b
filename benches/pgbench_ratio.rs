//! End-to-end throughput: `pgbench -S` against PostgreSQL directly and through Orgwall, in the
//! same run, for each query mode; prints tps and the proxy/direct ratio.
//!
//! Run: `cargo run --release -p orgwall-benches --bin pgbench_ratio -- [--clients 16]
//! [--seconds 10] [--modes simple,extended,prepared] [--scale 10] [--pool 16] [--rounds 3]`.
//! Rounds alternate direct and proxied runs so drift on a shared machine hits both sides; the
//! reported figure per mode is the median of the rounds. The proxy runs in this process on its
//! own tokio runtime (2 worker threads); pgbench and PostgreSQL are separate processes.
//!
//! `--tenant` (issue 3): every pgbench table gets `org_id text NOT NULL DEFAULT 'bench'` after
//! `pgbench -i`, and the proxied login is a `tenant` of org `bench`, so every statement pgbench
//! sends through Orgwall is rewritten (`pgbench_accounts` becomes a tenant-confined subquery).
//! Direct runs use the same tables, unconfined.
//!
//! `--plugins` (issue 6): a second proxy with the three example policy plugins
//! (append-only-ledger, audit-admin-only, row-limit; built from `plugins/` first) runs in
//! the same rounds; its tps and its loss against the proxy without plugins are printed too.

#[path = "wasm.rs"]
mod wasm;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use orgwall::config::{Config, EnvOverrides};
use orgwall::localpg::{LocalPgOptions, LocalPostgres};

struct Args {
    clients: u32,
    seconds: u32,
    modes: Vec<String>,
    scale: u32,
    pool: u32,
    rounds: usize,
    tenant: bool,
    plugins: bool,
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
        plugins: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--tenant" {
            a.tenant = true;
            continue;
        }
        if flag == "--plugins" {
            a.plugins = true;
            continue;
        }
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clients" => a.clients = val.parse()?,
            "--seconds" => a.seconds = val.parse()?,
            "--modes" => a.modes = val.split(',').map(str::to_string).collect(),
            "--scale" => a.scale = val.parse()?,
            "--pool" => a.pool = val.parse()?,
            "--rounds" => a.rounds = val.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn pgbench(args: &[String], password: &str) -> anyhow::Result<String> {
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

fn tps(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output: {output}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A proxy running on the bench's tokio runtime.
struct Proxy {
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Proxy {
    fn start(rt: &tokio::runtime::Runtime, toml: &str, dir: &Path) -> anyhow::Result<Proxy> {
        let config = Config::from_toml(toml, dir, &EnvOverrides::default())?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(async move {
            orgwall::server::run(listener, Arc::new(config), async move {
                let _ = stop_rx.await;
            })
            .await
            .map_err(anyhow::Error::from)
        });
        Ok(Proxy { port, stop, server })
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.server);
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = std::env::temp_dir().join(format!("orgwall-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pg = LocalPostgres::start(LocalPgOptions {
        data_dir: dir.join("pgdata"),
        port: None,
        superuser_password: "bench-pw".into(),
        extra_conf: vec![("max_connections".into(), "300".into())],
    })?;
    pg.create_database("bench")?;
    let host = |port: u16| {
        vec![
            "-h".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    };
    let mut init = host(pg.port);
    init.extend(["-U", "postgres", "-i", "-q", "-s"].map(String::from));
    init.extend([args.scale.to_string(), "bench".into()]);
    pgbench(&init, "bench-pw").context("pgbench -i")?;
    if args.tenant {
        // Before the proxy starts: it discovers tenant tables from the catalog at start.
        let mut sql = String::new();
        for t in [
            "pgbench_accounts",
            "pgbench_branches",
            "pgbench_tellers",
            "pgbench_history",
        ] {
            sql += &format!("ALTER TABLE {t} ADD COLUMN org_id text NOT NULL DEFAULT 'bench';\n");
        }
        sql += "VACUUM ANALYZE;";
        pg.psql("bench", &sql)
            .context("adding org_id to the pgbench tables")?;
    }
    let role = if args.tenant { "tenant" } else { "admin" };

    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\npool_size = {}\n\
         [[users]]\nname = \"bench\"\npassword = \"bench-pw\"\norg_id = \"bench\"\nrole = \"{role}\"\n",
        pg.url("bench"),
        args.pool
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plain = Proxy::start(&rt, &toml, &dir)?;
    let with_plugins = if args.plugins {
        let wasm = wasm::build_plugins();
        let mut t = toml.clone();
        for name in ["append_only_ledger", "audit_admin_only", "row_limit"] {
            t += &format!(
                "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\n",
                wasm.join(format!("{name}.wasm")).display()
            );
        }
        Some(Proxy::start(&rt, &t, &dir)?)
    } else {
        None
    };

    println!(
        "pgbench -S, {} clients, -j 2, {} s per run, scale {}, pool {}, {} rounds (median), proxy login: {role}",
        args.clients, args.seconds, args.scale, args.pool, args.rounds
    );
    println!(
        "{:<10} {:>12} {:>12} {:>8}{}",
        "mode",
        "direct tps",
        "orgwall tps",
        "ratio",
        if args.plugins {
            "  +3 plugins tps    ratio  plugin loss"
        } else {
            ""
        }
    );
    for mode in &args.modes {
        let run = |port: u16, user: &str, pw: &str| {
            let mut a = host(port);
            a.extend(["-U", user, "-S", "-n", "-j", "2", "-M", mode].map(String::from));
            a.extend([
                "-c".into(),
                args.clients.to_string(),
                "-T".into(),
                args.seconds.to_string(),
                "bench".into(),
            ]);
            tps(&pgbench(&a, pw)?)
        };
        let (mut direct, mut proxied, mut plugged) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            direct.push(run(pg.port, "postgres", "bench-pw")?);
            proxied.push(run(plain.port, "bench", "bench-pw")?);
            if let Some(w) = &with_plugins {
                plugged.push(run(w.port, "bench", "bench-pw")?);
            }
        }
        let (d, p) = (median(direct), median(proxied));
        print!("{mode:<10} {d:>12.0} {p:>12.0} {:>8.3}", p / d);
        if !plugged.is_empty() {
            let w = median(plugged);
            print!(
                "  {w:>14.0} {:>8.3} {:>11.1}%",
                w / d,
                100.0 * (1.0 - w / p)
            );
        }
        println!();
    }
    plain.stop(&rt);
    if let Some(w) = with_plugins {
        w.stop(&rt);
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
