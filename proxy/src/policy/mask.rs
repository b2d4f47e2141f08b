//! Applies plugin masks by rewriting the select list: a masked column `c` becomes
//! `NULL AS c` (or `'<text>' AS c`). Pure; runs before the tenant rewrite.
//!
//! Only shapes where that is provably complete are rewritten: one plain SELECT (no set
//! operation, no CTE) whose FROM items are base tables, where the masked table appears nowhere
//! else (no subquery, derived table or function over it) and the masked column appears in the
//! select list only as a bare column. Everything else that reads a masked table is refused —
//! notably `SELECT *` (list the columns). Masked columns may still appear in WHERE / ORDER BY /
//! GROUP BY of the plain select (their values are not returned).

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    SelectItem, SetExpr, Statement, TableFactor, Value, Visit, Visitor,
};

use crate::sql::analyze::{norm, split_name, wildcard_qualifier};

/// One column to mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub table: String,
    pub column: String,
    /// `None`: NULL.
    pub with: Option<String>,
}

/// Why masks could not be applied (the statement is then refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("cannot parse SQL: {0}")]
    Parse(String),
    #[error("cannot mask {table}.{column} in this statement ({why}); select the other columns explicitly")]
    Unsupported {
        table: String,
        column: String,
        why: &'static str,
    },
}

/// Rewrites `sql` so every mask applies; SQL that does not read a masked table is returned
/// re-rendered but otherwise unchanged.
pub fn apply(sql: &str, masks: &[Mask]) -> Result<String, MaskError> {
    crate::sql::limits::with_stack_for(sql, || apply_unbounded(sql, masks))
        .unwrap_or_else(|e| Err(MaskError::Parse(e.to_string())))
}

/// [`apply`], on whatever stack the caller has.
fn apply_unbounded(sql: &str, masks: &[Mask]) -> Result<String, MaskError> {
    let mut stmts = crate::sql::rewrite::parse(sql).map_err(|e| MaskError::Parse(e.to_string()))?;
    for m in masks {
        for stmt in stmts.iter_mut() {
            apply_one(stmt, m)?;
        }
    }
    Ok(stmts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

fn apply_one(stmt: &mut Statement, m: &Mask) -> Result<(), MaskError> {
    let refuse = |why| MaskError::Unsupported {
        table: m.table.clone(),
        column: m.column.clone(),
        why,
    };
    let total = count_table(&*stmt, &m.table);
    if total == 0 {
        return Ok(());
    }
    let Statement::Query(q) = stmt else {
        return Err(refuse("only SELECT can be masked"));
    };
    if q.with.is_some() {
        return Err(refuse("WITH queries are not masked"));
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return Err(refuse("set operations are not masked"));
    };
    // Qualifiers that name the masked table at the top level, and how often it appears there.
    let mut qualifiers = Vec::new();
    let mut top = 0;
    for twj in &select.from {
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table {
                name, alias, args, ..
            } = f
            {
                if args.is_none() && split_name(name).1 == m.table {
                    top += 1;
                    qualifiers.push(alias.as_ref().map_or(m.table.clone(), |a| norm(&a.name)));
                }
            }
        }
    }
    if top != total {
        return Err(refuse("the table is used in a subquery"));
    }
    if reads_whole_rows(&*select, &qualifiers) {
        return Err(refuse(
            "the statement reads whole rows of the table (row_to_json(t), t::text, t.*, …)",
        ));
    }
    for item in select.projection.iter_mut() {
        let expr = match item {
            SelectItem::Wildcard(_) => return Err(refuse("SELECT * is not masked")),
            SelectItem::QualifiedWildcard(kind, _) => {
                let q = wildcard_qualifier(kind);
                if q.is_empty() || qualifiers.contains(&q) {
                    return Err(refuse("table.* is not masked"));
                }
                continue;
            }
            SelectItem::UnnamedExpr(e) => e,
            SelectItem::ExprWithAlias { expr, .. } => expr,
            SelectItem::ExprWithAliases { expr, .. } => {
                if mentions(expr, &m.column) {
                    return Err(refuse("the column is used with several aliases"));
                }
                continue;
            }
        };
        match column_ref(expr, &qualifiers) {
            Ref::Masked(c) if c == m.column => {
                let alias = Ident::new(&m.column);
                let value = match &m.with {
                    None => Expr::Value(Value::Null.into()),
                    Some(t) => Expr::Value(Value::SingleQuotedString(t.clone()).into()),
                };
                *item = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
                    SelectItem::ExprWithAlias { alias, .. } => {
                        SelectItem::ExprWithAlias { expr: value, alias }
                    }
                    _ => SelectItem::ExprWithAlias { expr: value, alias },
                };
            }
            Ref::Masked(_) | Ref::Other => {}
            Ref::Expression => {
                if mentions(expr, &m.column) {
                    return Err(refuse("the column is used inside an expression"));
                }
            }
        }
    }
    Ok(())
}

/// Whether an expression anywhere in `select` is a whole row of a masked table: its name
/// (`u`, `row_to_json(u)`, `u::text`, `format('%s', u)`) or `u.*` inside an expression
/// (`(u.*)::text`, `row_to_json(u.*)`). Any of these carries every column, the masked one included.
fn reads_whole_rows(select: &sqlparser::ast::Select, qualifiers: &[String]) -> bool {
    struct Find<'a>(&'a [String]);
    impl Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let whole = match e {
                Expr::Identifier(i) => self.0.contains(&norm(i)),
                Expr::QualifiedWildcard(name, _) => self.0.contains(&split_name(name).1),
                Expr::Wildcard(_) => true,
                // `row_to_json(t.*)`: a wildcard argument is not an expression of its own.
                Expr::Function(f) => match &f.args {
                    FunctionArguments::List(list) => list.args.iter().any(|a| {
                        let (FunctionArg::Unnamed(a)
                        | FunctionArg::Named { arg: a, .. }
                        | FunctionArg::ExprNamed { arg: a, .. }) = a;
                        matches!(a, FunctionArgExpr::QualifiedWildcard(n)
                            if self.0.contains(&split_name(n).1))
                    }),
                    _ => false,
                },
                _ => false,
            };
            if whole {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    select.visit(&mut Find(qualifiers)).is_break()
}

