//! The expression walker: sqlparser's generic visitor over any expression-bearing node, so no
//! expression kind can hide a subquery. Each subquery is taken out, confined with the
//! rewriter's own scoping, and put back; a table reference outside a query is refused.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Query, Statement, TableFactor, VisitMut, VisitorMut};

use super::build::{placeholder, Cx};
use super::calls;
use super::catalog::Target;
use super::names::norm;
use super::query::rewrite_query;
use super::Refusal;

/// Walks an expression-bearing node: every subquery in it is confined in place, and any
/// table reference outside a query is refused.
pub(crate) fn walk<T: VisitMut>(node: &mut T, cx: &mut Cx) -> Result<(), Refusal> {
    let mut w = Walker {
        cx,
        stash: Vec::new(),
    };
    match node.visit(&mut w) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Walker<'c, 'a> {
    cx: &'c mut Cx<'a>,
    /// Rewritten subqueries waiting to be put back after the visitor passes their stand-in.
    stash: Vec<Query>,
}

impl VisitorMut for Walker<'_, '_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Refusal> {
        // Take the subquery out, confine it with our own scoping, and let the generic visitor
        // descend into an empty stand-in; `post_visit_query` puts the result back.
        let mut taken = std::mem::replace(q, placeholder());
        if let Err(e) = rewrite_query(&mut taken, self.cx) {
            return ControlFlow::Break(e);
        }
        self.stash.push(taken);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Refusal> {
        if let Some(t) = self.stash.pop() {
            *q = t;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "table reference {f} in an unsupported position"
        )))
    }

    fn pre_visit_relation(&mut self, r: &mut ObjectName) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "table reference {r} in an unsupported position"
        )))
    }

    fn pre_visit_statement(&mut self, s: &mut Statement) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "nested statement {s} is not supported"
        )))
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Refusal> {
        if let Expr::Function(f) = e {
            if let Err(r) = calls::rewrite(f, self.cx) {
                return ControlFlow::Break(r);
            }
        }
        // `public.users.email` names a FROM item that is now the derived table `users`.
        if let Expr::CompoundIdentifier(ids) = e {
            if ids.len() >= 3 {
                let ps: Result<Vec<String>, _> = ids[..2].iter().map(norm).collect();
                if let Ok(ps) = ps {
                    if matches!(self.cx.catalog.resolve(&ps), Ok(Target::Table(_))) {
                        ids.remove(0);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}
