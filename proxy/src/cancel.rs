//! Cancel routing: every client gets a proxy-issued BackendKeyData; a cancel request naming it
//! is forwarded only to the PostgreSQL backend running that client's statement, and only while
//! nothing of another client can run on that backend before the signal lands.
//!
//! Why that takes care: PostgreSQL's postmaster turns a cancel request into signals to the
//! backend (`kill` of the backend and of its process group) and then closes the request's
//! connection. A signal that lands after the statement ended cancels whatever the backend runs
//! next. So every server connection carries a [`Fence`]: a cancel forwarded to its backend is
//! counted there until PostgreSQL has closed the cancel connection (the signals are then
//! pending on the backend, which handles them before it reads another command, and drops them
//! if it is idle), and the connection serves no other client before the count is back to zero
//! and a Sync has been answered on it (`upstream`: checkout and the multiplexed task). A
//! multiplexed connection sets a client's target only while that client's statement is the
//! last one written to it; a cancel that arrives while the statement waits its turn is held
//! until it starts (`CancelSlot`), and dropped if it can only start with another client's
//! statement behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use dashmap::DashMap;
use pgwire::messages::startup::SecretKey;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

type Target = Arc<Mutex<TargetState>>;

/// How to reach the backend that runs a server connection, for cancel requests.
#[derive(Debug, Clone)]
pub struct BackendKey {
    pub host: String,
    pub port: u16,
    pub pid: i32,
    pub secret: SecretKey,
}

/// Cancels forwarded to one server connection's backend (see the module docs).
#[derive(Debug, Default)]
pub struct Fence {
    /// Forwarded and not yet confirmed (PostgreSQL has not closed the cancel connection).
    in_flight: AtomicUsize,
    /// Forwarded so far, and of those, how many a Sync on the connection has absorbed.
    sent: AtomicU64,
    absorbed: AtomicU64,
    /// A forwarded cancel was never confirmed: when its signal lands is unknown, so the
    /// connection must be closed, not reused.
    broken: AtomicBool,
    settled: Notify,
}

impl Fence {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.sent.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self, confirmed: bool) {
        if !confirmed {
            self.broken.store(true, Ordering::SeqCst);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.settled.notify_waiters();
    }

    /// A cancel was forwarded since the last Sync that absorbed them: the connection may not
    /// serve another client until [`settled`](Self::settled) and a Sync's answer.
    pub fn dirty(&self) -> bool {
        self.sent.load(Ordering::SeqCst) != self.absorbed.load(Ordering::SeqCst)
    }

    /// A forwarded cancel was never confirmed: close the connection.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Waits until every forwarded cancel is confirmed (or has failed). Returns a mark for
    /// [`absorbed`](Self::absorbed).
    pub async fn settled(&self) -> u64 {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return self.sent.load(Ordering::SeqCst);
            }
            notified.await;
        }
    }

    /// Whether every forwarded cancel is confirmed, and the mark [`settled`](Self::settled)
    /// would return.
    pub fn settled_now(&self) -> Option<u64> {
        let mark = self.sent.load(Ordering::SeqCst);
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(mark)
    }

    /// A Sync written after the cancels up to `mark` were confirmed has been answered.
    pub fn absorbed(&self, mark: u64) {
        self.absorbed.fetch_max(mark, Ordering::SeqCst);
    }
}

/// Where a client's cancel request goes.
#[derive(Debug, Default)]
struct TargetState {
    /// The backend running the client's statement now, and its connection's fence.
    aim: Option<Aim>,
    /// A statement of the client's is queued on a multiplexed connection.
    queued: bool,
    /// A cancel arrived while it was queued: send it when the statement starts.
    requested: bool,
    /// Statements started through the slot so far (tells a held cancel whether the statement
    /// it was meant for is still the one running).
    runs: u64,
}

/// A backend and its connection's [`Fence`].
type Aim = (BackendKey, Arc<Fence>);

impl TargetState {
    /// The backend to signal now, if any, counted on its fence. Called with the lock held, so
    /// the count is made before the connection can be handed to anyone else.
    fn aim(&self) -> Option<Aim> {
        let (key, fence) = self.aim.clone()?;
        fence.begin();
        Some((key, fence))
    }
}

