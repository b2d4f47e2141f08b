//! The balance cache (DESIGN.md §5): a mirror of `inventory_balances` held in memory, kept
//! exact by its logical replication stream, answering lookups (any of its columns, `*`)
//! and per-item / per-location totals locally.
//!
//! - [`shape`]: which statements can be answered (pure, on the client's SQL).
//! - [`bind`]: whether a Bind is one PostgreSQL would accept as it is (else PostgreSQL gets it).
//! - [`store`]: the mirrored rows and running totals (ordered map, interned ids, exact
//!   decimals, `updated_at`).
//! - [`timestamp`]: `timestamptz` text and binary, and a session's text style.
//! - [`decimal`]: `numeric` arithmetic, text and binary output as PostgreSQL does them.
//! - [`request`]: a request's values (Bind parameters, `= ANY` arrays) and its rows, in order.
//! - [`answer`]: RowDescription / DataRow / CommandComplete bytes for a shape.
//! - [`pgoutput`]: decoding of the replication stream.
//! - [`feed`]: the replication rounds — reconnect with backoff, resync, off for good;
//!   `snapshot` (checks, slot with exported snapshot, initial load) and `stream` (streaming,
//!   applying whole transactions, acknowledgements) are its two halves.
//! - [`mirror`]: `inventory_balances` inserts, updates and deletes as puts and removes.
//! - [`drift`]: the cache against `inventory_balances` at a consistent point
//!   (`SHOW orgwall.balances_drift`).
//! - [`fence`]: when a read may be answered — after every ledger or balance write through
//!   this proxy that ended before it ([`writes`] says which statements count), and within
//!   `max_staleness_ms` of the server.
//!
//! Invariant: a lookup is answered only while the feed is streaming from a consistent load
//! (`serving()`) and the fence allows it (`wait_fresh`); otherwise, and for anything the store
//! cannot reproduce exactly, the caller goes to PostgreSQL.

pub mod answer;
pub mod bind;
pub mod decimal;
pub mod drift;
pub mod feed;
pub mod fence;
pub mod metrics;
pub mod mirror;
pub mod pgoutput;
pub mod request;
pub mod shape;
mod snapshot;
pub mod store;
mod stream;
pub mod timestamp;
pub mod writes;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::BalancesConfig;
use answer::Columns;
pub use metrics::Metrics;
use store::Store;

/// Whether running `sql` may change a balance the cache answers (it names the ledger, or
/// `inventory_balances` with a writing keyword: `writes.rs`): a session that sent it notes
/// the end of its transaction to the fence (read-your-writes). Erring towards yes only costs
/// a fence note.
pub fn names_ledger(sql: &str) -> bool {
    writes::may_write_balances(sql)
}

/// Whether `sql` names `inventory_balances` (only such text is worth parsing for a shape).
pub fn names_balances(sql: &str) -> bool {
    writes::mentions(sql, "inventory_balances")
}

/// Resident set size of this process in bytes (`/proc/self/statm`; `None` where there is no
/// such file), for the memory figures measured rather than estimated.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// The cache shared by all sessions.
#[derive(Debug)]
pub struct Balances {
    pub config: BalancesConfig,
    pub store: Store,
    serving: AtomicBool,
    /// End LSN of the last applied transaction (or keepalive position with nothing pending).
    applied_lsn: AtomicU64,
    /// The server's WAL end as last reported by the stream.
    server_lsn: AtomicU64,
    columns: RwLock<Option<Arc<Columns>>>,
    /// Bumped after every change of `columns` (sessions key cached RowDescriptions on it).
    columns_generation: AtomicU64,
    /// Wakes read-your-writes waiters when `applied_lsn` moves.
    advanced: tokio::sync::Notify,
    /// Asks the feed to request a keepalive now (a waiter needs the server's position).
    ping: tokio::sync::Notify,
    /// Set when the cache is off for good (e.g. `wal_level` is not `logical`).
    off_reason: RwLock<Option<String>>,
    /// Why the last feed round ended (the cache reloaded after it).
    last_resync: RwLock<Option<String>>,
    /// The ledger's `REPLICA IDENTITY` as the last round found it (`full`, `default`, …).
    ledger_identity: RwLock<Option<String>>,
    pub metrics: Metrics,
    /// Whether reads may be answered now (DESIGN.md §5 consistency).
    pub fence: fence::Fence,
}

