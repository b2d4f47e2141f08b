//! Connections to PostgreSQL: the pool and its error type.
//!
//! Invariants: at most `pool_size` server connections exist at once (a semaphore permit travels
//! with every lease); a tenant's checkout also takes its org's and user's share (`caps`), so
//! no tenant holds more than its cap; a connection goes back to the idle list only when its
//! owner says it is clean (idle transaction status, nothing in flight); idle connections are
//! probed before reuse, and one whose backend was sent a cancel serves nobody until that
//! cancel can no longer land (`cancel::Fence`).

mod caps;
pub mod catalog;
mod conn;
pub mod context;
mod error;
mod held;
pub mod listing;
mod mux;
mod prepared;
mod reported;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::cancel::BackendKey;
pub use caps::Holder;
pub use conn::ServerConn;
pub use error::UpstreamError;
pub use prepared::Prepared;
pub use reported::SettingError;
pub use stream::ServerStream;

use crate::cancel::CancelSlot;
use crate::config::UpstreamConfig;
use crate::wire;

impl UpstreamError {
    /// Builds `Rejected` from a raw ErrorResponse frame.
    pub fn rejected(frame: &[u8]) -> Self {
        let message = wire::field_bytes(frame.get(5..).unwrap_or_default(), b'M');
        UpstreamError::Rejected {
            code: wire::error_code(frame).unwrap_or("XX000").to_string(),
            message: String::from_utf8_lossy(message.unwrap_or_default()).into_owned(),
        }
    }
}

/// A server connection checked out of the pool, or a share of a multiplexed one (`mux/`).
#[derive(Debug)]
pub struct Lease {
    pub conn: ServerConn,
    /// `None` for a share of a multiplexed connection (whose task holds the permit).
    permit: Option<OwnedSemaphorePermit>,
    /// The tenant's share of its cap, for a checkout made for a tenant ([`Pool::acquire_for`]):
    /// held only to be given back when the lease is dropped.
    _share: Option<caps::Share>,
}

impl Lease {
    /// A share of a multiplexed connection: the client may hold it for implicit transactions
    /// only, and dropping it never closes the connection.
    pub fn is_shared(&self) -> bool {
        self.permit.is_none()
    }
}

/// The pool of server connections to one upstream.
#[derive(Debug)]
pub struct Pool {
    cfg: UpstreamConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    idle: Mutex<Vec<ServerConn>>,
    permits: Arc<Semaphore>,
    /// What each tenant org and login holds (`[tenancy] max_server_connections_per_*`).
    caps: Arc<caps::Caps>,
    next_id: AtomicU64,
    /// ParameterStatus values of the most recent successful connect, shown to clients at login.
    server_params: Mutex<Vec<(String, String)>>,
    /// (setting, value a client sent) → the value as PostgreSQL reports it (`reported.rs`).
    reported: Mutex<std::collections::HashMap<(String, String), String>>,
    /// Multiplexed connections (`[upstream] multiplex`), if any.
    mux: Option<mux::Mux>,
    /// Exclusive checkouts and shares of multiplexed connections handed out (`stats`).
    checkouts: AtomicU64,
    shares: AtomicU64,
    /// Checkouts waiting for a permit now, and failed connects since start (`/metrics`).
    waiting: AtomicU64,
    /// Permits in all (`pool_size`, changed by a reload).
    size: std::sync::atomic::AtomicUsize,
    connect_errors: AtomicU64,
    /// Where checkout waits are recorded (`/metrics`), when the proxy exports them.
    wait_seconds: Option<prometheus::Histogram>,
    /// Its exclusive connections (`SHOW SERVERS`).
    listing: listing::Listing,
}

/// A pool's figures at one instant (`/metrics`, `SHOW POOLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub size: usize,
    /// Exclusive connections checked out now.
    pub in_use: usize,
    pub idle: usize,
    /// Checkouts waiting for a connection now.
    pub waiting: u64,
    pub checkouts: u64,
    pub connect_errors: u64,
}

impl Pool {
    /// Builds the pool (no connection is opened yet); fails on an unusable TLS setup.
    pub fn new(cfg: UpstreamConfig) -> Result<Pool, UpstreamError> {
        let tls = stream::client_config(&cfg).map_err(UpstreamError::Tls)?;
        let pool_size = cfg.pool_size;
        Ok(Pool {
            mux: (cfg.multiplex > 0)
                .then(|| mux::Mux::new(cfg.multiplex, cfg.group_reads, cfg.max_message_bytes)),
            tls,
            permits: Arc::new(Semaphore::new(cfg.pool_size)),
            caps: caps::Caps::new(cfg.max_per_org, cfg.max_per_user),
            cfg,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            server_params: Mutex::new(Vec::new()),
            reported: Mutex::new(std::collections::HashMap::new()),
            checkouts: AtomicU64::new(0),
            shares: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            size: std::sync::atomic::AtomicUsize::new(pool_size),
            connect_errors: AtomicU64::new(0),
            wait_seconds: None,
            listing: listing::Listing::default(),
        })
    }

    /// Sets the number of server connections (reload). Growing adds permits at once;
    /// shrinking takes the surplus permits as connections come back (a checkout queued after
    /// that waits its turn) and closes surplus idle connections. Sessions keep theirs.
    pub fn resize(&self, size: usize) {
        let size = size.max(1);
        let old = self.size.swap(size, Ordering::Relaxed);
        if size > old {
            self.permits.add_permits(size - old);
        } else if size < old {
            let permits = self.permits.clone();
            let surplus = (old - size) as u32;
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
            self.lock_idle().truncate(size);
        }
    }

