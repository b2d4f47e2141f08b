//! Statements the balance cache answers (DESIGN.md §5), wired into the session: a recognised
//! lookup is answered with `push_synthetic`, so its responses keep protocol order.
//!
//! When: a tenant statement (after the tenant rewrite, which must not have been altered by a
//! policy plugin), outside any transaction with nothing in flight, while the cache is serving
//! and its fence (`balances/fence.rs`) allows it — else, after a bounded wait, upstream. Every
//! session notes the end of each transaction that may have written the ledger to the fence
//! before its client hears of it, so a read through this proxy that starts later, in any
//! session, sees that write.
//! Extended protocol: Parse of a recognised statement takes no server connection; Bind decides
//! (and computes the answer), Describe/Execute/Close of that portal are answered from it.
//! Invariant: an answer is for the tenant current at Bind and Execute, and only for a
//! statement routed (policy plugins included) for that tenant.

mod portals;

use std::collections::HashMap;
use std::sync::Arc;

use super::respond::{Ask, Reply, Responder};
use super::route::Routed;
use super::{ClientIo, Session};
use crate::balances::timestamp::TimeStyle;
use crate::balances::{answer, shape::Shape, Balances, Reader};
use crate::errors::ClientError;
use crate::sql::rewrite::Template;
use crate::wire::{self, client::ClientMessage};
use portals::{Described, Portal};

/// The session's cache-related state.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// The session sent something that may write the ledger: the end of its transaction is
    /// noted to the fence.
    ledger_write_open: bool,
    /// Recognised statements, by client statement name, with the template they were routed with.
    shapes: HashMap<String, (Arc<Template>, Arc<Shape>)>,
    /// Portals answered locally, by name.
    portals: HashMap<String, Portal>,
    /// The last RowDescription built for a Bind, reused while statement, formats and
    /// column metadata stay the same (the usual case: one prepared statement re-executed).
    described: Option<Described>,
    /// How this client's `timestamptz` text looks (the ParameterStatus it was sent).
    pub(super) time: TimeStyle,
}

/// The balance cache as a responder: a routed Query it can answer, a routed Parse it recognises
/// (claimed: outside a transaction its Parse takes no server connection), then Bind, Describe, Execute and Close of
/// those statements and of the portals it answered. Whether it answers or not, a Bind notes a
/// ledger write and a Sync ends its portals.
pub(super) struct BalanceAnswers;

impl Responder for BalanceAnswers {
    async fn respond<S: ClientIo>(
        s: &mut Session<'_, S>,
        ask: Ask<'_>,
    ) -> Result<Reply, ClientError> {
        let answered = match ask {
            Ask::QueryRouted { sql, routed } => s.answer_query_locally(sql, routed).await,
            Ask::ParseRouted {
                name,
                sql,
                types,
                routed,
            } => {
                return Ok(match s.parse_locally(name, sql, types, routed).await {
                    true => Reply::Claimed,
                    false => Reply::Pass,
                });
            }
            Ask::Message { msg, .. } => match *msg {
                // A named portal of its own, still open, bound again: 42P03 (`duplicate_portal`).
                ClientMessage::Bind(ref v) => match s.duplicate_portal(v) {
                    Some(e) => {
                        s.refuse(e, false).await?;
                        true
                    }
                    None => s.bind_locally(v).await,
                },
                ClientMessage::Describe { target, name } => s.describe_locally(target, name),
                ClientMessage::Execute { portal, max_rows } => {
                    let Some(org) = s.local.portals.get(portal).map(|p| p.org.as_str()) else {
                        return Ok(Reply::Pass);
                    };
                    match s.portal_tenant_check(portal, Some(org)) {
                        Ok(()) => s.execute_locally(portal, max_rows),
                        Err(e) => {
                            s.refuse(e, false).await?;
                            true
                        }
                    }
                }
                ClientMessage::Close { target, name } => s.close_locally(target, name),
                ClientMessage::Sync => {
                    // Sync ends the implicit transaction, and with it every portal.
                    s.local.portals.clear();
                    false
                }
                _ => false,
            },
            Ask::Query { .. } | Ask::Parse { .. } => false,
        };
        Ok(Reply::answered(answered))
    }
}

