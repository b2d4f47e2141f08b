//! Reads of more than one balance: the rows matching a selection (an item's range of the
//! ordered map, or an item's at one location) and their `sum(quantity)`, per-item and
//! per-location running totals where they answer the sum directly.

use super::qty::{Small, Value};
use super::{Id, Key, Lookup, Slot, Tables};
use crate::balances::decimal::Decimal;

/// Which lots a selection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lots<'a> {
    Any,
    /// `lot_id IS NULL`.
    Null,
    In(&'a [&'a str]),
}

/// A selection of one org's balances: any of `items`, at any of `locations` (`None`: any
/// location), with `lots`. Lists are distinct values.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub org: &'a str,
    pub items: &'a [&'a str],
    pub locations: Option<&'a [&'a str]>,
    pub lots: Lots<'a>,
}

/// One matching balance, its names borrowed from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'t> {
    pub item: &'t str,
    pub location: &'t str,
    pub lot: Option<&'t str>,
    pub quantity: Decimal,
    /// `updated_at` (see `timestamp.rs`).
    pub updated_at: i64,
}

impl Tables {
    /// Every matching balance with its value (`Value::Unservable` ones included).
    fn matching(&self, q: &Selection<'_>, mut each: impl FnMut(Key, Value, i64)) {
        let Some(org) = self.ids.get(q.org) else {
            return;
        };
        let lots: Option<Vec<Id>> = match q.lots {
            Lots::In(names) => Some(names.iter().filter_map(|n| self.ids.get(n)).collect()),
            _ => None,
        };
        let lot_ok = |lot: Id| match q.lots {
            Lots::Any => true,
            Lots::Null => lot == 0,
            Lots::In(_) => lots.as_ref().is_some_and(|l| l.contains(&lot)),
        };
        let locations: Option<Vec<Id>> = q
            .locations
            .map(|names| names.iter().filter_map(|n| self.ids.get(n)).collect());
        for item in q.items.iter().filter_map(|n| self.ids.get(n)) {
            let key = |location, lot| Key {
                org,
                item,
                location,
                lot,
            };
            let ranges: Vec<(Id, Id)> = match &locations {
                Some(ls) => ls.iter().map(|&l| (l, l)).collect(),
                None => vec![(0, Id::MAX)],
            };
            for (from, to) in ranges {
                for (&k, e) in self.balances.range(key(from, 0)..=key(to, Id::MAX)) {
                    if lot_ok(k.lot) {
                        each(k, self.value(Slot::Balance(k), e.qty), e.at);
                    }
                }
            }
        }
    }

    /// The matching balances, or `None` when one of them cannot be reproduced exactly.
    pub fn select(&self, q: &Selection<'_>) -> Option<Vec<Row<'_>>> {
        let mut out = Vec::new();
        let mut servable = true;
        self.matching(q, |k, v, updated_at| match Lookup::from(v) {
            Lookup::Found(quantity) => out.push(Row {
                updated_at,
                item: self.ids.name(k.item),
                location: self.ids.name(k.location),
                lot: (k.lot != 0).then(|| self.ids.name(k.lot)),
                quantity,
            }),
            _ => servable = false,
        });
        servable.then_some(out)
    }

    /// `sum(quantity)` over the selection (`Missing`: no rows, SQL NULL).
    pub fn sum(&self, q: &Selection<'_>) -> Lookup {
        // Whole items: each item's range summed.
        if q.locations.is_none() && q.lots == Lots::Any {
            let totals = q.items.iter().map(|i| self.total(q.org, i));
            return add_up(totals);
        }
        let mut sum: Option<Value> = None;
        self.matching(q, |_, v, _| {
            sum = Some(sum.unwrap_or(Value::Small(Small::ZERO)).add(v));
        });
        sum.map_or(Lookup::Missing, Lookup::from)
    }

    /// `sum(quantity)` over every balance at any of `locations`.
    pub fn location_sum(&self, org: &str, locations: &[&str]) -> Lookup {
        let totals = locations.iter().map(|l| {
            let at = self.ids.get(org).zip(self.ids.get(l));
            match at.and_then(|k| Some((k, *self.location_totals.get(&k)?))) {
                None => Lookup::Missing,
                Some(((o, l), t)) => self.value(Slot::LocationTotal(o, l), t.sum).into(),
            }
        });
        add_up(totals)
    }
}

/// The sum of totals (`Missing` ones are no rows; any unservable one makes it unservable).
fn add_up(totals: impl Iterator<Item = Lookup>) -> Lookup {
    let mut sum: Option<Decimal> = None;
    for t in totals {
        match t {
            Lookup::Missing => {}
            Lookup::Unservable => return Lookup::Unservable,
            Lookup::Found(d) => {
                sum = match sum {
                    None => Some(d),
                    Some(s) => match s.checked_add(d) {
                        Some(x) => Some(x),
                        None => return Lookup::Unservable,
                    },
                }
            }
        }
    }
    sum.map_or(Lookup::Missing, Lookup::Found)
}
