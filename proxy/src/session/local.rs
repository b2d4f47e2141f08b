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

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::SessionError;
use super::pending::Pending;
use super::route::Routed;
use super::{ClientIo, Session};
use crate::balances::timestamp::TimeStyle;
use crate::balances::{answer, bind, shape::Shape, Balances, Reader, Response};
use crate::errors::ClientError;
use crate::sql::rewrite::Template;
use crate::wire;

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

#[derive(Debug)]
struct Portal {
    /// The tenant whose balances `rows` are.
    org: String,
    row_description: Bytes,
    rows: Vec<BytesMut>,
    sent: usize,
}

#[derive(Debug)]
struct Described {
    shape: Arc<Shape>,
    generation: u64,
    formats: Vec<i16>,
    bytes: Bytes,
}

/// The RowDescription of `shape` in `formats`, from `cache` when it is the one last built.
fn describe(
    cache: &mut Option<Described>,
    b: &Balances,
    shape: &Arc<Shape>,
    formats: &[i16],
) -> Option<Bytes> {
    let generation = b.columns_generation();
    if let Some(d) = cache.as_ref().filter(|d| {
        d.generation == generation && Arc::ptr_eq(&d.shape, shape) && d.formats == formats
    }) {
        return Some(d.bytes.clone());
    }
    let cols = b.columns()?;
    let bytes = answer::row_description(shape, &cols, formats).freeze();
    *cache = Some(Described {
        shape: shape.clone(),
        generation,
        formats: formats.to_vec(),
        bytes: bytes.clone(),
    });
    Some(bytes)
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
    pub(super) async fn answer_query_locally(&mut self, text: &str, routed: &Routed) -> bool {
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

    /// Parse: remembers whether the statement is recognised. True when its Parse may be
    /// answered without a server connection (it is then prepared lazily if ever needed).
    pub(super) async fn parse_locally(
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
        self.server.is_none()
    }

    /// Bind bookkeeping that holds whether or not the cache answers it: binding a statement
    /// that may write the ledger (a prepared INSERT re-executed) marks the session for
    /// read-your-writes, as its Parse did; the unnamed portal's old local answer is dropped
    /// (PostgreSQL replaces the unnamed portal silently; a named one that exists was refused
    /// by [`duplicate_portal`](Self::duplicate_portal)).
    pub(super) fn note_bind(&mut self, statement: &str, portal: &str) {
        if self.state.balances.is_some()
            && self
                .statements
                .get(statement)
                .is_some_and(|s| s.writes_ledger)
        {
            self.local.ledger_write_open = true;
        }
        if portal.is_empty() && !self.local.portals.is_empty() {
            self.local.portals.remove(portal);
        }
    }

    /// A Bind to a named portal answered locally and not yet closed: PostgreSQL never saw that
    /// portal, so Orgwall refuses as PostgreSQL would (42P03) — after the checks PostgreSQL
    /// makes before creating a portal, whose errors come first (those Binds go to PostgreSQL).
    pub(super) fn duplicate_portal(&self, bind: &wire::BindView<'_>) -> Option<ClientError> {
        if bind.portal.is_empty() || !self.local.portals.contains_key(bind.portal) {
            return None;
        }
        let counted = match self.local_statement(bind.statement) {
            Some((shape, stmt)) => {
                bind::counts(bind, shape.param_count().max(stmt.types.len())).is_ok()
            }
            // Another statement: its parameter count is PostgreSQL's to check, the format
            // count is not.
            None => bind.param_formats.len() <= 1 || bind.param_formats.len() == bind.params.len(),
        };
        counted.then(|| SessionError::DuplicateCursor(bind.portal.to_string()).into())
    }

    /// Bind: answers it (BindComplete) and computes the portal's rows when the cache can.
    pub(super) async fn bind_locally(&mut self, bind: &wire::BindView<'_>) -> bool {
        self.note_bind(bind.statement, bind.portal);
        let state = self.state;
        let Some(b) = state.balances.as_deref().filter(|b| b.serving()) else {
            return false;
        };
        // Prepared for another tenant (a switcher changed tenant since its Parse): routed
        // again for the current one, policy plugins included, before the cache may answer.
        if !self.local.shapes.contains_key(bind.statement)
            || !self.routed_for_current_tenant(bind.statement).await
        {
            return false;
        }
        let Some((shape, stmt)) = self.local_statement(bind.statement) else {
            return false;
        };
        if self.current_org_str().is_none() || !self.quiet() {
            return false;
        }
        // A named portal PostgreSQL may hold already (42P03 is its to report).
        if !bind.portal.is_empty() && self.portals.contains_key(bind.portal) {
            return false;
        }
        let expected = shape.param_count().max(stmt.types.len());
        let fits = answer::formats(shape, &bind.result_formats).is_some();
        let types = answer::effective_types(shape, &stmt.types);
        let checked = bind::counts(bind, expected).and_then(|()| bind::values(bind, &types, fits));
        if let Err(why) = checked {
            tracing::debug!(reason = %why, "balance lookup's Bind left to PostgreSQL");
            return false;
        }
        let Some(org) = self.current_org() else {
            return false;
        };
        if !b.wait_fresh(&org).await {
            return false;
        }
        let mut described = self.local.described.take();
        let resp = self.answer_bind(b, bind, &mut described);
        self.local.described = described;
        let Some(resp) = resp else {
            return false;
        };
        self.local.portals.insert(
            bind.portal.to_string(),
            Portal {
                org,
                row_description: resp.row_description,
                rows: resp.rows,
                sent: 0,
            },
        );
        self.push_synthetic_with(|out| out.put_slice(b"2\0\0\0\x04"));
        true
    }

    fn answer_bind(
        &self,
        b: &Balances,
        bind: &wire::BindView<'_>,
        described: &mut Option<Described>,
    ) -> Option<Response> {
        let org = self.current_org_str()?;
        let (shape, _) = self.local_statement(bind.statement)?;
        let reader = Reader {
            org,
            time: &self.local.time,
        };
        b.answer_with(
            shape,
            reader,
            &bind.params,
            &bind.param_formats,
            &bind.result_formats,
            |f| describe(described, b, shape, f),
        )
    }

    /// Describe of a local portal: its RowDescription. Describe of a recognised statement
    /// (outside a transaction): ParameterDescription and RowDescription, as PostgreSQL sends
    /// them, without a server connection.
    pub(super) fn describe_locally(&mut self, target: u8, name: &str) -> bool {
        if target == b'S' {
            return self.describe_statement_locally(name);
        }
        if target != b'P' {
            return false;
        }
        let Some(p) = self.local.portals.get(name) else {
            return false;
        };
        let desc = p.row_description.clone();
        self.push_synthetic_with(|out| out.extend_from_slice(&desc));
        true
    }

    /// A recognised statement and its shape, while the statement is rendered for the current
    /// tenant (so policy plugins decided for that tenant) with the template it was recognised
    /// with.
    fn local_statement(&self, name: &str) -> Option<(&Arc<Shape>, &super::Statement)> {
        let (template, shape) = self.local.shapes.get(name)?;
        let stmt = self.statements.get(name)?;
        let org = self.current_org_str()?;
        stmt.tenant
            .as_ref()
            .is_some_and(|r| r.org == org && Arc::ptr_eq(&r.template, template))
            .then_some((shape, &**stmt))
    }

    /// The tenant a portal the cache answers was bound for.
    pub(super) fn local_portal_org(&self, portal: &str) -> Option<&str> {
        self.local.portals.get(portal).map(|p| p.org.as_str())
    }

    fn describe_statement_locally(&mut self, name: &str) -> bool {
        let state = self.state;
        let (Some((shape, stmt)), Some(b)) = (self.local_statement(name), state.balances.as_ref())
        else {
            return false;
        };
        let (Some(cols), Some(text)) = (b.columns(), answer::formats(shape, &[])) else {
            return false;
        };
        if self.server.is_some() {
            return false;
        }
        let Some(mut out) = answer::parameter_description(shape, &cols, &stmt.types) else {
            return false;
        };
        out.extend_from_slice(&answer::row_description(shape, &cols, &text));
        self.push_synthetic(out);
        true
    }

    /// Execute of a local portal: its rows (at most `max_rows`), then CommandComplete or
    /// PortalSuspended, as PostgreSQL does.
    pub(super) fn execute_locally(&mut self, frame: &[u8]) -> bool {
        let body = frame.get(5..).unwrap_or_default();
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        let name = std::str::from_utf8(&body[..end]).unwrap_or("");
        let max_rows = wire::be_i32(body.get(end + 1..).unwrap_or_default()).unwrap_or(0);
        let Some(p) = self.local.portals.get_mut(name) else {
            return false;
        };
        let remaining = p.rows.len() - p.sent;
        let n = if max_rows > 0 {
            remaining.min(max_rows as usize)
        } else {
            remaining
        };
        // Written straight into the client's output when nothing is queued before it.
        let mut queued = BytesMut::new();
        let direct = self.pending.is_empty();
        let out = if direct {
            &mut self.to_client
        } else {
            &mut queued
        };
        for r in &p.rows[p.sent..p.sent + n] {
            out.extend_from_slice(r);
        }
        p.sent += n;
        if max_rows > 0 && n == max_rows as usize {
            out.put_slice(b"s\0\0\0\x04");
        } else {
            answer::put_command_complete(out, n);
        }
        if !direct {
            self.pending.push_back(Pending::Synthetic(queued));
        }
        true
    }

    /// Close of a local portal (`target` P) or of a statement (forgets its shape).
    pub(super) fn close_locally(&mut self, target: u8, name: &str) -> bool {
        if target == b'S' {
            self.local.shapes.remove(name);
            return false;
        }
        if self.local.portals.remove(name).is_none() {
            return false;
        }
        self.push_synthetic_with(|out| out.put_slice(b"3\0\0\0\x04"));
        true
    }

    /// Sync ends the implicit transaction, and with it every portal.
    pub(super) fn sync_locally(&mut self) {
        self.local.portals.clear();
    }
}
