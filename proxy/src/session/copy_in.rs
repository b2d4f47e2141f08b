//! A tenant's `COPY … FROM STDIN`, run as the rewriter's expansion (`sql/rewrite/copy_from.rs`:
//! stage into a temporary table, INSERT as the tenant, drop) in one simple Query, so PostgreSQL
//! parses the client's stream in every format and the client's CopyData passes untouched.
//!
//! PostgreSQL's answers to the expansion become the one answer a COPY gets: CopyInResponse,
//! then `COPY n` (n: the rows the INSERT wrote) or the first error. In the extended protocol
//! the statement is held by Orgwall (Parse, Bind and Describe answered as PostgreSQL answers a
//! COPY: no parameters, no rows) and its Execute sends the Query; that Query's ReadyForQuery is
//! swallowed, the client's own Sync is answered by PostgreSQL. A Query ends the implicit
//! transaction of the extended messages before it (PostgreSQL commits them with the COPY);
//! inside the client's transaction block it runs in that transaction.

use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::response::CommandComplete;
use pgwire::messages::simplequery::Query;

use super::error::SessionError;
use super::pending::Pending;
use super::tenant::OrgwallCommand;
use super::{ClientIo, Session};
use crate::errors::{code, ClientError};
use crate::wire;

impl<S: ClientIo> Session<'_, S> {
    /// Extended protocol, Parse of a routed statement: a tenant's COPY FROM is held by Orgwall
    /// (its text routed again at Execute, for the tenant current then). True when it was one.
    pub(super) async fn parse_copy_in(
        &mut self,
        name: &str,
        text: &str,
        routed: &super::route::Routed,
    ) -> Result<bool, ClientError> {
        if !is_copy_in(routed) {
            return Ok(false);
        }
        let cmd = OrgwallCommand::CopyIn(Arc::from(text));
        self.parse_command_statement(name.to_string(), Ok(cmd))
            .await?;
        Ok(true)
    }

    /// Execute of a held COPY FROM: routes its text again and sends the expansion.
    pub(super) async fn execute_copy_in(&mut self, text: &str) -> Result<(), ClientError> {
        let routed = match self.route_sql(text).await {
            Ok(r) if is_copy_in(&r) => r,
            Ok(_) => {
                return self
                    .refuse(SessionError::CopyNoLongerRoutes.into(), false)
                    .await
            }
            Err(e) => return self.refuse(e, false).await,
        };
        // Never on a multiplexed connection (an Execute and Sync alone read as shareable: the
        // portal is Orgwall's, so no server connection is held for it).
        self.shareable = None;
        if let Err(e) = self.ensure_server().await {
            return self.refuse(e, false).await;
        }
        self.send_copy_in(text, routed.sql.unwrap_or_default(), true);
        Ok(())
    }

    /// Sends the expansion as a simple Query; `extended`: for an Execute (its ReadyForQuery is
    /// not the client's).
    pub(super) fn send_copy_in(&mut self, text: &str, sql: String, extended: bool) {
        self.note_ledger_write(text);
        wire::put(&mut self.to_server, &Query::new(sql));
        self.lease().unnamed_dropped();
        self.pending.push_back(Pending::CopyIn { extended });
    }

    /// A server message while the head entry is a COPY expansion; true when handled here
    /// (CommandComplete and errors), false for the common path (which forwards CopyInResponse,
    /// notices and reports, and completes the entry at ReadyForQuery).
    pub(super) fn copy_in_message(&mut self, frame: &BytesMut) -> bool {
        let Some(&Pending::CopyIn { extended }) = self.pending.front() else {
            return false;
        };
        match frame[0] {
            // Only the INSERT's count reaches the client, as the COPY's; the staging
            // statements' completions are Orgwall's (and are not the client's DDL).
            b'C' => {
                let tag = wire::command_tag(frame);
                if let Some(rows) = tag
                    .strip_prefix("INSERT ")
                    .and_then(|t| t.rsplit(' ').next())
                {
                    let done = CommandComplete::new(format!("COPY {rows}"));
                    wire::put(&mut self.to_client, &done);
                }
                true
            }
            b'E' => {
                // A row naming another tenant: 42501, as an INSERT of it gets (from the first
                // wall or from row-level security); the rest of PostgreSQL's error (its line of
                // the stream, the constraint's name) stays as it was.
                let other_tenant = wire::field(&frame[5..], b'n')
                    .is_some_and(crate::sql::rewrite::is_tenant_check);
                match other_tenant {
                    true => {
                        let e = wire::with_error_code(frame, code::INSUFFICIENT_PRIVILEGE);
                        self.to_client.extend_from_slice(&e);
                    }
                    false => self.to_client.extend_from_slice(frame),
                }
                self.rolled_back = true;
                // The client's messages up to its Sync are skipped, as after a failed Execute
                // (PostgreSQL is not skipping: the Query ended with ReadyForQuery).
                let synced = self.pending.iter().skip(1).any(|p| {
                    matches!(
                        p,
                        Pending::Sync | Pending::Query { .. } | Pending::CopyIn { extended: false }
                    )
                });
                if extended && !synced {
                    self.skipping = true;
                }
                true
            }
            b'Z' => {
                // The copy is over whatever the client still sends (PostgreSQL ignores CopyData
                // after a failed COPY).
                self.copy_in = false;
                false
            }
            _ => false,
        }
    }
}

/// Whether a routed statement is a tenant's COPY FROM STDIN expansion.
fn is_copy_in(routed: &super::route::Routed) -> bool {
    routed.tenant.as_ref().is_some_and(|t| t.template.copy_in())
}
