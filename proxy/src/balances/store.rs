//! The in-memory mirror of `inventory_balances`: `(org_id, item_id, location_id, lot_id)` →
//! exact quantity and `updated_at`, plus a running total per `(org_id, location_id)`.
//!
//! Memory (issue 5: ≤ 150 bytes per balance at 1M): ids are interned to `u32` (`interner.rs`:
//! one text arena, 12-byte hash slots) and a quantity is packed into 8 bytes when it fits
//! (`qty.rs`; wider values sit in a side map), so a balance is one 32-byte entry (16 of key,
//! 8 of quantity, 8 of `updated_at`) of a `BTreeMap` ordered by `(org, item, location, lot)`
//! ids — ordered so that every balance of an item (or of an item at a location) is one range:
//! lookups without the lot or the location, and per-item sums (summed from the range when
//! asked; no per-item table). Running totals are kept per `(org, location)`, whose rows are
//! spread over the map (`change.rs` keeps them exact). All tables sit behind
//! one `RwLock`: a transaction is applied under the write side and lookups hold the read side,
//! so a reader never sees half a transaction — which is also why no per-shard locking
//! (DashMap) is needed.
//!
//! Use: `store.write(|t| { t.put(..); .. })`, `store.read(|t| t.point(..))`. Do not call the
//! `Store`'s own locking methods (`len`, `snapshot`, …) from inside those closures.

mod change;
mod interner;
mod qty;
mod select;

pub use select::{Lots, Row, Selection};

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use super::decimal::Decimal;
use interner::Interner;
use qty::{Packed, Value};

/// Interned id; `0` stands for a NULL lot.
type Id = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    org: Id,
    item: Id,
    location: Id,
    lot: Id,
}

/// Where a value that is not packed lives in the side map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Balance(Key),
    LocationTotal(Id, Id),
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

impl From<Value> for Lookup {
    fn from(v: Value) -> Lookup {
        match v {
            Value::Small(s) => s.to_decimal().map_or(Lookup::Unservable, Lookup::Found),
            Value::Wide(d) => Lookup::Found(d),
            Value::Unservable => Lookup::Unservable,
        }
    }
}

/// One row of `inventory_balances` as the store takes it: its key, quantity text and
/// `updated_at` (see `timestamp.rs`: microseconds, or its `NULL`/`UNSERVABLE` marks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub org: String,
    pub item: String,
    pub location: String,
    pub lot: Option<String>,
    /// `numeric` text as PostgreSQL printed it.
    pub quantity: String,
    pub updated_at: i64,
}

/// A balance's stored value: its quantity and `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    qty: Packed,
    at: i64,
}

/// A running per-location `sum(quantity)` and how many balance rows it covers (none: the
/// entry is gone, so the sum reads as NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Total {
    sum: Packed,
    rows: u32,
}

/// Heap bytes of a hash table (std's `HashMap` is hashbrown: a power-of-two number of buckets
/// at most 7/8 full, one control byte per bucket plus one group of 16).
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity / 7 * 8).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

/// Estimated heap bytes of a `BTreeMap` with `len` entries of `entry` bytes: leaves of 11
/// entries (plus parent link and lengths) assumed two-thirds full, one internal node (with its
/// 12 edges) per six leaves.
fn btree_bytes(len: usize, entry: usize) -> usize {
    let leaf = malloc_chunk(16 + 11 * entry);
    let leaves = (len * 3).div_ceil(2 * 11);
    let internal = malloc_chunk(16 + 11 * entry + 12 * 8);
    leaves * leaf + leaves.div_ceil(6) * internal
}

/// Bytes glibc's malloc really takes for an `n`-byte allocation (8-byte header, 16-byte
/// granularity, 32-byte minimum).
fn malloc_chunk(n: usize) -> usize {
    (n + 8).next_multiple_of(16).max(32)
}

/// The balances and per-item totals. Reached through [`Store::read`] and [`Store::write`].
#[derive(Debug, Default)]
pub struct Tables {
    ids: Interner,
    balances: BTreeMap<Key, Entry>,
    /// `sum(quantity)` per `(org, location)`.
    location_totals: HashMap<(Id, Id), Total>,
    /// Values `Packed` cannot hold (wide or unservable), by slot; its entries carry
    /// `Packed::WIDE` in their table.
    wide: HashMap<Slot, Value>,
}

impl Tables {
    /// Forgets everything (keeps the allocations: a resync loads about as much again).
    pub fn clear(&mut self) {
        self.balances.clear();
        self.location_totals.clear();
        self.wide.clear();
        self.ids.clear();
    }

    /// Gives back spare capacity the load's growth left (the hash tables are already as
    /// small as their load factor allows).
    pub fn shrink(&mut self) {
        self.ids.shrink();
        self.wide.shrink_to_fit();
    }

