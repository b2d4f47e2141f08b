//! Keeping the switcher's tenant binding in protocol order. `SET orgwall.*` is answered by
//! Orgwall, not PostgreSQL, so it waits until the server has answered everything sent before
//! it: then the transaction status, the savepoints and the settings it is tracked with are
//! PostgreSQL's at that point of the client's stream. Likewise, while the binding depends on
//! how the open transaction ends (changed inside it), a statement pipelined behind another one
//! waits for it: that one may end the transaction or fail it, and the next must be rendered,
//! and its tenant context set, for the binding and status that leaves. A statement behind a
//! `RESET ALL` (which clears the server connection's tenant context) waits for it too.

use bytes::BytesMut;

use super::pending::Pending;
use super::{ClientIo, Session};
use crate::config::Role;
use crate::sql::SessionEffect;

impl<S: ClientIo> Session<'_, S> {
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

    /// Whether a client message of type `tag` must wait: a Query, Parse or Bind (each renders
    /// SQL for the binding) while a statement is in flight and the switcher's binding depends
    /// on how the transaction ends. Parse, Bind and Describe in flight change nothing, so the
    /// messages of one extended-protocol statement still go together.
    pub(super) fn must_wait(&self, tag: u8) -> bool {
        if !matches!(tag, b'Q' | b'P' | b'B') || self.server.is_none() {
            return false;
        }
        if self.reset_all_in_flight() {
            return true;
        }
        self.principal.role == Role::Switcher
            && !self.binding_settled()
            && self.pending.iter().any(|p| {
                matches!(
                    p,
                    Pending::Query { .. } | Pending::Execute { .. } | Pending::Refused { .. }
                )
            })
    }

    /// A `RESET ALL` is in flight on a connection that carries a tenant context: it clears
    /// the context, so a statement pipelined behind it waits, and then finds the context
    /// unknown and sets it again, rather than running without one.
    fn reset_all_in_flight(&self) -> bool {
        self.wall.is_some()
            && self.pending.iter().any(|p| match p {
                Pending::Query { effects } => {
                    effects.iter().any(|e| matches!(e, SessionEffect::ResetAll))
                }
                Pending::Execute { effect } => matches!(effect, Some(SessionEffect::ResetAll)),
                _ => false,
            })
    }

    /// Whether the end of the transaction, or a rollback to a savepoint, would leave the
    /// switcher's binding as it is.
    fn binding_settled(&self) -> bool {
        self.settings
            .tenant_settled(self.savepoints.iter().map(|(_, s)| s))
    }
}
