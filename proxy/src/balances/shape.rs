//! Recognises the statements the cache can answer, on the client's original SQL (the tenant
//! rewrite only adds the org filter, which the cache applies itself). Pure: no I/O.
//!
//! Accepted (any case, optional schema and table alias, values as `$n` or '...' literals):
//! - `SELECT <cols> FROM inventory_balances WHERE <conds> [ORDER BY <keys>]` with `<cols>`
//!   drawn from org_id, item_id, location_id, lot_id, quantity, updated_at (each optionally
//!   `AS alias`) or `*` / `alias.*` (the table's columns: answered only while the table has
//!   exactly [`STAR`], in that order),
//!   `<conds>` a conjunction of `col = v`, `col IN (v, …)` and `col = ANY($n)` on org_id,
//!   item_id (required), location_id and lot_id (or `lot_id IS NULL`), in any order, and
//!   `<keys>` key columns, each optionally `ASC` or `DESC`. Without the lot (or the location)
//!   several rows may match.
//! - `SELECT sum(quantity) FROM inventory_balances WHERE <conds>`: per item (`item_id` given,
//!   the other key columns optional), or per location (`location_id` given, no item, no lot).
//!
//! Anything else — extra clauses, other predicates, LIMIT, locking, parentheses — is not a
//! shape. To be sure nothing was overlooked, the matcher (`recognise.rs`) rebuilds the
//! canonical statement from what it understood and requires that it parses to the same
//! syntax tree.

mod recognise;

pub use recognise::{recognise, recognise_from};

use crate::sql::shape_key::{Literal, LiteralKind};

/// A column of `inventory_balances` the cache can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    OrgId,
    ItemId,
    LocationId,
    LotId,
    Quantity,
    UpdatedAt,
}

/// What `*` stands for: the columns of `inventory_balances` as migration 0003 creates them.
pub const STAR: [Column; 6] = [
    Column::OrgId,
    Column::ItemId,
    Column::LocationId,
    Column::LotId,
    Column::Quantity,
    Column::UpdatedAt,
];

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::OrgId => "org_id",
            Column::ItemId => "item_id",
            Column::LocationId => "location_id",
            Column::LotId => "lot_id",
            Column::Quantity => "quantity",
            Column::UpdatedAt => "updated_at",
        }
    }

    /// One of the four key columns (`org_id`, `item_id`, `location_id`, `lot_id`).
    pub fn is_key(self) -> bool {
        !matches!(self, Column::Quantity | Column::UpdatedAt)
    }

    pub(super) fn from_name(s: &str) -> Option<Column> {
        Some(match s {
            "org_id" => Column::OrgId,
            "item_id" => Column::ItemId,
            "location_id" => Column::LocationId,
            "lot_id" => Column::LotId,
            "quantity" => Column::Quantity,
            "updated_at" => Column::UpdatedAt,
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
    pub(super) fn conds(&self) -> [(Option<&Cond>, Column); 4] {
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
        /// Shared: a shape filled with a statement's literals keeps its columns.
        cols: std::sync::Arc<[Out]>,
        filter: Filter,
        order: Vec<Order>,
        /// The select list has `*`: [`STAR`] must be the table's columns.
        star: bool,
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
                star,
            } => Shape::Rows {
                cols: cols.clone(),
                filter: filter.map(&fill)?,
                order: order.clone(),
                star: *star,
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

#[cfg(test)]
mod tests;
