//! Memory per balance of the balance cache's `Store` (issue 5 target: ≤ 150 bytes at 1M
//! balances): loads N synthetic balances the way the feed's initial load does, then prints the
//! store's own estimate (`bytes_per_balance`) next to the process's resident-set growth
//! (`/proc/self/statm`), so the estimate is checked against what the allocator really used.
//!
//! Run: `cargo run --release -p orgwall-benches --bin balances_memory -- [--balances 1000000]
//! [--items 20000] [--orgs 1]`. Keys: `--orgs` orgs, `--items` items per org, as many locations
//! as needed to reach N, every third balance with a lot; quantities mix integers, 1–3
//! fractional digits and negatives. `--items 1000000` gives every balance its own item (the
//! interner's worst case).

use anyhow::{bail, Context};
use orgwall::balances::store::{BalanceRow, Store};

struct Args {
    balances: usize,
    items: usize,
    orgs: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        balances: 1_000_000,
        items: 20_000,
        orgs: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--balances" => a.balances = val.parse()?,
            "--items" => a.items = val.parse()?,
            "--orgs" => a.orgs = val.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if a.items == 0 || a.orgs == 0 {
        bail!("--items and --orgs must be positive");
    }
    Ok(a)
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> anyhow::Result<usize> {
    let b = orgwall::balances::resident_bytes().context("reading /proc/self/statm")?;
    Ok(usize::try_from(b)?)
}

/// The n-th synthetic balance.
fn balance(n: usize, a: &Args) -> BalanceRow {
    let org = n % a.orgs;
    let rest = n / a.orgs;
    let (item, location) = (rest % a.items, rest / a.items);
    let quantity = match n % 4 {
        0 => format!("{}", n % 1000),
        1 => format!("{}.{}", n % 500, n % 10),
        2 => format!("-{}.{:03}", n % 50, n % 1000),
        _ => format!("{}.25", n % 10_000),
    };
    BalanceRow {
        org: format!("org_{org:03}"),
        item: format!("itm_{org:03}_{item:07}"),
        location: format!("loc_{location:05}"),
        lot: n.is_multiple_of(3).then(|| format!("LOT-{:04}", n % 97)),
        quantity,
        // A second apart, from 2026-12-05 (the mirror keeps every row's `updated_at`).
        updated_at: 849_744_000_000_000 + n as i64 * 1_000_000,
    }
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let store = Store::new();
    let before = rss_bytes()?;
    let started = std::time::Instant::now();
    let loaded = store.write(|s| {
        for n in 0..a.balances {
            s.load(&balance(n, &a));
        }
        s.len()
    });
    let took = started.elapsed();
    let after = rss_bytes()?;
    let estimate = store.bytes_per_balance();
    let measured = after.saturating_sub(before) as f64 / loaded.max(1) as f64;
    println!(
        "balances {loaded}, orgs {}, items/org {}, loaded in {:.2} s",
        a.orgs,
        a.items,
        took.as_secs_f64()
    );
    println!("bytes_per_balance (estimate)  {estimate}");
    println!(
        "RSS delta per balance          {measured:.1}  ({:.1} MiB total)",
        after.saturating_sub(before) as f64 / (1 << 20) as f64
    );
    // Keep the store alive until measured.
    drop(store);
    Ok(())
}
