//! A tenant's `COPY … FROM STDIN` through Orgwall (staged in a temporary table, then inserted
//! as the tenant) against the same COPY made directly as the tables' owner, in one run.
//!
//! Run: `cargo run --release -p orgwall-benches --bin copy_in -- [--rows 100000] [--rounds 1]`.
//! A private PostgreSQL starts under /tmp with the migrations applied; Orgwall runs in this
//! process on its own runtime (tenant `bench`, pool of 4). Two tables: `items` (no trigger) and
//! `inventory_ledger` (the balance trigger runs per row). Each round loads `--rows` fresh rows
//! per table and target, direct first; printed: rows/s per table and target, the ratio, and the
//! load average before and after (the figures are only comparable within one run).

use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt;

mod common;
use common::{arg, balances_proxy_toml, Cluster, Dataset, InProcessProxy, DB, ORG, PASSWORD};

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// COPY `data` with `sql`; rows/s.
async fn copy(url: &str, sql: &str, data: &[u8], rows: u64) -> anyhow::Result<f64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    for chunk in data.chunks(64 * 1024) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    let n = sink.finish().await.map_err(|e| {
        anyhow::anyhow!(
            "{sql}: {}",
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string())
        )
    })?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(n == rows, "COPY reported {n} rows, {rows} sent");
    Ok(rows as f64 / secs)
}

/// `rows` text-format rows for `table`, ids prefixed with `tag`; with the tenant column when
/// `with_org` (the owner's COPY names it, the tenant's leaves it to Orgwall).
fn rows_for(table: &str, tag: &str, rows: u64, with_org: bool, d: &Dataset) -> String {
    let org = if with_org {
        format!("\t{ORG}")
    } else {
        String::new()
    };
    let mut s = String::with_capacity(rows as usize * 48);
    for g in 0..rows {
        let (item, loc) = d.key(g % d.balances);
        match table {
            "items" => s.push_str(&format!("{tag}{g}\tC-{tag}{g}\tcopied item{org}\n")),
            _ => s.push_str(&format!("{item}\t{loc}\t{}\tcopy{org}\n", g % 100)),
        }
    }
    s
}

fn columns(table: &str, with_org: bool) -> String {
    let cols = match table {
        "items" => "id, item_number, description",
        _ => "item_id, location_id, quantity_delta, reason",
    };
    let org = if with_org { ", org_id" } else { "" };
    format!("COPY {table} ({cols}{org}) FROM STDIN")
}

fn main() -> anyhow::Result<()> {
    let rows = arg("--rows", 100_000)?;
    let rounds = arg("--rounds", 1)?;
    let cluster = Cluster::start("copy-in", 50)?;
    let d = Dataset::new(1000, 0);
    d.load(cluster.pg())?;
    let proxy = InProcessProxy::start(&balances_proxy_toml(cluster.pg(), 4, false), &cluster.dir)?;
    let direct = cluster.pg().url(DB);
    let tenant = format!("postgres://bench:{PASSWORD}@127.0.0.1:{}/{DB}", proxy.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{rows} rows per COPY, {rounds} round(s); load average before: {}",
        load_average()
    );
    rt.block_on(async {
        for round in 0..rounds {
            for table in ["items", "inventory_ledger"] {
                let owner = rows_for(table, &format!("o{round}_"), rows, true, &d);
                let mine = rows_for(table, &format!("t{round}_"), rows, false, &d);
                let o = copy(&direct, &columns(table, true), owner.as_bytes(), rows).await?;
                let t = copy(&tenant, &columns(table, false), mine.as_bytes(), rows).await?;
                println!(
                    "round {round} {table:<16} direct as owner {o:>9.0} rows/s   through Orgwall as tenant {t:>9.0} rows/s   ratio {:.2}",
                    t / o
                );
            }
        }
        anyhow::Ok(())
    })?;
    println!("load average after: {}", load_average());
    Ok(())
}
