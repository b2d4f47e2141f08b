//! Recognises the statements the cache can answer, on the client's original SQL (the tenant
//! rewrite only adds the org filter, which the cache applies itself). Pure: no I/O.
//!
//! Accepted (any case, optional schema and table alias, values as `$n` or '...' literals):
//! - `SELECT <cols> FROM inventory_balances WHERE <conds> [ORDER BY <keys>]` with `<cols>`
//!   drawn from org_id, item_id, location_id, lot_id, quantity (each optionally `AS alias`),
//!   `<conds>` a conjunction of `col = v`, `col IN (v, …)` and `col = ANY($n)` on org_id,
//!   item_id (required), location_id and lot_id (or `lot_id IS NULL`), in any order, and
//!   `<keys>` key columns, each optionally `ASC` or `DESC`. Without the lot (or the location)
//!   several rows may match.
//! - `SELECT sum(quantity) FROM inventory_balances WHERE <conds>`: per item (`item_id` given,
//!   the other key columns optional), or per location (`location_id` given, no item, no lot).
//!
//! Anything else — extra clauses, other predicates, LIMIT, locking, parentheses — is not a
//! shape. To be sure nothing was overlooked, the matcher rebuilds the canonical statement
//! from what it understood and requires that it parses to the same syntax tree.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget,
    ObjectNamePart, OrderByKind, OrderBySort, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use sqlparser::dialect::PostgreSqlDialect;

use crate::sql::shape_key::{Literal, LiteralKind};
use sqlparser::parser::Parser;

/// A column of `inventory_balances` the cache can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    OrgId,
    ItemId,
    LocationId,
    LotId,
    Quantity,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::OrgId => "org_id",
            Column::ItemId => "item_id",
            Column::LocationId => "location_id",
            Column::LotId => "lot_id",
            Column::Quantity => "quantity",
        }
    }

    fn from_name(s: &str) -> Option<Column> {
        Some(match s {
            "org_id" => Column::OrgId,
            "item_id" => Column::ItemId,
            "location_id" => Column::LocationId,
            "lot_id" => Column::LotId,
            "quantity" => Column::Quantity,
            _ => return None,
        })
    }
}

/// A value in the WHERE clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// `$n` (1-based).
    Param(usize),
    Literal(String),
}

/// One output column: what it is and the name PostgreSQL reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub column: Column,
    pub name: String,
}

/// What a key column must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `= v` or `IN (v, …)`: any of these.
    Values(Vec<Val>),
    /// `= ANY($n)`: any element of the array parameter `$n`.
    Array(usize),
    /// `IS NULL` (the lot only).
    Null,
}

/// The WHERE clause: a condition per key column, `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub org: Option<Cond>,
    pub item: Option<Cond>,
    pub location: Option<Cond>,
    pub lot: Option<Cond>,
}

impl Filter {
    fn conds(&self) -> [(Option<&Cond>, Column); 4] {
        [
            (self.org.as_ref(), Column::OrgId),
            (self.item.as_ref(), Column::ItemId),
            (self.location.as_ref(), Column::LocationId),
            (self.lot.as_ref(), Column::LotId),
        ]
    }

    fn map(&self, f: &impl Fn(&Val) -> Option<Val>) -> Option<Filter> {
        let cond = |c: &Option<Cond>| -> Option<Option<Cond>> {
            Some(match c {
                Some(Cond::Values(vs)) => {
                    Some(Cond::Values(vs.iter().map(f).collect::<Option<_>>()?))
                }
                other => other.clone(),
            })
        };
        Some(Filter {
            org: cond(&self.org)?,
            item: cond(&self.item)?,
            location: cond(&self.location)?,
            lot: cond(&self.lot)?,
        })
    }
}

/// One ORDER BY key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub column: Column,
    pub desc: bool,
}

/// A statement the cache can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The balance rows matching `filter` (an item is always given), ordered by `order`.
    Rows {
        cols: Vec<Out>,
        filter: Filter,
        order: Vec<Order>,
    },
    /// Exactly one row: `sum(quantity)` over the matching rows (NULL when there are none).
    Total { name: String, filter: Filter },
}

impl Shape {
    pub fn filter(&self) -> &Filter {
        match self {
            Shape::Rows { filter, .. } | Shape::Total { filter, .. } => filter,
        }
    }

    /// This shape (recognised by [`recognise_from`]) for a text of the same shape whose
    /// `literals` stand where parameters from `from` are. `None` when such a literal is not a
    /// string (as [`recognise`] would refuse it).
    pub fn with_literals(&self, from: usize, sql: &str, literals: &[Literal]) -> Option<Shape> {
        let fill = |v: &Val| -> Option<Val> {
            match v {
                Val::Param(n) if *n >= from => {
                    let l = literals.get(n - from)?;
                    let text = &sql[l.span.clone()];
                    (l.kind == LiteralKind::String)
                        .then(|| Val::Literal(text[1..text.len() - 1].replace("''", "'")))
                }
                other => Some(other.clone()),
            }
        };
        Some(match self {
            Shape::Rows {
                cols,
                filter,
                order,
            } => Shape::Rows {
                cols: cols.clone(),
                filter: filter.map(&fill)?,
                order: order.clone(),
            },
            Shape::Total { name, filter } => Shape::Total {
                name: name.clone(),
                filter: filter.map(&fill)?,
            },
        })
    }