    fn value(&self, slot: Slot, p: Packed) -> Value {
        match p.get() {
            Some(s) => Value::Small(s),
            None => self.wide.get(&slot).copied().unwrap_or(Value::Unservable),
        }
    }

    /// What to put in `slot`'s table for `v` (keeping the side map in step).
    fn packed(&mut self, slot: Slot, v: Value) -> Packed {
        match v {
            Value::Small(s) => {
                if !self.wide.is_empty() {
                    self.wide.remove(&slot);
                }
                Packed::small(s)
            }
            v => {
                self.wide.insert(slot, v);
                Packed::WIDE
            }
        }
    }

    fn key(&self, org: &str, item: &str, location: &str, lot: Option<&str>) -> Option<Key> {
        Some(Key {
            org: self.ids.get(org)?,
            item: self.ids.get(item)?,
            location: self.ids.get(location)?,
            lot: match lot {
                None => 0,
                Some(l) => self.ids.get(l)?,
            },
        })
    }

    /// The balance of one key.
    pub fn point(&self, org: &str, item: &str, location: &str, lot: Option<&str>) -> Lookup {
        let key = self.key(org, item, location, lot);
        match key.and_then(|k| Some((k, *self.balances.get(&k)?))) {
            None => Lookup::Missing,
            Some((k, e)) => self.value(Slot::Balance(k), e.qty).into(),
        }
    }

    /// `updated_at` of one key (`None`: no such balance).
    pub fn updated_at(
        &self,
        org: &str,
        item: &str,
        location: &str,
        lot: Option<&str>,
    ) -> Option<i64> {
        let key = self.key(org, item, location, lot)?;
        self.balances.get(&key).map(|e| e.at)
    }

    /// `sum(quantity)` over the item's balance rows (one range of the ordered map).
    pub fn total(&self, org: &str, item: &str) -> Lookup {
        let Some((org, item)) = self.ids.get(org).zip(self.ids.get(item)) else {
            return Lookup::Missing;
        };
        let mut sum: Option<Value> = None;
        for (&k, e) in self.item_rows(org, item) {
            let v = self.value(Slot::Balance(k), e.qty);
            sum = Some(sum.map_or(v, |s| s.add(v)));
        }
        sum.map_or(Lookup::Missing, Lookup::from)
    }

    /// Number of balances.
    pub fn len(&self) -> usize {
        self.balances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
    }

    /// Estimated heap bytes per balance (`btree_bytes` for the balances), every hash table at its capacity (slots + control bytes),
    /// the side map and the interned names with allocator overhead, over the balance count.
    pub fn bytes_per_balance(&self) -> usize {
        use std::mem::size_of;
        let bytes = btree_bytes(self.balances.len(), size_of::<(Key, Entry)>())
            + table_bytes(
                self.location_totals.capacity(),
                size_of::<((Id, Id), Total)>(),
            )
            + table_bytes(self.wide.capacity(), size_of::<(Slot, Value)>())
            + self.ids.bytes();
        bytes / self.len().max(1)
    }

    /// Every balance as `(row, servable)`; unservable ones have no quantity text.
    pub fn snapshot(&self) -> Vec<(BalanceRow, bool)> {
        let name = |id: Id| self.ids.name(id).to_string();
        self.balances
            .iter()
            .map(|(&k, &e)| {
                let (quantity, ok) = match Lookup::from(self.value(Slot::Balance(k), e.qty)) {
                    Lookup::Found(d) => (d.to_text(), true),
                    _ => (String::new(), false),
                };
                let row = BalanceRow {
                    org: name(k.org),
                    item: name(k.item),
                    location: name(k.location),
                    lot: (k.lot != 0).then(|| name(k.lot)),
                    quantity,
                    updated_at: e.at,
                };
                (row, ok)
            })
            .collect()
    }
}

/// The balances and per-item totals, shared by the feed (writer) and all sessions (readers).
#[derive(Default)]
pub struct Store {
    tables: RwLock<Tables>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("len", &self.len()).finish()
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Runs `f` while no transaction is half-applied.
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.tables.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` exclusively (applying a transaction, clearing for a resync).
    pub fn write<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        f(&mut self.tables.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Number of balances.
    pub fn len(&self) -> usize {
        self.read(Tables::len)
    }

    pub fn is_empty(&self) -> bool {
        self.read(Tables::is_empty)
    }

    /// See [`Tables::bytes_per_balance`].
    pub fn bytes_per_balance(&self) -> usize {
        self.read(Tables::bytes_per_balance)
    }

    /// See [`Tables::snapshot`].
    pub fn snapshot(&self) -> Vec<(BalanceRow, bool)> {
        self.read(Tables::snapshot)
    }
}

#[cfg(test)]
mod tests;
