//! Writes nested in a statement, for plugins that decide by operation: every data-modifying
//! statement inside it at any depth (`WITH d AS (DELETE … RETURNING …) SELECT …`, the same
//! inside a subquery's or another write's `WITH`, `EXPLAIN ANALYZE`, `PREPARE`,
//! `COPY (…) TO`), and the writes a statement does besides its own kind (`INSERT … ON
//! CONFLICT DO UPDATE` updates its target; each MERGE action inserts, updates or deletes).
//!
//! Invariant: a statement whose tree writes a table has a part for each such write, whatever
//! its top-level kind; parts are analysed as statements of their own and listed once.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Insert, MergeAction, OnConflictAction, OnInsert, Statement, Visit, Visitor};

use super::{analyze_as, operation, Access, Collector, Operation, StatementInfo};

/// The nested writes of `root` (not `root`'s own kind), in order of appearance. `ctes`: the
/// names of CTEs anywhere in `root`, which are not tables in any part.
pub(super) fn writes(root: &Statement, ctes: &BTreeSet<String>) -> Vec<StatementInfo> {
    let mut walk = Walk {
        root,
        ctes,
        out: Vec::new(),
    };
    let _ = root.visit(&mut walk);
    walk.out
}

/// Whether `stmt` is an `INSERT … ON CONFLICT … DO UPDATE`.
pub(super) fn upserts(stmt: &Statement) -> bool {
    matches!(stmt, Statement::Insert(i) if upsert(i))
}

fn upsert(i: &Insert) -> bool {
    matches!(
        &i.on,
        Some(OnInsert::OnConflict(c)) if matches!(c.action, OnConflictAction::DoUpdate(_))
    )
}

/// The writes `s` does besides its own kind.
fn implicit(s: &Statement) -> Vec<Operation> {
    match s {
        Statement::Insert(i) if upsert(i) => vec![Operation::Update],
        Statement::Merge(m) => m
            .clauses
            .iter()
            .filter_map(|c| match c.action {
                MergeAction::Insert(_) => Some(Operation::Insert),
                MergeAction::Update(_) => Some(Operation::Update),
                MergeAction::Delete { .. } => Some(Operation::Delete),
                MergeAction::DoNothing { .. } => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

struct Walk<'a> {
    root: &'a Statement,
    ctes: &'a BTreeSet<String>,
    out: Vec<StatementInfo>,
}

impl Walk<'_> {
    fn part(&mut self, s: &Statement, op: Operation) {
        let mut c = Collector::default();
        let _ = s.visit(&mut c);
        let part = analyze_as(s, c, op, &[], self.ctes);
        let writes = matches!(
            part.operation,
            Operation::Insert
                | Operation::Update
                | Operation::Delete
                | Operation::Merge
                | Operation::Truncate
        ) || part.tables.iter().any(|t| t.access == Access::Write);
        if writes && !self.out.contains(&part) {
            self.out.push(part);
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if !std::ptr::eq(s, self.root) {
            self.part(s, operation(s));
        }
        for op in implicit(s) {
            self.part(s, op);
        }
        ControlFlow::Continue(())
    }
}
