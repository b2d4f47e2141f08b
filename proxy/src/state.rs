//! What every connection shares (`ProxyState`): the config in force, the pools, the second
//! wall once checked, the catalog, the caches, the registries and the metrics. Built by
//! `server::run`; frontend, session and admin read it.
//!
//! Sits between the modules it holds (upstream, policy, balances, boundary, clients, metrics)
//! and the ones that serve a client with it (frontend, session, admin, server): it imports
//! nothing of the latter.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::admission::{ClientSlots, StartupGate};
use crate::boundary::{establish, Wall, WallError};
use crate::cancel::CancelRegistry;
use crate::config::{Config, Role};
use crate::plan::Planner;
use crate::policy::PolicyEngine;
use crate::scram::Verifier;
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
    pub metrics: Arc<crate::metrics::Metrics>,
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
    /// The shared state for `config`; `tls` is the acceptor built from its `[tls]` section.
    pub fn new(
        config: Arc<Config>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<ProxyState> {
        let metrics = Arc::new(crate::metrics::Metrics::new(config.admin.tenant_metrics));
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

    /// Forgets the catalog; the next tenant statement rediscovers it. Plans check their rewrite's catalog version
    /// by catalog version, so stale templates are never used.
    pub async fn reload_catalog(&self) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self.wall.lock().await = WallState::Unchecked;
        tracing::info!("catalog reload requested");
    }
}

/// Runs the second wall's start-up check in the background; a failure is logged and refuses
/// tenant logins until it passes.
pub(crate) fn spawn_wall_check(state: &Arc<ProxyState>) {
    let st = state.clone();
    tokio::spawn(async move {
        let _ = st.wall().await;
    });
}
