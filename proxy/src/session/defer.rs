//! Keeping the switcher's tenant binding in protocol order. `SET orgwall.*` is answered by
//! Orgwall, not PostgreSQL, so it waits until the server has answered everything sent before
//! it: then the transaction status, the savepoints and the settings it is tracked with are
//! PostgreSQL's at that point of the client's stream. Likewise, while the binding depends on
//! how the transaction ends, statements pipelined behind a COMMIT or ROLLBACK wait for it
//! (the barrier), so they are rendered for the binding it leaves.

use bytes::BytesMut;

use super::{tenant, Session};
use crate::config::Role;

impl Session<'_> {
    /// The server has yet to answer something the session sent it.
    pub(super) fn in_flight(&self) -> bool {
        self.server.is_some() && !self.pending.is_empty()
    }

    /// Puts `frame` back in front of the client's other waiting messages, to be handled once
    /// nothing is in flight. An unsynced extended-protocol batch gets a Flush, or PostgreSQL
    /// would keep its answers until a Sync that is among the waiting messages.
    pub(super) fn defer(&mut self, frame: BytesMut) {
        let rest = std::mem::replace(&mut self.cbuf, frame);
        self.cbuf.unsplit(rest);
        self.deferred = true;
        if !self.at_sync_boundary() && self.server.as_ref().is_some_and(|l| !l.is_shared()) {
            self.to_server.extend_from_slice(&[b'H', 0, 0, 0, 4]);
        }
    }

    /// Whether a client message of type `tag` must wait for the statement behind the barrier
    /// (a Query, Parse or Bind renders SQL for the binding that statement may change).
    pub(super) fn behind_barrier(&mut self, tag: u8) -> bool {
        if !self.barrier {
            return false;
        }
        if !self.in_flight() {
            self.barrier = false;
            return false;
        }
        matches!(tag, b'Q' | b'P' | b'B')
    }

    /// Raises the barrier if `sql` ends the transaction or rolls back to a savepoint while the
    /// switcher's binding depends on it.
    pub(super) fn barrier_for(&mut self, sql: &str) {
        if self.principal.role == Role::Switcher
            && !self.binding_settled()
            && tenant::ends_block(sql)
        {
            self.barrier = true;
        }
    }

    /// Whether the end of the transaction, or a rollback to a savepoint, would leave the
    /// switcher's binding as it is.
    fn binding_settled(&self) -> bool {
        self.settings
            .tenant_settled(self.savepoints.iter().map(|(_, s)| s))
    }
}
