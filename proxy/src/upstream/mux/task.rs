//! A multiplexed connection's task: writes the submitted batches back to back, hands each
//! batch the answers up to its last ReadyForQuery, and runs again a batch that a cancel meant
//! for another client's statement failed.
//!
//! Why the rerun: PostgreSQL's postmaster signals a backend twice for one cancel request
//! (`kill(pid)`, then `kill(-pid)` for its process group). When the backend handles the first
//! signal before the second is sent, the second arrives after the cancelled statement has
//! failed — harmless on a connection of one's own (the backend is waiting for the client's
//! next command and ignores it), but here the next command is often another client's,
//! already in the backend's input, and PostgreSQL fails it with `57014`. A cancel can also
//! arrive just after the statement it was meant for has finished. So a batch that starts soon
//! after a cancel was sent to the backend has its answer held back; if that answer is a
//! `57014` and the batch's own client asked for no cancel, nothing of it took effect (one
//! Query or one Sync is one implicit transaction, rolled back by the error) and it is written
//! again, its first answer never seen by the client. What no transaction undoes happens twice,
//! as when a client retries: sequence values drawn, functions acting outside the transaction.
//! (A `statement_timeout` fails with `57014` too; such a batch runs again only if it failed
//! right after a cancel to the backend.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

use super::super::conn::BackendKey;
use super::super::Lease;
use super::group::{self, Member};
use crate::cancel::{clock_ms, CancelSlot, Signals};
use crate::duplex::{self, Io};
use crate::wire;

/// A batch starting less than this after a cancel was sent to the backend is held back.
const SIGNAL_GRACE: Duration = Duration::from_millis(200);

/// An answer held back beyond this many bytes is passed on (and can no longer be rerun).
const HOLD_LIMIT: usize = 64 * 1024;

/// Reruns of one batch, at most.
const MAX_RERUNS: u8 = 3;

/// What the connection's task reports to the sessions choosing a connection.
#[derive(Debug, Default)]
pub(super) struct Load {
    /// Batches submitted and not yet answered.
    pub inflight: AtomicUsize,
    /// When the running batch started ([`clock_ms`]; 0 when idle).
    pub head_since: AtomicU64,
    pub dead: AtomicBool,
    /// A session saw this connection trip the second wall's tripwire: close it.
    pub poisoned: AtomicBool,
    /// Cancels sent to this connection's backend.
    pub signals: Arc<Signals>,
    /// Counted for the whole pool.
    pub counters: Arc<Counters>,
}

/// What the connections of one pool count, for `SHOW orgwall_pool`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Batches run again.
    pub reruns: AtomicU64,
    /// Groups of read-only statements run as one transaction, and their members.
    pub groups: AtomicU64,
    pub grouped: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub bytes: Bytes,
    /// ReadyForQuery messages that answer it (one per Query or Sync).
    pub rfqs: usize,
    pub reply: mpsc::UnboundedSender<Bytes>,
    pub cancel: CancelSlot,
    /// Of `rfqs`, those still to come.
    pub left: usize,
    /// When it was written to the connection ([`clock_ms`]).
    pub written: u64,
    /// Its client's cancel requests when it took its share (any later one may be for it).
    pub requests: u64,
    pub held: Option<Held>,
    pub reruns: u8,
    /// One read-only statement that may run in a group (see `group`).
    pub coalesce: bool,
    /// Its Sync was written: its answer ends with a ReadyForQuery from the server. False for a
    /// group member other than the last.
    pub synced: bool,
    /// Its answer held a message over `max_message_bytes`: its session was given the end of
    /// the stream, and the rest of the answer is dropped.
    pub cut: bool,
}

impl Batch {
    pub fn new(
        bytes: Bytes,
        rfqs: usize,
        reply: mpsc::UnboundedSender<Bytes>,
        cancel: CancelSlot,
        requests: u64,
        coalesce: bool,
    ) -> Batch {
        Batch {
            bytes,
            rfqs,
            reply,
            cancel,
            left: rfqs,
            written: 0,
            requests,
            held: None,
            reruns: 0,
            coalesce,
            synced: true,
            cut: false,
        }
    }
}

