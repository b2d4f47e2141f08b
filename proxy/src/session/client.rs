//! Client messages: every `Query` and `Parse` goes through [`Session::route_sql`] (the seam the
//! tenant rewriter plugs into); named statements are mapped onto per-server-connection names so
//! they survive transaction pooling and are prepared once per server connection.

use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::extendedquery::{Bind, Close, CloseComplete, Describe, Parse, ParseComplete};
use pgwire::messages::simplequery::Query;

use super::pending::Pending;
use super::{admin, tenant};
use super::{Session, Statement};
use crate::errors::{code, ClientError};
use crate::sql::lex::{self, Token};
use crate::wire;

/// SQL that always fails to parse; stands in for a refused statement (see `Pending::Refused`).
const REFUSED_SQL: &str = "orgwall refused this statement";

impl Session<'_> {
    pub(super) async fn on_client_message(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        let tag = frame[0];
        if self.skipping && matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'H') {
            return Ok(());
        }
        match tag {
            b'Q' => self.on_query(frame).await,
            b'P' => self.on_parse(frame).await,
            b'B' => self.on_bind(frame).await,
            b'D' => self.on_describe(frame).await,
            b'E' => self.on_execute(frame).await,
            b'C' => self.on_close(frame).await,
            b'S' => self.on_sync(frame),
            b'H' => {
                if self.server.is_some() {
                    self.to_server.extend_from_slice(&frame);
                }
                Ok(())
            }
            // COPY data goes to the server that asked for it; outside COPY PostgreSQL ignores it.
            b'd' | b'c' | b'f' => {
                if self.server.is_some() {
                    self.to_server.extend_from_slice(&frame);
                    if tag != b'd' {
                        self.copy_in = false;
                        self.pending.push_back(Pending::CopyEnd);
                    }
                }
                Ok(())
            }
            b'X' => {
                tracing::debug!("client sent Terminate");
                self.closing = true;
                Ok(())
            }
            other => Err(wire::WireError::UnexpectedType(other as char).into()),
        }
    }

    async fn on_query(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        let q: Query = wire::decode(frame.clone(), "Query")?;
        // Before `orgwall.*` commands: `SHOW orgwall.balances_drift` is an admin statement.
        if let Some(cmd) = admin::parse(&q.query) {
            return self.on_admin_command(cmd, true).await;
        }
        if let Some(cmd) = tenant::parse_command(&q.query) {
            return self.on_orgwall_command(cmd).await;
        }
        let routed = match self.route_sql(&q.query).await {
            Ok(r) => r,
            Err(e) => return self.refuse(e, true).await,
        };
        if self.answer_query_locally(&q.query, &routed).await {
            return Ok(());
        }
        if let Err(e) = self.ensure_server().await {
            self.push_synthetic(e.to_frame());
            let mut rfq = BytesMut::new();
            wire::put_ready(&mut rfq, self.status);
            self.push_synthetic(rfq);
            return Ok(());
        }
        match routed.sql {
            None => self.to_server.extend_from_slice(&frame),
            Some(sql) => wire::put(&mut self.to_server, &Query::new(sql)),
        }
        self.lease().unnamed = None;
        self.pending.push_back(Pending::Query {
            effect: routed.effect,
        });
        Ok(())
    }

    async fn on_parse(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        let p: Parse = wire::decode(frame, "Parse")?;
        let name = p.name.unwrap_or_default();
        // Before `orgwall.*` commands: `SHOW orgwall.balances_drift` is an admin statement.
        if let Some(cmd) = admin::parse(&p.query) {
            return self.on_admin_command(cmd, false).await;
        }
        if let Some(cmd) = tenant::parse_command(&p.query) {
            return self.parse_command_statement(name, cmd).await;
        }
        self.commands.forget_statement(&name);
        let routed = match self.route_sql(&p.query).await {
            Ok(r) => r,
            Err(e) => return self.refuse(e, false).await,
        };
        if !name.is_empty() && self.statements.contains_key(&name) {
            let e = ClientError::error(
                code::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{name}\" already exists"),
            );
            return self.refuse(e, false).await;
        }
        let local = self
            .parse_locally(&name, &p.query, &p.type_oids, &routed)
            .await;
        let sql = routed.sql.unwrap_or(p.query);
        let stmt = Arc::new(Statement::new(
            sql,
            p.type_oids,
            routed.effect,
            routed.tenant,
            routed.sharing,
        ));
        if (local || !name.is_empty()) && self.server.is_none() {
            // (`local`: a statement the balance cache answers, see `local.rs`.)
            // Outside a transaction a named Parse takes no server connection: the statement is
            // prepared on whichever connection first runs it. Taking one here would let a client
            // that prepares synchronously (pgbench -M prepared) wait on a pool its own other
            // connections are holding. Cost: an invalid statement fails at Bind/Describe.
            self.push_parse_complete();
            self.statements.insert(name, stmt);
            return Ok(());
        }
        if let Err(e) = self.ensure_server().await {
            return self.refuse(e, false).await;
        }
        if name.is_empty() && !self.prepares_unnamed(&stmt) {
            self.send_parse(&stmt, false, true);
        } else if self.lease().prepared.contains(&stmt.server_name) {
            self.push_parse_complete();
        } else {
            self.send_parse(&stmt, true, true);
        }
        self.statements.insert(name, stmt);
        Ok(())
    }

    fn push_parse_complete(&mut self) {
        let mut b = BytesMut::new();
        wire::put(&mut b, &ParseComplete::new());
        self.push_synthetic(b);
    }

    /// Sends a Parse for `stmt` under its server name (or as the unnamed statement).
    fn send_parse(&mut self, stmt: &Statement, named: bool, forward: bool) {
        let name = named.then(|| stmt.server_name.clone());
        if named && self.lease().prepared.is_shared() {
            // Another client's batch may be preparing it on this connection right now; closing
            // a statement that does not exist is not an error.
            let close = Close::new(b'S', name.clone());
            wire::put(&mut self.to_server, &close);
            self.pending.push_back(Pending::CloseQuietly);
        }
        let parse = Parse::new(name.clone(), stmt.sql.clone(), stmt.types.clone());
        wire::put(&mut self.to_server, &parse);
        let conn = self.lease();
        if named {
            conn.prepared.insert(stmt.server_name.clone());
        } else {
            conn.unnamed = Some(stmt.hash);
        }
        self.pending.push_back(Pending::Parse {
            server_name: name,
            forward,
        });
    }

    /// Looks up a client statement and makes sure the held server connection has it.
    async fn statement_on_server(&mut self, name: &str) -> Result<Option<String>, ClientError> {
        let Some(found) = self.statements.get(name).cloned() else {
            let what = if name.is_empty() {
                "unnamed prepared statement".to_string()
            } else {
                format!("prepared statement \"{name}\"")
            };
            return Err(ClientError::error(
                code::INVALID_STATEMENT_NAME,
                format!("{what} does not exist"),
            ));
        };
        let stmt = self.for_current_tenant(found.clone()).await?;
        if !Arc::ptr_eq(&stmt, &found) {
            self.statements.insert(name.to_string(), stmt.clone());
        }
        self.ensure_server().await?;
        if name.is_empty() && !self.prepares_unnamed(&stmt) {
            if self.lease().unnamed != Some(stmt.hash) {
                self.send_parse(&stmt, false, false);
            }
            Ok(None)
        } else {
            if !self.lease().prepared.contains(&stmt.server_name) {
                self.send_parse(&stmt, true, false);
            }
            Ok(Some(stmt.server_name.clone()))
        }
    }

    /// Whether the unnamed statement `stmt` runs as a named one on the held server connection
    /// (`[upstream] prepare_unnamed`): it has parameters, so it is likely to run again, and
    /// it is prepared there already or the connection has room for it. PostgreSQL then parses
    /// it once per connection, and may plan it generically after five runs, as for a named one.
    fn prepares_unnamed(&mut self, stmt: &Statement) -> bool {
        let cap = self.state.config.upstream.prepare_unnamed;
        if cap == 0 {
            return false;
        }
        let prepared = &self.lease().prepared;
        prepared.contains(&stmt.server_name)
            || (prepared.len() < cap && lex::tokens(&stmt.sql).any(|t| t == Token::Param))
    }

    async fn on_bind(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        // Read in place: a Bind the balance cache answers is never copied or decoded, and one
        // that is forwarded is copied once, naming the statement as the server knows it. A
        // Bind the in-place reader does not take is decoded by pgwire (which reports what is
        // wrong with it) and read again as pgwire encodes it.
        let mut reencoded = BytesMut::new();
        let v = match wire::bind_view(&frame) {
            Some(v) => v,
            None => {
                let b: Bind = wire::decode(frame.clone(), "Bind")?;
                wire::put(&mut reencoded, &b);
                wire::bind_view(&reencoded).ok_or(wire::WireError::Malformed("Bind"))?
            }
        };
        let raw: &[u8] = if reencoded.is_empty() {
            &frame
        } else {
            &reencoded
        };
        if self.bind_command(v.statement, v.portal) {
            return Ok(());
        }
        self.commands.forget(b'P', v.portal);
        if self.bind_locally(&v).await {
            return Ok(());
        }
        let server_name = match self.statement_on_server(v.statement).await {
            Ok(n) => n,
            Err(e) => return self.refuse(e, false).await,
        };
        let stmt = self.statements.get(v.statement).cloned();
        if let Some(stmt) = &stmt {
            if let Err(e) = self.check_tenant_params(stmt, &v.params) {
                return self.refuse(e, false).await;
            }
        }
        let effect = stmt.and_then(|s| s.effect.clone());
        self.portals.insert(v.portal.to_string(), effect);
        let renamed = server_name.as_deref().unwrap_or("");
        wire::put_bind_renamed(&mut self.to_server, raw, &v, renamed);
        self.pending.push_back(Pending::Bind);
        Ok(())
    }

    async fn on_describe(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        // Read in place first: a Describe Orgwall answers itself is never copied or decoded.
        if let Some((target, name)) = wire::describe_view(&frame) {
            if self.describe_command(target, name) || self.describe_locally(target, name) {
                return Ok(());
            }
        }
        let mut d: Describe = wire::decode(frame.clone(), "Describe")?;
        if wire::describe_view(&frame).is_none() {
            let name = d.name.as_deref().unwrap_or("");
            if self.describe_command(d.target_type, name)
                || self.describe_locally(d.target_type, name)
            {
                return Ok(());
            }
        }
        if d.target_type == b'S' {
            let name = d.name.clone().unwrap_or_default();
            match self.statement_on_server(&name).await {
                Ok(n) => d.name = n,
                Err(e) => return self.refuse(e, false).await,
            }
            wire::put(&mut self.to_server, &d);
            self.pending.push_back(Pending::DescribeStatement);
        } else {
            if let Err(e) = self.ensure_server().await {
                return self.refuse(e, false).await;
            }
            self.to_server.extend_from_slice(&frame);
            self.pending.push_back(Pending::DescribePortal);
        }
        Ok(())
    }

    async fn on_execute(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        if let Some(cmd) = self.commands.portal(wire_portal_name(&frame)) {
            return self.execute_command(cmd).await;
        }
        if self.execute_locally(&frame) {
            return Ok(());
        }
        if let Err(e) = self.ensure_server().await {
            return self.refuse(e, false).await;
        }
        let portal = wire_portal_name(&frame);
        let effect = self.portals.get(portal).cloned().flatten();
        self.to_server.extend_from_slice(&frame);
        self.pending.push_back(Pending::Execute { effect });
        Ok(())
    }

    async fn on_close(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        let c: Close = wire::decode(frame.clone(), "Close")?;
        self.commands
            .forget(c.target_type, c.name.as_deref().unwrap_or(""));
        if self.close_locally(c.target_type, c.name.as_deref().unwrap_or("")) {
            return Ok(());
        }
        if c.target_type == b'S' || self.server.is_none() {
            // Statements stay prepared on the server connections for the next user; a portal
            // cannot exist without a held server connection.
            if c.target_type == b'S' {
                self.statements.remove(&c.name.unwrap_or_default());
            }
            let mut b = BytesMut::new();
            wire::put(&mut b, &CloseComplete::new());
            self.push_synthetic(b);
        } else {
            self.portals.remove(&c.name.unwrap_or_default());
            self.to_server.extend_from_slice(&frame);
            self.pending.push_back(Pending::Close);
        }
        Ok(())
    }

    fn on_sync(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        self.skipping = false;
        self.sync_locally();
        if self.copy_in {
            // PostgreSQL ignores Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
            self.to_server.extend_from_slice(&frame);
            return Ok(());
        }
        if self.server.is_some() {
            self.to_server.extend_from_slice(&frame);
            self.pending.push_back(Pending::Sync);
        } else {
            self.portals.clear();
            let status = self.status;
            self.push_synthetic_with(|out| wire::put_ready(out, status));
        }
        Ok(())
    }

    /// Refuses a statement. With a server connection held, a failing statement is sent in its
    /// place so PostgreSQL aborts the transaction (or pipeline) exactly as for a real error.
    pub(super) async fn refuse(&mut self, e: ClientError, simple: bool) -> Result<(), ClientError> {
        tracing::info!(code = e.code, reason = %e.message, "statement refused");
        if self.server.is_some() {
            if simple {
                wire::put(&mut self.to_server, &Query::new(REFUSED_SQL.into()));
            } else {
                wire::put(
                    &mut self.to_server,
                    &Parse::new(None, REFUSED_SQL.into(), vec![]),
                );
                self.skipping = true;
            }
            self.lease().unnamed = None;
            self.pending.push_back(Pending::Refused {
                error: e.to_frame(),
                simple,
            });
        } else {
            self.push_synthetic(e.to_frame());
            if simple {
                let mut b = BytesMut::new();
                wire::put_ready(&mut b, self.status);
                self.push_synthetic(b);
            } else {
                self.skipping = true;
            }
        }
        Ok(())
    }

    /// Makes sure a server connection is held, replaying the client's settings on it.
    pub(super) async fn ensure_server(&mut self) -> Result<(), ClientError> {
        if self.server.is_some() {
            return Ok(());
        }
        if let Some(share) = self.shareable {
            let settings = &self.settings;
            let shared = self.state.pool.acquire_shared(
                settings.fingerprint(),
                || settings.replay_sql(),
                self.cancel.slot(),
                share.read_only,
            );
            if let Some(lease) = shared.await {
                self.server = Some(lease);
                return Ok(());
            }
        }
        let mut lease = self.state.pool.acquire().await.map_err(|e| {
            tracing::warn!(error = %e, "no server connection");
            ClientError::from(&e)
        })?;
        self.cancel.set_target(Some(lease.conn.key.clone()));
        let want = self.settings.fingerprint();
        if lease.conn.settings != want {
            wire::put(&mut self.to_server, &Query::new(self.settings.replay_sql()));
            lease.conn.settings = want;
            lease.conn.unnamed = None;
            self.pending.push_back(Pending::Settings);
        }
        self.server = Some(lease);
        Ok(())
    }

    fn lease(&mut self) -> &mut crate::upstream::ServerConn {
        &mut self
            .server
            .as_mut()
            .expect("callers ensure a server connection is held")
            .conn
    }
}

/// The portal name of a raw Execute frame.
fn wire_portal_name(frame: &[u8]) -> &str {
    let body = frame.get(5..).unwrap_or_default();
    let end = body.iter().position(|&b| b == 0).unwrap_or(0);
    std::str::from_utf8(&body[..end]).unwrap_or("")
}
