//! Connections to PostgreSQL: the pool and its error type.
//!
//! Invariants: at most `pool_size` server connections exist at once (a semaphore permit travels
//! with every lease); a connection goes back to the idle list only when its owner says it is
//! clean (idle transaction status, nothing in flight); idle connections are probed before reuse.

pub mod catalog;
mod conn;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use conn::{BackendKey, ServerConn};
pub use stream::ServerStream;

use crate::config::UpstreamConfig;
use crate::wire::{self, WireError};

/// Why a server connection could not be had or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("all {0} server connections are busy")]
    PoolTimeout(usize),
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("PostgreSQL said {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("upstream asks for a password but the upstream URL has none")]
    PasswordRequired,
    #[error("unsupported upstream authentication method {0}")]
    UnsupportedAuth(String),
    #[error("SCRAM with PostgreSQL failed: {0}")]
    Scram(crate::scram::ScramError),
    #[error("unexpected message from PostgreSQL")]
    Protocol,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("TLS with PostgreSQL: {0}")]
    Tls(String),
}

impl UpstreamError {
    /// Builds `Rejected` from a raw ErrorResponse frame.
    pub fn rejected(frame: &[u8]) -> Self {
        let field = |k: u8| {
            let mut body = frame.get(5..).unwrap_or_default();
            while let Some((&kind, rest)) = body.split_first() {
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                if kind == k {
                    return String::from_utf8_lossy(&rest[..end]).into_owned();
                }
                if kind == 0 || end == rest.len() {
                    break;
                }
                body = &rest[end + 1..];
            }
            String::new()
        };
        UpstreamError::Rejected {
            code: wire::error_code(frame).unwrap_or("XX000").to_string(),
            message: field(b'M'),
        }
    }
}

/// A server connection checked out of the pool.
#[derive(Debug)]
pub struct Lease {
    pub conn: ServerConn,
    _permit: OwnedSemaphorePermit,
}

/// The pool of server connections to one upstream.
#[derive(Debug)]
pub struct Pool {
    cfg: UpstreamConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    idle: Mutex<Vec<ServerConn>>,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    /// ParameterStatus values of the most recent successful connect, shown to clients at login.
    server_params: Mutex<Vec<(String, String)>>,
}

impl Pool {
    /// Builds the pool (no connection is opened yet); fails on an unusable TLS setup.
    pub fn new(cfg: UpstreamConfig) -> Result<Pool, UpstreamError> {
        let tls = stream::client_config(&cfg).map_err(UpstreamError::Tls)?;
        Ok(Pool {
            tls,
            permits: Arc::new(Semaphore::new(cfg.pool_size)),
            cfg,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            server_params: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Checks out a connection: an idle one that still looks alive, else a new one.
    pub async fn acquire(&self) -> Result<Lease, UpstreamError> {
        let permit = tokio::time::timeout(
            self.cfg.checkout_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| UpstreamError::PoolTimeout(self.cfg.pool_size))?
        .map_err(|_| UpstreamError::Closed)?;
        while let Some(mut conn) = self.lock_idle().pop() {
            if conn.looks_alive() {
                return Ok(Lease {
                    conn,
                    _permit: permit,
                });
            }
            tracing::info!(server = conn.id, "dropping dead idle server connection");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = ServerConn::connect(&self.cfg, self.tls.as_ref(), id).await?;
        tracing::debug!(server = id, pid = conn.key.pid, "new server connection");
        *self.server_params.lock().unwrap_or_else(|p| p.into_inner()) = conn.startup_params.clone();
        Ok(Lease {
            conn,
            _permit: permit,
        })
    }

    /// Opens a connection outside the pool (no permit, never pooled): for the balance cache's
    /// feed, which holds its connections for as long as it runs.
    pub async fn connect_dedicated(&self, replication: bool) -> Result<ServerConn, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if replication {
            ServerConn::connect_replication(&self.cfg, self.tls.as_ref(), id).await
        } else {
            ServerConn::connect(&self.cfg, self.tls.as_ref(), id).await
        }
    }

    /// Returns a clean connection to the idle list (most recently used is reused first).
    pub fn release(&self, lease: Lease) {
        self.lock_idle().push(lease.conn);
    }

    /// The server's startup parameters, connecting once if none has been seen yet.
    pub async fn server_params(&self) -> Result<Vec<(String, String)>, UpstreamError> {
        let known = self
            .server_params
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !known.is_empty() {
            return Ok(known);
        }
        let lease = self.acquire().await?;
        let params = lease.conn.startup_params.clone();
        self.release(lease);
        Ok(params)
    }

    /// Closes every idle connection (used at shutdown).
    pub fn close_idle(&self) {
        self.lock_idle().clear();
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<ServerConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