/// An answer held back until it is known whether its batch must run again.
#[derive(Debug, Default)]
pub(super) struct Held {
    chunks: Vec<Bytes>,
    bytes: usize,
    /// A `57014` came before the first ReadyForQuery.
    cancelled: bool,
}

impl Held {
    /// Takes `chunk`; false once the answer can no longer call for a rerun (then the caller
    /// passes everything on).
    fn take(&mut self, chunk: Bytes) -> bool {
        for (tag, body) in wire::frames(&chunk) {
            match tag {
                b'E' if wire::sqlstate(body) == Some("57014") => self.cancelled = true,
                b'Z' if !self.cancelled => {
                    self.push(chunk);
                    return false;
                }
                _ => {}
            }
        }
        self.push(chunk);
        self.cancelled || self.bytes <= HOLD_LIMIT
    }

    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push(chunk);
    }

    fn release(self, reply: &mpsc::UnboundedSender<Bytes>) {
        for c in self.chunks {
            let _ = reply.send(c);
        }
    }
}

/// The connection's task and its state.
pub(super) struct Conn {
    pub queue: VecDeque<Batch>,
    pub out: BytesMut,
    pub key: BackendKey,
    pub load: Arc<Load>,
    /// Members of the group being written (their Syncs held back), and at most.
    pub open: usize,
    pub max_members: usize,
    /// A group member failed: PostgreSQL skips the rest of the group up to its Sync.
    pub skipping: bool,
    /// The longest message read whole (`max_message_bytes`); a longer one is dropped as it
    /// arrives (`discard`: its bytes still to come) and fails its batch's session.
    pub max_message: usize,
    pub discard: usize,
    /// PostgreSQL answered with something no shared batch can ask for (a COPY): the
    /// connection is closed and every batch on it fails, rather than risk handing one
    /// client's answer to another.
    pub broken: bool,
}

/// Runs the connection until no client refers to it any more or it is lost.
pub(super) async fn run(
    mut lease: Lease,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    load: Arc<Load>,
    max_members: usize,
    max_message: usize,
) {
    let server = &mut lease.conn;
    let mut c = Conn {
        queue: VecDeque::new(),
        out: BytesMut::new(),
        key: server.key.clone(),
        load,
        open: 0,
        max_members,
        max_message,
        discard: 0,
        broken: false,
        skipping: false,
    };
    let mut closed = false;
    let why = loop {
        if closed && c.queue.is_empty() {
            break "no more clients";
        }
        if c.load.poisoned.load(Ordering::Relaxed) {
            break "tripwire";
        }
        c.close_group();
        duplex::write_now(&mut server.stream, &mut c.out);
        let ev = tokio::select! {
            b = rx.recv(), if !closed => match b {
                Some(b) => Ok(Some(b)),
                None => Ok(None),
            },
            io = std::future::poll_fn(|cx| {
                duplex::poll_duplex(cx, &mut server.stream, Some(&mut server.rbuf), &c.out)
            }) => Err(io),
        };
        match ev {
            Ok(Some(b)) => {
                c.submit(b);
                while let Ok(b) = rx.try_recv() {
                    c.submit(b);
                }
            }
            Ok(None) => closed = true,
            Err(Io::Wrote(Ok(n))) if n > 0 => c.out.advance(n),
            Err(Io::Read(Ok(n))) if n > 0 => {
                c.route(&mut server.rbuf);
                if c.broken {
                    break "unexpected message on a multiplexed connection";
                }
            }
            Err(Io::Wrote(_)) | Err(Io::Read(_)) => break "connection lost",
        }
    };
    c.load.dead.store(true, Ordering::Relaxed);
    rx.close();
    while let Ok(b) = rx.try_recv() {
        c.queue.push_back(b);
    }
    if !c.queue.is_empty() {
        tracing::warn!(
            server = server.id,
            batches = c.queue.len(),
            "multiplexed server connection lost"
        );
    }
    for b in c.queue.drain(..) {
        b.cancel.finish();
        let _ = b.reply.send(Bytes::new());
        c.load.inflight.fetch_sub(1, Ordering::Relaxed);
    }
    tracing::debug!(
        server = server.id,
        why,
        "multiplexed server connection closed"
    );
}

