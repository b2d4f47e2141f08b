//! The in-memory balances: `(org_id, item_id, location_id, lot_id)` → exact quantity, plus a
//! running total per `(org_id, item_id)`.
//!
//! Ids are interned to `u32` (orgs, items, locations and lots repeat across many balances), so
//! a balance costs one small map entry. A transaction's changes are applied under the write side
//! of `gate` and lookups hold the read side, so a reader never sees half of a transaction.

use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use super::decimal::Decimal;

/// Interned id; `0` stands for a NULL lot.
type Id = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    org: Id,
    item: Id,
    location: Id,
    lot: Id,
}

/// A stored quantity, or a marker that PostgreSQL's value is past what `Decimal` represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qty {
    Exact(Decimal),
    Unservable,
}

impl Qty {
    fn add(self, delta: Option<Decimal>) -> Qty {
        match (self, delta) {
            (Qty::Exact(a), Some(d)) => a.checked_add(d).map_or(Qty::Unservable, Qty::Exact),
            _ => Qty::Unservable,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No such balance row (for totals: the item has no balance rows, so `sum` is NULL).
    Missing,
    Found(Decimal),
    /// The value cannot be reproduced exactly here: ask PostgreSQL.
    Unservable,
}

/// One ledger movement (or one initial balance row): its key and quantity text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub org: String,
    pub item: String,
    pub location: String,
    pub lot: Option<String>,
    /// `numeric` text as PostgreSQL printed it.
    pub quantity: String,
}

#[derive(Debug, Default)]
struct Interner {
    ids: DashMap<Arc<str>, Id>,
    names: RwLock<Vec<Arc<str>>>,
}

impl Interner {
    fn get(&self, s: &str) -> Option<Id> {
        self.ids.get(s).map(|r| *r)
    }

    fn intern(&self, s: &str) -> Id {
        if let Some(id) = self.get(s) {
            return id;
        }
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if names.is_empty() {
            names.push(Arc::from("")); // id 0 = NULL lot
        }
        *self.ids.entry(Arc::from(s)).or_insert_with(|| {
            names.push(Arc::from(s));
            (names.len() - 1) as Id
        })
    }

    fn name(&self, id: Id) -> Arc<str> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    fn bytes(&self) -> usize {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let text: usize = names.iter().map(|n| n.len() + 16).sum();
        text + self.ids.capacity() * (std::mem::size_of::<(Arc<str>, Id)>() + 1)
            + names.capacity() * std::mem::size_of::<Arc<str>>()
    }

    fn clear(&self) {
        self.ids.clear();
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The balances and per-item totals.
#[derive(Debug, Default)]
pub struct Store {
    ids: Interner,
    balances: DashMap<Key, Qty>,
    totals: DashMap<(Id, Id), Qty>,
    gate: RwLock<()>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Runs `f` while no transaction is half-applied.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        let _g = self.gate.read().unwrap_or_else(|p| p.into_inner());
        f(self)
    }

    /// Runs `f` exclusively (applying a transaction, clearing for a resync).
    pub fn write<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        let _g = self.gate.write().unwrap_or_else(|p| p.into_inner());
        f(self)
    }

    /// Forgets everything (call inside [`write`](Self::write)).
    pub fn clear(&self) {
        self.balances.clear();
        self.totals.clear();
        self.ids.clear();
    }

    /// Sets a balance row as loaded from `inventory_balances` (call inside `write`).
    pub fn load(&self, row: &Movement) {
        self.set_or_add(row, true);
    }

    /// Adds one ledger movement (call inside `write`).
    pub fn apply(&self, m: &Movement) {
        self.set_or_add(m, false);
    }