fn lock(t: &Target) -> std::sync::MutexGuard<'_, TargetState> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Points `t` at `aim` (or at nothing), queued or not, dropping any held cancel; `started`
/// counts a new run. Returns whether a cancel was held, and the run number now.
fn retarget(t: &Target, aim: Option<Aim>, queued: bool, started: bool) -> (bool, u64) {
    retarget_locked(&mut lock(t), aim, queued, started)
}

fn retarget_locked(
    t: &mut TargetState,
    aim: Option<Aim>,
    queued: bool,
    started: bool,
) -> (bool, u64) {
    let (requested, runs) = (t.requested, t.runs + u64::from(started));
    *t = TargetState {
        aim,
        queued,
        requested: false,
        runs,
    };
    (requested, runs)
}

/// All live clients' cancel keys.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    clients: DashMap<i32, (i32, Target)>,
}

/// A client's registration; unregisters on drop.
#[derive(Debug)]
pub struct CancelHandle {
    pub pid: i32,
    pub secret: i32,
    target: Target,
    registry: Arc<CancelRegistry>,
}

impl CancelHandle {
    /// Records which backend (and its connection's fence), if any, runs this client's
    /// statements now: set while it holds a server connection of its own. A cancel held
    /// meanwhile ([`hold`](Self::hold)) is sent to it, or dropped when there is none.
    pub fn set_target(&self, target: Option<(&BackendKey, &Arc<Fence>)>) {
        match target {
            Some((key, fence)) => self.slot().start(key, fence),
            None => self.slot().finish(),
        }
    }

    /// The client holds a server connection, but Orgwall's own statements run on it before
    /// the client's (its settings, its tenant context): a cancel is held until
    /// [`set_target`](Self::set_target), so that it cannot fail them instead.
    pub fn hold(&self) {
        retarget(&self.target, None, true, false);
    }

    /// A handle on the same target for whoever knows when this client's statements run (a
    /// multiplexed connection, which runs other clients' statements too).
    pub fn slot(&self) -> CancelSlot {
        CancelSlot(self.target.clone())
    }
}

/// Sets one client's cancel target; see [`CancelHandle::slot`].
#[derive(Debug, Clone)]
pub struct CancelSlot(Target);

impl CancelSlot {
    /// The client's statement waits for its turn on a multiplexed connection; a cancel
    /// already held for it stays held.
    pub fn queued(&self) {
        let mut t = lock(&self.0);
        let requested = t.queued && t.requested;
        retarget_locked(&mut t, None, true, false);
        t.requested = requested;
    }

    /// The client's statement runs on the backend `key` of a multiplexed connection and
    /// nothing of another client is written behind it: cancels go to it (counted on `fence`),
    /// one that arrived while it was queued too (see [`held_cancel`]).
    pub fn start(&self, key: &BackendKey, fence: &Arc<Fence>) {
        let aim = (key.clone(), fence.clone());
        let (requested, run) = retarget(&self.0, Some(aim), false, true);
        if requested {
            tokio::spawn(held_cancel(self.0.clone(), run));
        }
    }

    /// The client's statement has finished; a cancel still held for it is dropped, as
    /// PostgreSQL ignores one for a statement that has ended.
    pub fn finish(&self) {
        retarget(&self.0, None, false, false);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.clients.remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Issues a fresh, unused (pid, secret) pair.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let mut rng = rand::thread_rng();
        let target: Target = Arc::default();
        loop {
            let pid = rng.gen_range(1..i32::MAX);
            let secret = rng.gen::<i32>();
            if let dashmap::Entry::Vacant(v) = self.clients.entry(pid) {
                v.insert((secret, target.clone()));
                return CancelHandle {
                    pid,
                    secret,
                    target,
                    registry: self.clone(),
                };
            }
        }
    }

