//! Commands Orgwall answers without PostgreSQL, in both the simple protocol and the extended
//! one (Parse/Bind/Describe/Execute of such a statement are answered locally, in protocol
//! order, through the pending queue): `SET`/`RESET orgwall.*`, `SHOW orgwall.org_id`, and `DEALLOCATE` of the client's
//! protocol-level prepared statements, which exist on the server only under Orgwall's names.

use std::collections::HashMap;

use bytes::BytesMut;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{BindComplete, ParseComplete};
use pgwire::messages::response::CommandComplete;

use super::admin;
use super::respond::{Ask, Reply, Responder};
use super::tenant::{self, OrgwallCommand};

/// The column `SHOW orgwall.org_id` answers in, named as PostgreSQL names a SHOW's column.
const SHOW_COLUMN: &str = "orgwall.org_id";
use super::error::SessionError;
use super::txn::TxnStatus;
use super::{ClientIo, Session};
use crate::boundary::unix_now;
use crate::config::PoolMode;
use crate::errors::ClientError;
use crate::sql::lex::{self, Token};
use crate::wire::{self, client::ClientMessage};

/// Extended-protocol statements and portals that hold an `orgwall.*` command (and the admin
/// console's statements, and a tenant's COPY FROM, prepared in the extended protocol).
#[derive(Debug, Default)]
pub(super) struct Commands {
    statements: HashMap<String, OrgwallCommand>,
    portals: HashMap<String, OrgwallCommand>,
}

impl Commands {
    /// Close of a statement (`S`) or portal (`P`).
    fn forget(&mut self, target: u8, name: &str) {
        if target == b'S' {
            self.statements.remove(name);
        } else {
            self.portals.remove(name);
        }
    }
}

/// `orgwall.*` commands and `DEALLOCATE` as a responder: in a Query (answered once nothing is
/// in flight, so the binding changes in protocol order) or a Parse, before planning; a
/// tenant's COPY FROM at Parse, once routed; then Bind, Describe and Execute of the
/// statements and portals it holds. A Parse, Bind or Close it passes still replaces or drops
/// the command statement or portal of that name.
pub(super) struct OrgwallCommands;

impl Responder for OrgwallCommands {
    async fn respond<S: ClientIo>(
        s: &mut Session<'_, S>,
        ask: Ask<'_>,
    ) -> Result<Reply, ClientError> {
        match ask {
            Ask::Query { sql, frame } => {
                let Some(cmd) = s.local_command(sql) else {
                    return Ok(Reply::Pass);
                };
                if s.in_flight() {
                    return Ok(s.answer_later(frame));
                }
                s.on_orgwall_command(cmd).await?;
            }
            Ask::Parse { name, sql } => {
                let Some(cmd) = s.local_command(sql) else {
                    // A new statement under that name replaces the command statement.
                    s.commands.statements.remove(name);
                    return Ok(Reply::Pass);
                };
                s.parse_command_statement(name.to_string(), cmd).await?;
            }
            Ask::ParseRouted {
                name, sql, routed, ..
            } => {
                if !s.parse_copy_in(name, sql, routed).await? {
                    return Ok(Reply::Pass);
                }
            }
            Ask::Message {
                msg: ClientMessage::Bind(v),
                ..
            } => {
                if !s.bind_command(v.statement, v.portal) {
                    s.commands.portals.remove(v.portal);
                    return Ok(Reply::Pass);
                }
            }
            Ask::Message {
                msg: &ClientMessage::Describe { target, name },
                ..
            } => {
                if !s.describe_command(target, name) {
                    return Ok(Reply::Pass);
                }
            }
            Ask::Message {
                msg: &ClientMessage::Execute { portal, .. },
                frame,
            } => {
                let Some(cmd) = s.commands.portals.get(portal).cloned() else {
                    return Ok(Reply::Pass);
                };
                // (A COPY runs on the server in protocol order: it need not wait.)
                if s.in_flight() && !matches!(cmd, OrgwallCommand::CopyIn(_)) {
                    return Ok(s.answer_later(frame));
                }
                s.execute_command(cmd).await?;
            }
            Ask::Message {
                msg: &ClientMessage::Close { target, name },
                ..
            } => {
                s.commands.forget(target, name);
                return Ok(Reply::Pass);
            }
            Ask::QueryRouted { .. } | Ask::Message { .. } => return Ok(Reply::Pass),
        }
        Ok(Reply::Answered)
    }
}

