//! Who may hold a client connection: the startup gate for connections still logging in, and
//! the slots of logged-in clients with a reserve for admin logins.
//!
//! Invariants: a connection that has not authenticated never holds a client slot (it holds a
//! startup ticket, of which there are at most `max_startup_connections`; when they are all
//! taken, the one that has been logging in longest is evicted, so idle sockets cannot keep new
//! logins out); of `max_client_connections` slots, the last `reserved_admin_connections` go to
//! admin logins only. No I/O here: the accept loop and the handshake act on the answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::errors::{code, UserFacing};

/// Why a connection gets no place: no client slot, none at the startup gate, no file descriptor
/// (`53300` for the client, and the connection ends).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("sorry, too many clients already")]
    Full,
    #[error("remaining connection slots are reserved for admin logins")]
    ReservedForAdmins,
    #[error("too many connections are logging in; this one waited longest and was closed")]
    Evicted,
    #[error("too many connections for user \"{user}\" (its max_client_connections, {max})")]
    UserFull { user: String, max: usize },
    /// The process has no file descriptor left for another connection.
    #[error("out of file descriptors; try again later")]
    OutOfFiles,
}

/// Like PostgreSQL's own refusals at its connection limits: the connection ends.
impl UserFacing for AdmissionError {
    fn sqlstate(&self) -> &'static str {
        code::TOO_MANY_CONNECTIONS
    }
    fn fatal(&self) -> bool {
        true
    }
    fn client_message(&self) -> String {
        self.to_string()
    }
}

/// Connections that have not finished their startup exchange: at most `max` at once.
#[derive(Debug)]
pub struct StartupGate {
    max: usize,
    inner: Mutex<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    next: u64,
    /// Oldest first: arrival number → what ends that handshake.
    open: BTreeMap<u64, CancellationToken>,
}

/// A connection's place at the startup gate; given back when dropped.
#[derive(Debug)]
pub struct StartupTicket {
    gate: Arc<StartupGate>,
    id: u64,
    evict: CancellationToken,
}

impl StartupGate {
    pub fn new(max: usize) -> Arc<StartupGate> {
        Arc::new(StartupGate {
            max: max.max(1),
            inner: Mutex::new(GateInner::default()),
        })
    }

    /// Admits a new connection, evicting the one that has been logging in longest when all
    /// `max` places are taken.
    pub fn enter(self: &Arc<Self>) -> StartupTicket {
        let evict = CancellationToken::new();
        let mut inner = self.lock();
        while inner.open.len() >= self.max {
            if let Some((_, oldest)) = inner.open.pop_first() {
                oldest.cancel();
            }
        }
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, evict.clone());
        StartupTicket {
            gate: self.clone(),
            id,
            evict,
        }
    }

    /// Connections holding a ticket now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StartupTicket {
    /// Resolves when a newer connection took this one's place.
    pub fn evicted(&self) -> WaitForCancellationFutureOwned {
        self.evict.clone().cancelled_owned()
    }
}

impl Drop for StartupTicket {
    fn drop(&mut self) {
        self.gate.lock().open.remove(&self.id);
    }
}

/// The slots of logged-in clients.
#[derive(Debug)]
pub struct ClientSlots {
    /// `max_client_connections` and its admin reserve, packed (`max << 32 | reserved`) so a
    /// reload changes both at once.
    limits: AtomicU64,
    used: AtomicUsize,
}

/// A logged-in client's slot; given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
}

/// `max` and `reserved` (at most `max`) in one word; both fit in 32 bits (the config limits
/// connections far below that).
fn pack(max: usize, reserved: usize) -> u64 {
    let max = max.min(u32::MAX as usize) as u64;
    (max << 32) | reserved.min(max as usize) as u64
}

impl ClientSlots {
    pub fn new(max: usize, reserved: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            limits: AtomicU64::new(pack(max, reserved)),
            used: AtomicUsize::new(0),
        })
    }

    /// New limits (reload); clients over a lowered maximum keep their slots.
    pub fn set_limits(&self, max: usize, reserved: usize) {
        self.limits.store(pack(max, reserved), Ordering::Relaxed);
    }

    fn limits(&self) -> (usize, usize) {
        let l = self.limits.load(Ordering::Relaxed);
        ((l >> 32) as usize, (l & 0xffff_ffff) as usize)
    }

    /// A slot for a client that has just authenticated: an admin may take any free slot,
    /// anyone else only while more than the reserved ones are free.
    pub fn take(self: &Arc<Self>, admin: bool) -> Result<ClientSlot, AdmissionError> {
        let (max, reserved) = self.limits();
        let limit = if admin { max } else { max - reserved };
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used >= max {
                return Err(AdmissionError::Full);
            }
            if used >= limit {
                return Err(AdmissionError::ReservedForAdmins);
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(ClientSlot {
                        slots: self.clone(),
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Slots held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.slots.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_connection_logging_in_makes_room() {
        let gate = StartupGate::new(2);
        let first = gate.enter();
        let second = gate.enter();
        assert!(!first.evict.is_cancelled() && !second.evict.is_cancelled());
        let third = gate.enter();
        assert!(first.evict.is_cancelled(), "the oldest is evicted");
        assert!(!second.evict.is_cancelled() && !third.evict.is_cancelled());
        assert_eq!(gate.open(), 2);
        // The evicted ticket's drop does not free a place it no longer holds.
        drop(first);
        assert_eq!(gate.open(), 2);
        drop(second);
        assert_eq!(gate.open(), 1);
        let _fourth = gate.enter();
        assert!(!third.evict.is_cancelled(), "a free place evicts no one");
    }

    #[test]
    fn reserved_slots_go_to_admins_only() {
        let slots = ClientSlots::new(3, 1);
        let a = slots.take(false).unwrap();
        let _b = slots.take(false).unwrap();
        assert_eq!(
            slots.take(false).unwrap_err(),
            AdmissionError::ReservedForAdmins
        );
        let _admin = slots.take(true).unwrap();
        assert_eq!(slots.take(true).unwrap_err(), AdmissionError::Full);
        assert_eq!(slots.take(false).unwrap_err(), AdmissionError::Full);
        drop(a);
        assert_eq!(slots.used(), 2);
        assert_eq!(
            slots.take(false).unwrap_err(),
            AdmissionError::ReservedForAdmins,
            "one free slot, and it is the reserved one"
        );
        assert!(slots.take(true).is_ok());
    }
}
