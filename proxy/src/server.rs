//! The accept loop: one task and tracing span per connection, graceful drain.
//!
//! Invariant: a panic or error in one connection's task never reaches another (each runs in its
//! own task); every accepted connection passes the startup gate and only a logged-in one takes
//! a client slot (`admission`); on shutdown, no new connection is accepted and open
//! transactions get `shutdown_timeout` to finish.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{field::Empty, Instrument};

use crate::admission::{ClientSlots, StartupGate, StartupTicket};
use crate::boundary::{establish, Wall, WallError};
use crate::cancel::CancelRegistry;
use crate::config::{Config, Role};
use crate::frontend::{self, tls_acceptor, ClientStream};
use crate::listen::{Listeners, Peer};
use crate::plan::Planner;
use crate::policy::{self, PolicyEngine};
use crate::scram::Verifier;
use crate::session;
use crate::sql::rewrite::Catalog;
use crate::upstream::{catalog, Pool, UpstreamError};

/// What every connection task shares.
pub struct ProxyState {
    pub config: Arc<Config>,
    /// The owner login's pool: admin traffic, catalog discovery, the balance cache.
    pub pool: Pool,
    /// The tenant identity's pool (`[upstream] tenant_user`): tenant and switcher traffic, when
    /// `[tenancy] enforce_in_postgres` (the default).
    pub tenant_pool: Option<Pool>,
    /// The second wall once its start-up check passed, or the last failure and when it was seen.
    wall: tokio::sync::Mutex<WallState>,
    pub cancel: Arc<CancelRegistry>,
    /// Connections still logging in (`max_startup_connections`, oldest evicted).
    pub startup: Arc<StartupGate>,
    /// Logged-in clients (`max_client_connections`, `reserved_admin_connections`).
    pub clients: Arc<ClientSlots>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Verifier used for unknown users so they cannot be told apart from wrong passwords.
    pub decoy: Verifier,
    /// Fires when the proxy starts draining.
    pub shutdown: CancellationToken,
    /// Fires when draining timed out: sessions end even mid-transaction.
    pub terminate: CancellationToken,
    /// The rewriter's view of the schema; loaded on first use, replaced on reload (SIGHUP).
    catalog: std::sync::RwLock<Option<Arc<Catalog>>>,
    /// Serialises catalog discovery so concurrent sessions load it once.
    catalog_loading: tokio::sync::Mutex<()>,
    /// Every SQL text's plan (summary, policy analysis, rewrite template, balance shape),
    /// shared by all sessions; nothing in it names a tenant.
    pub planner: Planner,
    /// The balance cache, when `[balances] enabled = true` (its feed starts in [`run`]).
    pub balances: Option<Arc<crate::balances::Balances>>,
    /// Policy plugins (`[[plugins]]`), hot-reloaded by `policy::reload::watch`.
    pub policy: Arc<PolicyEngine>,
    /// Refusals at the connection limits are logged at most once a second, with a count of
    /// the ones held back.
    pub limit_warnings: crate::logging::Throttle,
    /// What `/metrics` exports (`[admin] listen`).
    pub metrics: Arc<crate::admin::metrics::Metrics>,
    /// Logged-in clients (`SHOW CLIENTS`).
    pub registry: Arc<crate::clients::ClientRegistry>,
    /// The config in force: `config` at start, replaced by each successful reload (the
    /// settings `config::merge_reloadable` allows; the rest stay as at start).
    pub(crate) live: std::sync::RwLock<Arc<Config>>,
    /// Bumped whenever a client's DDL completes (`session/ddl.rs`): server-side statements
    /// Orgwall shares between clients and prepared before it are closed before their next use.
    pub ddl_epoch: std::sync::atomic::AtomicU64,
}

impl ProxyState {
    pub fn new(config: Arc<Config>) -> std::io::Result<ProxyState> {
        let tls = match &config.tls {
            Some(t) => Some(tls_acceptor(&t.cert_pem, &t.key_pem)?),
            None => None,
        };
        let metrics = Arc::new(crate::admin::metrics::Metrics::new(
            config.admin.tenant_metrics,
        ));
        let pool = |cfg: crate::config::UpstreamConfig, name: &str| {
            Pool::new(cfg)
                .map(|p| p.observed_by(metrics.pool_wait(name)))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        };
        Ok(ProxyState {
            pool: pool(config.upstream.clone(), "owner")?,
            tenant_pool: match config.tenancy.enforce_in_postgres {
                true => Some(pool(config.upstream.for_tenants(), "tenant")?),
                false => None,
            },
            wall: tokio::sync::Mutex::new(WallState::Unchecked),
            cancel: Arc::default(),
            startup: StartupGate::new(config.max_startup_connections),
            clients: ClientSlots::new(
                config.max_client_connections,
                config.reserved_admin_connections,
            ),
            tls,
            decoy: Verifier::from_password(&crate::scram::nonce()),
            shutdown: CancellationToken::new(),
            terminate: CancellationToken::new(),
            catalog: std::sync::RwLock::new(None),
            catalog_loading: tokio::sync::Mutex::new(()),
            ddl_epoch: std::sync::atomic::AtomicU64::new(0),
            planner: Planner::new(
                config.tenancy.rewrite_cache_size,
                config
                    .balances
                    .enabled
                    .then(|| config.balances.schema.clone()),
            ),
            balances: config
                .balances
                .enabled
                .then(|| Arc::new(crate::balances::Balances::new(config.balances.clone()))),
            policy: Arc::new(PolicyEngine::new(&config.plugins).map_err(std::io::Error::other)?),
            limit_warnings: crate::logging::Throttle::new(std::time::Duration::from_secs(1)),
            metrics,
            registry: Arc::default(),
            live: std::sync::RwLock::new(config.clone()),
            config,
        })
    }
}

