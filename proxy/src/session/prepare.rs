//! Where a client's statement lives on the held server connection: under its SQL-derived server
//! name (prepared once per connection, shared by every client) or as the unnamed statement
//! (parsed in place), and the Parse and Close messages that put it there.

use bytes::BytesMut;
use pgwire::messages::extendedquery::{Close, Parse, ParseComplete};

use super::error::SessionError;
use super::pending::Pending;
use super::{ClientIo, Session, Statement};
use crate::errors::ClientError;
use crate::sql::lex::{self, Token};
use crate::wire;

/// How a statement runs on the held server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// Prepared there under its server name already.
    OnServer,
    /// To be prepared there under its server name.
    Prepare,
    /// As the unnamed statement.
    Unnamed,
}

impl<S: ClientIo> Session<'_, S> {
    /// Decides where the statement the client calls `client_name` runs on the held connection.
    /// A named one is prepared under its server name, on a full connection in place of the
    /// least recently used statement — except on a multiplexed connection, where it runs
    /// unnamed (another client's batch may be about to use any statement there). An unnamed one
    /// runs unnamed unless `prepare_unnamed` applies ([`promotes_unnamed`]).
    pub(super) fn placement(&mut self, client_name: &str, stmt: &Statement) -> Placement {
        let upstream = &self.state.config.upstream;
        let (cap, unnamed_cap) = (
            upstream.max_prepared_statements,
            upstream
                .prepare_unnamed
                .min(upstream.max_prepared_statements),
        );
        let prepared = self.lease().statements();
        if (!client_name.is_empty() || unnamed_cap > 0) && prepared.use_name(&stmt.server_name) {
            return Placement::OnServer;
        }
        let held = prepared.len();
        let named = if client_name.is_empty() {
            held < unnamed_cap && promotes_unnamed(stmt)
        } else {
            held < cap || !prepared.is_shared()
        };
        if named {
            Placement::Prepare
        } else {
            Placement::Unnamed
        }
    }

    pub(super) fn push_parse_complete(&mut self) {
        let mut b = BytesMut::new();
        wire::put(&mut b, &ParseComplete::new());
        self.push_synthetic(b);
    }

    /// Sends a Parse for `stmt` under its server name (or as the unnamed statement). On a full
    /// connection the least recently used statement is closed first.
    pub(super) fn send_parse(&mut self, stmt: &Statement, named: bool, forward: bool) {
        let name = named.then(|| stmt.server_name.clone());
        let cap = self.state.config.upstream.max_prepared_statements;
        let prepared = self.lease().statements();
        if named && prepared.is_shared() {
            // Another client's batch may be preparing it on this connection right now; closing
            // a statement that does not exist is not an error.
            self.put_close(name.clone(), None);
        } else if named && prepared.len() >= cap {
            if let Some(victim) = prepared.evict() {
                self.put_close(Some(victim.clone()), Some(victim));
            }
        }
        match &stmt.raw_sql {
            Some(raw) => put_raw_parse(&mut self.to_server, name.as_deref(), raw, &stmt.types),
            None => {
                let parse = Parse::new(name.clone(), stmt.sql.clone(), stmt.types.clone());
                wire::put(&mut self.to_server, &parse);
            }
        }
        let conn = self.lease();
        if named {
            conn.statements().insert(stmt.server_name.clone());
        } else {
            conn.parsed_unnamed(stmt.hash);
        }
        self.pending.push_back(Pending::Parse {
            server_name: name,
            forward,
        });
    }

    /// The client closed or deallocated a statement it had prepared under its own name: it
    /// goes from the server too, so the name is free again there. `flush`: the client will
    /// not send a Sync or Flush that would make PostgreSQL send the CloseComplete.
    pub(super) fn close_client_named(&mut self, stmt: &Statement, flush: bool) {
        if !stmt.has_client_name() {
            return;
        }
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        if !lease.conn.statements().contains(&stmt.server_name) {
            return;
        }
        lease.conn.statements().remove(&stmt.server_name);
        self.put_close(Some(stmt.server_name.clone()), None);
        if flush {
            self.to_server.extend_from_slice(&[b'H', 0, 0, 0, 4]);
        }
    }

    /// A Close of a server statement whose CloseComplete the client never sees.
    pub(super) fn put_close(&mut self, name: Option<String>, evicted: Option<String>) {
        wire::put(&mut self.to_server, &Close::new(b'S', name));
        self.pending.push_back(Pending::CloseQuietly { evicted });
    }

    /// Looks up a client statement and makes sure the held server connection has it; returns
    /// the name to bind or describe it by there (`None`: the unnamed statement).
    pub(super) async fn statement_on_server(
        &mut self,
        name: &str,
    ) -> Result<Option<String>, ClientError> {
        self.statement_on_server_with(name, true).await
    }

    /// [`Session::statement_on_server`]; `follow`: also the statement an `EXECUTE` in its SQL
    /// names (one level: statements naming each other cannot make it loop).
    async fn statement_on_server_with(
        &mut self,
        name: &str,
        follow: bool,
    ) -> Result<Option<String>, ClientError> {
        let Some(found) = self.statements.get(name).cloned() else {
            return Err(match name {
                "" => SessionError::UnknownUnnamed,
                _ => SessionError::UnknownStatement(name.to_string()),
            }
            .into());
        };
        let stmt = self.for_current_tenant(found.clone()).await?;
        if !std::sync::Arc::ptr_eq(&stmt, &found) {
            self.statements.insert(name.to_string(), stmt.clone());
        }
        self.ensure_server().await?;
        if let Some(other) = stmt.executes.as_deref().filter(|o| follow && *o != name) {
            // Prepared first, so that its server name exists where this one runs.
            Box::pin(self.statement_on_server_with(other, false)).await?;
        }
        match self.placement(name, &stmt) {
            Placement::OnServer => Ok(Some(stmt.server_name.clone())),
            Placement::Prepare => {
                self.send_parse(&stmt, true, false);
                Ok(Some(stmt.server_name.clone()))
            }
            Placement::Unnamed => {
                if !self.lease().holds_unnamed(stmt.hash) {
                    self.send_parse(&stmt, false, false);
                }
                Ok(None)
            }
        }
    }
}