impl<S: ClientIo> Session<'_, S> {
    /// Drops the client's prepared statements, its own and its `orgwall.*` ones, as
    /// PostgreSQL's `DEALLOCATE ALL` and `DISCARD ALL` do (which do not touch the unnamed
    /// statement: `keep_unnamed`, unless PostgreSQL replaced it anyway).
    pub(super) fn forget_statements(&mut self, keep_unnamed: bool) {
        let keep = |n: &String| keep_unnamed && n.is_empty();
        self.statements.retain(|n, _| keep(n));
        self.commands.statements.retain(|n, _| keep(n));
    }

    /// The command in `text` that Orgwall answers itself, if it is one. `DEALLOCATE`: with
    /// transaction pooling always (SQL-level PREPARE is refused there, so every prepared
    /// statement the client has is a protocol-level one); with session pooling only of a
    /// protocol-level statement by name (PostgreSQL has SQL-level ones, and `DEALLOCATE ALL`
    /// goes to it; `backend.rs` sees it done).
    fn local_command(&self, text: &str) -> Option<Result<OrgwallCommand, ClientError>> {
        if let Some(cmd) = tenant::parse_command(text) {
            return Some(cmd.map_err(ClientError::from));
        }
        let name = parse_deallocate(text)?;
        let local = match (&name, self.mode) {
            (_, PoolMode::Transaction) => true,
            (Some(n), PoolMode::Session) => self.knows_statement(n),
            (None, PoolMode::Session) => false,
        };
        local.then_some(Ok(OrgwallCommand::Deallocate { name }))
    }

    /// Whether the client has a prepared statement `name` (a plain one or a command).
    fn knows_statement(&self, name: &str) -> bool {
        self.statements.contains_key(name) || self.commands.statements.contains_key(name)
    }

    /// Simple protocol: applies the command and answers CommandComplete + ReadyForQuery.
    async fn on_orgwall_command(
        &mut self,
        cmd: Result<OrgwallCommand, ClientError>,
    ) -> Result<(), ClientError> {
        if matches!(cmd, Ok(OrgwallCommand::Show)) && self.status != TxnStatus::Failed {
            let mut b = admin::row_description(&[SHOW_COLUMN]);
            b.extend_from_slice(&self.show_row());
            wire::put(&mut b, &CommandComplete::new("SHOW".into()));
            wire::put_ready(&mut b, self.status.byte());
            self.push_synthetic(b);
            return Ok(());
        }
        let tag = match cmd.and_then(|c| self.apply_orgwall_command(c, true)) {
            Ok(tag) => tag,
            Err(e) => return self.refuse(e, true).await,
        };
        let mut b = BytesMut::new();
        wire::put(&mut b, &CommandComplete::new(tag.into()));
        wire::put_ready(&mut b, self.status.byte());
        self.push_synthetic(b);
        Ok(())
    }

    /// Extended protocol, Parse: checks the command now (a tenant login is refused here) and
    /// remembers it; nothing reaches PostgreSQL.
    pub(super) async fn parse_command_statement(
        &mut self,
        name: String,
        cmd: Result<OrgwallCommand, ClientError>,
    ) -> Result<(), ClientError> {
        let checked = cmd.and_then(|c| {
            if !matches!(
                c,
                OrgwallCommand::Deallocate { .. }
                    | OrgwallCommand::Show
                    | OrgwallCommand::Admin(_)
                    | OrgwallCommand::CopyIn(_)
            ) {
                tenant::may_switch(self.principal.role)?;
            }
            Ok(c)
        });
        let cmd = match checked {
            Ok(c) => c,
            Err(e) => return self.refuse(e, false).await,
        };
        if !name.is_empty() && self.knows_statement(&name) {
            let e = SessionError::DuplicateStatement(name).into();
            return self.refuse(e, false).await;
        }
        self.statements.remove(&name);
        self.commands.statements.insert(name, cmd);
        self.push_message(&ParseComplete::new());
        Ok(())
    }

    /// Bind of a command statement: answered locally.
    fn bind_command(&mut self, statement: &str, portal: &str) -> bool {
        let Some(cmd) = self.commands.statements.get(statement).cloned() else {
            return false;
        };
        self.commands.portals.insert(portal.to_string(), cmd);
        self.push_message(&BindComplete::new());
        true
    }

    /// Describe of a command statement or portal: no parameters; no rows, except for an
    /// admin console statement (its text columns).
    fn describe_command(&mut self, target: u8, name: &str) -> bool {
        let known = if target == b'S' {
            self.commands.statements.get(name)
        } else {
            self.commands.portals.get(name)
        };
        let Some(cmd) = known.cloned() else {
            return false;
        };
        if target == b'S' {
            self.push_message(&ParameterDescription::new(vec![]));
        }
        match cmd {
            OrgwallCommand::Show => self.push_synthetic(admin::row_description(&[SHOW_COLUMN])),
            OrgwallCommand::Admin(a) if !a.columns().is_empty() => {
                self.push_synthetic(admin::row_description(a.columns()))
            }
            _ => self.push_message(&NoData::new()),
        }
        true
    }

    /// The DataRow of `SHOW orgwall.org_id`: the tenant now in force, empty when none.
    fn show_row(&self) -> BytesMut {
        admin::data_row(&[Some(self.current_org_str().unwrap_or_default().to_string())])
    }

    /// Execute of a command portal: applies it and answers CommandComplete.
    async fn execute_command(&mut self, cmd: OrgwallCommand) -> Result<(), ClientError> {
        match cmd {
            OrgwallCommand::Admin(a) => return self.execute_admin(a).await,
            OrgwallCommand::CopyIn(text) => return self.execute_copy_in(&text).await,
            _ => {}
        }
        if matches!(cmd, OrgwallCommand::Show) && self.status != TxnStatus::Failed {
            let row = self.show_row();
            self.push_synthetic(row);
        }
        match self.apply_orgwall_command(cmd, false) {
            Ok(tag) => {
                self.push_message(&CommandComplete::new(tag.into()));
                Ok(())
            }
            Err(e) => self.refuse(e, false).await,
        }
    }

    fn push_message<M: pgwire::messages::Message>(&mut self, m: &M) {
        let mut b = BytesMut::new();
        wire::put(&mut b, m);
        self.push_synthetic(b);
    }

    /// Applies a command now: the caller made sure nothing is in flight (`Session::defer`), so
    /// the transaction status is PostgreSQL's at this point of the client's stream. `simple`:
    /// a Query of its own, whose implicit transaction (outside a block) ends with it; in the
    /// extended protocol that transaction ends at the next Sync (`transaction_ended`).
    fn apply_orgwall_command(
        &mut self,
        cmd: OrgwallCommand,
        simple: bool,
    ) -> Result<&'static str, ClientError> {
        if self.status == TxnStatus::Failed {
            return Err(SessionError::InFailedTransaction.into());
        }
        match cmd {
            OrgwallCommand::Bind { org, local } => {
                let config = self.state.current();
                let jwt = &config.jwt;
                let binding = tenant::resolve(self.principal.role, &org, jwt, unix_now())?;
                tracing::info!(org_id = %binding.org, local, token = binding.expires.is_some(), "tenant bound");
                // As in PostgreSQL, SET LOCAL outside a transaction block has no effect.
                if !(local && self.status == TxnStatus::Idle) {
                    self.settings.bind_tenant(Some(binding), local);
                    self.binding_changed(simple);
                }
                Ok("SET")
            }
            OrgwallCommand::Reset => {
                tenant::may_switch(self.principal.role)?;
                self.settings.bind_tenant(None, false);
                self.binding_changed(simple);
                Ok("RESET")
            }
            // The row is sent by the caller.
            OrgwallCommand::Show => Ok("SHOW"),
            OrgwallCommand::Deallocate { name } => {
                // The unnamed statement is not a prepared statement DEALLOCATE can name.
                let Some(name) = name else {
                    self.forget_statements(true);
                    return Ok("DEALLOCATE ALL");
                };
                let removed = (!name.is_empty())
                    .then(|| self.statements.remove(&name))
                    .flatten();
                if let Some(stmt) = &removed {
                    self.close_client_named(stmt, true);
                }
                let known = !name.is_empty()
                    && (removed.is_some() | self.commands.statements.remove(&name).is_some());
                if !known {
                    return Err(SessionError::UnknownStatement(name).into());
                }
                Ok("DEALLOCATE")
            }
            // Answered by `execute_admin` and `execute_copy_in`, never applied as settings.
            OrgwallCommand::Admin(_) => Ok("SHOW"),
            OrgwallCommand::CopyIn(_) => Ok("COPY"),
        }
    }

    /// A binding set outside a transaction block by a Query of its own is committed at once.
    fn binding_changed(&mut self, simple: bool) {
        if simple && self.status == TxnStatus::Idle {
            self.settings.commit();
        }
    }
}