impl<S: ClientIo> Session<'_, S> {
    fn cache(&self) -> Option<Arc<Balances>> {
        self.state.balances.clone().filter(|b| b.serving())
    }

    /// Nothing in flight, no transaction, not at REPEATABLE READ/SERIALIZABLE by default: a
    /// local answer cannot overtake or miss anything, nor stand in for a snapshot.
    fn quiet(&self) -> bool {
        self.settled() && !self.skipping && !self.copy_in && !self.settings.strict_isolation()
    }

    /// The shape of a routed tenant statement, if the cache may answer it. A statement that
    /// is not a lookup and may write the balances marks the session for the fence.
    async fn recognise(&mut self, text: &str, routed: &Routed) -> Option<Arc<Shape>> {
        let planned = routed.tenant.as_ref().map(|_| match &routed.plan {
            Some(p) => p.clone(),
            None => self.state.planner.plan(text),
        });
        let shape = planned.as_ref().and_then(|p| self.state.planner.balance(p));
        // (A lookup writes nothing: the word scan is for the rest.)
        if shape.is_none() {
            self.note_ledger_write(text);
        }
        let (shape, plan) = (shape?, planned?);
        let rendered = routed.tenant.as_ref()?;
        if !routed.masked {
            return Some(shape);
        }
        // A policy plugin rewrote (masked) the text: only the client's own SQL, confined by
        // the tenant rewrite, is answered here.
        let catalog = self.state.catalog().await.ok()?;
        let own = self.state.planner.rewrite(&plan, &catalog).ok()?;
        (Arc::ptr_eq(&own, &rendered.template) || *own == *rendered.template).then_some(shape)
    }

    /// A statement that may write the ledger was sent (read-your-writes: the fence learns of
    /// it when its transaction ends).
    pub(super) fn note_ledger_write(&mut self, text: &str) {
        if crate::balances::names_ledger(text) {
            self.local.ledger_write_open = true;
        }
    }

    /// PostgreSQL said the transaction ended (ReadyForQuery idle): if it may have written the
    /// ledger, the fence learns it now, before the client does. The note stays open while
    /// more is in flight (a later statement of the pipeline may be the write).
    pub(super) fn ledger_transaction_ended(&mut self) {
        if !self.local.ledger_write_open {
            return;
        }
        if let Some(b) = self.state.balances.as_ref() {
            let org = match self.principal.role {
                crate::config::Role::Tenant => Some(self.principal.org_id.as_str()),
                _ => None,
            };
            b.fence.write_done(org);
        }
        if self.pending.is_empty() {
            self.local.ledger_write_open = false;
        }
    }

    /// Simple protocol: answers the query from the cache; true when answered.
    async fn answer_query_locally(&mut self, text: &str, routed: &Routed) -> bool {
        let Some(shape) = self.recognise(text, routed).await else {
            return false;
        };
        let (Some(b), Some(org)) = (self.cache(), self.current_org()) else {
            return false;
        };
        if shape.param_count() > 0 || !self.quiet() || !b.wait_fresh(&org).await {
            return false;
        }
        let reader = Reader {
            org: &org,
            time: &self.local.time,
        };
        let Some(resp) = b.answer(&shape, reader, &[], &[], &[]) else {
            return false;
        };
        let status = self.status.byte();
        self.push_synthetic_with(|out| {
            out.extend_from_slice(&resp.row_description);
            for r in &resp.rows {
                out.extend_from_slice(r);
            }
            answer::put_command_complete(out, resp.rows.len());
            wire::put_ready(out, status);
        });
        true
    }

    /// Parse: remembers whether the statement is recognised; true when it is.
    async fn parse_locally(
        &mut self,
        name: &str,
        text: &str,
        types: &[u32],
        routed: &Routed,
    ) -> bool {
        self.local.shapes.remove(name);
        let Some(shape) = self.recognise(text, routed).await else {
            return false;
        };
        let Some(rendered) = routed.tenant.as_ref() else {
            return false;
        };
        if !answer::declared_types_fit(&shape, types) {
            return false;
        }
        self.local
            .shapes
            .insert(name.to_string(), (rendered.template.clone(), shape));
        true
    }
}