/// Where the second wall's start-up check stands.
enum WallState {
    Unchecked,
    Ready(Arc<Wall>),
    /// Failed at this instant (what is unsafe, or `None`: PostgreSQL was unreachable);
    /// checked again after [`WALL_RETRY`].
    Failed(std::time::Instant, Option<String>),
}

/// A failed start-up check is not repeated for every login.
const WALL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl ProxyState {
    /// The pool a principal's statements run on: the tenant identity's for tenants and
    /// switchers (with the second wall), the owner's otherwise.
    pub fn pool_for(&self, role: Role) -> &Pool {
        match (&self.tenant_pool, role) {
            (Some(p), Role::Tenant | Role::Switcher) => p,
            _ => &self.pool,
        }
    }

    /// The second wall for tenant and switcher logins: `Ok(None)` when it is turned off,
    /// an error naming what is missing when its start-up check fails (checked at start, after
    /// a reload, and again at most every few seconds while it fails).
    pub async fn wall(&self) -> Result<Option<Arc<Wall>>, WallError> {
        let Some(tenant_pool) = &self.tenant_pool else {
            return Ok(None);
        };
        let mut state = self.wall.lock().await;
        match &*state {
            WallState::Ready(w) => return Ok(Some(w.clone())),
            WallState::Failed(at, why) if at.elapsed() < WALL_RETRY => {
                return Err(match why {
                    Some(why) => WallError::Unsafe(why.clone()),
                    None => WallError::Unreachable,
                })
            }
            _ => {}
        }
        let checked = match self.catalog().await {
            Ok(catalog) => {
                establish(
                    &self.pool,
                    tenant_pool,
                    &catalog,
                    &self.config.upstream.tenant_user,
                )
                .await
            }
            Err(e) => Err(WallError::Connect(e)),
        };
        match checked {
            Ok(w) => {
                tracing::info!(tenant_user = %self.config.upstream.tenant_user, "second wall in place: tenant traffic runs under PostgreSQL row-level security");
                let w = Arc::new(w);
                *state = WallState::Ready(w.clone());
                Ok(Some(w))
            }
            Err(e) => {
                tracing::error!(error = %e, "tenant and switcher logins are refused");
                let why = match &e {
                    WallError::Unsafe(w) => Some(w.clone()),
                    _ => None,
                };
                *state = WallState::Failed(std::time::Instant::now(), why);
                Err(e)
            }
        }
    }

    /// The current catalog, discovering it from PostgreSQL the first time.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, UpstreamError> {
        if let Some(c) = self.current_catalog() {
            return Ok(c);
        }
        let _loading = self.catalog_loading.lock().await;
        if let Some(c) = self.current_catalog() {
            return Ok(c);
        }
        let c = Arc::new(catalog::load(&self.pool, &self.current().tenancy).await?);
        tracing::info!(version = c.version(), "catalog loaded");
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn current_catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the catalog; the next tenant statement rediscovers it. Cached rewrites are keyed
    /// by catalog version, so stale templates are never used.
    pub async fn reload_catalog(&self) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self.wall.lock().await = WallState::Unchecked;
        tracing::info!("catalog reload requested");
    }
}

