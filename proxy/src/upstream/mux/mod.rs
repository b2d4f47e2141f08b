//! Multiplexed server connections: several clients' implicit transactions pipelined on one
//! PostgreSQL connection, each client's answers routed back to it in order.
//!
//! A session whose next messages form a self-contained batch (ending in Query or Sync, every
//! statement `sql::Summary::batchable`, no transaction open) takes a *share*: a `ServerConn`
//! whose stream is a [`Pipe`]. One write to the pipe submits one whole batch; the connection's
//! task writes them one unit at a time (a batch, or a group of read-only ones) and hands each
//! one the server's bytes up to its last ReadyForQuery. PostgreSQL runs the batches one after
//! another, exactly as if each had the connection to itself; what is shared is the
//! connection, and for groups the backend's flushes.
//!
//! Invariants: a batch never leaves the connection inside a transaction block (the session only
//! submits batchable statements); named statements are only assumed prepared once PostgreSQL
//! confirmed them (`prepared::Prepared`); a client's cancel target is this connection's backend only
//! while that client's batch is the last one written to it, and no batch is written while a
//! cancel forwarded to the backend could still land (`task`); a connection whose running
//! batch has run longer than [`SLOW`] takes no new batches (they go to another connection or
//! the exclusive pool).

mod group;
mod task;

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::ReadBuf;
use tokio::sync::mpsc;

use super::conn::ServerConn;
use super::prepared::Prepared;
use super::stream::ServerStream;
use super::Pool;
use crate::cancel::{BackendKey, CancelSlot, Fence};
use crate::upstream::context::{self as tenant, unix_now, Ticket};
use crate::wire;
use task::{Batch, Counters, Load};

/// Milliseconds on a process-wide monotonic clock, never 0.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// A head batch running longer than this keeps new batches off its connection.
const SLOW: Duration = Duration::from_millis(20);

/// The multiplexed connections of one pool.
#[derive(Debug)]
pub struct Mux {
    capacity: usize,
    /// Members of a group of read-only statements, at most (see `group`).
    group_max: usize,
    /// The longest answer message a connection's task reads (`max_message_bytes`).
    max_message: usize,
    conns: Mutex<Vec<Arc<MuxConn>>>,
    /// Serialises opening connections, so a burst of clients opens one, not `capacity`.
    opening: tokio::sync::Mutex<()>,
    /// Groups, for all of its connections.
    counters: Arc<Counters>,
}

/// One multiplexed PostgreSQL connection, as the sessions see it.
#[derive(Debug)]
pub struct MuxConn {
    id: u64,
    key: BackendKey,
    /// Fingerprint of the client settings this connection carries (see `session::settings`).
    settings: u64,
    /// The tenant context set when it opened (tenant identity only): it carries one tenant's
    /// batches, or those of sessions with no tenant bound.
    context: tenant::Context,
    submit: mpsc::UnboundedSender<Batch>,
    prepared: Arc<RwLock<HashSet<String>>>,
    load: Arc<Load>,
    /// Cancels forwarded to its backend (the task's connection's fence).
    fence: Arc<Fence>,
    /// Its transactions are READ COMMITTED, so read-only statements may run in groups (each
    /// still takes its own snapshot).
    groups: bool,
}

/// What a batch needs of a connection's tenant context: with the second wall, the session's
/// (context and the token that sets it).
pub type Want<'a> = Option<&'a Ticket>;

/// Whether `c` carries `settings` and the context `want` asks for.
fn fits(c: &MuxConn, settings: u64, want: Want<'_>, now: u64) -> bool {
    c.settings == settings && want.is_none_or(|t| c.context.serves(t.context.org(), now))
}

impl Mux {
    pub fn new(capacity: usize, group_max: usize, max_message: usize) -> Mux {
        Mux {
            capacity,
            group_max,
            max_message,
            conns: Mutex::new(Vec::new()),
            opening: tokio::sync::Mutex::new(()),
            counters: Arc::default(),
        }
    }

