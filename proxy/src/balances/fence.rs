//! When a cached read may be answered (DESIGN.md §5): the store must have applied every
//! ledger write that went through this proxy and ended before the read began (any session),
//! and everything committed on the server more than `max_staleness_ms` ago (writes that
//! bypass this proxy).
//!
//! How: a session that sent a ledger write notes it ([`Fence::write_done`]) when PostgreSQL
//! says its transaction ended, before the client hears of it. A prober task reads the server's
//! WAL flush position on a connection of its own — every `max_staleness_ms / 4`, and at once
//! when asked — noting when it sent the question and which write notes it covers. Once the
//! store has applied past such a position, everything committed before the question was sent
//! is in the store. A read is answered from memory only when the newest applied probe covers
//! its tenant's last noted write and was sent at most `max_staleness_ms` ago; otherwise it
//! waits for one (asking for it), at most `read_your_writes_timeout_ms`, then goes to
//! PostgreSQL. The flush position (not the insert position, which can stand past the last
//! record, e.g. after a page header, and never be reached by the stream) is what the walsender
//! can send.
//!
//! Writes of a tenant login are confined to its org, so its readers wait only for their own
//! org's writes; admin and switcher writes hold back every reader.
//!
//! Idle cost: the periodic probe runs only while reads come (one within [`IDLE_AFTER`]);
//! an idle proxy sends no probe at all, and its first read waits for one probe (about one
//! round trip plus the stream's catch-up) — the guarantee is the same, it only costs that
//! read the wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use super::{pgoutput, Balances};
use crate::upstream::{Pool, ServerConn, UpstreamError};

/// A position read from the server, waiting for the store to be applied past it.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// When the question was sent, in µs since [`Fence::epoch`].
    sent_us: u64,
    /// The server's WAL flush position it answered.
    lsn: u64,
    /// The write-note sequence number it covers (noted before the question was sent).
    covers: u64,
}

/// The shared fence state (one per cache).
#[derive(Debug)]
pub struct Fence {
    epoch: Instant,
    /// Write notes so far (a sequence: each note takes the next number).
    notes: AtomicU64,
    /// The last note of an admin or switcher write (holds back every reader).
    any_org: AtomicU64,
    /// The last note per tenant org.
    per_org: DashMap<String, u64>,
    /// The highest note covered by a probe the store has applied past.
    covered: AtomicU64,
    /// `sent_us` of the newest probe the store has applied past (0: none yet).
    fresh_as_of_us: AtomicU64,
    /// The newest position the prober read (for `replication_lag_bytes`).
    server_flush: AtomicU64,
    /// Answered probes the store has not yet applied past, oldest first.
    waiting: Mutex<VecDeque<Probe>>,
    /// Asks the prober for a probe now.
    wanted: tokio::sync::Notify,
    /// When a read last asked whether it may be answered (µs since `epoch`; 0: never).
    last_read_us: AtomicU64,
}

/// The periodic probe pauses once no read came for this long (or four staleness bounds,
/// if that is longer).
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

impl Default for Fence {
    fn default() -> Self {
        Fence {
            epoch: Instant::now(),
            notes: AtomicU64::new(0),
            any_org: AtomicU64::new(0),
            per_org: DashMap::new(),
            covered: AtomicU64::new(0),
            fresh_as_of_us: AtomicU64::new(0),
            server_flush: AtomicU64::new(0),
            waiting: Mutex::new(VecDeque::new()),
            wanted: tokio::sync::Notify::new(),
            last_read_us: AtomicU64::new(0),
        }
    }
}

