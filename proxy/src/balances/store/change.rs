//! Changes to the mirrored `inventory_balances` rows: a row loaded, a row put as it now is
//! (INSERT, or the new row of an UPDATE), a row removed (DELETE, or the old row of an UPDATE
//! that moved its key), and the per-location running totals kept in step with them — their
//! row counts (no rows: `sum` is NULL) and PostgreSQL's display scale for `sum(numeric)` (the
//! largest of the rows' scales). Per-item sums need no running total: an item's rows are one
//! range of the ordered map, summed when asked.
//!
//! A running total cannot tell which rows hold its scale: when a row that may have held it
//! leaves (removed, or replaced by a value of smaller scale), the location's total becomes
//! unservable (PostgreSQL answers it until the next load). Ledger-driven changes never do
//! that: the balance trigger's `quantity + delta` keeps or grows the scale.

use super::qty::{Small, Value};
use super::{BalanceRow, Entry, Id, Key, Slot, Tables, Total};

impl Tables {
    fn intern(&mut self, row: &BalanceRow) -> Key {
        Key {
            org: self.ids.intern(&row.org),
            item: self.ids.intern(&row.item),
            location: self.ids.intern(&row.location),
            lot: row.lot.as_deref().map_or(0, |l| self.ids.intern(l)),
        }
    }

    /// Sets a balance row as loaded from `inventory_balances`. A key loaded twice cannot
    /// happen (unique index); if it did, that key and its totals become unservable.
    pub fn load(&mut self, row: &BalanceRow) {
        let key = self.intern(row);
        let v = match self.balances.contains_key(&key) {
            true => Value::Unservable,
            false => Value::parse(&row.quantity),
        };
        self.put_key(key, v, row.updated_at);
    }

    /// A row as it now is in `inventory_balances`.
    pub fn put(&mut self, row: &BalanceRow) {
        let key = self.intern(row);
        self.put_key(key, Value::parse(&row.quantity), row.updated_at);
    }

    /// A row no longer in `inventory_balances` (only its key is read).
    pub fn remove(&mut self, row: &BalanceRow) {
        let key = self.key(&row.org, &row.item, &row.location, row.lot.as_deref());
        let Some((key, old)) = key.and_then(|k| Some((k, self.balances.remove(&k)?))) else {
            return;
        };
        let v = self.value(Slot::Balance(key), old.qty);
        if !self.wide.is_empty() {
            self.wide.remove(&Slot::Balance(key));
        }
        self.adjust_location(key, Some(v), None);
    }

    fn put_key(&mut self, key: Key, v: Value, at: i64) {
        let old = self
            .balances
            .get(&key)
            .map(|e| self.value(Slot::Balance(key), e.qty));
        let qty = self.packed(Slot::Balance(key), v);
        self.balances.insert(key, Entry { qty, at });
        self.adjust_location(key, old, Some(v));
    }

    /// Moves the running total of the row's location from `old` (the row's value before, if
    /// it existed) to `new` (after, if it still exists).
    fn adjust_location(&mut self, key: Key, old: Option<Value>, new: Option<Value>) {
        let (pair, slot) = (
            (key.org, key.location),
            Slot::LocationTotal(key.org, key.location),
        );
        let current = self.location_totals.get(&pair).copied();
        let rows = (current.map_or(0, |t| t.rows) + u32::from(new.is_some()))
            .saturating_sub(u32::from(old.is_some()));
        if rows == 0 {
            self.location_totals.remove(&pair);
            if !self.wide.is_empty() {
                self.wide.remove(&slot);
            }
            return;
        }
        let before = current.map_or(Value::Small(Small::ZERO), |t| self.value(slot, t.sum));
        let mut sum = before;
        if let Some(o) = old {
            sum = sum.add(o.negated());
        }
        if let Some(n) = new {
            sum = sum.add(n);
        }
        let unsure = match (old.and_then(Value::scale), before.scale()) {
            // (A scale of 0 cannot shrink.)
            (Some(o), Some(b)) => {
                o == b && o > 0 && new.and_then(Value::scale).is_none_or(|n| n < o)
            }
            _ => false,
        };
        if unsure {
            sum = Value::Unservable;
        }
        let packed = self.packed(slot, sum);
        self.location_totals
            .insert(pair, Total { sum: packed, rows });
    }

    /// An item's balances, in key order.
    pub(super) fn item_rows(&self, org: Id, item: Id) -> impl Iterator<Item = (&Key, &Entry)> {
        let key = |location, lot| Key {
            org,
            item,
            location,
            lot,
        };
        self.balances.range(key(0, 0)..=key(Id::MAX, Id::MAX))
    }
}
