//! Field selection that PostgreSQL may read as a function call. For `x.name` (and `(x).name`)
//! PostgreSQL looks for a column `name` of `x` first and, failing that, calls `name(x)` — a
//! function or a cast — so `('/etc/hostname'::text).pg_read_file`, `(pid).pg_terminate_backend`
//! and `u.text` (the whole row as text) are calls that no function allow-list sees. A tenant's
//! field selection must therefore name a column Orgwall knows, or a name that is no function
//! or type at all; anything else is refused.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, Expr, Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor, TableObject,
    Visit, Visitor,
};

use super::catalog::Catalog;
use super::{names, Refusal};

/// Refuses a field selection in `stmt` that might be a call (see the module docs).
pub(crate) fn check(stmt: &Statement, catalog: &Catalog) -> Result<(), Refusal> {
    let mut suspects = Suspects {
        catalog,
        found: Vec::new(),
        scopes: Scopes::default(),
    };
    if let ControlFlow::Break(e) = stmt.visit(&mut suspects) {
        return Err(e);
    }
    if suspects.found.is_empty() {
        return Ok(());
    }
    let mut bindings = Bindings {
        catalog,
        tables: vec![HashMap::new()],
        scopes: Scopes::default(),
        ctes: HashMap::new(),
    };
    let _ = stmt.visit(&mut bindings);
    match suspects
        .found
        .iter()
        .find(|(chain, b, f)| !bindings.has_column(chain, b, f))
    {
        Some((_, _, field)) => Err(refusal(field)),
        None => Ok(()),
    }
}

/// Query levels, numbered in visiting order (both passes visit the same statement, so the
/// same query gets the same number): scope 0 is the statement itself (an UPDATE's target and
/// FROM, an INSERT's target), each query opens the next. A name resolves in the innermost
/// level on the stack that binds it, as PostgreSQL resolves range-table names.
#[derive(Default)]
struct Scopes {
    opened: usize,
    stack: Vec<usize>,
}

impl Scopes {
    fn enter(&mut self) -> usize {
        self.opened += 1;
        self.stack.push(self.opened);
        self.opened
    }

    fn leave(&mut self) {
        self.stack.pop();
    }

    fn current(&self) -> usize {
        self.stack.last().copied().unwrap_or(0)
    }

    /// The levels visible here, outermost first.
    fn chain(&self) -> Vec<usize> {
        std::iter::once(0)
            .chain(self.stack.iter().copied())
            .collect()
    }
}

fn refusal(field: &str) -> Refusal {
    Refusal::policy(format!(
        "field selection .{field} may call the function or type {field}() and is not allowed \
         for tenants (name a column of a table, or call the function by name)"
    ))
}

/// Field selections `binding.field` whose field is also a function or type name: each must
/// turn out to be a column of its binding. A callable field of an expression (`(x).f`, no
/// binding) is refused at once.
struct Suspects<'a> {
    catalog: &'a Catalog,
    /// (visible query levels, binding, field).
    found: Vec<(Vec<usize>, String, String)>,
    scopes: Scopes,
}

impl Suspects<'_> {
    fn field(&mut self, binding: Option<String>, field: String) -> ControlFlow<Refusal> {
        if !self.catalog.is_callable(&field) {
            return ControlFlow::Continue(());
        }
        match binding {
            Some(b) => {
                self.found.push((self.scopes.chain(), b, field));
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(refusal(&field)),
        }
    }
}

impl Visitor for Suspects<'_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<Refusal> {
        self.scopes.enter();
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<Refusal> {
        self.scopes.leave();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                match parts.iter().map(names::norm).collect::<Result<Vec<_>, _>>() {
                    Ok(mut p) => {
                        let field = p.pop().unwrap_or_default();
                        self.field(p.pop(), field)
                    }
                    Err(e) => ControlFlow::Break(e),
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
                for access in access_chain {
                    if let AccessExpr::Dot(field) = access {
                        let Expr::Identifier(f) = field else {
                            return ControlFlow::Break(Refusal::unsupported(
                                "this form of field selection is not supported",
                            ));
                        };
                        match names::norm(f) {
                            Ok(f) => self.field(binding.take(), f)?,
                            Err(e) => return ControlFlow::Break(e),
                        }
                    }
                    binding = None;
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Range-table names (alias, or table name) → the columns of each relation bound to that name
/// anywhere in the statement (`None` where Orgwall cannot tell them).
struct Bindings<'a> {
    catalog: &'a Catalog,
    /// Per query level (see [`Scopes`]): name → the relations bound to it there.
    tables: Vec<HashMap<String, Vec<Option<Vec<String>>>>>,
    scopes: Scopes,
    /// CTE names → their output columns.
    ctes: HashMap<String, Option<Vec<String>>>,
}

impl Bindings<'_> {
    /// Whether `column` is certainly a column of whatever `binding` names, seen from the
    /// query levels `chain` (outermost first): the innermost level that binds the name.
    fn has_column(&self, chain: &[usize], binding: &str, column: &str) -> bool {
        chain
            .iter()
            .rev()
            .find_map(|&level| self.tables.get(level).and_then(|t| t.get(binding)))
            .is_some_and(|all| {
                all.iter()
                    .all(|cols| cols.as_ref().is_some_and(|c| c.iter().any(|n| n == column)))
            })
    }

    fn columns(&self, parts: &[String]) -> Option<Vec<String>> {
        if let [name] = parts {
            if let Some(cols) = self.ctes.get(name) {
                return cols.clone();
            }
        }
        self.catalog.columns_of(parts).map(<[String]>::to_vec)
    }

    fn bind(&mut self, key: String, cols: Option<Vec<String>>) {
        let level = self.scopes.current();
        if self.tables.len() <= level {
            self.tables.resize_with(level + 1, HashMap::new);
        }
        self.tables[level].entry(key).or_default().push(cols);
    }
}

/// `cols` renamed by an alias's column list (the first columns take the new names).
fn renamed(alias: Option<&TableAlias>, cols: Option<Vec<String>>) -> Option<Vec<String>> {
    let Some(a) = alias.filter(|a| !a.columns.is_empty()) else {
        return cols;
    };
    let mut names: Vec<String> = a
        .columns
        .iter()
        .map(|c| names::norm(&c.name).ok())
        .collect::<Option<_>>()?;
    if let Some(cols) = cols {
        names.extend(cols.into_iter().skip(a.columns.len()));
    }
    Some(names)
}

/// The column names a query returns, where each is certain.
fn output_names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(s) => s
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => names::norm(alias).ok(),
                SelectItem::UnnamedExpr(e) => expr_name(e),
                _ => None,
            })
            .collect(),
        SetExpr::SetOperation { left, .. } => output_names(left),
        SetExpr::Query(q) => output_names(&q.body),
        _ => None,
    }
}

