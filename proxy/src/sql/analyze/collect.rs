//! The one walk of a statement's AST behind its analysis: relations in order, aliases, CTE
//! names, and the columns named (qualified or bare), `*` wherever whole rows are read.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Assignment, AssignmentTarget, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    MergeAction, MergeUpdateKind, ObjectName, OnConflict, OnConflictAction, OnInsert, Query,
    Select, SelectItem, Statement, TableFactor, Visitor,
};

use super::{norm, split_name, wildcard_qualifier};

/// Walks the AST once, gathering relations, aliases, CTE names and column references.
#[derive(Default)]
pub(super) struct Collector {
    /// Relations in order of first appearance.
    pub(super) relations: Vec<(String, String)>,
    /// alias (or bare table name) → (schema, name).
    pub(super) aliases: Vec<(String, (String, String))>,
    pub(super) ctes: BTreeSet<String>,
    /// Qualified column references: (qualifier, column).
    pub(super) qualified: BTreeSet<(String, String)>,
    /// Unqualified column references.
    pub(super) bare: BTreeSet<String>,
}

impl Collector {
    pub(super) fn columns_of(&self, schema: &str, name: &str) -> Vec<String> {
        let me = (schema.to_string(), name.to_string());
        let qualifiers: Vec<&str> = self
            .aliases
            .iter()
            .filter(|(_, t)| *t == me)
            .map(|(a, _)| a.as_str())
            .collect();
        let mut cols: BTreeSet<String> = self.bare.clone();
        for (q, c) in &self.qualified {
            if qualifiers.contains(&q.as_str()) || q == name {
                cols.insert(c.clone());
            }
        }
        // The row as a value: `t` (as PostgreSQL reads a name that is no column, so possibly
        // a column too: listed both ways) or `schema.t`.
        let whole_row = qualifiers.iter().any(|q| self.bare.contains(*q))
            || self
                .qualified
                .iter()
                .any(|(q, c)| c == name && (schema.is_empty() || q == schema));
        if whole_row {
            cols.insert("*".into());
        }
        cols.into_iter().collect()
    }
}

impl Visitor for Collector {
    type Break = ();

    /// Columns named by INSERT's column list and SET clauses are not expressions; they are
    /// collected for every statement in the tree (writable CTEs included).
    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        let set = |assignments: &[Assignment]| -> Vec<String> {
            let named = assignments.iter().filter_map(|a| match &a.target {
                AssignmentTarget::ColumnName(n) => Some(split_name(n).1),
                AssignmentTarget::Tuple(_) => None,
            });
            named.collect()
        };
        match s {
            Statement::Insert(i) => {
                if let Some(OnInsert::OnConflict(OnConflict {
                    action: OnConflictAction::DoUpdate(u),
                    ..
                })) = &i.on
                {
                    self.bare.extend(set(&u.assignments));
                }
                self.bare.extend(i.columns.iter().map(|n| split_name(n).1));
            }
            Statement::Update(u) => self.bare.extend(set(&u.assignments)),
            Statement::Merge(m) => {
                for c in &m.clauses {
                    match &c.action {
                        MergeAction::Insert(i) => {
                            self.bare.extend(i.columns.iter().map(|n| split_name(n).1));
                        }
                        MergeAction::Update(u) => match &u.kind {
                            MergeUpdateKind::Set(a) => self.bare.extend(set(a)),
                            _ => {
                                self.bare.insert("*".into());
                            }
                        },
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(norm(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        let n = split_name(r);
        if !self.relations.contains(&n) {
            self.relations.push(n);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = t {
            let n = split_name(name);
            let key = match alias {
                Some(a) => norm(&a.name),
                None => n.1.clone(),
            };
            self.aliases.push((key, n));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        for item in &s.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    self.bare.insert("*".into());
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    self.qualified
                        .insert((wildcard_qualifier(kind), "*".into()));
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Identifier(i) => {
                self.bare.insert(norm(i));
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let q = norm(&parts[parts.len() - 2]);
                self.qualified.insert((q, norm(&parts[parts.len() - 1])));
            }
            // `t.*` inside an expression (`(t.*)::text`, `row_to_json(t.*)`): the whole row.
            Expr::QualifiedWildcard(name, _) => {
                self.qualified.insert((split_name(name).1, "*".into()));
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    for arg in &list.args {
                        let (FunctionArg::Unnamed(a)
                        | FunctionArg::Named { arg: a, .. }
                        | FunctionArg::ExprNamed { arg: a, .. }) = arg;
                        if let FunctionArgExpr::QualifiedWildcard(name) = a {
                            self.qualified.insert((split_name(name).1, "*".into()));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