    fn set_or_add(&self, m: &Movement, set: bool) {
        let key = Key {
            org: self.ids.intern(&m.org),
            item: self.ids.intern(&m.item),
            location: self.ids.intern(&m.location),
            lot: m.lot.as_deref().map_or(0, |l| self.ids.intern(l)),
        };
        let value = Decimal::parse(&m.quantity);
        let mut total = self
            .totals
            .entry((key.org, key.item))
            .or_insert(Qty::Exact(Decimal::ZERO));
        match self.balances.entry(key) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                if set {
                    // A duplicate key in the initial load cannot happen (unique index); be safe.
                    *e.get_mut() = Qty::Unservable;
                    *total = Qty::Unservable;
                } else {
                    *e.get_mut() = e.get().add(value);
                    *total = total.add(value);
                }
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                // The trigger inserts the delta itself as the new row's quantity.
                e.insert(value.map_or(Qty::Unservable, Qty::Exact));
                *total = total.add(value);
            }
        }
    }

    /// The balance of one key (call inside `read`).
    pub fn point(&self, org: &str, item: &str, location: &str, lot: Option<&str>) -> Lookup {
        let key = (|| {
            Some(Key {
                org: self.ids.get(org)?,
                item: self.ids.get(item)?,
                location: self.ids.get(location)?,
                lot: match lot {
                    None => 0,
                    Some(l) => self.ids.get(l)?,
                },
            })
        })();
        match key.and_then(|k| self.balances.get(&k).map(|v| *v)) {
            None => Lookup::Missing,
            Some(Qty::Exact(d)) => Lookup::Found(d),
            Some(Qty::Unservable) => Lookup::Unservable,
        }
    }

    /// `sum(quantity)` over the item's balance rows (call inside `read`).
    pub fn total(&self, org: &str, item: &str) -> Lookup {
        let key = self.ids.get(org).zip(self.ids.get(item));
        match key.and_then(|k| self.totals.get(&k).map(|v| *v)) {
            None => Lookup::Missing,
            Some(Qty::Exact(d)) => Lookup::Found(d),
            Some(Qty::Unservable) => Lookup::Unservable,
        }
    }

    /// Number of balances.
    pub fn len(&self) -> usize {
        self.balances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
    }

    /// Estimated heap bytes per balance: map slots (entry + control byte, at current capacity),
    /// totals and interned ids, divided by the number of balances.
    pub fn bytes_per_balance(&self) -> usize {
        let n = self.balances.len().max(1);
        let entry = std::mem::size_of::<(Key, Qty)>() + 1;
        let total = std::mem::size_of::<((Id, Id), Qty)>() + 1;
        let bytes =
            self.balances.capacity() * entry + self.totals.capacity() * total + self.ids.bytes();
        bytes / n
    }

    /// Every balance as `(org, item, location, lot, quantity text)`; `None` quantity = unservable.
    pub fn snapshot(&self) -> Vec<(Movement, bool)> {
        self.balances
            .iter()
            .map(|e| {
                let k = e.key();
                let (quantity, ok) = match e.value() {
                    Qty::Exact(d) => (d.to_text(), true),
                    Qty::Unservable => (String::new(), false),
                };
                let lot = (k.lot != 0).then(|| self.ids.name(k.lot).to_string());
                (
                    Movement {
                        org: self.ids.name(k.org).to_string(),
                        item: self.ids.name(k.item).to_string(),
                        location: self.ids.name(k.location).to_string(),
                        lot,
                        quantity,
                    },
                    ok,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(org: &str, item: &str, loc: &str, lot: Option<&str>, q: &str) -> Movement {
        Movement {
            org: org.into(),
            item: item.into(),
            location: loc.into(),
            lot: lot.map(Into::into),
            quantity: q.into(),
        }
    }

    fn text(l: Lookup) -> String {
        match l {
            Lookup::Found(d) => d.to_text(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn balances_and_totals_follow_movements() {
        let s = Store::new();
        s.write(|s| {
            s.load(&mv("a", "i1", "l1", None, "10.5"));
            s.apply(&mv("a", "i1", "l1", None, "-0.25"));
            s.apply(&mv("a", "i1", "l2", Some("lot9"), "3"));
            s.apply(&mv("b", "i1", "l1", None, "7"));
        });
        s.read(|s| {
            assert_eq!(text(s.point("a", "i1", "l1", None)), "10.25");
            assert_eq!(text(s.point("a", "i1", "l2", Some("lot9"))), "3");
            assert_eq!(s.point("a", "i1", "l2", None), Lookup::Missing);
            assert_eq!(s.point("a", "i1", "l1", Some("lot9")), Lookup::Missing);
            assert_eq!(s.point("c", "i1", "l1", None), Lookup::Missing);
            assert_eq!(text(s.total("a", "i1")), "13.25");
            assert_eq!(text(s.total("b", "i1")), "7");
            assert_eq!(s.total("b", "i2"), Lookup::Missing);
        });
        assert_eq!(s.len(), 3);
        assert!(s.bytes_per_balance() > 0);
    }

    #[test]
    fn unrepresentable_values_poison_their_key_and_total_only() {
        let s = Store::new();
        s.write(|s| {
            s.apply(&mv("a", "i1", "l1", None, "NaN"));
            s.apply(&mv("a", "i1", "l1", None, "1"));
            s.apply(&mv("a", "i2", "l1", None, "1"));
        });
        s.read(|s| {
            assert_eq!(s.point("a", "i1", "l1", None), Lookup::Unservable);
            assert_eq!(s.total("a", "i1"), Lookup::Unservable);
            assert_eq!(text(s.point("a", "i2", "l1", None)), "1");
        });
    }

    #[test]
    fn snapshot_names_every_key() {
        let s = Store::new();
        s.write(|s| s.apply(&mv("a", "i1", "l1", Some("x"), "2.0")));
        let snap = s.snapshot();
        assert_eq!(snap, vec![(mv("a", "i1", "l1", Some("x"), "2.0"), true)]);
        s.write(|s| s.clear());
        assert!(s.is_empty());
    }
}