impl Conn {
    /// Writes `b` behind the batches already written.
    pub fn submit(&mut self, mut b: Batch) {
        b.written = clock_ms();
        b.left = b.rfqs;
        if self.queue.is_empty() {
            start(&self.load, &self.key, &mut b);
        } else {
            b.cancel.queued();
        }
        if b.coalesce {
            if self.open >= self.max_members {
                self.close_group();
            }
            let body = b.bytes.len() - group::SYNC.len();
            self.out.extend_from_slice(&b.bytes[..body]);
            b.synced = false;
            self.open += 1;
        } else {
            self.close_group();
            self.out.extend_from_slice(&b.bytes);
            b.synced = true;
        }
        self.queue.push_back(b);
    }

    /// Ends the group being written: its last member's Sync goes out.
    pub fn close_group(&mut self) {
        if self.open == 0 {
            return;
        }
        if self.open > 1 {
            let counters = &self.load.counters;
            counters.groups.fetch_add(1, Ordering::Relaxed);
            counters
                .grouped
                .fetch_add(self.open as u64, Ordering::Relaxed);
        }
        self.open = 0;
        self.out.extend_from_slice(&group::SYNC);
        if let Some(last) = self.queue.back_mut() {
            last.synced = true;
        }
    }

    /// Hands every complete message in `rbuf` to the batch it answers.
    pub fn route(&mut self, rbuf: &mut BytesMut) {
        loop {
            if self.discard > 0 {
                let n = self.discard.min(rbuf.len());
                rbuf.advance(n);
                self.discard -= n;
                if self.discard > 0 {
                    return;
                }
            }
            let (pos, end) = self.scan(rbuf);
            if pos == 0 {
                if self.refuse_oversized(rbuf) {
                    continue;
                }
                return;
            }
            if self.queue.is_empty() {
                tracing::debug!(
                    bytes = pos,
                    "unsolicited messages on a multiplexed connection"
                );
                rbuf.advance(pos);
                continue;
            }
            let mut reruns = Vec::new();
            match end {
                End::Open => {
                    let chunk = rbuf.split_to(pos).freeze();
                    if let Some(head) = self.queue.front_mut() {
                        pass(head, chunk);
                    }
                    // What is left is part of a message: too long to wait for, or not yet.
                    continue;
                }
                End::Ready => {
                    let chunk = rbuf.split_to(pos).freeze();
                    reruns.extend(self.queue.pop_front().and_then(|b| self.answered(b, chunk)));
                }
                End::Member { failed } => {
                    // Its ReadyForQuery is Orgwall's: the group's Sync is still to come.
                    let mut answer = BytesMut::with_capacity(pos + 6);
                    answer.extend_from_slice(&rbuf[..pos]);
                    rbuf.advance(pos);
                    wire::put_ready(&mut answer, b'I');
                    let b = self.queue.pop_front();
                    reruns.extend(b.and_then(|b| self.answered(b, answer.freeze())));
                    self.skipping = failed;
                }
                End::Broken => {
                    tracing::warn!("a COPY answer on a multiplexed connection: closing it");
                    self.broken = true;
                    return;
                }
                End::Skipped => {
                    // The group's ReadyForQuery: the members still queued never ran.
                    rbuf.advance(pos);
                    self.skipping = false;
                    while let Some(mut b) = self.queue.pop_front() {
                        b.held = None;
                        let last = b.synced;
                        reruns.push(b);
                        if last {
                            break;
                        }
                    }
                }
            }
            if !self.skipping {
                match self.queue.front_mut() {
                    Some(next) => start(&self.load, &self.key, next),
                    None => self.load.head_since.store(0, Ordering::Relaxed),
                }
            }
            for b in reruns {
                self.submit(b);
            }
        }
    }