impl<S: ClientIo> Session<'_, S> {
    /// `EXECUTE name` / `EXPLAIN … EXECUTE name` (admin logins) of a statement the client
    /// prepared through the protocol: PostgreSQL knows it under Orgwall's name, so the text is
    /// returned with that name in place, once the statement is prepared on the held server
    /// connection. `None`: nothing to map (not such a statement, not one of the client's, or
    /// under its own name, which is then prepared).
    pub(super) async fn map_executed_statement(
        &mut self,
        sql: &str,
    ) -> Result<Option<String>, ClientError> {
        if self.principal.role != crate::config::Role::Admin {
            return Ok(None);
        }
        let Some((name, range)) = crate::sql::executes::executed_statement(sql) else {
            return Ok(None);
        };
        let own_name = match self.statements.get(&name) {
            Some(stmt) => stmt.server_name == name,
            None => return Ok(None),
        };
        let on_server = self.statement_on_server(&name).await?;
        let Some(server_name) = on_server.filter(|_| !own_name) else {
            // Under the client's own name (prepared now if it was not yet), or run as the
            // unnamed statement there: nothing to rename.
            return Ok(None);
        };
        Ok(Some(format!(
            "{}{server_name}{}",
            &sql[..range.start],
            &sql[range.end..]
        )))
    }

    /// The client statement `sql` executes at SQL level (`EXECUTE name`), if it is one of the
    /// client's (see [`Session::map_executed_statement`]).
    pub(super) fn executed_client_statement(&self, sql: &str) -> Option<String> {
        let (name, _) = crate::sql::executes::executed_statement(sql)?;
        self.statements.contains_key(&name).then_some(name)
    }
}

/// A Parse whose SQL is bytes in the client's encoding (not necessarily UTF-8).
fn put_raw_parse(out: &mut BytesMut, name: Option<&str>, sql: &[u8], types: &[u32]) {
    use bytes::BufMut;
    let name = name.unwrap_or("").as_bytes();
    let len = 4 + name.len() + 1 + sql.len() + 1 + 2 + 4 * types.len();
    out.put_u8(b'P');
    out.put_i32(len as i32);
    out.put_slice(name);
    out.put_u8(0);
    out.put_slice(sql);
    out.put_u8(0);
    out.put_i16(types.len() as i16);
    for t in types {
        out.put_u32(*t);
    }
}

/// `[upstream] prepare_unnamed`: an unnamed statement with parameters is likely to run again,
/// so it is prepared under its server name; PostgreSQL then parses it once per connection, and
/// may plan it generically after five runs, as for a named one.
fn promotes_unnamed(stmt: &Statement) -> bool {
    lex::tokens(&stmt.sql).any(|t| t == Token::Param)
}
