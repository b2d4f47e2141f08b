//! Backfill throughput and lock footprint of migration 0002 (`orgwall migrate up --to 2`) on a
//! single-tenant database with 1M ledger rows.
//!
//! Run: `cargo run --release -p orgwall-benches --bin migrate_backfill -- [--rows 1000000]
//! [--batch-size 10000]`. A private PostgreSQL starts under /tmp; the runner applies 0001, the
//! tables are filled with generate_series, then 0002 runs while another connection polls
//! `pg_locks` (about every millisecond) for the runner's relation locks. Printed: ledger rows/s
//! of the batched backfill, the longest batch transaction, and per lock mode the longest time a
//! lock on one `public` relation was held continuously (poll resolution ~1-2 ms).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgwall::localpg::{LocalPgOptions, LocalPostgres};

mod common;
use common::arg;
use orgwall::migrate::{self, backup::BackupPolicy, plan, RunOptions, Target};

const WRITE_BLOCKING: [&str; 4] = [
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

fn seed_sql(rows: i64) -> String {
    format!(
        "INSERT INTO users (id, email) SELECT 'u' || g, 'u' || g || '@x.test' FROM generate_series(1, 1000) g;
         INSERT INTO items (id, item_number) SELECT 'i' || g, 'W-' || g FROM generate_series(1, 5000) g;
         INSERT INTO locations (id, site, name) SELECT 'l' || g, 'Main', 'A-' || g FROM generate_series(1, 200) g;
         INSERT INTO inventory_ledger (item_id, location_id, lot_id, quantity_delta, user_id)
           SELECT 'i' || (g % 5000 + 1), 'l' || (g % 200 + 1), CASE WHEN g % 3 = 0 THEN NULL ELSE 'LOT-' || (g % 11) END,
                  (g % 21) - 10, 'u' || (g % 1000 + 1)
           FROM generate_series(1, {rows}) g;
         VACUUM ANALYZE;"
    )
}

/// Longest continuous hold per (mode), with the relation it was on.
type Holds = HashMap<String, (Duration, String)>;

async fn poll_locks(conn: String, stop: Arc<AtomicBool>) -> anyhow::Result<Holds> {
    let (client, c) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(c);
    let sql = "SELECT c.relname::text, l.mode FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
               JOIN pg_class c ON c.oid = l.relation
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE a.application_name = $1 AND l.granted AND l.locktype = 'relation'
                 AND n.nspname = 'public'";
    let stmt = client.prepare(sql).await?;
    let mut open: HashMap<(String, String), Instant> = HashMap::new();
    let mut longest: Holds = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let rows = client.query(&stmt, &[&migrate::APPLICATION_NAME]).await?;
        let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for k in &seen {
            open.entry(k.clone()).or_insert(now);
        }
        open.retain(|k, since| {
            let held = now - *since;
            let e = longest
                .entry(k.1.clone())
                .or_insert((Duration::ZERO, String::new()));
            if held > e.0 {
                *e = (held, k.0.clone());
            }
            seen.contains(k)
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(longest)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rows = arg("--rows", 1_000_000)?;
    let batch_size = arg("--batch-size", 10_000)?;
    let dir = std::env::temp_dir().join(format!("orgwall-bench-migrate-{}", std::process::id()));
    let d = dir.clone();
    let pg = tokio::task::spawn_blocking(move || {
        let pg = LocalPostgres::start(LocalPgOptions {
            data_dir: d.join("pgdata"),
            port: None,
            superuser_password: "bench".into(),
            extra_conf: vec![],
        })?;
        pg.create_database("bench")?;
        anyhow::Ok(pg)
    })
    .await??;
    let url = pg.url("bench");
    let target = Target::from_url(&url)?;
    let opts = RunOptions {
        batch_size,
        backup: BackupPolicy::Skip,
        ..RunOptions::default()
    };
    migrate::up(&target, plan::resolve("1")?, &opts).await?;
    let t0 = Instant::now();
    pg.psql("bench", &seed_sql(rows))?;
    println!(
        "seeded {rows} ledger rows in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_locks(url.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let report = migrate::up(&target, plan::resolve("2")?, &opts).await?;
    let total = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let holds = poller.await??;

    println!(
        "\n0002_add_organization_support, batch size {batch_size}: {:.2}s in all",
        total.as_secs_f64()
    );
    for (_, step, took) in &report.steps {
        println!("  step {step:<26} {:>8.3}s", took.as_secs_f64());
    }
    for b in &report.backfill {
        println!(
            "  backfill {:<18} {:>8} rows {:>6.2}s {:>9.0} rows/s  longest batch {:.1} ms",
            b.table,
            b.rows,
            b.elapsed.as_secs_f64(),
            b.rows as f64 / b.elapsed.as_secs_f64().max(1e-9),
            b.longest_batch.as_secs_f64() * 1e3
        );
    }
    let mut modes: Vec<_> = holds.iter().collect();
    modes.sort_by_key(|(_, (d, _))| std::cmp::Reverse(*d));
    println!("\nlongest continuous relation lock held by the runner, per mode:");
    for (mode, (d, rel)) in &modes {
        let blocks = if WRITE_BLOCKING.contains(&mode.as_str()) {
            "blocks writes"
        } else {
            ""
        };
        println!(
            "  {mode:<24} {:>9.1} ms on {rel:<36} {blocks}",
            d.as_secs_f64() * 1e3
        );
    }
    let ledger = report
        .backfill
        .iter()
        .find(|b| b.table == "inventory_ledger");
    let worst = modes
        .iter()
        .find(|(m, _)| WRITE_BLOCKING.contains(&m.as_str()));
    println!(
        "\nRESULT backfill {:.0} ledger rows/s; longest write-blocking lock {:.1} ms ({}); longest ACCESS EXCLUSIVE {:.1} ms",
        ledger.map_or(0.0, |b| b.rows as f64 / b.elapsed.as_secs_f64().max(1e-9)),
        worst.map_or(0.0, |(_, (d, _))| d.as_secs_f64() * 1e3),
        worst.map_or("none".to_string(), |(m, (_, r))| format!("{m} on {r}")),
        holds.get("AccessExclusiveLock").map_or(0.0, |(d, _)| d.as_secs_f64() * 1e3),
    );
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