impl Fence {
    fn now_us(&self) -> u64 {
        // +1: 0 means "no probe yet".
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// A transaction that may have written the ledger ended (`org`: a tenant login's org;
    /// `None` for admins and switchers). Call before the client learns that it ended.
    pub fn write_done(&self, org: Option<&str>) {
        let n = self.notes.fetch_add(1, Ordering::AcqRel) + 1;
        match org {
            Some(o) => match self.per_org.get_mut(o) {
                Some(mut v) => *v = (*v).max(n),
                None => {
                    self.per_org.insert(o.to_string(), n);
                }
            },
            None => {
                self.any_org.fetch_max(n, Ordering::AcqRel);
            }
        }
        self.wanted.notify_one();
    }

    /// A read is about to ask [`fresh`](Self::fresh): keeps the periodic probe running.
    pub fn reading(&self) {
        self.last_read_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// Whether a read came within `window`.
    fn read_within(&self, window: Duration) -> bool {
        let last = self.last_read_us.load(Ordering::Relaxed);
        last != 0 && self.now_us().saturating_sub(last) <= window.as_micros() as u64
    }

    /// Whether a read of `org`'s balances may be answered from the store now.
    pub fn fresh(&self, org: &str, max_staleness: Duration) -> bool {
        let need = self
            .any_org
            .load(Ordering::Acquire)
            .max(self.per_org.get(org).map_or(0, |v| *v));
        if self.covered.load(Ordering::Acquire) < need {
            return false;
        }
        let as_of = self.fresh_as_of_us.load(Ordering::Acquire);
        as_of != 0 && self.now_us().saturating_sub(as_of) <= max_staleness.as_micros() as u64
    }

    /// Asks the prober for a new position now.
    pub fn want_probe(&self) {
        self.wanted.notify_one();
    }

    /// The newest server flush position read.
    pub fn server_flush(&self) -> u64 {
        self.server_flush.load(Ordering::Relaxed)
    }

    /// Whether an answered probe still waits for the store (the feed asks the server for its
    /// position meanwhile).
    pub fn pending(&self) -> bool {
        !self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Probe>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resolve(&self, p: Probe) {
        self.covered.fetch_max(p.covers, Ordering::AcqRel);
        self.fresh_as_of_us.fetch_max(p.sent_us, Ordering::AcqRel);
    }

    /// The store has applied everything up to `applied`: probes at or below it resolve.
    /// True when one did.
    pub fn applied(&self, applied: u64) -> bool {
        let mut q = self.lock();
        let mut any = false;
        while let Some(p) = q.front().copied().filter(|p| p.lsn <= applied) {
            q.pop_front();
            self.resolve(p);
            any = true;
        }
        any
    }

    /// A probe answered: resolved at once when the store is past it already, else queued.
    /// True when it resolved.
    fn answered(&self, p: Probe, applied: impl Fn() -> u64) -> bool {
        self.server_flush.fetch_max(p.lsn, Ordering::Relaxed);
        let mut q = self.lock();
        // Under the lock: `Balances::set_applied` moves the position before it locks.
        if p.lsn <= applied() {
            self.resolve(p);
            return true;
        }
        // Positions only grow; a later probe resolves no earlier than this one.
        q.push_back(p);
        false
    }

    /// Forgets queued probes (the feed restarts; the new round's positions answer anew).
    pub fn reset(&self) {
        self.lock().clear();
    }
}

const FLUSH_LSN: &str = "SELECT pg_catalog.pg_current_wal_flush_lsn()";

async fn probe(b: &Balances, conn: &mut ServerConn) -> Result<(), UpstreamError> {
    let f = &b.fence;
    let covers = f.notes.load(Ordering::Acquire);
    let sent_us = f.now_us();
    let rows = conn.query_text(FLUSH_LSN).await?;
    let lsn = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.as_deref())
        .and_then(pgoutput::parse_lsn)
        .ok_or(UpstreamError::Protocol)?;
    let p = Probe {
        sent_us,
        lsn,
        covers,
    };
    if f.answered(p, || b.applied_lsn()) {
        b.advanced.notify_waiters();
    } else {
        // The stream reports the server's position when asked.
        b.ping.notify_one();
    }
    Ok(())
}

/// The prober: reads the server's WAL flush position when asked (a read waits, a write
/// ended) and, while reads come, every `max_staleness_ms / 4`, on a connection of its own,
/// until `shutdown`.
pub async fn run(b: Arc<Balances>, pool: &Pool, shutdown: CancellationToken) {
    let period = Duration::from_micros((b.config.max_staleness_ms * 1000 / 4).max(500));
    let idle_after = IDLE_AFTER.max(Duration::from_millis(b.config.max_staleness_ms * 4));
    let mut conn: Option<ServerConn> = None;
    let mut asked = true;
    loop {
        if b.serving() && (asked || b.fence.read_within(idle_after)) {
            b.metrics.probes.fetch_add(1, Ordering::Relaxed);
            let c = match conn.as_mut() {
                Some(c) => Ok(c),
                None => pool.connect_dedicated(false).await.map(|c| conn.insert(c)),
            };
            let result = match c {
                Ok(c) => probe(&b, c).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "balance cache: reading the server's WAL position failed");
                conn = None;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
        }
        // Idle: no timer at all until a read or a write asks.
        let idle = !b.fence.read_within(idle_after);
        asked = tokio::select! {
            _ = b.fence.wanted.notified() => true,
            _ = tokio::time::sleep(period), if !idle => false,
            _ = shutdown.cancelled() => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(3600);

    #[test]
    fn a_read_waits_for_a_probe_covering_its_orgs_last_write() {
        let f = Fence::default();
        assert!(!f.fresh("a", BOUND), "no probe yet: nothing is promised");
        let p = |covers, lsn| Probe {
            sent_us: f.now_us(),
            lsn,
            covers,
        };
        assert!(f.answered(p(0, 100), || 100));
        assert!(f.fresh("a", BOUND));
        f.write_done(Some("a"));
        assert!(!f.fresh("a", BOUND), "a's write is not covered yet");
        assert!(
            f.fresh("b", BOUND),
            "another tenant's write does not hold b back"
        );
        assert!(!f.answered(p(1, 200), || 150), "store behind the probe");
        assert!(f.pending());
        assert!(!f.fresh("a", BOUND));
        assert!(!f.applied(199));
        assert!(f.applied(200));
        assert!(!f.pending());
        assert!(f.fresh("a", BOUND));
        f.write_done(None);
        assert!(!f.fresh("b", BOUND), "an admin write holds back everyone");
        assert!(f.answered(p(3, 200), || 200));
        assert!(f.fresh("b", BOUND));
    }

    #[test]
    fn reads_keep_the_periodic_probe_running() {
        let f = Fence::default();
        assert!(!f.read_within(Duration::from_secs(60)), "no read yet");
        f.reading();
        assert!(f.read_within(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!f.read_within(Duration::from_millis(1)));
    }

    #[test]
    fn staleness_bound_needs_a_recent_probe() {
        let f = Fence::default();
        let old = Probe {
            sent_us: f.now_us(),
            lsn: 1,
            covers: 0,
        };
        std::thread::sleep(Duration::from_millis(5));
        assert!(f.answered(old, || 1));
        assert!(!f.fresh("a", Duration::from_millis(1)));
        assert!(f.fresh("a", Duration::from_secs(60)));
    }
}