/// The async runtime for `workers` threads (`Config::workers`): a single-threaded one for 1.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Serves clients on `listener` (see [`Listeners::bind`]) until `shutdown` resolves, then drains
/// (bounded by `config.shutdown_timeout`) and returns; the Unix socket file goes with it.
pub async fn run(
    listener: Listeners,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let state = Arc::new(ProxyState::new(config)?);
    let tasks = TaskTracker::new();
    if let Some(addr) = state.config.admin.listen {
        let admin = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("binding [admin] listen {addr}: {e}"))
        })?;
        tracing::info!(listen = %addr, "admin endpoint (/metrics, /healthz) listening");
        tokio::spawn(crate::admin::serve(admin, state.clone()));
    }
    if let Some(b) = state.balances.clone() {
        let st = state.clone();
        // Not tracked: the feed and the fence's prober hold no client work and stop on
        // `shutdown` themselves.
        let (b2, st2) = (b.clone(), state.clone());
        tokio::spawn(async move {
            crate::balances::feed::run(b, &st.pool, st.shutdown.clone()).await;
        });
        tokio::spawn(async move {
            crate::balances::fence::run(b2, &st2.pool, st2.shutdown.clone()).await;
        });
    }
    if !state.config.plugins.is_empty() || state.config.source.is_some() {
        tokio::spawn(policy::reload::watch(
            state.policy.clone(),
            state.config.source.clone(),
            state.config.plugins.clone(),
            state.shutdown.clone(),
        ));
    }
    if state.tenant_pool.is_some() {
        spawn_wall_check(&state);
    } else {
        tracing::warn!("[tenancy] enforce_in_postgres = false: tenant traffic runs as the owner login, confined by Orgwall's rewrite alone");
    }
    tracing::info!(listen = %listener.describe(), "orgwall accepting connections");
    tokio::pin!(shutdown);
    // Given up for a moment when the process runs out of file descriptors, so the connection
    // waiting in the backlog can be told so instead of hanging (see `refuse_out_of_files`).
    let mut spare_fd = std::fs::File::open("/dev/null").ok();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // A rejected config is logged; the catalog is read again either way.
                let _ = state.reload_config();
                state.reload().await;
                continue;
            }
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) if crate::listen::is_out_of_files(&e) => {
                        refuse_out_of_files(&listener, &state, &mut spare_fd).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ticket = state.startup.enter();
                tasks.spawn(serve_client(socket, peer, state.clone(), ticket));
            }
        }
    }
    drop(listener);
    tracing::info!(
        open = tasks.len(),
        "draining: no longer accepting connections"
    );
    state.shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(state.config.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "drain timed out; closing remaining connections"
        );
        state.terminate.cancel();
        let grace = std::time::Duration::from_secs(2);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                open = tasks.len(),
                "connections still open after termination"
            );
        }
    }
    state.pool.close_idle();
    if let Some(p) = &state.tenant_pool {
        p.close_idle();
    }
    Ok(())
}

/// Out of file descriptors: counted, logged at most once a second, and the waiting
/// connection refused rather than left in the backlog (`Listeners::refuse_waiting`).
async fn refuse_out_of_files(
    listener: &Listeners,
    state: &ProxyState,
    spare: &mut Option<std::fs::File>,
) {
    state.metrics.client_refused("file_descriptors");
    if let Some(held_back) = state.limit_warnings.admit(std::time::Instant::now()) {
        tracing::warn!(
            held_back,
            "out of file descriptors (ulimit -n): refusing connections"
        );
    }
    listener.refuse_waiting(spare).await;
}

/// Runs the second wall's start-up check in the background; a failure is logged and refuses
/// tenant logins until it passes.
pub(crate) fn spawn_wall_check(state: &Arc<ProxyState>) {
    let st = state.clone();
    tokio::spawn(async move {
        let _ = st.wall().await;
    });
}

/// One connection: its handshake under `ticket` (its place at the startup gate, given back
/// once it is logged in), then its session.
async fn serve_client(
    socket: ClientStream,
    peer: Peer,
    state: Arc<ProxyState>,
    ticket: StartupTicket,
) {
    let span = tracing::info_span!("conn", %peer, user = Empty, org_id = Empty, role = Empty);
    async move {
        // A client still logging in holds no transaction: the drain does not wait for it.
        let handshake = tokio::select! {
            h = frontend::handshake(socket, &state, ticket.evicted()) => h,
            () = state.shutdown.cancelled() => {
                tracing::info!("handshake abandoned: shutting down");
                return;
            }
        };
        drop(ticket);
        match handshake {
            Ok(Some(login)) => {
                tracing::info!("login");
                let _counted = state.metrics.client(login.principal.role.as_str());
                let _listed = state.registry.register_login(&login, &peer);
                session::run(login, &state).await;
            }
            Ok(None) => {}
            // A TCP health probe connects and closes: not worth a line at INFO.
            Err(frontend::FrontendError::Closed) => {
                tracing::debug!("client closed before logging in")
            }
            Err(e @ frontend::FrontendError::Admission(_)) => {
                state.metrics.handshake_failed(&e);
                if let Some(held_back) = state.limit_warnings.admit(std::time::Instant::now()) {
                    tracing::warn!(error = %e, held_back, "connection refused at a limit");
                }
            }
            Err(e) => {
                state.metrics.handshake_failed(&e);
                tracing::info!(error = %e, "handshake ended")
            }
        }
    }
    .instrument(span)
    .await
}