    /// Its exclusive connections now (`SHOW SERVERS`).
    pub fn servers(&self) -> Vec<listing::ServerRow> {
        self.listing.rows()
    }

    /// Sets the per-tenant caps (reload).
    pub fn set_caps(&self, per_org: usize, per_user: usize) {
        self.caps.set_limits(per_org, per_user);
    }

    /// Records every checkout's wait for a permit in `h`.
    pub fn observed_by(mut self, h: prometheus::Histogram) -> Pool {
        self.wait_seconds = Some(h);
        self
    }

    /// The pool's figures now.
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            size: self.size.load(Ordering::Relaxed),
            in_use: self
                .size
                .load(Ordering::Relaxed)
                .saturating_sub(self.permits.available_permits()),
            idle: self.lock_idle().len(),
            waiting: self.waiting.load(Ordering::Relaxed),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
        }
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Checks out a connection for Orgwall's own work or an admin login (no tenant cap): an
    /// idle one that still looks alive, else a new one.
    pub async fn acquire(&self) -> Result<Lease, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.cfg.checkout_timeout;
        self.checkout(None, deadline).await
    }

    /// Checks out a connection for a tenant's session: first `who`'s share of its org's and
    /// user's caps (waiting while either is reached), then a connection as [`acquire`] does,
    /// both within one `checkout_timeout`.
    pub async fn acquire_for(&self, who: Holder<'_>) -> Result<Lease, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.cfg.checkout_timeout;
        let share = self.caps.take(who, deadline).await?;
        self.checkout(Some(share), deadline).await
    }

    async fn checkout(
        &self,
        share: Option<caps::Share>,
        deadline: tokio::time::Instant,
    ) -> Result<Lease, UpstreamError> {
        let started = std::time::Instant::now();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(h) = &self.wait_seconds {
            h.observe(started.elapsed().as_secs_f64());
        }
        let permit = permit
            .map_err(|_| UpstreamError::PoolTimeout(self.size.load(Ordering::Relaxed)))?
            .map_err(|_| UpstreamError::Closed)?;
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        let lease = |conn| Lease {
            conn,
            permit: Some(permit),
            _share: share,
        };
        loop {
            let next = self.lock_idle().pop();
            let Some(mut conn) = next else { break };
            if !conn.looks_alive() {
                tracing::info!(server = conn.id, "dropping dead idle server connection");
                continue;
            }
            // Its last client sent a cancel: none may land on this client's statements.
            if conn.fence.dirty() {
                if let Err(e) = conn.absorb_cancels().await {
                    tracing::warn!(server = conn.id, error = %e, "closing a server connection after a cancel");
                    continue;
                }
            }
            self.listing.set_active(conn.id, true);
            return Ok(lease(conn));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = ServerConn::connect(&self.cfg, self.tls.as_ref(), id)
            .await
            .inspect_err(|_| {
                self.connect_errors.fetch_add(1, Ordering::Relaxed);
            })?;
        conn.listed = Some(self.listing.add(id, conn.key.pid));
        tracing::debug!(server = id, pid = conn.key.pid, "new server connection");
        *self.server_params.lock().unwrap_or_else(|p| p.into_inner()) = conn.startup_params.clone();
        Ok(lease(conn))
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

    /// Returns a clean connection to the idle list (most recently used is reused first); a
    /// share of a multiplexed connection is just let go.
    pub fn release(&self, lease: Lease) {
        if !lease.is_shared() {
            let mut idle = self.lock_idle();
            // After a reload shrank the pool, surplus connections close as they come back.
            if idle.len() < self.size.load(Ordering::Relaxed) {
                self.listing.set_active(lease.conn.id, false);
                idle.push(lease.conn);
            }
        }
    }

    /// A share of a multiplexed connection whose settings fingerprint is `settings` and whose
    /// tenant context serves `want` (opened, and brought to those with `replay` and the wall,
    /// if needed), or `None` when multiplexing is
    /// off or every suitable connection is busy with a slow statement: then use [`acquire`].
    pub async fn acquire_shared(
        &self,
        settings: u64,
        replay: impl FnOnce() -> String,
        cancel: CancelSlot,
        read_only: bool,
        want: mux::Want<'_>,
    ) -> Option<Lease> {
        let mux = self.mux.as_ref()?;
        let conn = mux.pick(self, settings, replay, want, read_only).await?;
        self.shares.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            conn: conn.share(cancel, read_only),
            permit: None,
            _share: None,
        })
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

    /// Counters for `SHOW orgwall_pool`: (name, value).
    pub fn stats(&self) -> Vec<(&'static str, String)> {
        let idle = self.lock_idle().len();
        let (groups, grouped) = self.mux.as_ref().map_or((0, 0), |m| m.groups());
        vec![
            ("pool_size", self.size.load(Ordering::Relaxed).to_string()),
            ("idle", idle.to_string()),
            (
                "checkouts",
                self.checkouts.load(Ordering::Relaxed).to_string(),
            ),
            ("multiplex", self.cfg.multiplex.to_string()),
            (
                "multiplexed_connections",
                self.mux.as_ref().map_or(0, |m| m.live()).to_string(),
            ),
            (
                "multiplexed_batches",
                self.shares.load(Ordering::Relaxed).to_string(),
            ),
            ("multiplexed_groups", groups.to_string()),
            ("multiplexed_grouped", grouped.to_string()),
        ]
    }

    /// Closes every idle connection (used at shutdown); multiplexed ones close once their
    /// last batch is answered.
    pub fn close_idle(&self) {
        self.lock_idle().clear();
        if let Some(mux) = &self.mux {
            mux.close();
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<ServerConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
