//! The session's server side: taking a server connection from the pool (or a share of a
//! multiplexed one) and readying it for this client — its settings, its tenant context and
//! the reset of what another tenant left (`context.rs`) — and pointing the client's cancels
//! at it.

use pgwire::messages::simplequery::Query;

use super::context::Taken;
use super::error::SessionError;
use super::pending::Pending;
use super::{ClientIo, Session};
use crate::boundary::unix_now;
use crate::config::Role;
use crate::errors::ClientError;
use crate::upstream::Holder;
use crate::wire;

impl<S: ClientIo> Session<'_, S> {
    /// Makes sure a server connection is held, replaying the client's settings on it and
    /// bringing its tenant context to the session's current tenant (the second wall).
    pub(super) async fn ensure_server(&mut self) -> Result<(), ClientError> {
        if self.server.is_some() {
            self.drop_outdated_statements();
            return self.sync_context(Taken::Held).await;
        }
        let pool = self.state.pool_for(self.principal.role);
        if let Some(share) = self.shareable {
            let ticket = match &self.wall {
                Some(w) => Some(
                    w.ticket(self.current_org_str(), unix_now(), &self.state.pool)
                        .await
                        .map_err(|e| ClientError::from(&e))?,
                ),
                None => None,
            };
            let settings = &self.settings;
            let shared = pool.acquire_shared(
                settings.fingerprint(),
                || settings.replay_sql(),
                self.cancel.slot(),
                share.read_only,
                ticket.as_ref(),
            );
            if let Some(lease) = shared.await {
                self.server = Some(lease);
                return Ok(());
            }
        }
        let mut tries = 0;
        let (lease, other_tenant) = loop {
            tries += 1;
            let checkout = match self.principal.role {
                Role::Admin => pool.acquire().await,
                // Counted against the org the session serves now (an unbound switcher: its own).
                _ => {
                    let org = self.current_org_str().unwrap_or(&self.principal.org_id);
                    let who = Holder {
                        org,
                        user: &self.principal.user,
                        user_cap: self.principal.max_server_connections,
                    };
                    pool.acquire_for(who).await
                }
            };
            let mut lease = checkout.map_err(|e| {
                tracing::warn!(error = %e, "no server connection");
                ClientError::from(&e)
            })?;
            let other_tenant = lease.conn.context().org() != self.current_org_str();
            // A tenant connection that changes tenant gets the settings' replay with its
            // context, in the same round trip (`sync_context`).
            if other_tenant && self.wall.is_some() {
                break (lease, other_tenant);
            }
            match self.restore_settings(&mut lease.conn).await {
                Ok(()) => break (lease, other_tenant),
                // The connection's state is unknown: it is closed (dropped), never reused.
                Err(e) if tries < 2 => {
                    tracing::warn!(error = %e, "restoring client settings failed; trying another connection")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "restoring client settings failed");
                    return Err(SessionError::SettingsNotRestored.into());
                }
            }
        };
        self.server = Some(lease);
        self.drop_outdated_statements();
        if let Err(e) = self.sync_context(Taken::Fresh { other_tenant }).await {
            // (No token for the tenant: the connection, its settings possibly not replayed,
            // is closed.)
            self.server = None;
            return Err(e);
        }
        self.arm_cancel();
        Ok(())
    }

    /// Points the client's cancels at its own server connection's backend, or holds them while
    /// Orgwall's statements on it (settings replay, tenant context) are still to be answered:
    /// a cancel must fail the client's statement, not the ones its session depends on.
    pub(super) fn arm_cancel(&mut self) {
        let Some(lease) = self.server.as_ref().filter(|l| !l.is_shared()) else {
            return;
        };
        let ours = self.pending.iter().any(|p| {
            matches!(
                p,
                Pending::Settings { .. } | Pending::Context { synced: true, .. }
            )
        });
        if ours {
            self.cancel.hold();
        } else {
            self.cancel.set_target(Some(lease.conn.cancel_target()));
        }
    }

    /// Brings a connection just checked out to the session's settings (`RESET ALL; …`) when it
    /// last served others, and waits for PostgreSQL's answer: the previous holder's settings
    /// (a 1 ms `statement_timeout`, say) can fail the replay, and then nothing of this client
    /// may run on the connection — a statement pipelined behind the failed replay would run
    /// with the other client's settings.
    async fn restore_settings(
        &self,
        conn: &mut crate::upstream::ServerConn,
    ) -> Result<(), crate::upstream::UpstreamError> {
        let fingerprint = self.settings.fingerprint();
        if conn.settings() == fingerprint {
            return Ok(());
        }
        // (On failure the caller drops the connection: its state is unknown.)
        conn.query_text(&self.settings.replay_sql()).await?;
        conn.settings_replayed(fingerprint);
        Ok(())
    }

    /// Sends the client's settings (`RESET ALL; …`) ahead of whatever comes next on the held
    /// server connection; PostgreSQL's answers are swallowed (its ParameterStatus reports
    /// forwarded if `report`).
    pub(super) fn replay_settings(&mut self, report: bool) {
        wire::put(&mut self.to_server, &Query::new(self.settings.replay_sql()));
        let fingerprint = self.settings.fingerprint();
        // A simple Query drops the unnamed statement; `RESET ALL` the tenant context.
        self.lease().settings_replayed(fingerprint);
        self.pending.push_back(Pending::Settings { report });
    }

    pub(super) fn lease(&mut self) -> &mut crate::upstream::ServerConn {
        &mut self
            .server
            .as_mut()
            .expect("callers ensure a server connection is held")
            .conn
    }
}
