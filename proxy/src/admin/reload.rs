//! Reloading a running proxy (SIGHUP, the console's `RELOAD`): the config file read and
//! validated whole, `config::merge_reloadable` keeping what only a restart changes, and the
//! result put in force — the `current()` config (users, tenancy, JWT keys), pool sizes, caps,
//! client limits and plugins — then the catalog read again and the second wall re-checked.
//!
//! Invariant: a config that fails validation changes nothing; sessions are never closed.

use std::sync::Arc;

use crate::config::Config;
use crate::errors::{code, UserFacing};
use crate::state::{spawn_wall_check, ProxyState};

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the config was not loaded from a file: nothing to reload")]
    NoFile,
    #[error("{0}")]
    Invalid(crate::config::ConfigError),
}

impl UserFacing for ReloadError {
    fn sqlstate(&self) -> &'static str {
        code::CONFIG_FILE_ERROR
    }
    fn client_message(&self) -> String {
        format!("RELOAD: {self}; the running config stays")
    }
}

impl ProxyState {
    /// The config in force now (users, tenancy, JWT keys, limits after a reload).
    pub fn current(&self) -> Arc<Config> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the config file again and applies what may change while running: users and
    /// passwords, roles, `[tenancy]`, `[jwt]`, plugins, pool sizes, per-tenant caps and client
    /// limits, for new logins and new checkouts (sessions keep their server connections). A
    /// config that fails validation is rejected whole and the running one stays.
    pub fn reload_config(&self) -> Result<(), ReloadError> {
        let running = self.current();
        let path = running.source.clone().ok_or(ReloadError::NoFile)?;
        let new = Config::load(&path, &running.env)
            .map_err(ReloadError::Invalid)
            .inspect_err(
                |e| tracing::error!(error = %e, "config reload rejected; the running config stays"),
            )?;
        let (merged, restart) = crate::config::merge_reloadable(&running, new);
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "config reload: these settings change only at a restart; their running values stay");
        }
        let u = &merged.upstream;
        for pool in [Some(&self.pool), self.tenant_pool.as_ref()]
            .into_iter()
            .flatten()
        {
            pool.resize(u.pool_size);
            pool.set_caps(u.max_per_org, u.max_per_user);
        }
        self.clients.set_limits(
            merged.max_client_connections,
            merged.reserved_admin_connections,
        );
        if merged.plugins != running.plugins {
            self.policy.reload(&merged.plugins);
        }
        tracing::info!(
            users = merged.users.len(),
            pool_size = u.pool_size,
            plugins = merged.plugins.len(),
            "config reloaded"
        );
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(merged);
        Ok(())
    }

    /// SIGHUP: the catalog is rediscovered and the second wall checked again (in the
    /// background: the accept loop does not wait).
    pub async fn reload(self: &Arc<Self>) {
        self.reload_catalog().await;
        if self.tenant_pool.is_some() {
            spawn_wall_check(self);
        }
    }

    /// [`reload`](Self::reload), the wall's check done before it returns (the console's
    /// `RELOAD` answers once it ran; its outcome is logged).
    pub async fn reload_now(&self) {
        self.reload_catalog().await;
        if self.tenant_pool.is_some() {
            let _ = self.wall().await;
        }
    }
}
