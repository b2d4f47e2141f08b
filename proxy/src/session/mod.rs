//! One client session: the protocol loop between a logged-in client and its server connection.
//!
//! The loop is full duplex (reads and writes on both sides progress independently, so large
//! pipelines and COPY cannot deadlock) with bounded buffers for backpressure. Server rows are
//! forwarded as raw frames. In transaction pooling the server connection is held from the first
//! message that needs it until ReadyForQuery reports idle with nothing in flight.

mod admin;
mod backend;
mod client;
mod commands;
mod context;
mod copy_in;
mod ddl;
mod defer;
mod encoding;
mod error;
mod local;
mod pending;
mod prepare;
mod respond;
mod route;
mod server;
mod settings;
mod shared;
mod statement;
mod tenant;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::cancel::CancelHandle;
use crate::config::PoolMode;
use crate::duplex::{self, Io};
use crate::errors::ClientError;
use crate::frontend::{ClientStream, Login, Principal};
use crate::state::ProxyState;
use crate::upstream::Lease;
use crate::wire;
use error::SessionError;
use pending::Pending;
use settings::Settings;
use statement::Statement;
use txn::TxnStatus;

/// Stop reading from one side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;

/// What a session talks to its client over: a socket in production (`ClientStream`), an
/// in-memory pipe in the session's own tests.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientIo for T {}

/// Everything one client connection owns.
pub(crate) struct Session<'a, S = ClientStream> {
    state: &'a ProxyState,
    principal: Principal,
    mode: PoolMode,
    client: S,
    cbuf: BytesMut,
    to_client: BytesMut,
    to_server: BytesMut,
    server: Option<Lease>,
    pending: VecDeque<Pending>,
    statements: HashMap<String, Arc<Statement>>,
    /// Each open portal's statement's session effect (for SET through the extended protocol)
    /// and the tenant it was bound for (it runs for no other).
    portals: HashMap<String, (Option<crate::sql::SessionEffect>, Option<String>)>,
    settings: Settings,
    /// After an error in the extended protocol: drop messages until Sync, as PostgreSQL does.
    skipping: bool,
    /// An error or a ROLLBACK since the last commit: the transaction's settings are undone when
    /// it ends (`backend.rs`).
    rolled_back: bool,
    /// The open transaction's savepoints, with the settings as they were at each.
    savepoints: Vec<(String, settings::Snapshot)>,
    /// Transaction status from the last ReadyForQuery.
    status: TxnStatus,
    /// A confirmed `RESET` dropped settings of the startup packet on the server connection
    /// (`backend.rs` restores them when the transaction ends).
    startup_reset: bool,
    cancel: CancelHandle,
    /// Set when the session must end once its output is flushed.
    closing: bool,
    /// The client sent Terminate (the session's end reason says so).
    terminated: bool,
    /// The server is in COPY FROM STDIN (extended protocol) and the client has not ended it.
    copy_in: bool,
    /// The rest of the client's messages wait in `cbuf` until the server has answered all that
    /// is in flight (`defer.rs`: so `SET orgwall.*` applies in protocol order).
    deferred: bool,
    /// The `orgwall.*` commands responder's state: the command statements and portals of the
    /// extended protocol (`commands.rs`; responders in `respond.rs`).
    commands: commands::Commands,
    /// The balance-cache responder's state (recognised statements, local portals,
    /// read-your-writes).
    local: local::Local,
    /// The messages being handled form a batch that may share a multiplexed connection.
    shareable: Option<shared::Sharing>,
    /// The plans of the SQL texts in the batch being handled (see `shared`).
    batch_plans: shared::BatchPlans,
    /// The second wall (tenant and switcher logins; see `context.rs`).
    wall: Option<Arc<crate::boundary::Wall>>,
    /// A context was set inside the client's transaction (PostgreSQL undoes it if that rolls
    /// back): once the transaction ends, the connection's context counts as unknown.
    context_unsure: bool,
    /// DDL completed in the client's open transaction (`ddl.rs`).
    ddl_in_transaction: bool,
    /// The last progress: a whole client message, server bytes, output the client took. The
    /// idle-in-transaction clock runs from here (a client trickling a message byte by byte
    /// does not restart it).
    active_at: tokio::time::Instant,
}

