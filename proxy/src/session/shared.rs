//! Which client batches may run on a multiplexed server connection (`upstream::mux`): the
//! complete messages waiting from the client end in Query or Sync, and every statement they
//! run is `sql::Summary::batchable`, so the batch is a run of implicit transactions that leaves
//! no session state and no open transaction behind.

use std::sync::Arc;

use super::{ClientIo, Session};
use crate::config::PoolMode;
use crate::plan::Plan;
use crate::wire::{self, client::ClientMessage};

/// How statements may use a multiplexed connection (from `sql::Summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sharing {
    /// May share a connection (`sql::Summary::batchable`).
    pub batchable: bool,
    /// Certainly only reads (`sql::Summary::read_only`): may run in a group.
    pub read_only: bool,
}

impl Sharing {
    pub(super) fn of(s: &crate::sql::Summary) -> Sharing {
        Sharing {
            batchable: s.batchable,
            read_only: s.read_only,
        }
    }
}

/// The plans of the SQL texts in the client's waiting batch: `route_sql` finds them here.
pub(super) type BatchPlans = Vec<Arc<Plan>>;

impl<S: ClientIo> Session<'_, S> {
    /// Whether every complete message in the client buffer may go to a multiplexed connection;
    /// records the plan of each SQL text it classifies in `memo`.
    pub(super) fn batch_is_shareable(&self, memo: &mut BatchPlans) -> Option<Sharing> {
        if self.state.config.upstream.multiplex == 0
            || self.mode != PoolMode::Transaction
            || self.server.is_some()
            || !self.settled()
            || self.skipping
            || self.copy_in
            || !self.to_server.is_empty()
        {
            return None;
        }
        let mut parsed: Vec<(&str, bool)> = Vec::new();
        let mut read_only = true;
        // Extended-protocol messages since the last Sync: a batch is a run of whole units,
        // each one Query or extended messages ending in Sync. A Query behind unsynced
        // extended messages is skipped by PostgreSQL if they fail, and the answers on the
        // shared connection would then belong to the wrong batches.
        let mut open_extended = false;
        let mut any = false;
        let mut msgs = wire::frames(&self.cbuf);
        while let Some(frame) = msgs.next_whole() {
            let tag = frame[0];
            let Ok(msg) = wire::client::decode(frame) else {
                return None;
            };
            any = true;
            open_extended = match tag {
                b'Q' if open_extended => return None,
                b'Q' | b'S' => false,
                _ => true,
            };
            let sharing = match msg {
                ClientMessage::Query { sql } => self.summarize(sql, memo),
                ClientMessage::Parse { name, sql, .. } => self.summarize(sql, memo).inspect(|s| {
                    parsed.push((name, s.read_only));
                }),
                ClientMessage::Bind(v) => self.bound_statement(v.statement, &parsed),
                ClientMessage::Describe { .. }
                | ClientMessage::Execute { .. }
                | ClientMessage::Close { .. }
                | ClientMessage::Sync => Some(Sharing {
                    batchable: true,
                    read_only: true,
                }),
                _ => None,
            };
            let sharing = sharing.filter(|s| s.batchable)?;
            read_only &= sharing.read_only;
        }
        if !msgs.at_end() {
            return None; // a message still arriving
        }
        (any && !open_extended).then_some(Sharing {
            batchable: true,
            read_only,
        })
    }

    /// What a Bind in the batch runs: a statement parsed earlier in it (the last one of that
    /// name), or one the client prepared before.
    fn bound_statement(&self, stmt: &str, parsed: &[(&str, bool)]) -> Option<Sharing> {
        if let Some(&(_, read_only)) = parsed.iter().rev().find(|(n, _)| *n == stmt) {
            return Some(Sharing {
                batchable: true,
                read_only,
            });
        }
        Some(self.statements.get(stmt)?.sharing)
    }
}

impl<S: ClientIo> Session<'_, S> {
    /// How the text may share a connection, by its lexical summary; its plan goes to `memo`.
    fn summarize(&self, sql: &[u8], memo: &mut BatchPlans) -> Option<Sharing> {
        let plan = self.state.planner.plan(std::str::from_utf8(sql).ok()?);
        let sharing = Sharing::of(plan.lexical());
        memo.push(plan);
        Some(sharing)
    }
}
