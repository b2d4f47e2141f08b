//! Cancel routing: every client gets a proxy-issued BackendKeyData; a cancel request naming it
//! is forwarded only to the PostgreSQL backend currently serving that client, if any. A client
//! whose statement waits its turn on a multiplexed connection has its cancel held until the
//! statement starts (`CancelSlot`), and every cancel sent to a multiplexed connection's backend
//! is noted there ([`Signals`]), because it can hit the statement after the one it was meant
//! for (see `upstream::mux`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use dashmap::DashMap;
use pgwire::messages::startup::SecretKey;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use crate::upstream::BackendKey;

type Target = Arc<Mutex<TargetState>>;

/// When a cancel was last sent to one multiplexed connection's backend.
#[derive(Debug, Default)]
pub struct Signals(AtomicU64);

impl Signals {
    fn note(&self) {
        self.0.fetch_max(clock_ms(), Ordering::Relaxed);
    }

    /// Whether a cancel was sent at or after `since` ([`clock_ms`]) or less than `grace` ago.
    pub fn recent(&self, since: u64, grace: Duration) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        last != 0 && (last >= since || clock_ms().saturating_sub(last) < grace.as_millis() as u64)
    }
}

/// Milliseconds on a process-wide monotonic clock, never 0.
pub fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Where a client's cancel request goes.
#[derive(Debug, Default)]
struct TargetState {
    /// The backend running the client's statements now.
    key: Option<BackendKey>,
    /// That backend's cancel counter, when it is a multiplexed connection's.
    signals: Option<Arc<Signals>>,
    /// A statement of the client's is queued on a multiplexed connection.
    queued: bool,
    /// A cancel arrived while it was queued: send it when the statement starts.
    requested: bool,
    /// Statements started through the slot so far (tells a held cancel whether the statement
    /// it was meant for is still the one running).
    runs: u64,
    /// Cancel requests the client has made so far.
    requests: u64,
}

impl TargetState {
    /// The backend to signal now, if any, noted on its connection's [`Signals`]. Called with
    /// the lock held, so the note is made before the statement can be marked finished.
    fn aim(&self) -> Option<BackendKey> {
        let key = self.key.clone()?;
        if let Some(s) = &self.signals {
            s.note();
        }
        Some(key)
    }
}

fn lock(t: &Target) -> std::sync::MutexGuard<'_, TargetState> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Points `t` at `key` (or at nothing), queued or not, dropping any held cancel; `started`
/// counts a new run. Returns whether a cancel was held, and the run number now.
fn retarget(t: &Target, key: Option<Aim>, queued: bool, started: bool) -> (bool, u64) {
    retarget_locked(&mut lock(t), key, queued, started)
}

/// A backend, and its connection's [`Signals`] when it is a multiplexed one.
type Aim = (BackendKey, Option<Arc<Signals>>);

