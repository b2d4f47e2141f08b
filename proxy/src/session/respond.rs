//! Responders: the features that answer client messages themselves instead of PostgreSQL —
//! the admin console (`admin.rs`), `orgwall.*` commands (`commands.rs`, which also holds the
//! console's and a tenant's COPY FROM statements prepared in the extended protocol) and the
//! balance cache's answers (`local/`). Each implements [`Responder`] and owns its state
//! (`Commands`, `Local`; the console has none); the `on_*` handlers (`client.rs`) ask them all
//! through one function, [`Session::respond`], in a fixed order: console, commands, balances.
//!
//! The order is part of the behaviour: `SHOW orgwall.balances_drift` is an admin statement
//! before it is an `orgwall.*` one; a statement the commands hold is theirs at Bind, Describe
//! and Execute before the cache looks at it. A responder that passes still does the
//! bookkeeping its state needs for that message (a Parse replacing a command statement, a
//! portal dropped at Sync, a ledger write noted at Bind); one that answers ends the asking, as
//! the message is then not the others' to see.

use bytes::BytesMut;

use super::route::Routed;
use super::{ClientIo, Session};
use crate::errors::ClientError;
use crate::wire::client::ClientMessage;

/// A client message a responder may answer, as far as the session has handled it.
#[derive(Clone, Copy)]
pub(super) enum Ask<'a> {
    /// A Query's SQL, before it is planned (`frame`: the message, should its answer wait).
    Query { sql: &'a str, frame: &'a [u8] },
    /// A Parse's SQL, before it is planned.
    Parse { name: &'a str, sql: &'a str },
    /// A Query's SQL (the client's text) once routed (`route.rs`).
    QueryRouted { sql: &'a str, routed: &'a Routed },
    /// A Parse once routed, when its name is not one of the client's statements already.
    ParseRouted {
        name: &'a str,
        sql: &'a str,
        types: &'a [u32],
        routed: &'a Routed,
    },
    /// A Bind, Describe, Execute, Close or Sync as decoded, before its handler (`frame`: the
    /// message as sent, should its answer wait).
    Message {
        msg: &'a ClientMessage<'a>,
        frame: &'a [u8],
    },
}

/// What a responder did with an [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// Not this responder's: the next one is asked, and after the last the handler sends the
    /// message on to PostgreSQL.
    Pass,
    /// The responder's: answered or refused here in protocol order, or put back to be handled
    /// again once the server has answered what is in flight (`defer.rs`). Nothing of it
    /// reaches PostgreSQL from the handler.
    Answered,
    /// For [`Ask::ParseRouted`] only: the responder may answer this statement's Bind, Describe
    /// and Execute itself, so outside a transaction its Parse takes no server connection (the
    /// handler keeps the statement, prepared on the server only if a message PostgreSQL
    /// answers needs it; with a connection held, the Parse goes to it as any other).
    Claimed,
}

impl Reply {
    /// `Answered` when the responder answered, else `Pass`.
    pub(super) fn answered(answered: bool) -> Reply {
        match answered {
            true => Reply::Answered,
            false => Reply::Pass,
        }
    }
}

/// A feature that answers some client messages itself.
pub(super) trait Responder {
    /// Answers `ask`, or passes it on after the bookkeeping its own state needs.
    async fn respond<S: ClientIo>(
        session: &mut Session<'_, S>,
        ask: Ask<'_>,
    ) -> Result<Reply, ClientError>;
}

impl<S: ClientIo> Session<'_, S> {
    /// Asks the responders, in order (the admin console, `orgwall.*` commands, the balance
    /// cache), until one does not pass; `Reply::Pass` when none answered.
    pub(super) async fn respond(&mut self, ask: Ask<'_>) -> Result<Reply, ClientError> {
        let reply = super::admin::Console::respond(self, ask).await?;
        if reply != Reply::Pass {
            return Ok(reply);
        }
        let reply = super::commands::OrgwallCommands::respond(self, ask).await?;
        if reply != Reply::Pass {
            return Ok(reply);
        }
        super::local::BalanceAnswers::respond(self, ask).await
    }

    /// Puts a message back to be handled once nothing is in flight, for a responder whose
    /// answer depends on PostgreSQL's to what was sent before it (see `defer.rs`).
    pub(super) fn answer_later(&mut self, frame: &[u8]) -> Reply {
        self.defer(BytesMut::from(frame));
        Reply::Answered
    }
}