impl Balances {
    pub fn new(config: BalancesConfig) -> Balances {
        Balances {
            config,
            store: Store::new(),
            serving: AtomicBool::new(false),
            applied_lsn: AtomicU64::new(0),
            server_lsn: AtomicU64::new(0),
            columns: RwLock::new(None),
            columns_generation: AtomicU64::new(0),
            advanced: tokio::sync::Notify::new(),
            ping: tokio::sync::Notify::new(),
            off_reason: RwLock::new(None),
            last_resync: RwLock::new(None),
            ledger_identity: RwLock::new(None),
            metrics: Metrics::default(),
            fence: fence::Fence::default(),
        }
    }

    /// True while lookups may be answered from memory.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Column metadata for RowDescription (known once the feed has connected).
    pub fn columns(&self) -> Option<Arc<Columns>> {
        self.columns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes whenever [`columns`](Self::columns) may have: read it first, then the columns.
    pub fn columns_generation(&self) -> u64 {
        self.columns_generation.load(Ordering::Acquire)
    }

    fn set_columns(&self, columns: Columns) {
        *self.columns.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(columns));
        self.columns_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::Acquire)
    }

    /// Replication lag in bytes of WAL: the server's newest position (its WAL flush position
    /// as the fence's prober last read it, or what the stream reported) − applied position.
    pub fn lag_bytes(&self) -> u64 {
        self.server_lsn
            .load(Ordering::Relaxed)
            .max(self.fence.server_flush())
            .saturating_sub(self.applied_lsn())
    }

    /// Why the cache is off for good, if it is.
    pub fn off_reason(&self) -> Option<String> {
        self.off_reason
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn note(slot: &RwLock<Option<String>>, value: String) {
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    fn noted(slot: &RwLock<Option<String>>) -> String {
        let v = slot.read().unwrap_or_else(|p| p.into_inner());
        v.clone().unwrap_or_default()
    }

    /// Whether a read of `org`'s balances may be answered from memory: at once when the fence
    /// allows it, else after waiting (at most `read_your_writes_timeout_ms`) for a probe to
    /// allow it. False: go to PostgreSQL.
    pub async fn wait_fresh(&self, org: &str) -> bool {
        let bound = Duration::from_millis(self.config.max_staleness_ms);
        self.fence.reading();
        if self.serving() && self.fence.fresh(org, bound) {
            return true;
        }
        let m = &self.metrics;
        m.read_your_writes_waits.fetch_add(1, Ordering::Relaxed);
        let start = tokio::time::Instant::now();
        // Tokio's timer fires on the millisecond tick after its deadline: one tick early, so
        // that a wait ends within `read_your_writes_timeout_ms`, not just past it.
        let timeout = Duration::from_millis(self.config.read_your_writes_timeout_ms);
        let deadline = start + timeout.saturating_sub(Duration::from_millis(1));
        let ok = loop {
            let notified = self.advanced.notified();
            if !self.serving() {
                break false;
            }
            if self.fence.fresh(org, bound) {
                break true;
            }
            self.fence.want_probe();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.serving() && self.fence.fresh(org, bound);
            }
        };
        let waited = start.elapsed().as_micros() as u64;
        m.longest_wait_us.fetch_max(waited, Ordering::Relaxed);
        if !ok {
            m.read_your_writes_timeouts.fetch_add(1, Ordering::Relaxed);
            m.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Waits until everything up to `lsn` is applied, at most `timeout`. False on timeout or
    /// when the cache stopped serving meanwhile.
    pub async fn wait_applied(&self, lsn: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.advanced.notified();
            if !self.serving() {
                break;
            }
            if self.applied_lsn() >= lsn {
                return true;
            }
            self.ping.notify_one();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        false
    }

    fn set_serving(&self, on: bool) {
        self.serving.store(on, Ordering::Release);
        self.advanced.notify_waiters();
    }

    fn set_applied(&self, lsn: u64) {
        self.applied_lsn.fetch_max(lsn, Ordering::AcqRel);
        self.fence.applied(lsn);
        self.advanced.notify_waiters();
    }

    fn set_server_lsn(&self, lsn: u64) {
        self.server_lsn.fetch_max(lsn, Ordering::Relaxed);
    }
}

/// Who reads: the tenant whose balances are answered and how its session prints
/// `timestamptz`.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub org: &'a str,
    pub time: &'a timestamp::TimeStyle,
}

/// The messages that answer one recognised statement: RowDescription and the DataRows
/// (CommandComplete is `answer::command_complete(rows.len())`).
#[derive(Debug)]
pub struct Response {
    pub row_description: bytes::Bytes,
    pub rows: Vec<bytes::BytesMut>,
}

impl Balances {
    /// Answers `shape` for `reader` from memory, or `None` when PostgreSQL must (not
    /// serving, a value the store cannot reproduce, parameters not read here as PostgreSQL
    /// would). `params` and `param_formats` are the Bind's.
    pub fn answer(
        &self,
        shape: &shape::Shape,
        reader: Reader<'_>,
        params: &[Option<&[u8]>],
        param_formats: &[i16],
        result_formats: &[i16],
    ) -> Option<Response> {
        self.answer_with(
            shape,
            reader,
            params,
            param_formats,
            result_formats,
            |formats| {
                let cols = self.columns()?;
                Some(answer::row_description(shape, &cols, formats).freeze())
            },
        )
    }

    /// [`answer`](Self::answer) with the RowDescription for the output formats supplied by
    /// `describe` (`None`: the columns are not known yet), so callers may reuse one.
    pub fn answer_with(
        &self,
        shape: &shape::Shape,
        reader: Reader<'_>,
        params: &[Option<&[u8]>],
        param_formats: &[i16],
        result_formats: &[i16],
        describe: impl FnOnce(&[i16]) -> Option<bytes::Bytes>,
    ) -> Option<Response> {
        let found = answer::formats(shape, result_formats).and_then(|formats| {
            let row_description = describe(&formats)?;
            let rows = self.rows(shape, reader, params, param_formats, &formats)?;
            Some(Response {
                row_description,
                rows,
            })
        });
        let counter = if found.is_some() {
            &self.metrics.hits
        } else {
            &self.metrics.fallbacks
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn rows(
        &self,
        shape: &shape::Shape,
        reader: Reader<'_>,
        params: &[Option<&[u8]>],
        param_formats: &[i16],
        formats: &[i16],
    ) -> Option<Vec<bytes::BytesMut>> {
        let org = reader.org;
        use store::Lookup;
        let r = request::resolve(shape, params, param_formats)?;
        let columns = self.columns()?;
        if !columns.serve(shape) {
            return None;
        }
        let utc_text = reader.time.utc_iso();
        self.store.read(|t| {
            if !self.serving() {
                return None;
            }
            Some(match shape {
                shape::Shape::Rows { cols, order, .. } => {
                    request::select(t, org, &r, order, columns.bytewise)?
                        .iter()
                        .map(|row| answer::data_row(cols, org, row, formats, utc_text))
                        .collect::<Option<_>>()?
                }
                shape::Shape::Total { .. } => match request::total(t, org, &r) {
                    Lookup::Unservable => return None,
                    Lookup::Missing => vec![answer::total_row(None, formats)],
                    Lookup::Found(d) => vec![answer::total_row(Some(d), formats)],
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_fails_when_not_serving_and_succeeds_once_applied() {
        let b = Arc::new(Balances::new(BalancesConfig::default()));
        assert!(!b.wait_applied(1, Duration::from_millis(10)).await);
        assert!(!b.wait_fresh("o").await, "not serving: PostgreSQL answers");
        b.set_serving(true);
        let b2 = b.clone();
        let waiter =
            tokio::spawn(async move { b2.wait_applied(100, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.set_applied(100);
        assert!(waiter.await.expect("join"));
        assert!(b.metrics_text().contains("orgwall_balances_serving 1"));
    }
}
