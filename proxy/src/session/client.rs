//! Client messages: every `Query` and `Parse` goes through [`Session::route_sql`] (the seam the
//! tenant rewriter plugs into); named statements are mapped onto per-server-connection names so
//! they survive transaction pooling and are prepared once per server connection.

use std::sync::Arc;

use bytes::BytesMut;
use std::borrow::Cow;

use pgwire::messages::extendedquery::{CloseComplete, Describe, Parse};
use pgwire::messages::simplequery::Query;

use super::error::SessionError;
use super::pending::Pending;
use super::prepare::Placement;
use super::respond::{Ask, Reply};
use super::txn::TxnStatus;
use super::{ClientIo, Session, Statement};
use crate::config::{PoolMode, Role};
use crate::errors::ClientError;
use crate::sql::SessionEffect;
use crate::wire::{self, client::ClientMessage};

/// SQL that always fails to parse; stands in for a refused statement (see `Pending::Refused`).
const REFUSED_SQL: &str = "orgwall refused this statement";

impl<S: ClientIo> Session<'_, S> {
    pub(super) async fn on_client_message(&mut self, frame: BytesMut) -> Result<(), ClientError> {
        let tag = frame[0];
        if self.skipping && matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'H') {
            return Ok(());
        }
        // Each message is read once, in place (`wire::client`), and handled from that reading.
        let msg = match wire::client::decode(&frame) {
            Ok(m) => m,
            // A name that is not UTF-8: an error, not a broken stream (as PostgreSQL says).
            Err(wire::WireError::NotUtf8) => {
                return self.refuse(SessionError::NotUtf8.into(), tag == b'Q').await;
            }
            Err(e) => return Err(e.into()),
        };
        // The responders (`respond.rs`) answer or pass these first; a Query's or Parse's SQL is
        // theirs in its handler, before and after routing.
        let asked = matches!(
            msg,
            ClientMessage::Bind(_)
                | ClientMessage::Describe { .. }
                | ClientMessage::Execute { .. }
                | ClientMessage::Close { .. }
                | ClientMessage::Sync
        );
        let ask = Ask::Message {
            msg: &msg,
            frame: &frame,
        };
        if asked && self.respond(ask).await? != Reply::Pass {
            return Ok(());
        }
        match msg {
            ClientMessage::Query { sql } => self.on_query(&frame, sql).await,
            ClientMessage::Parse { name, sql, types } => self.on_parse(name, sql, types).await,
            ClientMessage::Bind(v) => self.on_bind(&frame, v).await,
            ClientMessage::Describe { target, name } => {
                self.on_describe(&frame, target, name).await
            }
            ClientMessage::Execute { portal, .. } => self.on_execute(&frame, portal).await,
            ClientMessage::Close { target, name } => self.on_close(&frame, target, name).await,
            ClientMessage::Sync => self.on_sync(&frame),
            ClientMessage::Flush => {
                if self.server.is_some() {
                    self.to_server.extend_from_slice(&frame);
                }
                Ok(())
            }
            // COPY data goes to the server that asked for it; outside COPY PostgreSQL ignores it.
            ClientMessage::CopyData | ClientMessage::CopyDone | ClientMessage::CopyFail => {
                if self.server.is_some() {
                    self.to_server.extend_from_slice(&frame);
                    if tag != b'd' {
                        self.copy_in = false;
                        self.pending.push_back(Pending::CopyEnd);
                        // Nothing left to wait for when PostgreSQL failed the COPY before it
                        // arrived (a bad row in an earlier CopyData).
                        self.emit_due();
                    }
                }
                Ok(())
            }
            ClientMessage::Terminate => {
                self.closing = true;
                self.terminated = true;
                Ok(())
            }
        }
    }

    async fn on_query(&mut self, frame: &[u8], sql: &[u8]) -> Result<(), ClientError> {
        let query = match self.sql_text(sql) {
            Ok(q) => q,
            Err(e) => return self.refuse(e, true).await,
        };
        let utf8 = matches!(query, Cow::Borrowed(_));
        if self.respond(Ask::Query { sql: &query, frame }).await? != Reply::Pass {
            return Ok(());
        }
        // `EXECUTE name` of a protocol-level statement: PostgreSQL knows it by Orgwall's name
        // (not for text in another encoding, whose lossy reading must not be sent).
        let mapped = match utf8 {
            true => match self.map_executed_statement(&query).await {
                Ok(m) => m,
                Err(e) => return self.refuse(e, true).await,
            },
            false => None,
        };
        let text = mapped.as_deref().unwrap_or(&query);
        let routed = match self.route_sql(text).await {
            Ok(r) => r,
            Err(e) => return self.refuse(e, true).await,
        };
        let ask = Ask::QueryRouted {
            sql: &query,
            routed: &routed,
        };
        if self.respond(ask).await? != Reply::Pass {
            return Ok(());
        }
        if let Err(e) = self.ensure_server().await {
            self.push_synthetic(e.to_frame());
            let mut rfq = BytesMut::new();
            wire::put_ready(&mut rfq, self.status.byte());
            self.push_synthetic(rfq);
            return Ok(());
        }
        if routed.tenant.as_ref().is_some_and(|t| t.template.copy_in()) {
            self.send_copy_in(&query, routed.sql.unwrap_or_default(), false);
            return Ok(());
        }
        match routed.sql.or(mapped) {
            None => self.to_server.extend_from_slice(frame),
            Some(sql) => wire::put(&mut self.to_server, &Query::new(sql)),
        }
        self.lease().unnamed_dropped();
        self.pending.push_back(Pending::Query {
            effects: routed.effects,
        });
        Ok(())
    }

    async fn on_parse(
        &mut self,
        name: &str,
        sql: &[u8],
        type_oids: Vec<u32>,
    ) -> Result<(), ClientError> {
        // SQL in another client encoding (admin logins only) is sent to PostgreSQL as the
        // client wrote it; Orgwall reads a lossy UTF-8 copy (ASCII keywords intact).
        let query = match self.sql_text(sql) {
            Ok(q) => q,
            Err(e) => return self.refuse(e, false).await,
        };
        let other_encoding = matches!(query, Cow::Owned(_)).then(|| sql.to_vec());
        let query = query.into_owned();
        if self.respond(Ask::Parse { name, sql: &query }).await? != Reply::Pass {
            return Ok(());
        }
        let name = name.to_string();
        // `EXPLAIN … EXECUTE name(…)` of a protocol-level statement (sqlx's describe): the
        // statement runs with Orgwall's name in place, that one prepared wherever it runs.
        let (executes, mapped) = match other_encoding {
            Some(_) => (None, None),
            None => match self.map_executed_statement(&query).await {
                Ok(m) => (self.executed_client_statement(&query), m),
                Err(e) => return self.refuse(e, false).await,
            },
        };
        let executes = executes.filter(|_| mapped.is_some());
        let routed = match self.route_sql(mapped.as_deref().unwrap_or(&query)).await {
            Ok(r) => r,
            Err(e) => return self.refuse(e, false).await,
        };
        if !name.is_empty() && self.statements.contains_key(&name) {
            let e = SessionError::DuplicateStatement(name).into();
            return self.refuse(e, false).await;
        }
        let ask = Ask::ParseRouted {
            name: &name,
            sql: &query,
            types: &type_oids,
            routed: &routed,
        };
        let claimed = match self.respond(ask).await? {
            Reply::Pass => false,
            Reply::Claimed => true,
            Reply::Answered => return Ok(()),
        };
        let sql = routed.sql.or(mapped).unwrap_or(query);
        let mut stmt = Statement::new(
            sql,
            type_oids,
            routed.effects.into_iter().last(),
            routed.tenant,
            routed.sharing,
        );
        if let Some(raw) = other_encoding {
            stmt = stmt.with_raw_sql(raw);
        }
        stmt.executes = executes;
        if self.mode == PoolMode::Session && self.principal.role == Role::Admin {
            stmt = stmt.keeping_client_name(&name);
        }
        let stmt = Arc::new(stmt);
        if (claimed || !name.is_empty()) && self.server.is_none() {
            // (`claimed`: a statement a responder may answer, the balance cache's lookups.)
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
        match self.placement(&name, &stmt) {
            Placement::OnServer => self.push_parse_complete(),
            Placement::Prepare => self.send_parse(&stmt, true, true),
            Placement::Unnamed => self.send_parse(&stmt, false, true),
        }
        self.statements.insert(name, stmt);
        Ok(())
    }

    async fn on_bind(&mut self, raw: &[u8], v: wire::BindView<'_>) -> Result<(), ClientError> {
        // Read in place: a Bind the balance cache answers is never copied, and one that is
        // forwarded is copied once, naming the statement as the server knows it.
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
        let effect = effect.map(|e| bound_effect(e, &v.params));
        let org = self.current_org();
        self.portals.insert(v.portal.to_string(), (effect, org));
        let renamed = server_name.as_deref().unwrap_or("");
        wire::put_bind_renamed(&mut self.to_server, raw, &v, renamed);
        self.pending.push_back(Pending::Bind);
        Ok(())
    }

    async fn on_describe(
        &mut self,
        frame: &[u8],
        target: u8,
        name: &str,
    ) -> Result<(), ClientError> {
        if target == b'S' {
            let server_name = match self.statement_on_server(name).await {
                Ok(n) => n,
                Err(e) => return self.refuse(e, false).await,
            };
            let d = Describe::new(b'S', server_name);
            wire::put(&mut self.to_server, &d);
            self.pending.push_back(Pending::DescribeStatement);
        } else {
            if let Err(e) = self.ensure_server().await {
                return self.refuse(e, false).await;
            }
            self.to_server.extend_from_slice(frame);
            self.pending.push_back(Pending::DescribePortal);
        }
        Ok(())
    }

    async fn on_execute(&mut self, frame: &[u8], portal: &str) -> Result<(), ClientError> {
        let bound = self.portals.get(portal).and_then(|(_, org)| org.as_deref());
        if let Err(e) = self.portal_tenant_check(portal, bound) {
            return self.refuse(e, false).await;
        }
        if let Err(e) = self.ensure_server().await {
            return self.refuse(e, false).await;
        }
        let effect = self.portals.get(portal).and_then(|(e, _)| e.clone());
        self.to_server.extend_from_slice(frame);
        self.pending.push_back(Pending::Execute { effect });
        Ok(())
    }

    async fn on_close(&mut self, frame: &[u8], target: u8, name: &str) -> Result<(), ClientError> {
        if target == b'S' || self.server.is_none() {
            // Statements stay prepared on the server connections for the next user (except
            // those under the client's own name); a portal cannot exist without a held server
            // connection.
            if target == b'S' {
                if let Some(stmt) = self.statements.remove(name) {
                    self.close_client_named(&stmt, false);
                }
            }
            let mut b = BytesMut::new();
            wire::put(&mut b, &CloseComplete::new());
            self.push_synthetic(b);
        } else {
            self.portals.remove(name);
            self.to_server.extend_from_slice(frame);
            self.pending.push_back(Pending::Close);
        }
        Ok(())
    }

    fn on_sync(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        self.skipping = false;
        if self.copy_in {
            // PostgreSQL ignores Sync during COPY FROM STDIN: no ReadyForQuery will answer it.
            self.to_server.extend_from_slice(frame);
            return Ok(());
        }
        if self.server.is_some() {
            self.to_server.extend_from_slice(frame);
            self.pending.push_back(Pending::Sync);
        } else {
            self.portals.clear();
            // The implicit transaction of what the client sent since its last Sync ends here
            // (what Orgwall answered itself: `SET orgwall.*` commits or rolls back with it).
            if self.status == TxnStatus::Idle {
                self.transaction_ended();
            }
            let status = self.status.byte();
            self.push_synthetic_with(|out| wire::put_ready(out, status));
        }
        Ok(())
    }

    /// Refuses a statement. With a server connection held, a failing statement is sent in its
    /// place so PostgreSQL aborts the transaction (or pipeline) exactly as for a real error.
    pub(super) async fn refuse(&mut self, e: ClientError, simple: bool) -> Result<(), ClientError> {
        // SQL refusals were logged at INFO by `route_sql`; the message may quote literals.
        tracing::debug!(code = e.code, "refusal sent");
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
            self.lease().unnamed_dropped();
            self.pending.push_back(Pending::Refused {
                error: e.to_frame(),
                simple,
            });
        } else {
            self.push_synthetic(e.to_frame());
            if simple {
                let mut b = BytesMut::new();
                wire::put_ready(&mut b, self.status.byte());
                self.push_synthetic(b);
            } else {
                // PostgreSQL would fail the implicit transaction up to the Sync.
                self.skipping = true;
                self.rolled_back = true;
            }
        }
        Ok(())
    }
}

