//! Recognises the statements the cache can answer, on the client's original SQL (the tenant
//! rewrite only adds the org filter, which the cache applies itself). Pure: no I/O.
//!
//! Accepted (any case, optional `public.` and table alias, values as `$n` or '...' literals):
//! - `SELECT <cols> FROM inventory_balances WHERE item_id = v AND location_id = v AND
//!   (lot_id = v | lot_id IS NULL)` with `<cols>` drawn from org_id, item_id, location_id,
//!   lot_id, quantity (each optionally `AS alias`), conditions in any order;
//! - `SELECT sum(quantity) FROM inventory_balances WHERE item_id = v`.
//!
//! Anything else — extra clauses, other predicates, ORDER BY, LIMIT, locking, parentheses — is
//! not a shape. To be sure nothing was overlooked, the matcher rebuilds the canonical statement
//! from what it understood and requires that it parses to the same syntax tree.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart,
    SelectItem, SetExpr, Statement, TableFactor, Value,
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

/// A statement the cache can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// At most one row: the balance of one key.
    Point {
        cols: Vec<Out>,
        item: Val,
        location: Val,
        /// `None` = `lot_id IS NULL`.
        lot: Option<Val>,
    },
    /// Exactly one row: `sum(quantity)` over the item's balances (NULL when there are none).
    Total { name: String, item: Val },
}

