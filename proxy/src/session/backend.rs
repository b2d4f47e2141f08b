//! Server messages: each one is forwarded, swallowed or completes an entry of the pending
//! queue (see `pending.rs`); errors, COPY IN, server-connection release and loss live here.

use bytes::BytesMut;

use super::error::SessionError;
use super::pending::{self, Action, Pending};
use super::txn::TxnStatus;
use super::{settings, ClientIo, Session};
use crate::config::PoolMode;
use crate::errors::ClientError;
use crate::sql::SessionEffect;
use crate::wire::answer_too_large;
use crate::wire::{self, WireError};

impl<S: ClientIo> Session<'_, S> {
    /// Handles every complete server message in the server's buffer.
    /// A message over `max_message_bytes` is refused from its length word, before it is read
    /// (`54000`; the server connection is closed).
    pub(super) fn process_server(&mut self) {
        let max = self.state.config.max_message_bytes;
        loop {
            let Some(lease) = self.server.as_mut() else {
                return;
            };
            let frame = match lease.conn.buffered_frame(max) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e @ WireError::TooLarge { .. }) => {
                    tracing::warn!(error = %e, "PostgreSQL sent a message over max_message_bytes");
                    return self.abandon_server(answer_too_large(&e));
                }
                Err(e) => {
                    tracing::error!(error = %e, "PostgreSQL sent an invalid message");
                    return self.server_lost();
                }
            };
            self.on_server_message(frame);
        }
    }

    fn on_server_message(&mut self, mut frame: BytesMut) {
        if self.copy_in_message(&frame) {
            return;
        }
        match frame[0] {
            b'A' => self.own_notification_pid(&mut frame),
            // (Orgwall's own statements confirm nothing of the client's: the context run's
            // `DEALLOCATE ALL` is not the client's.)
            b'C' if !self.pending.front().is_some_and(Pending::is_orgwalls) => {
                self.complete_head(&frame)
            }
            b'E' if !matches!(
                self.pending.front(),
                Some(Pending::Settings { .. } | Pending::Context { synced: true, .. })
            ) =>
            {
                self.rolled_back = true;
            }
            b'S' if self.tripped(&frame) => return,
            b'3' => {
                if let Some(Pending::Context { closes, .. }) = self.pending.front_mut() {
                    *closes = closes.saturating_sub(1);
                }
            }
            b'G' => self.enter_copy_in(),
            b'1' => self.parse_confirmed(),
            _ => {}
        }
        match pending::classify(self.pending.front(), frame[0]) {
            Action::Forward => {
                if frame[0] == b'S' {
                    self.local.time.note_frame(&frame);
                }
                self.to_client.extend_from_slice(&frame);
            }
            Action::Swallow => {}
            Action::ForwardPop => {
                self.to_client.extend_from_slice(&frame);
                self.pop_head();
            }
            Action::SwallowPop => self.pop_head(),
            Action::Error => self.on_server_error(frame),
            Action::Ready { swallow } => {
                self.status = TxnStatus::of_ready(&frame);
                if self.status == TxnStatus::Idle {
                    self.context_settled();
                    self.ddl_settled();
                    if !swallow {
                        self.transaction_ended();
                    }
                }
                if !swallow {
                    self.to_client.extend_from_slice(&frame);
                }
                self.pop_head();
                if swallow {
                    self.arm_cancel();
                }
                if self.status == TxnStatus::Idle {
                    self.ledger_transaction_ended();
                }
                self.restore_startup_settings();
                self.maybe_release();
            }
            Action::Unexpected => {
                tracing::warn!(tag = %(frame[0] as char), head = ?self.pending.front(), "unexpected server message");
                self.to_client.extend_from_slice(&frame);
            }
        }
    }

    /// Applies what a successful CommandComplete confirms: tracked session settings (undone
    /// again if their transaction rolls back), the end of a transaction, prepared statements
    /// dropped.
    fn complete_head(&mut self, frame: &[u8]) {
        let tag = wire::command_tag(frame);
        self.note_command(tag);
        match tag {
            // PostgreSQL keeps a prepared transaction's settings as a commit would
            // (`PrepareTransaction` ends its GUC nesting level as committed).
            "COMMIT" | "PREPARE TRANSACTION" => {
                self.settings.commit();
                self.savepoints.clear();
                self.rolled_back = false;
            }
            "SAVEPOINT" => {
                if let Some(SessionEffect::Savepoint(name)) =
                    self.take_effect(|e| matches!(e, SessionEffect::Savepoint(_)))
                {
                    self.savepoints.push((name, self.settings.snapshot()));
                }
            }
            "RELEASE" => {
                if let Some(SessionEffect::Release(name)) =
                    self.take_effect(|e| matches!(e, SessionEffect::Release(_)))
                {
                    if let Some(i) = self.savepoints.iter().rposition(|(n, _)| *n == name) {
                        self.savepoints.truncate(i);
                    }
                }
            }
            // ROLLBACK TO a savepoint, or of the whole transaction (also COMMIT of a failed one).
            "ROLLBACK" => self.rolled_back_to_savepoint(),
            "DISCARD ALL" | "DEALLOCATE ALL" => {
                // (Session pooling only: under transaction pooling Orgwall answers DEALLOCATE
                // ALL and refuses DISCARD ALL.) The server dropped every prepared statement, so
                // do the client's own: PostgreSQL would have (and the statement that ran
                // replaced the unnamed one).
                self.forget_statements(false);
                self.context_lost();
                if let Some(l) = self.server.as_mut() {
                    l.conn.statements_discarded();
                }
            }
            "SET" => self.apply_effect(|e| matches!(e, SessionEffect::Set { .. })),
            // `SELECT set_config('name', value, false)` is a SET (a RESET for NULL).
            "SELECT 1" => self.apply_effect(|e| {
                matches!(e, SessionEffect::Set { .. } | SessionEffect::Reset { .. })
            }),
            "RESET" => self.apply_effect(|e| {
                matches!(e, SessionEffect::Reset { .. } | SessionEffect::ResetAll)
            }),
            _ => {}
        }
    }

    /// The head entry's next effect that `wanted` accepts. In a simple Query that is the first
    /// such effect not yet taken: statements with the same tag and no effect (`SET LOCAL`,
    /// plain `ROLLBACK`) may take a later one's early, which is harmless for SETs (the Query's
    /// transaction commits or rolls back as a whole).
    fn take_effect(&mut self, wanted: impl Fn(&SessionEffect) -> bool) -> Option<SessionEffect> {
        match self.pending.front_mut() {
            Some(Pending::Query { effects }) => {
                let i = effects.iter().position(wanted)?;
                Some(effects.remove(i))
            }
            Some(Pending::Execute { effect: Some(e) }) if wanted(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// A `SET` or `RESET` of the head entry completed: track its effect.
    fn apply_effect(&mut self, wanted: impl Fn(&SessionEffect) -> bool) {
        let Some(effect) = self.take_effect(wanted) else {
            return;
        };
        self.startup_reset |= self.settings.resets_startup(&effect);
        if matches!(&effect, SessionEffect::ResetAll)
            || matches!(&effect, SessionEffect::Set { name, .. } | SessionEffect::Reset { name } if name.eq_ignore_ascii_case("orgwall.tenant"))
        {
            self.context_lost();
        }
        self.settings.apply(&effect);
        if let Some(l) = self.server.as_mut() {
            l.conn.note_settings(settings::DIRTY);
        }
    }

    /// A ROLLBACK completed: back to the savepoint it names, if the head entry has a ROLLBACK
    /// TO pending and that savepoint is known; else the transaction is rolled back.
    fn rolled_back_to_savepoint(&mut self) {
        let at = match self.take_effect(|e| matches!(e, SessionEffect::RollbackTo(_))) {
            Some(SessionEffect::RollbackTo(n)) => {
                self.savepoints.iter().rposition(|(s, _)| *s == n)
            }
            _ => None,
        };
        let Some(i) = at else {
            self.rolled_back = true;
            return;
        };
        self.savepoints.truncate(i + 1);
        self.settings.restore(&self.savepoints[i].1);
        // A tenant context set after the savepoint is undone with it.
        self.context_lost();
        // The transaction goes on; an error before the savepoint's rollback is undone by it.
        self.rolled_back = false;
    }

    /// ReadyForQuery outside a transaction block: the transaction since the last one ended,
    /// committed unless it failed or rolled back.
    pub(super) fn transaction_ended(&mut self) {
        self.savepoints.clear();
        if std::mem::take(&mut self.rolled_back) {
            // PostgreSQL undid the RESETs too.
            self.startup_reset = false;
            self.settings.rollback();
        } else {
            self.settings.commit();
        }
    }

    /// A notification the client's own backend sent (its own `NOTIFY` on a channel it listens
    /// to) names the sender by the pid the client was told at login, Orgwall's, as PostgreSQL
    /// names it by the pid it told the client. Other senders' pids pass unchanged.
    fn own_notification_pid(&self, frame: &mut BytesMut) {
        let Some(lease) = self.server.as_ref() else {
            return;
        };
        if frame.get(5..9) == Some(&lease.conn.backend_pid().to_be_bytes()[..]) {
            frame[5..9].copy_from_slice(&self.cancel.pid.to_be_bytes());
        }
    }

    /// A named statement is now known to exist on the server connection.
    fn parse_confirmed(&mut self) {
        if let (
            Some(Pending::Parse {
                server_name: Some(name),
                ..
            }),
            Some(lease),
        ) = (self.pending.front(), self.server.as_mut())
        {
            lease.conn.statements().confirm(name);
        }
    }

    /// The server entered COPY FROM STDIN. In the extended protocol PostgreSQL ignores Sync
    /// until the copy ends, so Syncs the client sent before its CopyDone/CopyFail get no answer.
    fn enter_copy_in(&mut self) {
        if !matches!(
            self.pending.front(),
            Some(Pending::Execute { .. } | Pending::CopyIn { extended: true })
        ) {
            return;
        }
        self.copy_in = true;
        let mut i = 1;
        while i < self.pending.len() {
            match self.pending[i] {
                Pending::CopyEnd => break,
                Pending::Sync => {
                    self.pending.remove(i);
                }
                _ => i += 1,
            }
        }
    }

    /// Removes the head entry and emits any synthetic responses that are now due.
    fn pop_head(&mut self) {
        self.pending.pop_front();
        self.emit_due();
    }

    /// Emits the synthetic responses at the head of the queue, and drops COPY end marks there.
    pub(super) fn emit_due(&mut self) {
        loop {
            match self.pending.front() {
                Some(Pending::Synthetic(_)) => {
                    if let Some(Pending::Synthetic(b)) = self.pending.pop_front() {
                        self.to_client.extend_from_slice(&b);
                    }
                }
                Some(Pending::CopyEnd) => {
                    self.pending.pop_front();
                }
                _ => return,
            }
        }
    }

    /// Queues a response of our own, in protocol order.
    pub(super) fn push_synthetic(&mut self, bytes: BytesMut) {
        if self.pending.is_empty() {
            self.to_client.extend_from_slice(&bytes);
        } else {
            self.pending.push_back(Pending::Synthetic(bytes));
        }
    }

    /// [`push_synthetic`](Self::push_synthetic) of what `write` appends, written straight
    /// into the client's output when nothing is queued before it.
    pub(super) fn push_synthetic_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        if self.pending.is_empty() {
            write(&mut self.to_client);
        } else {
            let mut b = BytesMut::new();
            write(&mut b);
            self.pending.push_back(Pending::Synthetic(b));
        }
    }

    fn on_server_error(&mut self, frame: BytesMut) {
        match self.pending.front_mut() {
            // Inside a simple query the error is one of its results; ReadyForQuery follows.
            Some(Pending::Query { .. }) => self.to_client.extend_from_slice(&frame),
            Some(Pending::Settings { .. }) => {
                tracing::warn!(
                    code = wire::error_code(&frame),
                    "replaying client settings failed"
                );
            }
            Some(Pending::Context { synced, .. }) => {
                let synced = *synced;
                self.context_failed(frame, synced);
            }
            Some(Pending::Refused {
                error,
                simple: true,
            }) => {
                let error = std::mem::take(error);
                self.to_client.extend_from_slice(&error);
                self.pending[0] = Pending::Query { effects: vec![] };
            }
            Some(Pending::Refused {
                error,
                simple: false,
            }) => {
                let error = std::mem::take(error);
                self.to_client.extend_from_slice(&error);
                self.skip_to_sync();
            }
            Some(_) => {
                self.to_client.extend_from_slice(&frame);
                self.skip_to_sync();
            }
            // Unsolicited (e.g. FATAL before the server closes): pass it on.
            None => self.to_client.extend_from_slice(&frame),
        }
    }

    /// After an extended-protocol error PostgreSQL ignores everything up to Sync: drop the
    /// entries it will never answer, and the client's messages until its Sync arrives.
    pub(super) fn skip_to_sync(&mut self) {
        while let Some(p) = self.pending.front() {
            match p {
                Pending::Sync
                | Pending::Query { .. }
                | Pending::CopyIn { extended: false }
                | Pending::Settings { .. }
                | Pending::Context { synced: true, .. } => return,
                // Skipped by PostgreSQL: the connection keeps its previous context.
                Pending::Context { synced: false, .. } => self.context_lost(),
                Pending::Parse {
                    server_name: Some(n),
                    ..
                } => {
                    if let Some(l) = self.server.as_mut() {
                        l.conn.statements().remove(n);
                    }
                }
                Pending::CloseQuietly { evicted: Some(n) } => {
                    if let Some(l) = self.server.as_mut() {
                        l.conn.statements().insert(n.clone());
                    }
                }
                _ => {}
            }
            self.pending.pop_front();
        }
        self.skipping = true;
    }

    /// The client's `RESET ALL` (or `RESET` of a setting from its startup packet) took the
    /// server connection back to PostgreSQL's defaults, where PostgreSQL itself would have
    /// returned to the startup packet's values: once the transaction has ended and nothing is
    /// in flight, replay the client's settings on the connection (under transaction pooling
    /// it is released once the replay is answered). PostgreSQL's reports of the restored
    /// values reach the client, which has seen those of the reset.
    fn restore_startup_settings(&mut self) {
        if !self.startup_reset || !self.settled() {
            return;
        }
        self.startup_reset = false;
        if self.server.as_ref().is_some_and(|l| !l.is_shared()) {
            self.replay_settings(true);
        }
    }

    /// In transaction pooling, returns the server connection once nothing is in flight.
    fn maybe_release(&mut self) {
        if self.server_is_clean() {
            if let Some(lease) = self.server.take() {
                self.cancel.set_target(None);
                self.pool().release(lease);
            }
        }
    }

    /// Whether the held server connection may serve another client: transaction pooling, idle
    /// between transactions, nothing in flight, and PostgreSQL not skipping messages to a Sync
    /// after an error (a client that errored mid-pipeline and left without its Sync would
    /// leave the connection ignoring the next client's messages).
    pub(super) fn server_is_clean(&self) -> bool {
        self.mode == PoolMode::Transaction
            && self.settled()
            && !self.skipping
            && self.to_server.is_empty()
    }

    /// The server connection broke: the client's transaction is gone, so is its connection.
    pub(super) fn server_lost(&mut self) {
        self.server = None;
        self.cancel.set_target(None);
        self.to_server.clear();
        if self.settled() && self.mode == PoolMode::Transaction {
            tracing::info!("idle server connection closed");
            return;
        }
        tracing::warn!("lost the server connection mid-transaction");
        self.abandon_server(SessionError::ServerLost.into());
    }

    /// Lets the server connection go without returning it to the pool (dropped, it closes),
    /// forgets what was in flight on it, and ends the session with `e`.
    pub(super) fn abandon_server(&mut self, e: ClientError) {
        self.server = None;
        self.cancel.set_target(None);
        self.to_server.clear();
        self.pending.clear();
        self.fatal(e);
    }
}