/// `DEALLOCATE [PREPARE] {name | ALL}` alone: `Some(None)` for ALL, `Some(Some(name))` with the
/// name resolved as PostgreSQL resolves identifiers (folded to lower case unless quoted).
fn parse_deallocate(text: &str) -> Option<Option<String>> {
    let head = text.trim_start().get(..10)?;
    if !head.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut spans = lex::spans(text).filter(|(t, _)| *t != Token::Punct(b';'));
    let mut next = || spans.next().map(|(t, r)| (t, &text[r]));
    next()?;
    let mut target = next()?;
    if matches!(target.0, Token::Word(w) if w.eq_ignore_ascii_case("prepare")) {
        target = next()?;
    }
    if next().is_some() {
        return None;
    }
    match target {
        (Token::Word(w), _) if w.eq_ignore_ascii_case("all") => Some(None),
        (t, text) => lex::identifier(t, text).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_deallocate;

    #[test]
    fn deallocate_forms() {
        let cases: &[(&str, Option<Option<&str>>)] = &[
            ("DEALLOCATE ALL", Some(None)),
            ("  deallocate prepare all;", Some(None)),
            ("DEALLOCATE _pg3_7", Some(Some("_pg3_7"))),
            ("DEALLOCATE S_1", Some(Some("s_1"))),
            ("DEALLOCATE \"S_1\"", Some(Some("S_1"))),
            ("DEALLOCATE PREPARE \"a\"\"b\" ;", Some(Some("a\"b"))),
            ("DEALLOCATE /* c */ x", Some(Some("x"))),
            ("DEALLOCATE", None),
            ("DEALLOCATE a; SELECT 1", None),
            ("DEALLOCATE a b", None),
            ("DEALLOCATE 'a'", None),
            ("SELECT 1", None),
        ];
        for (sql, want) in cases {
            let want = want.map(|n| n.map(str::to_string));
            assert_eq!(parse_deallocate(sql), want, "{sql:?}");
        }
    }
}
