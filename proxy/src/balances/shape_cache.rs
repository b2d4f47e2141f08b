//! Recognised shapes, cached: by exact text (prepared and repeated statements), and for plain
//! text by literal-blind shape key (the simple protocol's `… item_id = 'i_7'`), so a lookup
//! is parsed once per shape rather than once per statement.

use std::sync::Arc;

use super::shape::{recognise, recognise_from, Shape};
use crate::lru::Lru;
use crate::sql::rewrite::shaped::{literals_of, parametrize, BASE};
use crate::sql::shape_key::fast_key_of;

/// Statements remembered per map.
const CAPACITY: usize = 4096;

pub struct ShapeCache {
    schema: String,
    by_text: Lru<Option<Arc<Shape>>>,
    /// Shapes recognised with literals as parameters from `BASE`.
    by_shape: Lru<Option<Arc<Shape>>>,
}

impl std::fmt::Debug for ShapeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapeCache")
            .field("schema", &self.schema)
            .field("by_text", &self.by_text.len())
            .field("by_shape", &self.by_shape.len())
            .finish()
    }
}

impl ShapeCache {
    /// A cache for `inventory_balances` in `schema`.
    pub fn new(schema: &str) -> ShapeCache {
        ShapeCache {
            schema: schema.to_string(),
            by_text: Lru::new(CAPACITY),
            by_shape: Lru::new(CAPACITY),
        }
    }

    /// What [`recognise`] says of `sql`.
    pub fn recognise(&self, sql: &str) -> Option<Arc<Shape>> {
        if let Some(hit) = self.by_text.get(sql) {
            return hit;
        }
        if let Some(literals) = literals_of(sql) {
            let key = fast_key_of(sql, &literals);
            let shaped = match self.by_shape.get(&key) {
                Some(s) => s,
                None => {
                    let p = parametrize(sql, &literals);
                    let s = recognise_from(&p, &self.schema, BASE).map(Arc::new);
                    self.by_shape.insert(&key, s.clone());
                    s
                }
            };
            return shaped
                .and_then(|s| s.with_literals(BASE, sql, &literals))
                .map(Arc::new);
        }
        let found = recognise(sql, &self.schema).map(Arc::new);
        self.by_text.insert(sql, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_recognition_equals_recognition() {
        let cache = ShapeCache::new("public");
        let sqls = [
            "SELECT quantity FROM inventory_balances WHERE item_id = 'i1' AND location_id = 'l1' AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = 'it''s' AND location_id = 'l2' AND lot_id IS NULL",
            "SELECT quantity FROM inventory_balances WHERE item_id = 5 AND location_id = 'l2' AND lot_id IS NULL",
            "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $1 AND location_id = 'l1' AND lot_id = 'x'",
            "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $2 AND location_id = 'l1' AND lot_id = 'x'",
            "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i9'",
            "SELECT sum(quantity) AS total FROM public.inventory_balances WHERE item_id = $1",
            "SELECT quantity FROM inventory_balances WHERE item_id = 'a' OR location_id = 'b'",
        ];
        for _ in 0..2 {
            for sql in sqls {
                assert_eq!(
                    cache.recognise(sql).as_deref(),
                    recognise(sql, "public").as_ref(),
                    "{sql}"
                );
            }
        }
    }
}
