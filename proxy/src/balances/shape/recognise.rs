//! The recognition of a shape on SQL text: one sqlparser parse, each clause read into
//! [`Shape`]'s parts, and the canonical statement rebuilt from them parsed again and compared,
//! so nothing the reader did not look at can slip through. Pure.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget,
    ObjectNamePart, OrderByKind, OrderBySort, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, TableFactor, Value, WildcardAdditionalOptions,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::{Column, Cond, Filter, Order, Out, Shape, Val, STAR};

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
            Column::Quantity | Column::UpdatedAt => return None,
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

/// `*` or `qualifier.*`, without EXCLUDE, REPLACE or the other dialects' options.
fn is_star(item: &SelectItem, t: &Table) -> bool {
    match item {
        SelectItem::Wildcard(o) => plain(o),
        SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), o) => {
            plain(o)
                && matches!(n.0.as_slice(), [ObjectNamePart::Identifier(i)] if folded(i) == t.qualifier)
        }
        _ => false,
    }
}

fn plain(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
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
            column.is_key().then_some(Order { column, desc })
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
    let mut star = false;
    for item in &sel.projection {
        if is_star(item, &t) {
            star = true;
            projection.extend(STAR.map(|column| Out {
                column,
                name: column.name().into(),
            }));
            continue;
        }
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
            cols: projection.into(),
            filter,
            order,
            star,
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
