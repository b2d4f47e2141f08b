//! What `orgwall bench balances` prints while and after it runs: the progress line, the
//! latency percentiles, the proxy's cache counters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::SimpleQueryMessage;

use super::{connect, Live};

/// `SHOW orgwall_balances` as (name, value) pairs.
pub(super) async fn cache_stats(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let c = connect(url).await?;
    let msgs = c.simple_query("SHOW orgwall_balances").await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((r.get(0)?.to_string(), r.get(1).unwrap_or("").to_string()))
            }
            _ => None,
        })
        .collect())
}

pub(super) fn stat(s: &[(String, String)], k: &str) -> u64 {
    s.iter()
        .find(|(n, _)| n == k)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

pub(super) fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

pub(super) async fn progress(live: Arc<Live>, started: Instant, until: Instant) {
    let mut last = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < until {
        tick.tick().await;
        let (l, w) = (
            live.lookups.load(Ordering::Relaxed),
            live.writes.load(Ordering::Relaxed),
        );
        println!(
            "{:>4.0} s  lookups/s {:>8}  writes/s {:>6}  stale {}  errors {}",
            started.elapsed().as_secs_f64(),
            l - last.0,
            w - last.1,
            live.stale.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed)
        );
        last = (l, w);
    }
}
