//! Statements the balance cache answers (DESIGN.md §5), wired into the session: a recognised
//! lookup is answered with `push_synthetic`, so its responses keep protocol order.
//!
//! When: a tenant statement (after the tenant rewrite, which must not have been altered by a
//! policy plugin), outside any transaction with nothing in flight, while the cache is serving.
//! A session that may have committed a ledger write first waits (bounded) until the cache has
//! applied WAL up to the server's current position — read-your-writes — else goes upstream.
//! Extended protocol: Parse of a recognised statement takes no server connection; Bind decides
//! (and computes the answer), Describe/Execute/Close of that portal are answered from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgwire::messages::extendedquery::{Bind, BindComplete, CloseComplete};

use super::route::Routed;
use super::Session;
use crate::balances::{answer, pgoutput, shape::Shape, Balances};
use crate::sql::rewrite::Template;
use crate::wire;

/// Parameter types a recognised statement accepts (unspecified, text, varchar).
const TEXT_LIKE: [u32; 3] = [0, 25, 1043];

/// The session's cache-related state.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// The session sent something that may write the ledger; its next cached read must wait.
    ledger_dirty: bool,
    /// Recognised statements, by client statement name, with the template they were routed with.
    shapes: HashMap<String, (Arc<Template>, Arc<Shape>)>,
    /// Portals answered locally, by name.
    portals: HashMap<String, Portal>,
}

#[derive(Debug)]
struct Portal {
    row_description: BytesMut,
    rows: Vec<BytesMut>,
    sent: usize,
}

fn mentions(sql: &str, what: &str) -> bool {
    sql.as_bytes()
        .windows(what.len())
        .any(|w| w.eq_ignore_ascii_case(what.as_bytes()))
}