/// What a select-list expression is, relative to the masked table.
enum Ref {
    /// A bare column that may belong to the masked table.
    Masked(String),
    /// A column qualified by another table.
    Other,
    /// Anything else.
    Expression,
}

fn column_ref(e: &Expr, qualifiers: &[String]) -> Ref {
    match e {
        Expr::Identifier(i) => Ref::Masked(norm(i)),
        Expr::CompoundIdentifier(p) if p.len() >= 2 => {
            if qualifiers.contains(&norm(&p[p.len() - 2])) {
                Ref::Masked(norm(&p[p.len() - 1]))
            } else {
                Ref::Other
            }
        }
        _ => Ref::Expression,
    }
}

/// Whether `column` appears anywhere in `e` (any qualifier: conservative).
fn mentions(e: &Expr, column: &str) -> bool {
    struct Find<'a>(&'a str);
    impl Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let hit = match e {
                Expr::Identifier(i) => norm(i) == self.0,
                Expr::CompoundIdentifier(p) => p.last().is_some_and(|i| norm(i) == self.0),
                _ => false,
            };
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    e.visit(&mut Find(column)).is_break()
}

/// How many times `table` is referenced as a relation anywhere in the statement.
fn count_table(stmt: &Statement, table: &str) -> usize {
    struct Count<'a>(&'a str, usize);
    impl Visitor for Count<'_> {
        type Break = ();
        fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
            if split_name(r).1 == self.0 {
                self.1 += 1;
            }
            ControlFlow::Continue(())
        }
        // `COPY t TO …` names its table outside any relation.
        fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
            if let Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } = s
            {
                if split_name(table_name).1 == self.0 {
                    self.1 += 1;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Count(table, 0);
    let _ = stmt.visit(&mut c);
    c.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(with: Option<&str>) -> Vec<Mask> {
        vec![Mask {
            table: "users".into(),
            column: "email".into(),
            with: with.map(str::to_string),
        }]
    }

    fn check(sql: &str, expected: Result<&str, &str>) {
        let got = apply(sql, &email(None));
        match expected {
            Ok(e) => assert_eq!(got.as_deref(), Ok(e), "{sql}"),
            Err(why) => {
                let err = got.expect_err(sql).to_string();
                assert!(err.contains(why), "{sql}: {err}");
            }
        }
    }

    #[test]
    fn masks_bare_columns_and_refuses_the_rest() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "SELECT id, email FROM users",
                Ok("SELECT id, NULL AS email FROM users"),
            ),
            (
                "SELECT u.email AS e FROM users u",
                Ok("SELECT NULL AS e FROM users u"),
            ),
            (
                "SELECT public.users.email FROM public.users",
                Ok("SELECT NULL AS email FROM public.users"),
            ),
            (
                "SELECT id FROM users WHERE email = $1",
                Ok("SELECT id FROM users WHERE email = $1"),
            ),
            ("SELECT id, sku FROM items", Ok("SELECT id, sku FROM items")),
            (
                "SELECT i.email FROM items i JOIN users u ON u.id = i.id",
                Ok("SELECT i.email FROM items i JOIN users u ON u.id = i.id"),
            ),
            ("SELECT * FROM users", Err("SELECT *")),
            ("SELECT u.* FROM users u", Err("table.*")),
            (
                "SELECT lower(email) FROM users",
                Err("inside an expression"),
            ),
            (
                "SELECT e FROM (SELECT email AS e FROM users) s",
                Err("subquery"),
            ),
            (
                "WITH x AS (SELECT email FROM users) SELECT * FROM x",
                Err("WITH"),
            ),
            (
                "SELECT email FROM users UNION SELECT 'x'",
                Err("set operations"),
            ),
            (
                "UPDATE users SET name = 'x' RETURNING email",
                Err("only SELECT"),
            ),
            ("SELECT u FROM users u", Err("whole rows")),
            ("SELECT row_to_json(u) FROM users u", Err("whole rows")),
            ("SELECT to_jsonb(users) FROM users", Err("whole rows")),
            ("SELECT u::text FROM users u", Err("whole rows")),
            ("SELECT (users.*)::text FROM users", Err("whole rows")),
            ("SELECT row_to_json(u.*) FROM users u", Err("whole rows")),
            ("SELECT to_jsonb(users.*) FROM users", Err("whole rows")),
            ("SELECT json_agg(u) FROM users u", Err("whole rows")),
            ("SELECT format('%s', u) FROM users u", Err("whole rows")),
            (
                "SELECT id FROM users u WHERE u IS NOT NULL",
                Err("whole rows"),
            ),
            ("COPY users TO STDOUT", Err("only SELECT")),
            (
                "COPY (SELECT email FROM users) TO STDOUT",
                Err("only SELECT"),
            ),
        ];
        for (sql, expected) in cases {
            check(sql, *expected);
        }
    }

    #[test]
    fn fixed_text_replacement() {
        let got = apply("SELECT email FROM users", &email(Some("***"))).expect("masks");
        assert_eq!(got, "SELECT '***' AS email FROM users");
    }
}
