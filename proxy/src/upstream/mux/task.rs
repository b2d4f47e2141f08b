//! A multiplexed connection's task: takes the batches sessions submit, writes one *unit* at a
//! time (one batch, or a group of read-only ones, see `group`) and hands each batch the
//! server's answers up to its last ReadyForQuery.
//!
//! One unit at a time, never a pipeline of several clients' batches: a batch written behind a
//! running one sits in the backend's input, and a cancel meant for the running statement that
//! lands just after it ended would fail the next one, another client's (`cancel`). So the next
//! unit is written once the last is answered, and only once the connection's fence is clean:
//! every cancel forwarded to the backend confirmed by PostgreSQL, then absorbed by a Sync. A
//! client's cancel target is this backend only while its statement is the last one written
//! (a group member with members after it keeps a cancel held, dropped if it finishes first).
//! Nothing is ever run twice: the only batches written again are group members PostgreSQL
//! skipped, which never ran.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

use super::super::Lease;
use super::clock_ms;
use super::group::{self, Member};
use crate::cancel::{BackendKey, CancelSlot, Fence};
use crate::duplex::{self, Io};
use crate::wire;

/// What the connection's task reports to the sessions choosing a connection.
#[derive(Debug, Default)]
pub(super) struct Load {
    /// Batches submitted and not yet answered.
    pub inflight: AtomicUsize,
    /// When the running unit started ([`clock_ms`]; 0 when idle).
    pub head_since: AtomicU64,
    pub dead: AtomicBool,
    /// A session saw this connection trip the second wall's tripwire: close it.
    pub poisoned: AtomicBool,
    /// Counted for the whole pool.
    pub counters: Arc<Counters>,
}

/// What the connections of one pool count, for `SHOW orgwall_pool`.
#[derive(Debug, Default)]
pub(super) struct Counters {
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
        coalesce: bool,
    ) -> Batch {
        Batch {
            bytes,
            rfqs,
            reply,
            cancel,
            left: rfqs,
            coalesce,
            synced: true,
            cut: false,
        }
    }
}