    /// Forwards a cancel for `(pid, secret)` to the backend serving that client, and returns
    /// once PostgreSQL has processed it (as libpq's own cancel waits for the server to close
    /// the connection). Unknown keys, wrong secrets and idle clients are ignored, as
    /// PostgreSQL ignores them.
    pub async fn cancel(&self, pid: i32, secret: &SecretKey) {
        let target = match self.clients.get(&pid) {
            Some(e) if secret.eq_value(&SecretKey::I32(e.0)) => e.1.clone(),
            _ => {
                tracing::info!(pid, "cancel request with an unknown key ignored");
                return;
            }
        };
        let aim = {
            let mut t = lock(&target);
            if t.queued {
                t.requested = true;
            }
            t.aim()
        };
        if let Some(aim) = aim {
            forward(aim).await;
        }
    }
}

/// Sends a held cancel once the statement has had time to be read by PostgreSQL ("started"
/// means written to the connection, and PostgreSQL drops a cancel that arrives while it reads
/// a command). The send first checks that the statement it is meant for (run number `run`)
/// is still the one running.
async fn held_cancel(target: Target, run: u64) {
    tokio::time::sleep(HELD_CANCEL_DELAY).await;
    let aim = {
        let t = lock(&target);
        if t.runs == run {
            t.aim()
        } else {
            None
        }
    };
    if let Some(aim) = aim {
        forward(aim).await;
    }
}

/// How long after its statement starts [`held_cancel`] sends a held cancel.
const HELD_CANCEL_DELAY: Duration = Duration::from_millis(20);

/// How long PostgreSQL may take to process a cancel request before the connection it was
/// meant for is given up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the cancel and waits for PostgreSQL to close the request's connection, keeping the
/// fence's count meanwhile. A request that could not be delivered sent no signal; one that
/// was delivered but never confirmed marks the connection broken.
async fn forward((key, fence): Aim) {
    let confirmed = match tokio::time::timeout(CONFIRM_TIMEOUT, send_cancel(&key)).await {
        Ok(Ok(())) => true,
        Ok(Err(Sent::No(e))) => {
            tracing::warn!(error = %e, "forwarding cancel request failed");
            true
        }
        Ok(Err(Sent::Unconfirmed(e))) => {
            tracing::warn!(error = %e, "cancel request sent but not confirmed");
            false
        }
        Err(_) => {
            tracing::warn!("PostgreSQL did not confirm a cancel request in time");
            false
        }
    };
    fence.end(confirmed);
}

/// Why a cancel request was not confirmed: never sent, or sent without an answer.
enum Sent {
    No(std::io::Error),
    Unconfirmed(std::io::Error),
}

async fn send_cancel(key: &BackendKey) -> Result<(), Sent> {
    let secret = key.secret.to_bytes();
    let mut msg = BytesMut::with_capacity(12 + secret.len());
    msg.put_i32(12 + secret.len() as i32);
    msg.put_i32(80877102);
    msg.put_i32(key.pid);
    msg.put_slice(&secret);
    if key.host.starts_with('/') {
        let path = format!("{}/.s.PGSQL.{}", key.host.trim_end_matches('/'), key.port);
        let s = UnixStream::connect(path).await.map_err(Sent::No)?;
        return deliver(s, &msg).await;
    }
    let s = TcpStream::connect((key.host.as_str(), key.port))
        .await
        .map_err(Sent::No)?;
    deliver(s, &msg).await
}

