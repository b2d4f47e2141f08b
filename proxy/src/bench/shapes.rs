//! The statements `orgwall bench balances` sends: one per `--shape`, in the `--protocol`
//! asked for (literals inline, one-round-trip unnamed statements, or statements prepared once
//! per connection).

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::Key;
use crate::sql::quote_literal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Simple query protocol, values as literals.
    Simple,
    /// Extended protocol, an unnamed statement with typed parameters (one round trip).
    Extended,
    /// Extended protocol, statements prepared once per connection.
    Prepared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// `quantity` of one key: item, location and the lot (`lot_id IS NULL` without one).
    Point,
    /// `quantity, lot_id` of an item at a location, every lot (no lot predicate).
    NoLot,
    /// `SELECT *` of an item at a location.
    Star,
    /// Two items' rows, `item_id = ANY($1)` (an `IN` list in the simple protocol).
    Any,
    /// `sum(quantity)` of an item.
    ItemTotal,
    /// `sum(quantity)` at a location.
    LocationTotal,
}

/// A quoted SQL literal.
pub fn lit(s: &str) -> String {
    quote_literal(s)
}

enum Param {
    Text(String),
    Array(Vec<String>),
}

fn org_filter(org: Option<&str>) -> String {
    org.map_or(String::new(), |o| format!(" AND org_id = {}", lit(o)))
}

/// The point lookup of `key` with literals (the writers' read-back).
pub fn point_sql(key: &Key, org: Option<&str>) -> String {
    let lot = key
        .lot
        .as_deref()
        .map_or("lot_id IS NULL".into(), |l| format!("lot_id = {}", lit(l)));
    format!(
        "SELECT quantity FROM inventory_balances WHERE item_id = {} AND location_id = {} AND \
         {lot}{}",
        lit(&key.item),
        lit(&key.location),
        org_filter(org)
    )
}

/// A ledger row of +1 for `key`.
pub fn insert_sql(key: &Key, org: Option<&str>) -> String {
    let (col, val) = org.map_or((String::new(), String::new()), |o| {
        ("org_id, ".into(), format!("{}, ", lit(o)))
    });
    format!(
        "INSERT INTO inventory_ledger ({col}item_id, location_id, lot_id, quantity_delta, reason) \
         VALUES ({val}{}, {}, {}, 1, 'orgwall bench')",
        lit(&key.item),
        lit(&key.location),
        key.lot.as_deref().map_or("NULL".into(), lit)
    )
}

/// One connection's statement maker (and, prepared, its statements).
pub struct Runner {
    protocol: Protocol,
    shape: Shape,
    org: Option<String>,
    prepared: HashMap<String, Statement>,
}

impl Runner {
    pub fn new(protocol: Protocol, shape: Shape, org: Option<String>) -> Runner {
        Runner {
            protocol,
            shape,
            org,
            prepared: HashMap::new(),
        }
    }

    /// The statement (with `$n`) and its parameters for `key` (`other`: a second item).
    fn statement(&self, key: &Key, other: &Key) -> (String, Vec<Param>) {
        let t = |s: &str| Param::Text(s.to_string());
        let (sql, params) = match self.shape {
            Shape::Point => match &key.lot {
                None => (
                    "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND \
                     location_id = $2 AND lot_id IS NULL",
                    vec![t(&key.item), t(&key.location)],
                ),
                Some(lot) => (
                    "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND \
                     location_id = $2 AND lot_id = $3",
                    vec![t(&key.item), t(&key.location), t(lot)],
                ),
            },
            Shape::NoLot => (
                "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $1 AND \
                 location_id = $2",
                vec![t(&key.item), t(&key.location)],
            ),
            Shape::Star => (
                "SELECT * FROM inventory_balances WHERE item_id = $1 AND location_id = $2",
                vec![t(&key.item), t(&key.location)],
            ),
            Shape::Any => (
                "SELECT item_id, location_id, lot_id, quantity FROM inventory_balances \
                 WHERE item_id = ANY($1)",
                vec![Param::Array(vec![key.item.clone(), other.item.clone()])],
            ),
            Shape::ItemTotal => (
                "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
                vec![t(&key.item)],
            ),
            Shape::LocationTotal => (
                "SELECT sum(quantity) FROM inventory_balances WHERE location_id = $1",
                vec![t(&key.location)],
            ),
        };
        (format!("{sql}{}", org_filter(self.org.as_deref())), params)
    }

    /// Sends the lookup for `key` and reads its whole answer.
    pub async fn run(
        &mut self,
        c: &Client,
        key: &Key,
        other: &Key,
    ) -> Result<(), tokio_postgres::Error> {
        let (sql, params) = self.statement(key, other);
        match self.protocol {
            Protocol::Simple => {
                let mut text = sql;
                // Highest first, so `$1` does not match the start of `$10`.
                for (i, p) in params.iter().enumerate().rev() {
                    let v = match p {
                        Param::Text(s) => lit(s),
                        Param::Array(items) => {
                            let l: Vec<String> = items.iter().map(|s| lit(s)).collect();
                            text = text.replace(" = ANY($1)", &format!(" IN ({})", l.join(", ")));
                            continue;
                        }
                    };
                    text = text.replace(&format!("${}", i + 1), &v);
                }
                c.simple_query(&text).await.map(drop)
            }
            Protocol::Extended => {
                let values: Vec<(&(dyn ToSql + Sync), Type)> = params
                    .iter()
                    .map(|p| -> (&(dyn ToSql + Sync), Type) {
                        match p {
                            Param::Text(s) => (s, Type::TEXT),
                            Param::Array(v) => (v, Type::TEXT_ARRAY),
                        }
                    })
                    .collect();
                c.query_typed(&sql, &values).await.map(drop)
            }
            Protocol::Prepared => {
                let stmt = match self.prepared.get(&sql) {
                    Some(s) => s.clone(),
                    None => {
                        let s = c.prepare(&sql).await?;
                        self.prepared.insert(sql, s.clone());
                        s
                    }
                };
                let values: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| -> &(dyn ToSql + Sync) {
                        match p {
                            Param::Text(s) => s,
                            Param::Array(v) => v,
                        }
                    })
                    .collect();
                c.query(&stmt, &values).await.map(drop)
            }
        }
    }
}