    /// When the (incomplete) message at the front of `rbuf` is longer than `max_message`:
    /// drops it as it arrives, and gives its batch's session only its first five bytes, then
    /// the end of the stream, so that the session refuses it as it refuses one on a connection
    /// of its own (`54000`). The rest of that batch's answer goes nowhere; other batches are
    /// unaffected.
    fn refuse_oversized(&mut self, rbuf: &mut BytesMut) -> bool {
        let Some(len) = rbuf
            .get(1..5)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return false;
        };
        let len = len as usize;
        if len <= self.max_message {
            return false;
        }
        tracing::warn!(
            len,
            max = self.max_message,
            "PostgreSQL sent a message over max_message_bytes on a multiplexed connection"
        );
        if let Some(head) = self.queue.front_mut() {
            if let Some(held) = head.held.take() {
                held.release(&head.reply);
            }
            let _ = head.reply.send(Bytes::copy_from_slice(&rbuf[..5]));
            let _ = head.reply.send(Bytes::new());
            head.cut = true;
        }
        self.discard = len + 1;
        true
    }

    /// Reads the complete messages in `rbuf` up to where the head batch's answer (or the
    /// skipped rest of a failed group) ends: their length and what ends there.
    fn scan(&mut self, rbuf: &[u8]) -> (usize, End) {
        let mut msgs = wire::frames(rbuf);
        let mut end = End::Open;
        let skipping = self.skipping;
        if let Some(head) = self.queue.front_mut() {
            for (tag, _) in msgs.by_ref() {
                if skipping || !head.synced {
                    end = match (group::member(tag), skipping) {
                        (Member::NotRun, _) => End::Skipped,
                        (_, true) | (Member::Continues, _) => continue,
                        (Member::Completed, false) => End::Member { failed: false },
                        (Member::Failed, false) => End::Member { failed: true },
                    };
                    break;
                }
                if matches!(tag, b'G' | b'H' | b'W') {
                    end = End::Broken;
                    break;
                }
                if tag == b'Z' {
                    head.left -= 1;
                    if head.left == 0 {
                        end = End::Ready;
                        break;
                    }
                }
            }
        } else {
            msgs.by_ref().for_each(drop);
        }
        (msgs.consumed(), end)
    }

    /// `last` completes `b`'s answer: passes it on, or returns `b` to be written again when a
    /// cancel that was not its client's failed it. The client's cancel target is reset first:
    /// once it has its answer it may start a statement elsewhere.
    fn answered(&mut self, mut b: Batch, last: Bytes) -> Option<Batch> {
        b.cancel.finish();
        if b.cut {
            // Its session has had the end of the stream.
        } else if let Some(mut held) = b.held.take() {
            held.take(last);
            // A statement timeout fails with 57014 too: rerun only right after a cancel.
            let signalled = self.load.signals.recent(u64::MAX, SIGNAL_GRACE);
            if held.cancelled && signalled && b.cancel.requests() == b.requests {
                tracing::info!(
                    reruns = b.reruns + 1,
                    "a batch failed by a cancel meant for another statement runs again"
                );
                b.reruns += 1;
                self.load.counters.reruns.fetch_add(1, Ordering::Relaxed);
                return Some(b);
            }
            held.release(&b.reply);
        } else {
            let _ = b.reply.send(last);
        }
        self.load.inflight.fetch_sub(1, Ordering::Relaxed);
        None
    }
}

/// Where the messages read so far leave the batch at the head of the queue.
enum End {
    /// Its answer goes on.
    Open,
    /// Its last ReadyForQuery arrived.
    Ready,
    /// A group member's Execute completed or failed (the rest of its group is then skipped).
    Member { failed: bool },
    /// The ReadyForQuery ending a group whose remaining members PostgreSQL skipped.
    Skipped,
    /// A message no batch on a shared connection can be answered with.
    Broken,
}

