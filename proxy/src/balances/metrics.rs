//! The cache's counters and state as `SHOW orgwall_balances` reports them (and as
//! Prometheus text for an admin endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{pgoutput, Balances};

/// Counters exported by `SHOW orgwall_balances` and [`Balances::metrics_text`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub hits: AtomicU64,
    /// Recognised shapes that went to PostgreSQL (not serving, unservable value, RYW timeout).
    pub fallbacks: AtomicU64,
    pub resyncs: AtomicU64,
    pub transactions_applied: AtomicU64,
    pub rows_applied: AtomicU64,
    /// Reads that waited for the cache to pass the fence (a write, or the staleness bound).
    pub read_your_writes_waits: AtomicU64,
    /// Of those, reads that went to PostgreSQL after `read_your_writes_timeout_ms`.
    pub read_your_writes_timeouts: AtomicU64,
    /// The longest such wait, in µs.
    pub longest_wait_us: AtomicU64,
    /// Feed rounds that ended before the cache served (connection or load failures).
    pub resync_retries: AtomicU64,
    /// Completed loads (the first one and every resync after it).
    pub loads: AtomicU64,
    /// The process's resident-set growth over the last load (rows streamed in, tables swapped
    /// in, the old ones freed), in bytes.
    pub load_rss_growth: AtomicU64,
    /// Keys found drifting by the last drift check.
    pub drift_keys: AtomicU64,
    /// Server positions the fence's prober read (none while no read comes).
    pub probes: AtomicU64,
}

impl Balances {
    /// `(name, value)` pairs describing the cache, for `SHOW orgwall_balances` and metrics.
    pub fn stats(&self) -> Vec<(&'static str, String)> {
        let m = &self.metrics;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        vec![
            ("serving", self.serving().to_string()),
            ("off_reason", self.off_reason().unwrap_or_default()),
            (
                "ledger_replica_identity",
                Self::noted(&self.ledger_identity),
            ),
            ("last_resync_reason", Self::noted(&self.last_resync)),
            ("applied_lsn", pgoutput::format_lsn(self.applied_lsn())),
            ("replication_lag_bytes", self.lag_bytes().to_string()),
            ("balances", self.store.len().to_string()),
            (
                "bytes_per_balance",
                self.store.bytes_per_balance().to_string(),
            ),
            (
                "rss_growth_per_balance_at_load",
                (m.load_rss_growth.load(Ordering::Relaxed) / self.store.len().max(1) as u64)
                    .to_string(),
            ),
            ("hits", n(&m.hits)),
            ("fallbacks", n(&m.fallbacks)),
            ("resyncs", n(&m.resyncs)),
            ("resync_retries", n(&m.resync_retries)),
            ("transactions_applied", n(&m.transactions_applied)),
            ("rows_applied", n(&m.rows_applied)),
            ("read_your_writes_waits", n(&m.read_your_writes_waits)),
            ("read_your_writes_timeouts", n(&m.read_your_writes_timeouts)),
            ("longest_wait_us", n(&m.longest_wait_us)),
            ("drift_keys", n(&m.drift_keys)),
            ("probes", n(&m.probes)),
        ]
    }

    /// The same figures in Prometheus text format (`orgwall_balances_*`), for an admin endpoint.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in self.stats() {
            let v = match value.as_str() {
                "true" => "1".to_string(),
                "false" => "0".to_string(),
                v if v.parse::<f64>().is_ok() => v.to_string(),
                _ => continue,
            };
            out += &format!("orgwall_balances_{name} {v}\n");
        }
        out
    }
}