impl Shape {
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
            Shape::Point {
                cols,
                item,
                location,
                lot,
            } => Shape::Point {
                cols: cols.clone(),
                item: fill(item)?,
                location: fill(location)?,
                lot: match lot {
                    Some(v) => Some(fill(v)?),
                    None => None,
                },
            },
            Shape::Total { name, item } => Shape::Total {
                name: name.clone(),
                item: fill(item)?,
            },
        })
    }

    /// The key values of the statement with the column each is compared with.
    pub fn keys(&self) -> Vec<(&Val, Column)> {
        match self {
            Shape::Point {
                item,
                location,
                lot,
                ..
            } => {
                let mut v = vec![(item, Column::ItemId), (location, Column::LocationId)];
                if let Some(l) = lot {
                    v.push((l, Column::LotId));
                }
                v
            }
            Shape::Total { item, .. } => vec![(item, Column::ItemId)],
        }
    }

    /// Number of parameters the statement takes (`$1..$n` are all used).
    pub fn param_count(&self) -> usize {
        self.keys()
            .iter()
            .filter_map(|(v, _)| match v {
                Val::Param(n) => Some(*n),
                Val::Literal(_) => None,
            })
            .max()
            .unwrap_or(0)
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

/// The table's name and the qualifier columns may use.
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

fn value(e: &Expr) -> Option<Val> {
    let Expr::Value(v) = e else { return None };
    match &v.value {
        Value::SingleQuotedString(s) => Some(Val::Literal(s.clone())),
        Value::Placeholder(p) => {
            let n: usize = p.strip_prefix('$')?.parse().ok()?;
            (n >= 1).then_some(Val::Param(n))
        }
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

#[derive(Default)]
struct Where {
    item: Option<Val>,
    location: Option<Val>,
    /// `Some(None)` = IS NULL.
    lot: Option<Option<Val>>,
}

fn where_clause(e: &Expr, t: &Table) -> Option<Where> {
    let mut parts = Vec::new();
    conjuncts(e, &mut parts);
    let mut w = Where::default();
    for p in parts {
        let (col, val) = match p {
            Expr::IsNull(inner) => (column(inner, t)?, None),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match (column(left, t), column(right, t)) {
                (Some(c), None) => (c, Some(value(right)?)),
                (None, Some(c)) => (c, Some(value(left)?)),
                _ => return None,
            },
            _ => return None,
        };
        let slot_taken = match (col, val) {
            (Column::ItemId, Some(v)) => w.item.replace(v).is_some(),
            (Column::LocationId, Some(v)) => w.location.replace(v).is_some(),
            (Column::LotId, v) => w.lot.replace(v).is_some(),
            _ => return None,
        };
        if slot_taken {
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
    let w = where_clause(selection, &t)?;
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
    let shape = match (total, projection.is_empty()) {
        (Some(name), true) if w.location.is_none() && w.lot.is_none() => Shape::Total {
            name,
            item: w.item?,
        },
        (None, false) => Shape::Point {
            cols: projection,
            item: w.item?,
            location: w.location?,
            lot: w.lot?,
        },
        _ => return None,
    };
    // Every `$n` up to the highest must be used, or PostgreSQL could not type the statement.
    let mut used: Vec<usize> = shape
        .keys()
        .iter()
        .filter_map(|(v, _)| match v {
            Val::Param(n) if *n < literals_from => Some(*n),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    if used.iter().enumerate().any(|(i, &n)| n != i + 1) {
        return None;
    }
    // Rebuild from the understood parts; any clause we did not look at makes it differ.
    let items: Vec<String> = sel.projection.iter().map(|p| p.to_string()).collect();
    let mut conds = Vec::new();
    conjuncts(selection, &mut conds);
    let conds: Vec<String> = conds.iter().map(|c| c.to_string()).collect();
    let canonical = format!(
        "SELECT {} FROM {} WHERE {}",
        items.join(", "),
        from_sql,
        conds.join(" AND ")
    );
    let again = Parser::parse_sql(&dialect, &canonical).ok()?;
    (again == stmts).then_some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(c: Column, n: &str) -> Out {
        Out {
            column: c,
            name: n.into(),
        }
    }

    fn p(n: usize) -> Val {
        Val::Param(n)
    }

    fn check(sql: &str, want: Option<Shape>) {
        assert_eq!(recognise(sql, "public"), want, "{sql}");
    }

    #[test]
    fn point_lookups() {
        let q = || vec![out(Column::Quantity, "quantity")];
        let cases = vec![
            (
                "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
                Shape::Point { cols: q(), item: p(1), location: p(2), lot: None },
            ),
            (
                "select QUANTITY from public.inventory_balances where location_id = $2 and item_id = $1 and lot_id = $3",
                Shape::Point { cols: q(), item: p(1), location: p(2), lot: Some(p(3)) },
            ),
            (
                "SELECT b.quantity AS Q, b.lot_id, org_id FROM inventory_balances b WHERE b.item_id = 'i1' AND 'l1' = location_id AND lot_id IS NULL",
                Shape::Point {
                    cols: vec![out(Column::Quantity, "q"), out(Column::LotId, "lot_id"), out(Column::OrgId, "org_id")],
                    item: Val::Literal("i1".into()),
                    location: Val::Literal("l1".into()),
                    lot: None,
                },
            ),
            (
                "SELECT quantity AS \"Qty\" FROM inventory_balances AS x WHERE x.item_id = $1 AND x.location_id = $1 AND x.lot_id = $2;",
                Shape::Point { cols: vec![out(Column::Quantity, "Qty")], item: p(1), location: p(1), lot: Some(p(2)) },
            ),
        ];
        for (sql, want) in cases {
            check(sql, Some(want));
        }
    }

    #[test]
    fn totals() {
        check(
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
            Some(Shape::Total {
                name: "sum".into(),
                item: p(1),
            }),
        );
        check(
            "SELECT SUM(b.quantity) AS total FROM public.inventory_balances b WHERE b.item_id = 'x'",
            Some(Shape::Total { name: "total".into(), item: Val::Literal("x".into()) }),
        );
    }

    #[test]
    fn everything_else_is_not_a_shape() {
        for sql in [
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL ORDER BY 1",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL LIMIT 1",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL FOR UPDATE",
            "SELECT quantity FROM inventory_balances WHERE (item_id = $1 AND location_id = $2) AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 OR location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL AND org_id = 'a'",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND item_id = $2 AND location_id = $3 AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $3 AND lot_id IS NULL",
            "SELECT quantity, updated_at FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT * FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT DISTINCT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM other.inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM \"Inventory_balances\" WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances, items WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = 1 AND location_id = $2 AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL; SELECT 1",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 AND location_id = $2",
            "SELECT sum(quantity), item_id FROM inventory_balances WHERE item_id = $1",
            "SELECT sum(DISTINCT quantity) FROM inventory_balances WHERE item_id = $1",
            "SELECT sum(quantity) FILTER (WHERE quantity > 0) FROM inventory_balances WHERE item_id = $1",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 GROUP BY item_id",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 HAVING sum(quantity) > 0",
            "WITH x AS (SELECT 1) SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
            "SELECT max(quantity) FROM inventory_balances WHERE item_id = $1",
            "UPDATE inventory_balances SET quantity = 0 WHERE item_id = $1",
            "SELECT quantity FROM inventory_balances b WHERE inventory_balances.item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            "not sql at all",
        ] {
            check(sql, None);
        }
    }
}