/// Writes the request and reads until PostgreSQL closes the connection.
async fn deliver<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    mut s: S,
    msg: &[u8],
) -> Result<(), Sent> {
    s.write_all(msg).await.map_err(Sent::No)?;
    let mut sink = [0u8; 64];
    loop {
        match s.read(&mut sink).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(Sent::Unconfirmed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_unregister_on_drop() {
        let reg = Arc::new(CancelRegistry::default());
        let a = reg.register();
        let b = reg.register();
        assert_ne!(a.pid, b.pid);
        assert_eq!(reg.clients.len(), 2);
        drop(a);
        assert_eq!(reg.clients.len(), 1);
    }

    /// A stand-in postmaster: reports the pid of every CancelRequest it gets, then closes the
    /// request's connection once `close` lets it (at once when `close` is `None`).
    async fn backend_with(
        close: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> (BackendKey, tokio::sync::mpsc::UnboundedReceiver<i32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut msg = [0u8; 16];
                if s.read_exact(&mut msg).await.is_ok() {
                    let _ = tx.send(i32::from_be_bytes([msg[8], msg[9], msg[10], msg[11]]));
                }
                if let Some(mut close) = close.clone() {
                    let _ = close.wait_for(|c| *c).await;
                }
            }
        });
        let key = BackendKey {
            host: "127.0.0.1".into(),
            port,
            pid: 4242,
            secret: SecretKey::I32(7),
        };
        (key, rx)
    }

    async fn backend() -> (BackendKey, tokio::sync::mpsc::UnboundedReceiver<i32>) {
        backend_with(None).await
    }

    async fn next_cancel(rx: &mut tokio::sync::mpsc::UnboundedReceiver<i32>) -> Option<i32> {
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// A registry with one client, its slot, and a connection's [`Fence`].
    fn one_client() -> (Arc<CancelRegistry>, CancelHandle, CancelSlot, Arc<Fence>) {
        let reg = Arc::new(CancelRegistry::default());
        let client = reg.register();
        let slot = client.slot();
        (reg, client, slot, Arc::default())
    }

    fn send(reg: &Arc<CancelRegistry>, client: &CancelHandle) -> tokio::task::JoinHandle<()> {
        let (reg, pid, secret) = (reg.clone(), client.pid, client.secret);
        tokio::spawn(async move { reg.cancel(pid, &SecretKey::I32(secret)).await })
    }

    #[tokio::test]
    async fn a_cancel_before_the_batch_is_submitted_is_held_until_it_starts() {
        let (key, mut rx) = backend().await;
        let (reg, client, slot, fence) = one_client();
        // The share is taken (queued), the cancel comes, then the connection queues the batch.
        slot.queued();
        send(&reg, &client).await.expect("cancel");
        slot.queued();
        assert_eq!(next_cancel(&mut rx).await, None, "nothing runs yet");
        assert!(!fence.dirty());
        slot.start(&key, &fence);
        assert_eq!(next_cancel(&mut rx).await, Some(4242));
        assert!(
            fence.dirty(),
            "the connection must absorb it before serving another client"
        );
    }

    #[tokio::test]
    async fn a_held_cancel_is_dropped_when_its_statement_finished_first() {
        let (key, mut rx) = backend().await;
        let (reg, client, slot, fence) = one_client();
        slot.queued();
        send(&reg, &client).await.expect("cancel");
        slot.start(&key, &fence);
        slot.finish();
        assert_eq!(next_cancel(&mut rx).await, None);
        assert!(!fence.dirty());
        // A wrong secret is ignored even while a statement runs.
        slot.start(&key, &fence);
        reg.cancel(client.pid, &SecretKey::I32(client.secret ^ 1))
            .await;
        assert_eq!(next_cancel(&mut rx).await, None);
        send(&reg, &client).await.expect("cancel");
        assert_eq!(next_cancel(&mut rx).await, Some(4242));
    }

    #[tokio::test]
    async fn a_forwarded_cancel_holds_the_fence_until_postgres_closes_the_request() {
        let (close, closing) = tokio::sync::watch::channel(false);
        let (key, mut rx) = backend_with(Some(closing)).await;
        let (reg, client, _slot, fence) = one_client();
        client.set_target(Some((&key, &fence)));
        let request = send(&reg, &client);
        assert_eq!(next_cancel(&mut rx).await, Some(4242));
        // Released while the request is open: the target is gone, the count stays.
        client.set_target(None);
        assert_eq!(fence.settled_now(), None);
        assert!(
            !request.is_finished(),
            "the client's request waits for PostgreSQL"
        );
        close.send(true).expect("close");
        request.await.expect("cancel");
        let mark = tokio::time::timeout(Duration::from_secs(1), fence.settled())
            .await
            .expect("settled");
        assert_eq!(fence.settled_now(), Some(mark));
        assert!(fence.dirty() && !fence.broken());
        fence.absorbed(mark);
        assert!(!fence.dirty());
        // An idle client's cancel reaches no backend and leaves the fence alone.
        send(&reg, &client).await.expect("cancel");
        assert_eq!(next_cancel(&mut rx).await, None);
        assert!(!fence.dirty());
    }
}