enum Event {
    ClientRead(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ClientWrote(std::io::Result<usize>),
    ServerWrote(std::io::Result<usize>),
    Shutdown,
    /// The drain timed out: end the session even mid-transaction.
    Terminate,
    Idle,
    /// The client sat inside a transaction, sending nothing, past
    /// `idle_in_transaction_timeout`.
    IdleInTransaction,
}

/// Serves a logged-in client until it leaves, breaks the protocol, or the proxy drains.
pub async fn run<S: ClientIo>(login: Login<S>, state: &ProxyState) {
    // Held until the session ends: its place among `max_client_connections`.
    let _slot = login.slot;
    let time = crate::balances::timestamp::TimeStyle::from_reported(
        login.reported.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let mut s = Session {
        state,
        principal: login.principal,
        mode: state.config.upstream.pool_mode,
        client: login.stream,
        cbuf: login.buf,
        to_client: BytesMut::with_capacity(16 * 1024),
        to_server: BytesMut::with_capacity(16 * 1024),
        server: None,
        pending: VecDeque::new(),
        statements: HashMap::new(),
        portals: HashMap::new(),
        settings: Settings::new(login.settings),
        skipping: false,
        rolled_back: false,
        savepoints: Vec::new(),
        status: TxnStatus::Idle,
        startup_reset: false,
        cancel: login.cancel,
        closing: false,
        terminated: false,
        copy_in: false,
        deferred: false,
        commands: commands::Commands::default(),
        local: local::Local::default(),
        shareable: None,
        batch_plans: Vec::new(),
        wall: login.wall,
        context_unsure: false,
        ddl_in_transaction: false,
        active_at: tokio::time::Instant::now(),
    };
    s.local.time = time;
    let reason = s.run_loop().await;
    tracing::info!(reason, "session ended");
    s.finish().await;
}

impl<S: ClientIo> Session<'_, S> {
    async fn run_loop(&mut self) -> &'static str {
        let mut draining = false;
        // Registered once, not on every pass: each registration locks the shared token.
        let state = self.state;
        let shutdown = state.shutdown.cancelled();
        let terminate = state.terminate.cancelled();
        tokio::pin!(shutdown, terminate);
        // Process whatever arrived together with the login.
        if let Err(reason) = self.process_client().await {
            return reason;
        }
        loop {
            if self.deferred && !self.in_flight() {
                self.deferred = false;
                if let Err(reason) = self.process_client().await {
                    return reason;
                }
            }
            if draining && self.is_idle() && !self.closing {
                self.fatal(SessionError::ShuttingDown.into());
            }
            self.try_flush();
            if self.closing && self.to_client.is_empty() {
                return self.closed_reason();
            }
            let config = &self.state.config;
            let idle_timeout = config.idle_client_timeout.filter(|_| self.is_idle());
            let idle_in_transaction = config
                .idle_in_transaction_timeout
                .filter(|_| self.is_idle_in_transaction())
                .map(|d| (self.active_at + d).saturating_duration_since(Instant::now()));
            let ev = {
                let Session {
                    client,
                    cbuf,
                    to_client,
                    to_server,
                    server,
                    closing,
                    deferred,
                    ..
                } = self;
                // A share of a multiplexed connection carries one batch at a time: the client's
                // next messages wait until its answers are in.
                let read_client = !*closing
                    && to_server.len() < HIGH_WATER
                    && (!*deferred || cbuf.len() < HIGH_WATER)
                    && !server.as_ref().is_some_and(|l| l.is_shared());
                let read_server = to_client.len() < HIGH_WATER;
                let has_server = server.is_some();
                tokio::select! {
                    io = std::future::poll_fn(|cx| {
                        duplex::poll_duplex(cx, client, read_client.then_some(&mut *cbuf), to_client)
                    }) => match io {
                        Io::Read(r) => Event::ClientRead(r),
                        Io::Wrote(r) => Event::ClientWrote(r),
                    },
                    io = std::future::poll_fn(|cx| match server.as_mut() {
                        Some(l) => l.conn.poll_io(cx, read_server, to_server),
                        None => std::task::Poll::Pending,
                    }), if has_server => match io {
                        Io::Read(r) => Event::ServerRead(r),
                        Io::Wrote(r) => Event::ServerWrote(r),
                    },
                    _ = &mut shutdown, if !draining => Event::Shutdown,
                    _ = &mut terminate => Event::Terminate,
                    _ = sleep_or_never(idle_timeout) => Event::Idle,
                    _ = sleep_or_never(idle_in_transaction) => Event::IdleInTransaction,
                }
            };
            match ev {
                Event::ClientRead(Ok(0)) | Event::ClientRead(Err(_)) => {
                    return "client disconnected"
                }
                Event::ClientRead(Ok(_)) => {
                    if let Err(reason) = self.process_client().await {
                        return reason;
                    }
                }
                Event::ServerRead(Ok(0)) | Event::ServerRead(Err(_)) => self.server_lost(),
                Event::ServerRead(Ok(_)) => {
                    self.active_at = Instant::now();
                    self.process_server()
                }
                Event::ClientWrote(Ok(n)) if n > 0 => {
                    self.active_at = Instant::now();
                    self.to_client.advance(n)
                }
                Event::ClientWrote(_) => return "client disconnected",
                Event::ServerWrote(Ok(n)) if n > 0 => self.to_server.advance(n),
                Event::ServerWrote(_) => self.server_lost(),
                Event::Shutdown => draining = true,
                Event::Terminate => {
                    self.pending.clear();
                    self.fatal(SessionError::Terminated.into());
                    self.try_flush();
                    return "terminated by shutdown";
                }
                Event::Idle => self.fatal(SessionError::IdleSession.into()),
                Event::IdleInTransaction => {
                    // Its server connection is mid-transaction: closed (PostgreSQL rolls the
                    // transaction back), never returned to the pool.
                    tracing::info!("closing a client idle in a transaction");
                    self.abandon_server(SessionError::IdleInTransaction.into());
                }
            }
        }
    }

