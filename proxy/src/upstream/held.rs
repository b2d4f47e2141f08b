//! What a session holding a [`ServerConn`] reads of it and tells it. The connection's state
//! (statement cache, the unnamed statement, applied settings, tenant context, its stream and
//! read buffer) is private to `upstream`; sessions and the balance feed go through these
//! methods, each named for what the caller means.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::context::Context;
use super::{Prepared, ServerConn, UpstreamError};
use crate::cancel::{BackendKey, Fence};
use crate::duplex::{self, Io};
use crate::wire::{self, WireError};

impl ServerConn {
    /// The pool's number for this connection (logs, `SHOW SERVERS`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The backend's process id (a NotificationResponse carrying it came from this session's
    /// own backend).
    pub fn backend_pid(&self) -> i32 {
        self.key.pid
    }

    /// Where a client's cancel goes while its statement runs here, and the fence that counts it.
    pub fn cancel_target(&self) -> (&BackendKey, &Arc<Fence>) {
        (&self.key, &self.fence)
    }

    /// Polls writing `out` and, when `read`, reading into the connection's buffer, at once.
    pub fn poll_io(&mut self, cx: &mut TaskContext<'_>, read: bool, out: &[u8]) -> Poll<Io> {
        duplex::poll_duplex(cx, &mut self.stream, read.then_some(&mut self.rbuf), out)
    }

    /// Writes what can be written of `out` without waiting.
    pub fn write_now(&mut self, out: &mut BytesMut) {
        duplex::write_now(&mut self.stream, out);
    }

    /// Reads what PostgreSQL sent next into the connection's buffer; cancel-safe (losing a
    /// `select!` race reads nothing). `Closed` at the end of the stream.
    pub async fn read_more(&mut self) -> Result<(), UpstreamError> {
        match self.stream.read_buf(&mut self.rbuf).await {
            Ok(0) => Err(UpstreamError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(UpstreamError::Io(e)),
        }
    }

    /// The next whole message already read from PostgreSQL (`None`: more bytes needed); one
    /// longer than `max` is an error as soon as its length word is read.
    pub fn buffered_frame(&mut self, max: usize) -> Result<Option<BytesMut>, WireError> {
        wire::split_frame(&mut self.rbuf, max)
    }

    /// The server-side statements prepared on this connection.
    pub fn statements(&mut self) -> &mut Prepared {
        &mut self.prepared
    }

    /// The unnamed statement is now the one whose SQL and types hash to `hash`.
    pub fn parsed_unnamed(&mut self, hash: u64) {
        self.unnamed = Some(hash);
    }

    /// Whether the unnamed statement is the one hashed to `hash` (then it need not be parsed
    /// again).
    pub fn holds_unnamed(&self, hash: u64) -> bool {
        self.unnamed == Some(hash)
    }

    /// The unnamed statement is gone or unknown (a simple Query replaced it, a refusal's
    /// failing Parse did).
    pub fn unnamed_dropped(&mut self) {
        self.unnamed = None;
    }

    /// Every statement is gone (`DISCARD ALL`, `DEALLOCATE ALL`).
    pub fn statements_discarded(&mut self) {
        self.prepared.clear();
        self.unnamed = None;
    }

    /// The fingerprint of the client settings applied here (0: the server's defaults).
    pub fn settings(&self) -> u64 {
        self.settings
    }

    /// The settings applied here now have this fingerprint (one the session knows stands for
    /// "unknown" marks them for a replay).
    pub fn note_settings(&mut self, fingerprint: u64) {
        self.settings = fingerprint;
    }

    /// `RESET ALL` and the client's settings (fingerprint `fingerprint`) were sent as one simple
    /// Query: that drops the unnamed statement and clears the tenant context.
    pub fn settings_replayed(&mut self, fingerprint: u64) {
        self.settings = fingerprint;
        self.unnamed = None;
        self.context = Context::Unknown;
    }

    /// The tenant context Orgwall last set here, as far as it knows.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The context is being set to `context` (its messages are queued ahead of the next
    /// statement).
    pub fn note_context(&mut self, context: Context) {
        self.context = context;
    }

    /// The context may have changed (a rollback, `RESET ALL`, an error): set it again before
    /// the next tenant statement.
    pub fn context_lost(&mut self) {
        self.context = Context::Unknown;
    }
}