fn retarget_locked(
    t: &mut TargetState,
    key: Option<Aim>,
    queued: bool,
    started: bool,
) -> (bool, u64) {
    let (requested, runs) = (t.requested, t.runs + u64::from(started));
    let (key, signals) = key.unzip();
    *t = TargetState {
        key,
        signals: signals.flatten(),
        queued,
        requested: false,
        runs,
        requests: t.requests,
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
    /// Records which backend (if any) is running this client's statements now.
    pub fn set_target(&self, key: Option<BackendKey>) {
        retarget(&self.target, key.map(|k| (k, None)), false, false);
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
    /// The client's statement is queued behind others (or about to be submitted); a cancel
    /// already held for it stays held. Returns the client's cancel requests so far.
    pub fn queued(&self) -> u64 {
        let mut t = lock(&self.0);
        let requested = t.queued && t.requested;
        retarget_locked(&mut t, None, true, false);
        t.requested = requested;
        t.requests
    }

    /// The client's statement starts on the backend `key` of a multiplexed connection counting
    /// its cancels in `signals`; forwards a cancel that arrived while it was queued (see
    /// [`held_cancel`]).
    pub fn start(&self, key: &BackendKey, signals: &Arc<Signals>) {
        let target = (key.clone(), Some(signals.clone()));
        let (requested, run) = retarget(&self.0, Some(target), false, true);
        if requested {
            tokio::spawn(held_cancel(self.0.clone(), run));
        }
    }

    /// The client's statement has finished.
    pub fn finish(&self) {
        retarget(&self.0, None, false, false);
    }

    /// Cancel requests the client has made so far.
    pub fn requests(&self) -> u64 {
        lock(&self.0).requests
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

    /// Forwards a cancel for `(pid, secret)` to the backend serving that client. Unknown keys,
    /// wrong secrets and idle clients are ignored, as PostgreSQL ignores them.
    pub async fn cancel(&self, pid: i32, secret: &SecretKey) {
        let target = match self.clients.get(&pid) {
            Some(e) if secret.eq_value(&SecretKey::I32(e.0)) => e.1.clone(),
            _ => {
                tracing::info!(pid, "cancel request with an unknown key ignored");
                return;
            }
        };
        let key = {
            let mut t = lock(&target);
            t.requests += 1;
            if t.queued {
                t.requested = true;
            }
            t.aim()
        };
        if let Some(key) = key {
            forward(&key).await;
        }
    }
}

/// Sends a held cancel once the statement has had time to be read by PostgreSQL. "Started"
/// means the statement before it was answered, when PostgreSQL may still be reading this one,
/// and PostgreSQL drops a cancel that arrives while a backend reads a command. The send first
/// checks that the statement it is meant for (run number `run`) is still the one running.
/// Sent once only: a second cancel still in flight when the first lands would hit whatever
/// runs next on that backend, another client's statement.
async fn held_cancel(target: Target, run: u64) {
    tokio::time::sleep(HELD_CANCEL_DELAY).await;
    let key = {
        let t = lock(&target);
        if t.runs == run {
            t.aim()
        } else {
            None
        }
    };
    if let Some(key) = key {
        forward(&key).await;
    }
}

/// How long after its statement starts [`held_cancel`] sends a held cancel.
const HELD_CANCEL_DELAY: Duration = Duration::from_millis(20);

async fn forward(key: &BackendKey) {
    if let Err(e) = send_cancel(key).await {
        tracing::warn!(error = %e, "forwarding cancel request failed");
    }
}

async fn send_cancel(key: &BackendKey) -> std::io::Result<()> {
    let secret = key.secret.to_bytes();
    let mut msg = BytesMut::with_capacity(12 + secret.len());
    msg.put_i32(12 + secret.len() as i32);
    msg.put_i32(80877102);
    msg.put_i32(key.pid);
    msg.put_slice(&secret);
    if key.host.starts_with('/') {
        let path = format!("{}/.s.PGSQL.{}", key.host.trim_end_matches('/'), key.port);
        let mut s = UnixStream::connect(path).await?;
        s.write_all(&msg).await?;
        return s.shutdown().await;
    }
    let mut s = TcpStream::connect((key.host.as_str(), key.port)).await?;
    s.write_all(&msg).await?;
    s.shutdown().await
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

    /// A stand-in backend: a listener that reports the pid of every CancelRequest it gets.
    async fn backend() -> (BackendKey, tokio::sync::mpsc::UnboundedReceiver<i32>) {
        use tokio::io::AsyncReadExt;
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

    async fn next_cancel(rx: &mut tokio::sync::mpsc::UnboundedReceiver<i32>) -> Option<i32> {
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// A registry with one client, its slot, and a multiplexed connection's [`Signals`].
    fn one_client() -> (Arc<CancelRegistry>, CancelHandle, CancelSlot, Arc<Signals>) {
        let reg = Arc::new(CancelRegistry::default());
        let client = reg.register();
        let slot = client.slot();
        (reg, client, slot, Arc::default())
    }

    #[tokio::test]
    async fn a_cancel_before_the_batch_is_submitted_is_held_until_it_starts() {
        let (key, mut rx) = backend().await;
        let (reg, client, slot, signals) = one_client();
        // The share is taken (queued), the cancel comes, then the connection queues the batch.
        slot.queued();
        reg.cancel(client.pid, &SecretKey::I32(client.secret)).await;
        slot.queued();
        assert_eq!(next_cancel(&mut rx).await, None, "nothing runs yet");
        slot.start(&key, &signals);
        assert_eq!(next_cancel(&mut rx).await, Some(4242));
        assert!(signals.recent(u64::MAX, Duration::from_secs(1)));
        assert_eq!(slot.requests(), 1);
    }

    #[tokio::test]
    async fn a_held_cancel_is_dropped_when_its_statement_finished_first() {
        let (key, mut rx) = backend().await;
        let (reg, client, slot, signals) = one_client();
        slot.queued();
        reg.cancel(client.pid, &SecretKey::I32(client.secret)).await;
        slot.start(&key, &signals);
        slot.finish();
        assert_eq!(next_cancel(&mut rx).await, None);
        assert!(!signals.recent(u64::MAX, Duration::from_secs(1)));
        // A wrong secret is ignored even while a statement runs.
        slot.start(&key, &signals);
        reg.cancel(client.pid, &SecretKey::I32(client.secret ^ 1))
            .await;
        assert_eq!(next_cancel(&mut rx).await, None);
        reg.cancel(client.pid, &SecretKey::I32(client.secret)).await;
        assert_eq!(next_cancel(&mut rx).await, Some(4242));
    }
}
