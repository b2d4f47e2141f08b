//! The balance cache's answers in the extended protocol: Bind decides (and computes the rows),
//! Describe, Execute and Close of that portal are answered from it; Describe of a recognised
//! statement without a server connection. A portal answered here is for the tenant current at
//! its Bind (its Execute checks it is still that one, `mod.rs`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::super::error::SessionError;
use super::super::pending::Pending;
use super::super::{ClientIo, Session, Statement};
use crate::balances::{answer, bind, shape::Shape, Balances, Reader, Response};
use crate::errors::ClientError;
use crate::wire;

#[derive(Debug)]
pub(super) struct Portal {
    /// The tenant whose balances `rows` are.
    pub(super) org: String,
    row_description: Bytes,
    rows: Vec<BytesMut>,
    sent: usize,
}

#[derive(Debug)]
pub(super) struct Described {
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
    /// Bind bookkeeping that holds whether or not the cache answers it: binding a statement
    /// that may write the ledger (a prepared INSERT re-executed) marks the session for
    /// read-your-writes, as its Parse did; the unnamed portal's old local answer is dropped
    /// (PostgreSQL replaces the unnamed portal silently; a named one that exists was refused
    /// by [`duplicate_portal`](Self::duplicate_portal)).
    fn note_bind(&mut self, statement: &str, portal: &str) {
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
    fn local_statement(&self, name: &str) -> Option<(&Arc<Shape>, &Statement)> {
        let (template, shape) = self.local.shapes.get(name)?;
        let stmt = self.statements.get(name)?;
        let org = self.current_org_str()?;
        stmt.tenant
            .as_ref()
            .is_some_and(|r| r.org == org && Arc::ptr_eq(&r.template, template))
            .then_some((shape, &**stmt))
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
    pub(super) fn execute_locally(&mut self, portal: &str, max_rows: i32) -> bool {
        let Some(p) = self.local.portals.get_mut(portal) else {
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
}