/// The connection's task and its state.
pub(super) struct Conn {
    /// Submitted and not yet written, in order.
    pub waiting: VecDeque<Batch>,
    /// The unit written, its batches in the order PostgreSQL answers them.
    pub queue: VecDeque<Batch>,
    pub out: BytesMut,
    pub key: BackendKey,
    /// Cancels forwarded to this connection's backend.
    pub fence: Arc<Fence>,
    /// A Sync written to absorb forwarded cancels and not yet answered: the fence's mark.
    pub absorbing: Option<u64>,
    pub load: Arc<Load>,
    /// Members of a group, at most.
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
    let mut c = Conn::new(server.key.clone(), server.fence.clone(), load);
    c.max_members = max_members;
    c.max_message = max_message;
    let fence = c.fence.clone();
    let mut closed = false;
    let why = loop {
        if closed && c.is_idle() {
            break "no more clients";
        }
        if c.load.poisoned.load(Ordering::Relaxed) {
            break "tripwire";
        }
        if fence.broken() {
            break "a cancel request was not confirmed";
        }
        let fenced = c.write_next();
        duplex::write_now(&mut server.stream, &mut c.out);
        let ev = tokio::select! {
            b = rx.recv(), if !closed => Ok(b.map(Some)),
            _ = fence.settled(), if fenced => Ok(Some(None)),
            io = std::future::poll_fn(|cx| {
                duplex::poll_duplex(cx, &mut server.stream, Some(&mut server.rbuf), &c.out)
            }) => Err(io),
        };
        match ev {
            Ok(Some(Some(b))) => {
                c.waiting.push_back(b);
                while let Ok(b) = rx.try_recv() {
                    c.waiting.push_back(b);
                }
            }
            Ok(Some(None)) => {}
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
        c.waiting.push_back(b);
    }
    let left = c.queue.len() + c.waiting.len();
    if left > 0 {
        tracing::warn!(
            server = server.id,
            batches = left,
            why,
            "multiplexed server connection lost"
        );
    }
    for b in c.queue.drain(..).chain(c.waiting.drain(..)) {
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
    pub fn new(key: BackendKey, fence: Arc<Fence>, load: Arc<Load>) -> Conn {
        Conn {
            waiting: VecDeque::new(),
            queue: VecDeque::new(),
            out: BytesMut::new(),
            key,
            fence,
            absorbing: None,
            load,
            max_members: 1,
            skipping: false,
            max_message: usize::MAX,
            discard: 0,
            broken: false,
        }
    }

    /// Nothing submitted is unanswered.
    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.waiting.is_empty() && self.absorbing.is_none()
    }

    /// Writes the next unit once the last one is answered and the fence is clean, or the
    /// Sync that cleans it. True while a forwarded cancel awaits PostgreSQL's confirmation
    /// (then nothing is written: wait for the fence).
    pub fn write_next(&mut self) -> bool {
        if !self.queue.is_empty() || self.absorbing.is_some() || self.waiting.is_empty() {
            return false;
        }
        if self.fence.dirty() {
            let Some(mark) = self.fence.settled_now() else {
                return true;
            };
            self.out.extend_from_slice(&group::SYNC);
            self.absorbing = Some(mark);
            return false;
        }
        let Some(first) = self.waiting.pop_front() else {
            return false;
        };
        let mut unit = vec![first];
        if unit[0].coalesce {
            while unit.len() < self.max_members && self.waiting.front().is_some_and(|b| b.coalesce)
            {
                unit.extend(self.waiting.pop_front());
            }
        }
        let members = unit.len();
        if members > 1 {
            let counters = &self.load.counters;
            counters.groups.fetch_add(1, Ordering::Relaxed);
            counters
                .grouped
                .fetch_add(members as u64, Ordering::Relaxed);
        }
        for (i, mut b) in unit.into_iter().enumerate() {
            b.left = b.rfqs;
            b.synced = i + 1 == members;
            let body = if b.synced {
                &b.bytes[..]
            } else {
                // A member's Sync is left out; the group's last member keeps its own.
                &b.bytes[..b.bytes.len() - group::SYNC.len()]
            };
            self.out.extend_from_slice(body);
            self.queue.push_back(b);
        }
        self.start_head();
        false
    }

    /// The batch at the head of the queue is the one PostgreSQL runs now: its client's
    /// cancels go to this backend if nothing of another client's is written behind it.
    fn start_head(&mut self) {
        self.load.head_since.store(clock_ms(), Ordering::Relaxed);
        match self.queue.front() {
            Some(head) if self.queue.len() == 1 => head.cancel.start(&self.key, &self.fence),
            _ => {}
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
            if self.queue.is_empty() {
                if !self.unsolicited(rbuf) {
                    return;
                }
                continue;
            }
            let (pos, end) = self.scan(rbuf);
            if pos == 0 {
                if self.refuse_oversized(rbuf) {
                    continue;
                }
                return;
            }
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
                    if let Some(b) = self.queue.pop_front() {
                        self.answered(b, chunk);
                    }
                }
                End::Member { failed } => {
                    // Its ReadyForQuery is Orgwall's: the group's Sync is still to come.
                    let mut answer = BytesMut::with_capacity(pos + 6);
                    answer.extend_from_slice(&rbuf[..pos]);
                    rbuf.advance(pos);
                    wire::put_ready(&mut answer, b'I');
                    if let Some(b) = self.queue.pop_front() {
                        self.answered(b, answer.freeze());
                    }
                    self.skipping = failed;
                }
                End::Broken => {
                    tracing::warn!("a COPY answer on a multiplexed connection: closing it");
                    self.broken = true;
                    return;
                }
                End::Skipped => {
                    // The group's ReadyForQuery: the members still queued never ran; they
                    // go first, in their order, when the next unit is written.
                    rbuf.advance(pos);
                    self.skipping = false;
                    while let Some(b) = self.queue.pop_back() {
                        self.waiting.push_front(b);
                    }
                }
            }
            if !self.skipping {
                if self.queue.is_empty() {
                    self.load.head_since.store(0, Ordering::Relaxed);
                } else {
                    self.start_head();
                }
            }
        }
    }

    /// Messages with no batch to answer: the answer to an absorbing Sync (which may be a
    /// `57014` when a cancel's signal landed on it), or notices of an idle backend. Returns
    /// whether any was consumed.
    fn unsolicited(&mut self, rbuf: &mut BytesMut) -> bool {
        let mut msgs = wire::frames(rbuf);
        let mut answered = false;
        for (tag, _) in msgs.by_ref() {
            if tag == b'Z' && self.absorbing.is_some() {
                answered = true;
                break;
            }
        }
        let pos = msgs.consumed();
        if pos == 0 {
            return false;
        }
        if answered {
            if let Some(mark) = self.absorbing.take() {
                self.fence.absorbed(mark);
            }
        } else if self.absorbing.is_none() {
            tracing::debug!(
                bytes = pos,
                "unsolicited messages on a multiplexed connection"
            );
        }
        rbuf.advance(pos);
        true
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

    /// `last` completes `b`'s answer: passes it on. The client's cancel target is reset
    /// first: once it has its answer it may start a statement elsewhere.
    fn answered(&mut self, b: Batch, last: Bytes) {
        b.cancel.finish();
        if !b.cut {
            let _ = b.reply.send(last);
        }
        self.load.inflight.fetch_sub(1, Ordering::Relaxed);
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

/// Gives `chunk` to `b`'s client.
fn pass(b: &mut Batch, chunk: Bytes) {
    if !b.cut {
        let _ = b.reply.send(chunk);
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

    struct Client {
        rx: mpsc::UnboundedReceiver<Bytes>,
        handle: CancelHandle,
    }

    impl Client {
        fn got(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            while let Ok(b) = self.rx.try_recv() {
                v.extend_from_slice(&b);
            }
            v
        }
    }

    /// A connection whose backend's cancel requests go to `port` (nothing listens on 1).
    fn conn_at(port: u16) -> Conn {
        let key = BackendKey {
            host: "127.0.0.1".into(),
            port,
            pid: 7,
            secret: SecretKey::I32(1),
        };
        let mut c = Conn::new(key, Arc::default(), Arc::default());
        c.max_members = 4;
        c.max_message = 1024;
        c
    }

    fn conn() -> Conn {
        conn_at(1)
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
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = reg.register();
        let slot = handle.slot();
        slot.queued();
        let batch = Batch::new(Bytes::copy_from_slice(bytes), rfqs, tx, slot, coalesce);
        c.load.inflight.fetch_add(1, Ordering::Relaxed);
        c.waiting.push_back(batch);
        Client { rx, handle }
    }

    /// What the task writes next (and takes it out of `out`).
    fn written(c: &mut Conn) -> Vec<u8> {
        c.write_next();
        c.out.split().to_vec()
    }

    fn answer(c: &mut Conn, bytes: &[u8]) {
        let mut rbuf = BytesMut::from(bytes);
        c.route(&mut rbuf);
        assert!(rbuf.is_empty());
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
        let sync = &group::SYNC[..];
        assert_eq!(
            written(&mut c),
            [&b"abc"[..], sync].concat(),
            "three members"
        );
        assert!(written(&mut c).is_empty(), "one unit at a time");
        let (row, done, z) = (
            msg(b'D', b"\0\x01"),
            msg(b'C', b"SELECT 1\0"),
            msg(b'Z', b"I"),
        );
        let one = [row.clone(), done.clone()].concat();
        answer(
            &mut c,
            &[one.clone(), one.clone(), one.clone(), z.clone()].concat(),
        );
        assert_eq!(
            written(&mut c),
            [&b"d"[..], sync].concat(),
            "a group of one"
        );
        answer(&mut c, &[one.clone(), z.clone()].concat());
        assert_eq!(written(&mut c), b"e");
        answer(&mut c, &[one.clone(), z.clone()].concat());
        let whole = [one, z].concat();
        for client in m.iter_mut() {
            assert_eq!(
                client.got(),
                whole,
                "a member's answer ends in ReadyForQuery"
            );
        }
        assert_eq!(e.got(), whole);
        assert!(c.queue.is_empty() && c.waiting.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
        assert_eq!(c.load.counters.groups.load(Ordering::Relaxed), 1);
        assert_eq!(c.load.counters.grouped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn members_skipped_after_a_failed_one_are_written_again_first() {
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn();
        let mut a = member(&mut c, &reg, b"a");
        let mut b = member(&mut c, &reg, b"b");
        let mut d = member(&mut c, &reg, b"d");
        let mut e = submit(&mut c, &reg, b"e", 1);
        let sync = &group::SYNC[..];
        assert_eq!(written(&mut c), [&b"abd"[..], sync].concat());
        let failed = msg(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0");
        let (done, z) = (msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I"));
        // `a` completes, `b` fails, PostgreSQL skips `d` up to the group's Sync.
        answer(&mut c, &[done.clone(), failed.clone(), z.clone()].concat());
        assert_eq!(a.got(), [done.clone(), z.clone()].concat());
        assert_eq!(b.got(), [failed, z.clone()].concat(), "its error, as alone");
        assert!(d.got().is_empty(), "never ran: not answered");
        assert_eq!(written(&mut c), [&b"d"[..], sync].concat(), "before `e`");
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 2);
        answer(&mut c, &[done.clone(), z.clone()].concat());
        assert_eq!(d.got(), [done.clone(), z.clone()].concat());
        assert_eq!(written(&mut c), b"e");
        answer(&mut c, &[done.clone(), z.clone()].concat());
        assert_eq!(e.got(), [done, z].concat());
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
        assert_eq!(written(&mut c), b"a");
        // Arrives in pieces, cut mid-message.
        let mut rbuf = BytesMut::from(&first[..first.len() - 3]);
        c.route(&mut rbuf);
        assert!(written(&mut c).is_empty(), "`a` is not answered yet");
        rbuf.extend_from_slice(&first[first.len() - 3..]);
        c.route(&mut rbuf);
        assert_eq!(written(&mut c), b"b");
        answer(&mut c, &second);
        assert!(rbuf.is_empty() && c.queue.is_empty());
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
        assert_eq!((a.got(), b.got()), (first, second));
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
        assert_eq!(written(&mut c), b"a");
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
        answer(&mut c, &[done.clone(), z.clone()].concat());
        assert!(a.got().is_empty(), "the rest of its answer goes nowhere");
        assert_eq!(written(&mut c), b"b");
        let b_answer = [row, done, z].concat();
        answer(&mut c, &b_answer);
        assert_eq!(b.got(), b_answer, "the next batch is unaffected");
        assert_eq!(c.load.inflight.load(Ordering::Relaxed), 0);
    }

    /// A stand-in postmaster that takes cancel requests and closes each once `close` says so.
    async fn postmaster(
        close: tokio::sync::watch::Receiver<bool>,
    ) -> (u16, mpsc::UnboundedReceiver<()>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = [0u8; 16];
                let _ = s.read_exact(&mut req).await;
                let _ = tx.send(());
                let _ = close.clone().wait_for(|c| *c).await;
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn after_a_cancel_nothing_is_written_until_it_is_confirmed_and_absorbed() {
        let (close, closing) = tokio::sync::watch::channel(false);
        let (port, mut requests) = postmaster(closing).await;
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn_at(port);
        let mut a = submit(&mut c, &reg, b"a", 1);
        let mut b = submit(&mut c, &reg, b"b", 1);
        assert_eq!(written(&mut c), b"a");
        // `a` runs alone: its client's cancel goes to the backend at once.
        let h = &a.handle;
        let cancel = {
            let (reg, pid, secret) = (reg.clone(), h.pid, h.secret);
            tokio::spawn(async move { reg.cancel(pid, &SecretKey::I32(secret)).await })
        };
        requests.recv().await.expect("forwarded");
        let cancelled = msg(b'E', b"SERROR\0C57014\0Mcanceling statement\0\0");
        let z = msg(b'Z', b"I");
        answer(&mut c, &[cancelled.clone(), z.clone()].concat());
        assert_eq!(a.got(), [cancelled.clone(), z.clone()].concat());
        assert!(c.write_next(), "waits for PostgreSQL to confirm the cancel");
        assert!(c.out.is_empty());
        close.send(true).expect("close");
        cancel.await.expect("cancel");
        assert_eq!(written(&mut c), group::SYNC, "a Sync absorbs a late signal");
        assert!(written(&mut c).is_empty(), "`b` waits for its answer");
        // The late signal landed on the Sync: its error goes nowhere.
        answer(&mut c, &[cancelled, z.clone()].concat());
        assert!(!c.fence.dirty());
        assert_eq!(written(&mut c), b"b");
        let ok = [msg(b'C', b"SELECT 1\0"), z].concat();
        answer(&mut c, &ok);
        assert_eq!(b.got(), ok);
    }

    #[tokio::test]
    async fn a_group_member_with_others_behind_it_is_not_a_cancel_target() {
        let (_close, closing) = tokio::sync::watch::channel(false);
        let (port, mut requests) = postmaster(closing).await;
        let reg = Arc::new(CancelRegistry::default());
        let mut c = conn_at(port);
        let a = member(&mut c, &reg, b"a");
        let b = member(&mut c, &reg, b"b");
        written(&mut c);
        let send = |client: &Client| {
            let (reg, pid, secret) = (reg.clone(), client.handle.pid, client.handle.secret);
            tokio::spawn(async move { reg.cancel(pid, &SecretKey::I32(secret)).await })
        };
        send(&a).await.expect("cancel");
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(100), requests.recv());
        assert!(quiet.await.is_err(), "`b` would run behind `a`: no signal");
        // `a` completes; `b` is the last one written, so its cancel is forwarded.
        answer(&mut c, &msg(b'C', b"SELECT 1\0"));
        let _pending = send(&b);
        requests.recv().await.expect("forwarded");
        assert!(c.fence.dirty());
    }
}