    /// Writes what can be written without waiting, saving a trip through `select!` for the
    /// common case where the socket has room. Errors are left for the awaited write to report.
    fn try_flush(&mut self) {
        if let Some(lease) = self.server.as_mut() {
            lease.conn.write_now(&mut self.to_server);
        }
        duplex::write_now(&mut self.client, &mut self.to_client);
    }

    /// The pool this session's statements run on (see `ProxyState::pool_for`).
    fn pool(&self) -> &crate::upstream::Pool {
        self.state.pool_for(self.principal.role)
    }

    /// Between transactions with no answer awaited: PostgreSQL's last ReadyForQuery said idle
    /// and nothing sent since is unanswered. The one idle test; callers add what else they
    /// need (no Sync being skipped to, no COPY, nothing unsent).
    pub(super) fn settled(&self) -> bool {
        self.status == TxnStatus::Idle && self.pending.is_empty()
    }

    /// No server work in flight and no transaction open.
    fn is_idle(&self) -> bool {
        self.settled() && (self.server.is_none() || self.mode == PoolMode::Session)
    }

    /// Inside a transaction with nothing in flight: waiting on the client (the clock of
    /// `idle_in_transaction_timeout` runs from `active_at`).
    fn is_idle_in_transaction(&self) -> bool {
        self.status.in_block()
            && self.pending.is_empty()
            && self.to_server.is_empty()
            && !self.closing
    }

    /// Queues a FATAL error and ends the session once it is written.
    fn fatal(&mut self, e: ClientError) {
        e.write(&mut self.to_client);
        self.closing = true;
    }

    /// Splits and handles every complete client message in the buffer.
    async fn process_client(&mut self) -> Result<(), &'static str> {
        let max = self.state.config.max_message_bytes;
        let mut memo = std::mem::take(&mut self.batch_plans);
        memo.clear();
        self.shareable = self.batch_is_shareable(&mut memo);
        self.batch_plans = memo;
        while !self.closing && !self.deferred {
            match wire::split_frame(&mut self.cbuf, max) {
                Ok(Some(frame)) => {
                    if self.must_wait(frame[0]) {
                        self.defer(frame);
                        break;
                    }
                    self.active_at = Instant::now();
                    if let Err(e) = self.on_client_message(frame).await {
                        tracing::info!(error = %e.message, "closing client connection");
                        self.fatal(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(error = %e, "client sent an invalid message");
                    self.fatal(e.into());
                }
            }
        }
        if self.to_client.is_empty() && self.closing {
            return Err(self.closed_reason());
        }
        Ok(())
    }

    /// Why a session that is closing ended: the client's Terminate, or Orgwall's FATAL.
    fn closed_reason(&self) -> &'static str {
        match self.terminated {
            true => "client sent Terminate",
            false => "closed by orgwall",
        }
    }

    /// Flushes what is left and hands the server connection back only if it is clean.
    async fn finish(mut self) {
        if !self.to_client.is_empty() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                self.client.write_all(&self.to_client),
            )
            .await;
        }
        let _ = self.client.shutdown().await;
        if let Some(lease) = self.server.take() {
            self.cancel.set_target(None);
            if lease.is_shared() {
                // Its batch runs to completion on the multiplexed connection regardless.
            } else if self.server_is_clean() {
                self.pool().release(lease);
            } else {
                tracing::info!(
                    server = lease.conn.id(),
                    "closing server connection left mid-transaction"
                );
            }
        }
        let _ = &self.principal;
    }
}

async fn sleep_or_never(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