impl Session<'_> {
    fn cache(&self) -> Option<Arc<Balances>> {
        self.state.balances.clone().filter(|b| b.serving())
    }

    /// Nothing in flight, no transaction, not at REPEATABLE READ/SERIALIZABLE by default: a
    /// local answer cannot overtake or miss anything, nor stand in for a snapshot.
    fn quiet(&self) -> bool {
        self.pending.is_empty()
            && self.status == b'I'
            && !self.skipping
            && !self.copy_in
            && !self.settings.strict_isolation()
    }

    /// The shape of a routed tenant statement, if the cache may answer it.
    async fn recognise(&mut self, text: &str, routed: &Routed) -> Option<Arc<Shape>> {
        if mentions(text, "inventory_ledger") {
            self.local.ledger_dirty = true;
        }
        let b = self.state.balances.as_ref()?;
        let rendered = routed.tenant.as_ref()?;
        if !mentions(text, "inventory_balances") {
            return None;
        }
        let shape = b.shapes.recognise(text)?;
        // A policy plugin may have rewritten (masked) the text: only the client's own SQL,
        // confined by the tenant rewrite, is answered here.
        let catalog = self.state.catalog().await.ok()?;
        let own = self.state.rewrites.get_or_rewrite(text, &catalog).ok()?;
        (Arc::ptr_eq(&own, &rendered.template) || *own == *rendered.template).then_some(shape)
    }

    /// Read-your-writes: after a possible ledger write, waits until the cache has applied WAL
    /// up to the server's current position.
    async fn caught_up(&mut self, b: &Balances) -> bool {
        if !self.local.ledger_dirty {
            return true;
        }
        let Some(lsn) = self.current_wal_lsn().await else {
            return false;
        };
        let timeout = Duration::from_millis(b.config.read_your_writes_timeout_ms);
        if b.wait_for(lsn, timeout).await {
            self.local.ledger_dirty = false;
            return true;
        }
        false
    }

    async fn current_wal_lsn(&mut self) -> Option<u64> {
        const SQL: &str = "SELECT pg_catalog.pg_current_wal_insert_lsn()";
        let rows = match self.server.as_mut() {
            Some(lease) => lease.conn.query_text(SQL).await.ok()?,
            None => {
                let mut lease = self.state.pool.acquire().await.ok()?;
                let rows = lease.conn.query_text(SQL).await.ok()?;
                self.state.pool.release(lease);
                rows
            }
        };
        let text = rows.first()?.first()?.as_deref()?;
        pgoutput::parse_lsn(text)
    }

    /// Simple protocol: answers the query from the cache; true when answered.
    pub(super) async fn answer_query_locally(&mut self, text: &str, routed: &Routed) -> bool {
        let Some(shape) = self.recognise(text, routed).await else {
            return false;
        };
        let (Some(b), Some(org)) = (self.cache(), self.current_org()) else {
            return false;
        };
        if shape.param_count() > 0 || !self.quiet() || !self.caught_up(&b).await {
            return false;
        }
        let Some(resp) = b.answer(&shape, &org, &[], &[]) else {
            return false;
        };
        let mut out = resp.row_description;
        for r in &resp.rows {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&answer::command_complete(resp.rows.len()));
        wire::put_ready(&mut out, self.status);
        self.push_synthetic(out);
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
        if types.iter().any(|t| !TEXT_LIKE.contains(t)) {
            return false;
        }
        self.local
            .shapes
            .insert(name.to_string(), (rendered.template.clone(), shape));
        self.server.is_none()
    }

    /// Bind: answers it (BindComplete) and computes the portal's rows when the cache can.
    /// Binding a statement that may write the ledger (a prepared INSERT re-executed) marks the
    /// session for read-your-writes, as its Parse did.
    pub(super) async fn bind_locally(&mut self, bind: &Bind) -> bool {
        let name = bind.statement_name.as_deref().unwrap_or("");
        if self.state.balances.is_some()
            && self
                .statements
                .get(name)
                .is_some_and(|s| mentions(&s.sql, "inventory_ledger"))
        {
            self.local.ledger_dirty = true;
        }
        let portal = bind.portal_name.clone().unwrap_or_default();
        self.local.portals.remove(&portal);
        let name = bind.statement_name.clone().unwrap_or_default();
        let Some((shape, stmt)) = self.local_statement(&name) else {
            return false;
        };
        let (Some(b), Some(org)) = (self.cache(), self.current_org()) else {
            return false;
        };
        let expected = shape.param_count().max(stmt.types.len());
        if bind.parameters.len() != expected || !self.quiet() {
            return false;
        }
        if !self.caught_up(&b).await {
            return false;
        }
        let params: Vec<Option<&[u8]>> = bind.parameters.iter().map(|p| p.as_deref()).collect();
        let Some(resp) = b.answer(&shape, &org, &params, &bind.result_column_format_codes) else {
            return false;
        };
        self.local.portals.insert(
            portal,
            Portal {
                row_description: resp.row_description,
                rows: resp.rows,
                sent: 0,
            },
        );
        let mut out = BytesMut::new();
        wire::put(&mut out, &BindComplete::new());
        self.push_synthetic(out);
        true
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
        let out = p.row_description.clone();
        self.push_synthetic(out);
        true
    }

    /// A recognised statement and its shape, while the statement is still rendered with the
    /// template it was recognised with (a switcher's tenant change renders it anew).
    fn local_statement(&self, name: &str) -> Option<(Arc<Shape>, Arc<super::Statement>)> {
        let (template, shape) = self.local.shapes.get(name)?;
        let stmt = self.statements.get(name)?;
        stmt.tenant
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(&r.template, template))
            .then(|| (shape.clone(), stmt.clone()))
    }

    fn describe_statement_locally(&mut self, name: &str) -> bool {
        let (Some((shape, stmt)), Some(b)) =
            (self.local_statement(name), self.state.balances.clone())
        else {
            return false;
        };
        let (Some(cols), Some(text)) = (b.columns(), answer::formats(&shape, &[])) else {
            return false;
        };
        if self.server.is_some() {
            return false;
        }
        let Some(mut out) = answer::parameter_description(&shape, &cols, &stmt.types) else {
            return false;
        };
        out.extend_from_slice(&answer::row_description(&shape, &cols, &text));
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
        let mut out = BytesMut::new();
        for r in &p.rows[p.sent..p.sent + n] {
            out.extend_from_slice(r);
        }
        p.sent += n;
        if max_rows > 0 && n == max_rows as usize {
            out.extend_from_slice(&wire::frame(b's', &[]));
        } else {
            out.extend_from_slice(&answer::command_complete(n));
        }
        self.push_synthetic(out);
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
        let mut out = BytesMut::new();
        wire::put(&mut out, &CloseComplete::new());
        self.push_synthetic(out);
        true
    }

    /// Sync ends the implicit transaction, and with it every portal.
    pub(super) fn sync_locally(&mut self) {
        self.local.portals.clear();
    }
}