    /// Each parameter use: `$n`, the column it is compared with, and whether it is an array.
    pub fn params(&self) -> Vec<(usize, Column, bool)> {
        let mut out = Vec::new();
        for (cond, column) in self.filter().conds() {
            match cond {
                Some(Cond::Values(vs)) => out.extend(vs.iter().filter_map(|v| match v {
                    Val::Param(n) => Some((*n, column, false)),
                    Val::Literal(_) => None,
                })),
                Some(Cond::Array(n)) => out.push((*n, column, true)),
                _ => {}
            }
        }
        out
    }

    /// Number of parameters the statement takes (`$1..$n` are all used).
    pub fn param_count(&self) -> usize {
        self.params().iter().map(|p| p.0).max().unwrap_or(0)
    }

    /// Whether `$n` is used as an array (`= ANY($n)`).
    pub fn is_array_param(&self, n: usize) -> bool {
        self.params().iter().any(|&(p, _, array)| p == n && array)
    }
}

/// PostgreSQL's folding of an identifier: unquoted → lower case, quoted → as written.
fn folded(i: &Ident) -> String {
    match i.quote_style {
        Some('"') => i.value.clone(),
        Some(_) => String::from("\u{0}"), // backticks/brackets are not PostgreSQL
        None => i.value.to_lowercase(),
    }
}

/// The qualifier columns may use.
struct Table {
    qualifier: String,
}

fn table(from: &[sqlparser::ast::TableWithJoins], schema: &str) -> Option<(Table, String)> {
    let [twj] = from else { return None };
    if !twj.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, .. } = &twj.relation else {
        return None;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(folded(i)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let ok = match parts.as_slice() {
        [t] => t == "inventory_balances",
        [s, t] => s == schema && t == "inventory_balances",
        _ => false,
    };
    if !ok {
        return None;
    }
    let mut canonical = name.to_string();
    let qualifier = match alias {
        Some(a) => {
            if !a.columns.is_empty() {
                return None;
            }
            let kw = if a.explicit { " AS " } else { " " };
            canonical += &format!("{kw}{}", a.name);
            folded(&a.name)
        }
        None => "inventory_balances".to_string(),
    };
    Some((Table { qualifier }, canonical))
}

fn column(e: &Expr, t: &Table) -> Option<Column> {
    match e {
        Expr::Identifier(i) => Column::from_name(&folded(i)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if folded(q) == t.qualifier => Column::from_name(&folded(c)),
            _ => None,
        },
        _ => None,
    }
}

fn placeholder(e: &Expr) -> Option<usize> {
    let Expr::Value(v) = e else { return None };
    let Value::Placeholder(p) = &v.value else {
        return None;
    };
    let n: usize = p.strip_prefix('$')?.parse().ok()?;
    (n >= 1).then_some(n)
}

fn value(e: &Expr) -> Option<Val> {
    if let Some(n) = placeholder(e) {
        return Some(Val::Param(n));
    }
    let Expr::Value(v) = e else { return None };
    match &v.value {
        Value::SingleQuotedString(s) => Some(Val::Literal(s.clone())),
        _ => None,
    }
}

/// Splits `a AND b AND c` (left-nested, no parentheses) into its conjuncts.
fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other),
    }
}

/// One conjunct as (column, condition).
fn condition(p: &Expr, t: &Table) -> Option<(Column, Cond)> {
    Some(match p {
        Expr::IsNull(inner) => (column(inner, t)?, Cond::Null),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (column(left, t), column(right, t)) {
            (Some(c), None) => (c, Cond::Values(vec![value(right)?])),
            (None, Some(c)) => (c, Cond::Values(vec![value(left)?])),
            _ => return None,
        },
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            global: false,
        } if !list.is_empty() => (
            column(expr, t)?,
            Cond::Values(list.iter().map(value).collect::<Option<_>>()?),
        ),
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            is_some: false,
        } => (column(left, t)?, Cond::Array(placeholder(right)?)),
        _ => return None,
    })
}

fn where_clause(e: &Expr, t: &Table) -> Option<Filter> {
    let mut parts = Vec::new();
    conjuncts(e, &mut parts);
    let mut w = Filter::default();
    for p in parts {
        let (col, cond) = condition(p, t)?;
        let slot = match col {
            Column::OrgId => &mut w.org,
            Column::ItemId => &mut w.item,
            Column::LocationId => &mut w.location,
            Column::LotId => &mut w.lot,
            Column::Quantity => return None,
        };
        // `IS NULL` only where NULLs exist; one condition per column.
        if (cond == Cond::Null && col != Column::LotId) || slot.replace(cond).is_some() {
            return None;
        }
    }
    Some(w)
}

