//! Field selection that PostgreSQL may read as a function call. For `x.name` (and `(x).name`)
//! PostgreSQL looks for a column `name` of `x` first and, failing that, calls `name(x)` — a
//! function or a cast — so `('/etc/hostname'::text).pg_read_file`, `(pid).pg_terminate_backend`
//! and `u.text` (the whole row as text) are calls that no function allow-list sees. A tenant's
//! field selection must therefore name a column Orgwall knows, or a name that is no function
//! or type at all; anything else is refused.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{AccessExpr, Expr, Statement, TableFactor, TableObject, Visit, Visitor};

use super::catalog::Catalog;
use super::{names, Refusal};

/// Refuses a field selection in `stmt` that might be a call (see the module docs).
pub(crate) fn check(stmt: &Statement, catalog: &Catalog) -> Result<(), Refusal> {
    let mut bindings = Bindings {
        catalog,
        tables: HashMap::new(),
    };
    let _ = stmt.visit(&mut bindings);
    let mut check = FieldCheck { bindings };
    match stmt.visit(&mut check) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Range-table names (alias, or table name) → the columns of each catalog table bound to
/// that name anywhere in the statement (`None` for a binding that is not a catalog table).
struct Bindings<'a> {
    catalog: &'a Catalog,
    tables: HashMap<String, Vec<Option<&'a [String]>>>,
}

impl<'a> Bindings<'a> {
    /// Whether `column` is certainly a column of whatever `binding` names.
    fn has_column(&self, binding: &str, column: &str) -> bool {
        self.tables.get(binding).is_some_and(|all| {
            all.iter()
                .all(|cols| cols.is_some_and(|c| c.iter().any(|n| n == column)))
        })
    }

    fn columns(&self, parts: &[String]) -> Option<&'a [String]> {
        let c = self.catalog;
        let t = match parts {
            [s, n] => c.table(s, n),
            [n] => c.search_path.iter().find_map(|s| c.table(s, n)),
            _ => None,
        };
        t.map(|t| t.columns.as_slice())
    }
}

impl Visitor for Bindings<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        // The target of an INSERT is no table factor: it binds its name (or alias) and
        // `excluded`, the row proposed for insertion.
        if let Statement::Insert(ins) = s {
            if let TableObject::TableName(name) = &ins.table {
                if let Ok(parts) = names::parts(name) {
                    let cols = self.columns(&parts);
                    let key = match &ins.table_alias {
                        Some(a) => names::norm(&a.alias).ok(),
                        None => parts.last().cloned(),
                    };
                    for k in key.into_iter().chain(["excluded".to_string()]) {
                        self.tables.entry(k).or_default().push(cols);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        let (key, cols) = match f {
            TableFactor::Table { name, alias, .. } => {
                let Ok(parts) = names::parts(name) else {
                    return ControlFlow::Continue(());
                };
                let cols = self.columns(&parts);
                let key = match alias.as_ref().map(|a| names::norm(&a.name)) {
                    Some(Ok(a)) => a,
                    Some(Err(_)) => return ControlFlow::Continue(()),
                    None => parts.last().cloned().unwrap_or_default(),
                };
                // An alias with its own column names renames the columns: not the catalog's.
                let renamed = alias.as_ref().is_some_and(|a| !a.columns.is_empty());
                (key, cols.filter(|_| !renamed))
            }
            TableFactor::Derived {
                alias: Some(alias), ..
            }
            | TableFactor::Function {
                alias: Some(alias), ..
            }
            | TableFactor::UNNEST {
                alias: Some(alias), ..
            }
            | TableFactor::NestedJoin {
                alias: Some(alias), ..
            } => match names::norm(&alias.name) {
                Ok(a) => (a, None),
                Err(_) => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        self.tables.entry(key).or_default().push(cols);
        ControlFlow::Continue(())
    }
}

struct FieldCheck<'a> {
    bindings: Bindings<'a>,
}

impl FieldCheck<'_> {
    /// `binding.field` (binding `None`: an expression's field).
    fn field(&self, binding: Option<&str>, field: &str) -> Result<(), Refusal> {
        if !self.bindings.catalog.is_callable(field)
            || binding.is_some_and(|b| self.bindings.has_column(b, field))
        {
            return Ok(());
        }
        Err(Refusal::policy(format!(
            "field selection .{field} may call the function or type {field}() and is not allowed \
             for tenants (name a column of a table, or call the function by name)"
        )))
    }
}

impl Visitor for FieldCheck<'_> {
    type Break = Refusal;

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
        let r = match e {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let norm: Result<Vec<String>, _> = parts.iter().map(names::norm).collect();
                match norm {
                    Ok(p) => self.field(Some(&p[p.len() - 2]), &p[p.len() - 1]),
                    Err(e) => Err(e),
                }
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                let mut binding = match root.as_ref() {
                    Expr::Nested(inner) => match inner.as_ref() {
                        Expr::Identifier(i) => names::norm(i).ok(),
                        _ => None,
                    },
                    _ => None,
                };
                let mut r = Ok(());
                for access in access_chain {
                    if let AccessExpr::Dot(field) = access {
                        r = match field {
                            Expr::Identifier(f) => {
                                names::norm(f).and_then(|f| self.field(binding.as_deref(), &f))
                            }
                            _ => Err(Refusal::unsupported(
                                "this form of field selection is not supported",
                            )),
                        };
                        if r.is_err() {
                            break;
                        }
                    }
                    binding = None;
                }
                r
            }
            _ => Ok(()),
        };
        match r {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    #[test]
    fn field_selection_that_may_call_a_function_is_refused() {
        let cat = Catalog::seed_for_tests();
        let cases: &[(&str, bool)] = &[
            ("SELECT ('/etc/hostname'::text).pg_read_file", false),
            ("SELECT (NULL::int).pg_stat_get_activity", false),
            ("SELECT (pid).pg_terminate_backend FROM items", false),
            ("SELECT ('x'::text).ts_stat", false),
            ("SELECT u.text FROM users u", false),
            ("SELECT u.row_to_json FROM users u", false),
            ("SELECT users.to_jsonb FROM users", false),
            ("SELECT s.text FROM (SELECT 1 AS text) s", false),
            ("SELECT u.email, users.id FROM users u, users", true),
            ("SELECT (u).email FROM users u", true),
            ("SELECT s.total FROM (SELECT 1 AS total) s", true),
            ("SELECT public.users.name FROM public.users", true),
            ("INSERT INTO users AS u (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET name = excluded.name RETURNING u.name", true),
            ("SELECT (x).a.b FROM items x", true),
        ];
        for (sql, ok) in cases {
            let stmt = &Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql)[0];
            assert_eq!(check(stmt, &cat).is_ok(), *ok, "{sql}");
        }
    }
}