/// `b` is now the batch PostgreSQL runs; its answer is held back if a cancel was sent to the
/// backend since it was written or very recently.
fn start(load: &Load, key: &BackendKey, b: &mut Batch) {
    load.head_since.store(clock_ms(), Ordering::Relaxed);
    let exposed = load.signals.recent(b.written, SIGNAL_GRACE);
    b.held = (exposed && b.rfqs == 1 && b.reruns < MAX_RERUNS).then(Held::default);
    b.cancel.start(key, &load.signals);
}

/// Gives `chunk` to `b`'s client, or holds it back.
fn pass(b: &mut Batch, chunk: Bytes) {
    if b.cut {
        return;
    }
    match &mut b.held {
        Some(held) => {
            if !held.take(chunk) {
                if let Some(held) = b.held.take() {
                    held.release(&b.reply);
                }
            }
        }
        None => {
            let _ = b.reply.send(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::{CancelHandle, CancelRegistry};
    use pgwire::messages::startup::SecretKey;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        wire::frame(tag, body).to_vec()
    }

    fn cancelled() -> Vec<u8> {
        msg(
            b'E',
            b"SERROR\0C57014\0Mcanceling statement due to user request\0\0",
        )
    }

    struct Client {
        rx: mpsc::UnboundedReceiver<Bytes>,
        handle: CancelHandle,
    }

    impl Client {
        /// The client's cancel request, as a CancelRequest for its key would make it.
        async fn cancel(&self, reg: &CancelRegistry) {
            let h = &self.handle;
            reg.cancel(h.pid, &SecretKey::I32(h.secret)).await;
        }

        fn got(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            while let Ok(b) = self.rx.try_recv() {
                v.extend_from_slice(&b);
            }
            v
        }
    }

    fn conn() -> Conn {
        let key = BackendKey {
            host: "h".into(),
            port: 1,
            pid: 7,
            secret: SecretKey::I32(1),
        };
        Conn {
            queue: VecDeque::new(),
            out: BytesMut::new(),
            key,
            load: Arc::default(),
            open: 0,
            max_members: 4,
            skipping: false,
            max_message: 1024,
            discard: 0,
            broken: false,
        }
    }

    /// Submits a batch of `bytes` answered by `rfqs` ReadyForQuery messages.
    fn submit(c: &mut Conn, reg: &Arc<CancelRegistry>, bytes: &[u8], rfqs: usize) -> Client {
        queue(c, reg, bytes, rfqs, false)
    }

    /// Submits one read-only statement (`name` then Sync) that may join a group.
    fn member(c: &mut Conn, reg: &Arc<CancelRegistry>, name: &[u8]) -> Client {
        queue(c, reg, &[name, &group::SYNC[..]].concat(), 1, true)
    }

    fn queue(
        c: &mut Conn,
        reg: &Arc<CancelRegistry>,
        bytes: &[u8],
        rfqs: usize,
        coalesce: bool,
    ) -> Client {
        let (client, mut batch) = share(reg, bytes, rfqs);
        batch.coalesce = coalesce;
        c.load.inflight.fetch_add(1, Ordering::Relaxed);
        c.submit(batch);
        client
    }

    /// A client that has taken a share for a batch of `bytes`, and that batch, not submitted.
    fn share(reg: &Arc<CancelRegistry>, bytes: &[u8], rfqs: usize) -> (Client, Batch) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = reg.register();
        let slot = handle.slot();
        let requests = slot.queued();
        let batch = Batch::new(
            Bytes::copy_from_slice(bytes),
            rfqs,
            tx,
            slot,
            requests,
            false,
        );
        (Client { rx, handle }, batch)
    }

    #[tokio::test]
    async fn a_group_runs_on_one_sync_and_each_member_gets_its_own_answer() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        c.max_members = 3;
        let mut m: Vec<Client> = [b"a", b"b", b"c", b"d"]
            .iter()
            .map(|n| member(&mut c, &reg, &n[..]))
            .collect();
        let mut e = submit(&mut c, &reg, b"e", 1);
        c.close_group();
        let sync = &group::SYNC[..];
        let written = [&b"abc"[..], sync, b"d", sync, b"e"].concat();
        assert_eq!(
            &c.out[..],
            &written[..],
            "three members, then a group of one"
        );
        let (row, done, z) = (
            msg(b'D', b"\0\x01"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
        );
        let answer = [row.clone(), done.clone()].concat();
        let mut rbuf = BytesMut::new();
        for _ in 0..2 {
            rbuf.extend_from_slice(&answer);
        }
        rbuf.extend_from_slice(&[answer.clone(), z.clone()].concat());
        for _ in 0..2 {
            rbuf.extend_from_slice(&[answer.clone(), z.clone()].concat());
        }
        c.route(&mut rbuf);
        let whole = [answer.clone(), z.clone()].concat();
        for client in m.iter_mut() {
            assert_eq!(
                client.got(),
                whole,
                "a member's answer ends in ReadyForQuery"
            );
        }
        assert_eq!(e.got(), whole);
        assert!(c.queue.is_empty() && rbuf.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(c.load.counters.groups.load(Ordering::Relaxed), 1);
        assert_eq!(c.load.counters.grouped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn members_skipped_after_a_failed_one_run_again() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = member(&mut c, &reg, b"a");
        let mut b = member(&mut c, &reg, b"b");
        let mut d = member(&mut c, &reg, b"d");
        c.close_group();
        c.out.clear();
        let failed = msg(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0");
        let (done, z) = (msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I"));
        // `a` completes, `b` fails, PostgreSQL skips `d` up to the group's Sync.
        let mut rbuf = BytesMut::from(&[done.clone(), failed.clone(), z.clone()].concat()[..]);
        c.route(&mut rbuf);
        assert_eq!(a.got(), [done.clone(), z.clone()].concat());
        assert_eq!(b.got(), [failed, z.clone()].concat(), "its error, as alone");
        assert!(d.got().is_empty(), "never ran: not answered");
        c.close_group();
        assert_eq!(&c.out[..], &[&b"d"[..], &group::SYNC[..]].concat()[..]);
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 1);
        rbuf.extend_from_slice(&[done.clone(), z.clone()].concat());
        c.route(&mut rbuf);
        assert_eq!(d.got(), [done, z].concat());
        assert!(c.queue.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn answers_are_split_at_each_batch_s_last_ready_for_query() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = submit(&mut c, &reg, b"a", 2);
        let mut b = submit(&mut c, &reg, b"b", 1);
        let (row, z) = (msg(b'D', b"\0\x01"), msg(b'Z', b"I"));
        let first: Vec<u8> = [row.clone(), z.clone(), row.clone(), z.clone()].concat();
        let second: Vec<u8> = [row.clone(), z.clone()].concat();
        // Arrives in pieces: the first batch's answer, then the second's, cut mid-message.
        let all = [first.clone(), second.clone()].concat();
        let mut rbuf = BytesMut::from(&all[..first.len() + 3]);
        c.route(&mut rbuf);
        rbuf.extend_from_slice(&all[first.len() + 3..]);
        c.route(&mut rbuf);
        assert!(rbuf.is_empty() && c.queue.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
        assert_eq!((a.got(), b.got()), (first, second));
        assert_eq!(&c.out[..], b"ab");
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_dropped_as_it_arrives_and_fails_only_its_batch() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = submit(&mut c, &reg, b"a", 1);
        let mut b = submit(&mut c, &reg, b"b", 1);
        let (row, done, z) = (
            msg(b'D', b"\0\x01"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
        );
        let big = msg(b'D', &[b'x'; 5000]);
        // A small row, then the big one arriving in pieces.
        let mut rbuf = BytesMut::from(&[row.clone(), big[..100].to_vec()].concat()[..]);
        c.route(&mut rbuf);
        assert!(rbuf.is_empty(), "nothing of the big message is kept");
        assert_eq!(a.got(), [row.clone(), big[..5].to_vec()].concat());
        for piece in big[100..].chunks(1000) {
            rbuf.extend_from_slice(piece);
            c.route(&mut rbuf);
            assert!(rbuf.is_empty());
        }
        let b_answer = [row, done.clone(), z.clone()].concat();
        rbuf.extend_from_slice(&[done, z, b_answer.clone()].concat());
        c.route(&mut rbuf);
        assert!(a.got().is_empty(), "the rest of its answer goes nowhere");
        assert_eq!(b.got(), b_answer, "the next batch is unaffected");
        assert!(c.queue.is_empty() && rbuf.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_batch_failed_by_another_client_s_cancel_runs_again() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = submit(&mut c, &reg, b"a", 1);
        let mut b = submit(&mut c, &reg, b"b", 1);
        let mut d = submit(&mut c, &reg, b"d", 2);
        // A cancel goes to the backend while `a` runs (as `CancelRegistry::cancel` notes it).
        a.cancel(&reg).await;
        assert!(c.load.signals.recent(u64::MAX, SIGNAL_GRACE));
        let (ok, z) = ([msg(b'C', b"SELECT 1\0")].concat(), msg(b'Z', b"I"));
        let failed: Vec<u8> = [cancelled(), z.clone()].concat();
        // `a` and `b` both fail with 57014, `d` (two Syncs) too.
        let d_answer = [failed.clone(), ok.clone(), z.clone()].concat();
        let mut rbuf =
            BytesMut::from(&[failed.clone(), failed.clone(), d_answer.clone()].concat()[..]);
        c.route(&mut rbuf);
        assert_eq!(
            a.got(),
            failed,
            "the cancelled statement's client sees its error"
        );
        assert!(
            b.got().is_empty(),
            "the neighbour's first answer is dropped"
        );
        assert_eq!(
            d.got(),
            d_answer,
            "a batch of two transactions is never rerun"
        );
        assert_eq!(&c.out[..], b"abdb", "the neighbour is written again");
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 1);
        let b_answer = [ok.clone(), z.clone()].concat();
        rbuf.extend_from_slice(&b_answer);
        c.route(&mut rbuf);
        assert_eq!(b.got(), b_answer);
        assert!(c.queue.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_batch_whose_own_client_cancelled_is_not_rerun() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = submit(&mut c, &reg, b"a", 1);
        let mut b = submit(&mut c, &reg, b"b", 1);
        a.cancel(&reg).await;
        b.cancel(&reg).await;
        let failed: Vec<u8> = [cancelled(), msg(b'Z', b"I")].concat();
        let mut rbuf = BytesMut::from(&[failed.clone(), failed.clone()].concat()[..]);
        c.route(&mut rbuf);
        assert_eq!((a.got(), b.got()), (failed.clone(), failed));
        assert_eq!(&c.out[..], b"ab");
        assert!(c.queue.is_empty());
    }

    #[tokio::test]
    async fn a_cancel_between_share_and_submit_counts_as_the_batch_s_own() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = submit(&mut c, &reg, b"a", 1);
        a.cancel(&reg).await;
        // `b` takes its share, its client cancels, then the batch reaches the connection.
        let (mut b, batch) = share(&reg, b"b", 1);
        b.cancel(&reg).await;
        c.load.inflight.fetch_add(1, Ordering::Relaxed);
        c.submit(batch);
        let failed: Vec<u8> = [cancelled(), msg(b'Z', b"I")].concat();
        let mut rbuf = BytesMut::from(&[failed.clone(), failed.clone()].concat()[..]);
        c.route(&mut rbuf);
        assert_eq!((a.got(), b.got()), (failed.clone(), failed));
        assert_eq!(&c.out[..], b"ab", "not run again");
    }
}