fn is_sum_of_quantity(e: &Expr, t: &Table) -> bool {
    let Expr::Function(f) = e else { return false };
    let name_ok =
        matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(i)] if folded(i) == "sum");
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let arg_ok = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => column(a, t) == Some(Column::Quantity),
        _ => false,
    };
    name_ok
        && arg_ok
        && list.duplicate_treatment.is_none()
        && list.clauses.is_empty()
        && f.filter.is_none()
        && f.over.is_none()
        && f.within_group.is_empty()
        && matches!(f.parameters, FunctionArguments::None)
}

/// ORDER BY keys: key columns, `ASC`/`DESC` only. A bare name is an output column's first
/// (PostgreSQL's rule), then the table's.
fn order_by(q: &sqlparser::ast::Query, outs: &[Out], t: &Table) -> Option<Vec<Order>> {
    let Some(o) = &q.order_by else {
        return Some(vec![]);
    };
    let OrderByKind::Expressions(exprs) = &o.kind else {
        return None;
    };
    if o.interpolate.is_some() {
        return None;
    }
    exprs
        .iter()
        .map(|e| {
            if e.with_fill.is_some() || e.options.nulls_first.is_some() {
                return None;
            }
            let desc = match &e.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(OrderBySort::Using(_)) => return None,
            };
            let by_output: Vec<&Out> = match &e.expr {
                Expr::Identifier(i) => outs.iter().filter(|o| o.name == folded(i)).collect(),
                _ => vec![],
            };
            let column = match by_output.as_slice() {
                [] => column(&e.expr, t)?,
                [one] => one.column,
                _ => return None,
            };
            (column != Column::Quantity).then_some(Order { column, desc })
        })
        .collect()
}

/// The shape of `sql`, if the cache can answer it. `schema` is where `inventory_balances` lives.
pub fn recognise(sql: &str, schema: &str) -> Option<Shape> {
    recognise_from(sql, schema, usize::MAX)
}

/// Like [`recognise`], for text whose literals were made parameters numbered from
/// `literals_from` (`sql::rewrite::shaped::parametrize`): those need not be contiguous.
pub fn recognise_from(sql: &str, schema: &str, literals_from: usize) -> Option<Shape> {
    crate::sql::limits::with_stack_for(sql, || recognise_unbounded(sql, schema, literals_from))
        .ok()
        .flatten()
}

/// [`recognise_from`], on whatever stack the caller has.
fn recognise_unbounded(sql: &str, schema: &str, literals_from: usize) -> Option<Shape> {
    let dialect = PostgreSqlDialect {};
    let stmts = Parser::parse_sql(&dialect, sql).ok()?;
    let [Statement::Query(q)] = stmts.as_slice() else {
        return None;
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let (t, from_sql) = table(&sel.from, schema)?;
    let selection = sel.selection.as_ref()?;
    let filter = where_clause(selection, &t)?;
    let mut projection = Vec::new();
    let mut total = None;
    for item in &sel.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(folded(alias))),
            _ => return None,
        };
        if is_sum_of_quantity(expr, &t) {
            total = Some(alias.unwrap_or_else(|| "sum".into()));
            continue;
        }
        let column = column(expr, &t)?;
        projection.push(Out {
            column,
            name: alias.unwrap_or_else(|| column.name().into()),
        });
    }
    let order = order_by(q, &projection, &t)?;
    let shape = match (total, projection.is_empty()) {
        (Some(name), true) if order.is_empty() => {
            let by_item = filter.item.is_some();
            let by_location = filter.location.is_some() && filter.lot.is_none();
            (by_item || by_location).then_some(Shape::Total { name, filter })?
        }
        (None, false) if filter.item.is_some() => Shape::Rows {
            cols: projection,
            filter,
            order,
        },
        _ => return None,
    };
    // Every `$n` up to the highest must be used, each either as a value or as an array, or
    // PostgreSQL could not type the statement.
    let uses = shape.params();
    let mut used: Vec<usize> = uses
        .iter()
        .filter(|p| p.0 < literals_from)
        .map(|p| p.0)
        .collect();
    used.sort_unstable();
    used.dedup();
    if used.iter().enumerate().any(|(i, &n)| n != i + 1)
        || uses
            .iter()
            .any(|&(n, _, array)| shape.is_array_param(n) != array)
    {
        return None;
    }
    // Rebuild from the understood parts; any clause we did not look at makes it differ.
    let items: Vec<String> = sel.projection.iter().map(|p| p.to_string()).collect();
    let mut conds = Vec::new();
    conjuncts(selection, &mut conds);
    let conds: Vec<String> = conds.iter().map(|c| c.to_string()).collect();
    let order_sql = q
        .order_by
        .as_ref()
        .map_or(String::new(), |o| format!(" {o}"));
    let canonical = format!(
        "SELECT {} FROM {} WHERE {}{order_sql}",
        items.join(", "),
        from_sql,
        conds.join(" AND ")
    );
    let again = Parser::parse_sql(&dialect, &canonical).ok()?;
    (again == stmts).then_some(shape)
}

#[cfg(test)]
mod tests;
