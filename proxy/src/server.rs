//! The accept loop: one task and tracing span per connection, graceful drain.
//!
//! Invariant: a panic or error in one connection's task never reaches another (each runs in its
//! own task); every accepted connection passes the startup gate and only a logged-in one takes
//! a client slot (`admission`); on shutdown, no new connection is accepted and open
//! transactions get `shutdown_timeout` to finish.

use std::future::Future;
use std::sync::Arc;

use tokio_util::task::TaskTracker;
use tracing::{field::Empty, Instrument};

use crate::admission::StartupTicket;
use crate::config::Config;
use crate::frontend::{self, tls_acceptor, ClientStream};
use crate::listen::{Listeners, Peer};
use crate::policy;
use crate::session;
use crate::state::{spawn_wall_check, ProxyState};

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
    let tls = match &config.tls {
        Some(t) => Some(tls_acceptor(&t.cert_pem, &t.key_pem)?),
        None => None,
    };
    let state = Arc::new(ProxyState::new(config, tls)?);
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
                let _listed = login.register(&state.registry, &peer);
                session::run(login, &state).await;
            }
            Ok(None) => {}
            // A TCP health probe connects and closes: not worth a line at INFO.
            Err(frontend::FrontendError::Closed) => {
                tracing::debug!("client closed before logging in")
            }
            Err(e @ frontend::FrontendError::Admission(_)) => {
                if let Some(reason) = e.refusal() {
                    state.metrics.client_refused(reason);
                }
                if let Some(held_back) = state.limit_warnings.admit(std::time::Instant::now()) {
                    tracing::warn!(error = %e, held_back, "connection refused at a limit");
                }
            }
            Err(e) => {
                if let Some(reason) = e.refusal() {
                    state.metrics.client_refused(reason);
                }
                tracing::info!(error = %e, "handshake ended")
            }
        }
    }
    .instrument(span)
    .await
}