    /// Chooses (or opens) an idle connection with these settings for one batch, or — for a
    /// batch that may join a group of reads (`read_only`) — a busy one, where it waits for the
    /// running unit and then runs with the others that waited (`task`). `None`: use a
    /// connection of its own (waiting behind another client's statement gains nothing else).
    pub async fn pick(
        &self,
        pool: &Pool,
        settings: u64,
        replay: impl FnOnce() -> String,
        want: Want<'_>,
        read_only: bool,
    ) -> Option<Arc<MuxConn>> {
        let busy = || {
            self.choose(settings, want, false)
                .filter(|c| read_only && c.groups)
        };
        if let Some(c) = self.choose(settings, want, true) {
            return Some(c);
        }
        let Ok(_opening) = self.opening.try_lock() else {
            // Someone is opening one: share a busy connection rather than wait for it.
            return busy();
        };
        if let Some(c) = self.choose(settings, want, true) {
            return Some(c);
        }
        if !self.make_room(settings, want) {
            return busy();
        }
        match self.open(pool, settings, replay, want).await {
            Ok(c) => {
                self.lock().push(c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a multiplexed server connection");
                busy()
            }
        }
    }

    /// The least-loaded live, not-slow connection with these settings; with `idle_only`, only
    /// one with nothing in flight.
    fn choose(&self, settings: u64, want: Want<'_>, idle_only: bool) -> Option<Arc<MuxConn>> {
        let now = clock_ms();
        let secs = unix_now();
        let mut conns = self.lock();
        conns.retain(|c| !c.load.dead.load(Ordering::Relaxed));
        conns
            .iter()
            .filter(|c| fits(c, settings, want, secs) && !c.is_slow(now))
            .min_by_key(|c| c.load.inflight.load(Ordering::Relaxed))
            .filter(|c| !idle_only || c.load.inflight.load(Ordering::Relaxed) == 0)
            .cloned()
    }

    /// True when another connection may be opened: below capacity, or after letting go of an
    /// idle connection that carries other settings (or another tenant context).
    fn make_room(&self, settings: u64, want: Want<'_>) -> bool {
        let secs = unix_now();
        let mut conns = self.lock();
        if conns.len() < self.capacity {
            return true;
        }
        let idle_other = conns.iter().position(|c| {
            !fits(c, settings, want, secs) && c.load.inflight.load(Ordering::Relaxed) == 0
        });
        match idle_other {
            Some(i) => {
                // Its task ends (closing the connection) once no share refers to it.
                let gone = conns.swap_remove(i);
                tracing::debug!(server = gone.id, "retiring a multiplexed connection");
                true
            }
            None => false,
        }
    }

    async fn open(
        &self,
        pool: &Pool,
        settings: u64,
        replay: impl FnOnce() -> String,
        want: Want<'_>,
    ) -> Result<Arc<MuxConn>, super::UpstreamError> {
        let mut lease = pool.acquire().await?;
        // The connection may carry the settings of the last client that had it exclusively:
        // a shared connection starts from the batch's own (server defaults: `RESET ALL`).
        if lease.conn.settings != settings {
            let sql = if settings == 0 {
                "RESET ALL".to_string()
            } else {
                replay()
            };
            lease.conn.query_text(&sql).await?;
            lease.conn.settings = settings;
        }
        let mut context = tenant::Context::Unknown;
        if let Some(ticket) = want {
            lease.conn.set_context(&ticket.token).await?;
            context = ticket.context.clone();
        }
        let isolation = lease.conn.query_text("SHOW transaction_isolation").await?;
        let groups = self.group_max > 1
            && matches!(
                isolation.first().and_then(|r| r.first()),
                Some(Some(level)) if level == "read committed" || level == "read uncommitted"
            );
        let (submit, rx) = mpsc::unbounded_channel();
        let load = Arc::new(Load {
            counters: self.counters.clone(),
            ..Load::default()
        });
        let conn = Arc::new(MuxConn {
            id: lease.conn.id,
            key: lease.conn.key.clone(),
            settings,
            context,
            submit,
            prepared: Arc::default(),
            load: load.clone(),
            fence: lease.conn.fence.clone(),
            groups,
        });
        tracing::debug!(server = conn.id, "multiplexed server connection opened");
        tokio::spawn(task::run(lease, rx, load, self.group_max, self.max_message));
        Ok(conn)
    }

    /// Live multiplexed connections.
    pub fn live(&self) -> usize {
        self.lock()
            .iter()
            .filter(|c| !c.load.dead.load(Ordering::Relaxed))
            .count()
    }

    /// Groups of read-only statements run as one transaction so far, and their members (see
    /// `group`).
    pub fn groups(&self) -> (u64, u64) {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (n(&self.counters.groups), n(&self.counters.grouped))
    }

    /// Lets go of every connection; each closes once its last batch is answered.
    pub fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<MuxConn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MuxConn {
    fn is_slow(&self, now: u64) -> bool {
        let since = self.load.head_since.load(Ordering::Relaxed);
        since != 0 && now.saturating_sub(since) > SLOW.as_millis() as u64
    }

    /// A `ServerConn` for one client's batches on this connection; `read_only` when the first
    /// batch runs only read-only statements (`sql::Summary::read_only`).
    pub fn share(self: &Arc<Self>, cancel: CancelSlot, read_only: bool) -> ServerConn {
        // From now until its batch starts, a cancel from the client is held (not dropped).
        cancel.queued();
        let (tx, rx) = mpsc::unbounded_channel();
        ServerConn {
            id: self.id,
            stream: ServerStream::Pipe(Box::new(Pipe {
                conn: self.clone(),
                tx,
                rx,
                leftover: Bytes::new(),
                cancel,
                read_only: read_only && self.groups,
            })),
            rbuf: BytesMut::new(),
            key: self.key.clone(),
            startup_params: Vec::new(),
            prepared: Prepared::shared(self.prepared.clone()),
            listed: None,
            unnamed: None,
            settings: self.settings,
            context: self.context.clone(),
            fence: self.fence.clone(),
        }
    }
}

/// A client's end of a multiplexed connection: a write is one batch, reads are its answers.
#[derive(Debug)]
pub struct Pipe {
    conn: Arc<MuxConn>,
    tx: mpsc::UnboundedSender<Bytes>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    leftover: Bytes,
    cancel: CancelSlot,
    /// The next batch runs only read-only statements: it may join a group.
    read_only: bool,
}

impl Pipe {
    /// The connection tripped the tripwire: no new batches, and its task closes it.
    pub(in crate::upstream) fn poison(&self) {
        self.conn.load.dead.store(true, Ordering::Relaxed);
        self.conn.load.poisoned.store(true, Ordering::Relaxed);
    }

    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.leftover.is_empty() {
            match self.rx.poll_recv(cx) {
                // An empty chunk: the connection was lost (end of stream).
                Poll::Ready(Some(b)) => self.leftover = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover.split_to(n));
        Poll::Ready(Ok(()))
    }

    /// Submits `buf` (whole messages ending in Query or Sync) as one batch.
    pub(super) fn poll_write(&mut self, buf: &[u8]) -> Poll<io::Result<usize>> {
        let rfqs = answers_expected(buf).ok_or_else(|| {
            io::Error::other("a batch for a multiplexed connection must end with Query or Sync")
        })?;
        let coalesce = std::mem::take(&mut self.read_only) && group::fits(buf);
        let batch = Batch::new(
            Bytes::copy_from_slice(buf),
            rfqs,
            self.tx.clone(),
            self.cancel.clone(),
            coalesce,
        );
        self.conn.load.inflight.fetch_add(1, Ordering::Relaxed);
        if self.conn.submit.send(batch).is_err() {
            self.conn.load.inflight.fetch_sub(1, Ordering::Relaxed);
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(buf.len()))
    }
}

/// ReadyForQuery messages PostgreSQL will send for `buf`, if it is whole messages ending in a
/// Query or Sync.
fn answers_expected(buf: &[u8]) -> Option<usize> {
    let (mut rfqs, mut last) = (0, 0u8);
    let mut msgs = wire::frames(buf);
    for (tag, _) in msgs.by_ref() {
        last = tag;
        rfqs += usize::from(matches!(tag, b'Q' | b'S'));
    }
    (msgs.at_end() && matches!(last, b'Q' | b'S')).then_some(rfqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_batch_must_be_whole_messages_ending_in_query_or_sync() {
        let q = msg(b'Q', b"select 1\0");
        let (p, b, e, s) = (
            msg(b'P', b"\0x\0\0\0"),
            msg(b'B', b"\0\0"),
            msg(b'E', b"\0"),
            msg(b'S', b""),
        );
        let ext: Vec<u8> = [p.clone(), b, e, s.clone()].concat();
        assert_eq!(answers_expected(&q), Some(1));
        assert_eq!(answers_expected(&ext), Some(1));
        assert_eq!(
            answers_expected(&[q.clone(), ext.clone(), q.clone()].concat()),
            Some(3)
        );
        assert_eq!(answers_expected(&p), None, "no Sync");
        assert_eq!(answers_expected(&q[..q.len() - 1]), None, "cut short");
        assert_eq!(
            answers_expected(&[s.clone(), p].concat()),
            None,
            "ends after Sync"
        );
        assert_eq!(answers_expected(&[]), None);
    }
}
