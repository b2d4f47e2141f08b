//! Cancel routing: every client gets a proxy-issued BackendKeyData; a cancel request naming it
//! is forwarded only to the PostgreSQL backend currently serving that client, if any.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use dashmap::DashMap;
use pgwire::messages::startup::SecretKey;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::upstream::BackendKey;

type Target = Arc<Mutex<Option<BackendKey>>>;

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
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = key;
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
    pub fn set(&self, key: Option<BackendKey>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = key;
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
        let key = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(key) = key else { return };
        if let Err(e) = send_cancel(&key).await {
            tracing::warn!(error = %e, "forwarding cancel request failed");
        }
    }
}

async fn send_cancel(key: &BackendKey) -> std::io::Result<()> {
    let secret = key.secret.to_bytes();
    let mut msg = BytesMut::with_capacity(12 + secret.len());
    msg.put_i32(12 + secret.len() as i32);
    msg.put_i32(80877102);
    msg.put_i32(key.pid);
    msg.put_slice(&secret);
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
}
