//! The session's side of the second wall (`boundary`): the tenant context on the held server
//! connection follows the session's current tenant, and a server connection that reports a
//! change Orgwall never asks for (superuser, another session user, backslashes in strings read
//! differently) ends the session.

use bytes::BytesMut;

use super::error::SessionError;
use super::pending::Pending;
use super::txn::TxnStatus;
use super::{ClientIo, Session};
use crate::boundary::{self, unix_now};
use crate::errors::ClientError;
use crate::wire;

/// How the session came to hold its server connection, for [`Session::sync_context`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// Held already: the client's work may be in flight on it.
    Held,
    /// Just taken from the pool: nothing of the client's is on it yet. `other_tenant`: it
    /// last served another tenant, or its tenant is unknown.
    Fresh { other_tenant: bool },
}

impl<S: ClientIo> Session<'_, S> {
    /// Sets the held server connection's tenant context to the session's current tenant (or
    /// clears it when none is bound), ahead of the next client message, if it differs.
    ///
    /// The context is sent as its own implicit transaction (with a Sync) whenever the client is
    /// between transactions and between Syncs, so it holds whatever the client does next.
    /// Otherwise it joins the client's transaction, and PostgreSQL undoes it if that rolls
    /// back: the connection's context is then unknown once the transaction ends.
    pub(super) async fn sync_context(&mut self, taken: Taken) -> Result<(), ClientError> {
        let Some(wall) = self.wall.clone() else {
            return Ok(());
        };
        // In an aborted transaction PostgreSQL would refuse the context statement (and Orgwall
        // would pass that error on for the client's ROLLBACK); every statement but the end of
        // the transaction fails there anyway. After it, the context is set again if needed: it
        // counts as unknown once a transaction it was set in ends, and a statement pipelined
        // behind a ROLLBACK that changes a switcher's binding waits for it (`barrier`).
        if self.status == TxnStatus::Failed {
            return Ok(());
        }
        let now = unix_now();
        let Some(lease) = self.server.as_ref() else {
            return Ok(());
        };
        if lease.is_shared() || lease.conn.context().serves(self.current_org_str(), now) {
            return Ok(());
        }
        let want = self.current_org();
        let ticket = wall
            .ticket(want.as_deref(), now, &self.state.pool)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot register a tenant token");
                ClientError::from(&e)
            })?;
        let fresh = taken != Taken::Held;
        let synced = fresh || (self.status == TxnStatus::Idle && self.at_sync_boundary());
        // A connection just taken that served another tenant (or whose tenant is unknown)
        // keeps none of its prepared statements and none of its settings (`ensure_server` left
        // the settings' replay to this run): what a misread statement left there, unseen by
        // Orgwall, never reaches this tenant. If any of it fails, PostgreSQL skips the rest,
        // the context included, and `context_failed` drops the connection and what ran on it.
        let reset = (taken == Taken::Fresh { other_tenant: true })
            .then(|| self.settings.replay_statements());
        let closes =
            boundary::put_set_context(&mut self.to_server, &ticket.token, synced, reset.as_deref());
        if reset.is_some() {
            let fingerprint = self.settings.fingerprint();
            let conn = self.lease();
            conn.statements_discarded();
            conn.settings_replayed(fingerprint);
        }
        self.lease().note_context(ticket.context);
        self.context_unsure |= !synced;
        self.pending.push_back(Pending::Context { synced, closes });
        Ok(())
    }

    /// Nothing the client sent since its last Sync (or Query) is in flight.
    pub(super) fn at_sync_boundary(&self) -> bool {
        !self.skipping
            && self.pending.back().is_none_or(|p| {
                matches!(
                    p,
                    Pending::Sync
                        | Pending::Query { .. }
                        | Pending::Settings { .. }
                        | Pending::Context { synced: true, .. }
                )
            })
    }

    /// PostgreSQL failed Orgwall's context statement (`frame`, its ErrorResponse).
    pub(super) fn context_failed(&mut self, frame: BytesMut, synced: bool) {
        tracing::warn!(
            code = wire::error_code(&frame),
            "setting the tenant context failed"
        );
        if synced {
            // The client's messages after Orgwall's Sync run anyway, under the connection's
            // previous context: drop the connection, and their answers with it.
            self.abandon_server(SessionError::ContextNotSet.into());
        } else {
            // PostgreSQL skips the client's messages up to its Sync: they fail with it.
            self.context_lost();
            self.to_client.extend_from_slice(&frame);
            self.skip_to_sync();
        }
    }

    /// The context on the held connection is no longer what Orgwall set.
    pub(super) fn context_lost(&mut self) {
        if let Some(l) = self.server.as_mut() {
            if !l.is_shared() {
                l.conn.context_lost();
            }
        }
    }

    /// The client's transaction ended: a context set inside it may have been undone.
    pub(super) fn context_settled(&mut self) {
        if std::mem::take(&mut self.context_unsure) {
            self.context_lost();
        }
    }

    /// The tripwire: a ParameterStatus `frame` on a tenant server connection reporting what
    /// Orgwall never asks for closes that connection and ends the session.
    pub(super) fn tripped(&mut self, frame: &[u8]) -> bool {
        let Some(wall) = self.wall.as_ref() else {
            return false;
        };
        let mut fields = frame.get(5..).unwrap_or_default().split(|&b| b == 0);
        let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
        let value = String::from_utf8_lossy(fields.next().unwrap_or_default());
        if !wall.trips(&name, &value) {
            return false;
        }
        let server = self.server.as_ref().map(|l| l.conn.id());
        tracing::warn!(
            user = %self.principal.user,
            org_id = %self.principal.org_id,
            server,
            parameter = %name,
            value = %value,
            "tripwire: a tenant server connection reported a change Orgwall did not ask for; closing it"
        );
        if let Some(lease) = self.server.as_ref().filter(|l| l.is_shared()) {
            lease.conn.poison();
        }
        self.abandon_server(
            SessionError::Tripwire {
                name: name.into_owned(),
                value: value.into_owned(),
            }
            .into(),
        );
        true
    }
}