/// The name PostgreSQL gives an unaliased select-list expression.
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => names::norm(i).ok(),
        Expr::CompoundIdentifier(p) => p.last().and_then(|i| names::norm(i).ok()),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => expr_name(expr),
        Expr::Function(f) => names::parts(&f.name).ok()?.pop(),
        _ => Some("?column?".into()),
    }
}

impl Visitor for Bindings<'_> {
    type Break = ();

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.scopes.leave();
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.enter();
        for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
            if let Ok(name) = names::norm(&cte.alias.name) {
                let cols = renamed(Some(&cte.alias), output_names(&cte.query.body));
                self.ctes.insert(name, cols);
            }
        }
        ControlFlow::Continue(())
    }

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
                        self.bind(k, cols.clone());
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
                let key = match alias.as_ref().map(|a| names::norm(&a.name)) {
                    Some(Ok(a)) => a,
                    Some(Err(_)) => return ControlFlow::Continue(()),
                    None => parts.last().cloned().unwrap_or_default(),
                };
                (key, renamed(alias.as_ref(), self.columns(&parts)))
            }
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } => match names::norm(&alias.name) {
                Ok(a) => (a, renamed(Some(alias), output_names(&subquery.body))),
                Err(_) => return ControlFlow::Continue(()),
            },
            TableFactor::Function {
                alias: Some(alias), ..
            }
            | TableFactor::UNNEST {
                alias: Some(alias), ..
            }
            | TableFactor::NestedJoin {
                alias: Some(alias), ..
            } => match names::norm(&alias.name) {
                Ok(a) => (a, renamed(Some(alias), None)),
                Err(_) => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        self.bind(key, cols);
        ControlFlow::Continue(())
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
            ("SELECT s.text FROM (SELECT 1 AS x) s", false),
            ("SELECT s.text FROM (SELECT 1 AS text) s", true),
            ("WITH ti AS (SELECT id AS name FROM items) SELECT ti.name FROM ti", true),
            ("WITH ti AS (SELECT id FROM items) SELECT ti.name FROM ti", false),
            ("SELECT x.name FROM items AS x(name)", true),
            ("SELECT u.email, users.id FROM users u, users", true),
            ("SELECT (u).email FROM users u", true),
            ("SELECT s.total FROM (SELECT 1 AS total) s", true),
            ("SELECT public.users.name FROM public.users", true),
            ("INSERT INTO users AS u (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET name = excluded.name RETURNING u.name", true),
            ("SELECT (x).a.b FROM items x", true),
            // Scopes: the inner `c` is items, the outer `c` the derived table (pgjdbc).
            ("SELECT c.name FROM (SELECT c.id AS name FROM items c) c", true),
            ("SELECT c.name FROM (SELECT c.id AS x FROM items c) c", false),
            ("SELECT c.text FROM (SELECT c.id AS name FROM items c) c", false),
            ("SELECT (SELECT c.name FROM users u) FROM (SELECT 1 AS name) c", true),
            ("SELECT (SELECT c.name FROM users c) FROM (SELECT 1 AS x) c", true),
            ("SELECT (SELECT c.name FROM items c) FROM (SELECT 1 AS name) c", false),
            ("UPDATE items SET description = 'x' FROM users u WHERE u.name = 'a'", true),
            ("UPDATE items SET description = 'x' FROM users u WHERE u.text = 'a'", false),
        ];
        for (sql, ok) in cases {
            let stmt = &Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql)[0];
            assert_eq!(check(stmt, &cat).is_ok(), *ok, "{sql}");
        }
    }
}