/// A statement's session effect once its parameters are bound: `set_config(name, $n, false)`
/// sets the parameter's value (PostgreSQL infers `text` for it, whose binary form is its
/// text), or resets the setting for NULL.
fn bound_effect(effect: SessionEffect, params: &[Option<&[u8]>]) -> SessionEffect {
    let param_text = |n: usize| params.get(n.wrapping_sub(1)).copied().flatten();
    let (name, param) = match effect {
        SessionEffect::SetParam { name, param } => (name, param),
        // `set_config($n, $m, false)`: the name as PostgreSQL reads it (case-insensitive), if
        // it is one Orgwall can replay unquoted; else left untracked as a `SetParam` would be.
        SessionEffect::SetNamedParam { name, value } => {
            let bound = param_text(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_ascii_lowercase)
                .filter(|n| n.split('.').all(crate::sql::is_plain_setting_part));
            match bound {
                Some(n) => (n, value),
                None => return SessionEffect::SetNamedParam { name, value },
            }
        }
        other => return other,
    };
    match param_text(param) {
        None => SessionEffect::Reset { name },
        Some(v) => match std::str::from_utf8(v) {
            Ok(v) => SessionEffect::Set {
                name,
                value: crate::sql::quote_literal(v),
            },
            Err(_) => SessionEffect::SetParam { name, param },
        },
    }
}
