//! Ledger row changes as balance movements, exactly as the balance trigger
//! (`update_inventory_balance()`, migration 0005) applies them to `inventory_balances`. Pure.
//!
//! - INSERT: the new row's quantity is added to its key.
//! - UPDATE: nothing when key and quantity are unchanged (as text: `2.5` → `2.50` is a change,
//!   it changes the balance's display scale); otherwise the old row's quantity is subtracted
//!   from the old key and the new row's added to the new key (the keys may differ).
//! - DELETE: the old row's quantity is subtracted from its key.
//!
//! A balance row the subtraction reaches first is created with the negated quantity, and one
//! brought to zero stays (with quantity 0), as the trigger's upsert does. UPDATE and DELETE
//! need the whole old row (`REPLICA IDENTITY FULL`); without it the caller resyncs.

use super::pgoutput::{Cell, OldRow};
use super::store::Movement;

/// Positions of org_id, item_id, location_id, lot_id and quantity_delta in a ledger tuple.
pub type Columns = [usize; 5];

/// Why a change cannot be applied as a delta (the cache then reloads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeedsResync {
    #[error(
        "an {0} of inventory_ledger arrived without the old row (its REPLICA IDENTITY is not \
         FULL; migration 0005_ledger_replica_identity sets it)"
    )]
    NoOldRow(&'static str),
    #[error("a ledger row with a NULL or missing key or quantity")]
    Incomplete,
}

/// The movement of an inserted row.
pub fn insert(cols: &Columns, new: &[Cell]) -> Result<Movement, NeedsResync> {
    row(cols, new, None)
}

/// The movements of an updated row: none, or the old row taken out and the new one added.
pub fn update(
    cols: &Columns,
    old: Option<&OldRow>,
    new: &[Cell],
) -> Result<Vec<Movement>, NeedsResync> {
    let Some(OldRow::Full(old)) = old else {
        return Err(NeedsResync::NoOldRow("UPDATE"));
    };
    let before = row(cols, old, None)?;
    // A TOASTed value the update left alone is sent as "unchanged": it is the old one.
    let after = row(cols, new, Some(old))?;
    if before == after {
        return Ok(vec![]);
    }
    Ok(vec![negated(before), after])
}

/// The movement of a deleted row: its quantity taken out.
pub fn delete(cols: &Columns, old: &OldRow) -> Result<Movement, NeedsResync> {
    match old {
        OldRow::Full(old) => Ok(negated(row(cols, old, None)?)),
        OldRow::Key(_) => Err(NeedsResync::NoOldRow("DELETE")),
    }
}

fn row(
    cols: &Columns,
    tuple: &[Cell],
    unchanged: Option<&[Cell]>,
) -> Result<Movement, NeedsResync> {
    let cell = |k: usize| -> Option<&Cell> {
        match tuple.get(cols[k])? {
            Cell::Unchanged => unchanged?.get(cols[k]),
            c => Some(c),
        }
    };
    let text = |k: usize| match cell(k) {
        Some(Cell::Text(s)) => Ok(s.clone()),
        _ => Err(NeedsResync::Incomplete),
    };
    let lot = match cell(3) {
        Some(Cell::Text(s)) => Some(s.clone()),
        Some(Cell::Null) => None,
        _ => return Err(NeedsResync::Incomplete),
    };
    Ok(Movement {
        org: text(0)?,
        item: text(1)?,
        location: text(2)?,
        lot,
        quantity: text(4)?,
    })
}

/// The same movement with the opposite quantity (numeric negation keeps the display scale).
fn negated(mut m: Movement) -> Movement {
    m.quantity = match m.quantity.strip_prefix('-') {
        Some(positive) => positive.to_string(),
        None => format!("-{}", m.quantity),
    };
    m
}

#[cfg(test)]
mod tests {
    use super::super::store::{Lookup, Tables};
    use super::*;

    /// Tuples laid out as org, item, location, lot, quantity, reason.
    const COLS: Columns = [0, 1, 2, 3, 4];

    fn tuple(item: &str, location: &str, lot: Option<&str>, qty: &str) -> Vec<Cell> {
        let t = |s: &str| Cell::Text(s.into());
        vec![
            t("org_a"),
            t(item),
            t(location),
            lot.map_or(Cell::Null, t),
            t(qty),
            t("receipt"),
        ]
    }

    fn point(t: &Tables, item: &str, location: &str, lot: Option<&str>) -> Option<String> {
        match t.point("org_a", item, location, lot) {
            Lookup::Found(d) => Some(d.to_text()),
            Lookup::Missing => None,
            Lookup::Unservable => Some("unservable".into()),
        }
    }

    fn total(t: &Tables, item: &str) -> Option<String> {
        match t.total("org_a", item) {
            Lookup::Found(d) => Some(d.to_text()),
            _ => None,
        }
    }

    fn apply(t: &mut Tables, ms: &[Movement]) {
        ms.iter().for_each(|m| t.apply(m));
    }

    #[test]
    fn an_update_in_place_moves_the_difference_with_postgres_scales() {
        let mut t = Tables::default();
        let old = tuple("i1", "l1", None, "2.5");
        apply(
            &mut t,
            &[insert(&COLS, &tuple("i1", "l1", None, "10")).unwrap()],
        );
        apply(&mut t, &[insert(&COLS, &old).unwrap()]);
        assert_eq!(point(&t, "i1", "l1", None).as_deref(), Some("12.5"));
        let new = tuple("i1", "l1", None, "-0.75");
        let ms = update(&COLS, Some(&OldRow::Full(old)), &new).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(
            (ms[0].quantity.as_str(), ms[1].quantity.as_str()),
            ("-2.5", "-0.75")
        );
        apply(&mut t, &ms);
        // 12.5 - 2.5 - 0.75, at the larger scale, as numeric addition gives it.
        assert_eq!(point(&t, "i1", "l1", None).as_deref(), Some("9.25"));
        assert_eq!(total(&t, "i1").as_deref(), Some("9.25"));
        // Only the display scale changes: still a change (12.50 in PostgreSQL too).
        let (a, b) = (
            tuple("i1", "l1", None, "-0.75"),
            tuple("i1", "l1", None, "-0.750"),
        );
        apply(&mut t, &update(&COLS, Some(&OldRow::Full(a)), &b).unwrap());
        assert_eq!(point(&t, "i1", "l1", None).as_deref(), Some("9.250"));
    }

    #[test]
    fn a_no_op_update_moves_nothing() {
        let row = tuple("i1", "l1", Some("LOT"), "3.10");
        let mut new = row.clone();
        new[5] = Cell::Text("edited reason".into());
        assert_eq!(
            update(&COLS, Some(&OldRow::Full(row.clone())), &new),
            Ok(vec![])
        );
        // A TOASTed column the update did not touch is the old value.
        new[1] = Cell::Unchanged;
        assert_eq!(update(&COLS, Some(&OldRow::Full(row)), &new), Ok(vec![]));
    }

    #[test]
    fn an_update_that_moves_the_row_to_another_key_moves_its_quantity() {
        let mut t = Tables::default();
        let old = tuple("i1", "l1", Some("LOT-1"), "40.5");
        apply(&mut t, &[insert(&COLS, &old).unwrap()]);
        apply(
            &mut t,
            &[insert(&COLS, &tuple("i2", "l2", None, "1")).unwrap()],
        );
        // Another item, location and lot, and another quantity.
        let new = tuple("i2", "l2", None, "4.25");
        apply(
            &mut t,
            &update(&COLS, Some(&OldRow::Full(old)), &new).unwrap(),
        );
        // The old key's row stays, at zero with its scale (the trigger's upsert keeps it).
        assert_eq!(point(&t, "i1", "l1", Some("LOT-1")).as_deref(), Some("0.0"));
        assert_eq!(total(&t, "i1").as_deref(), Some("0.0"));
        assert_eq!(point(&t, "i2", "l2", None).as_deref(), Some("5.25"));
        assert_eq!(total(&t, "i2").as_deref(), Some("5.25"));
        // Moved onto a key with no balance row yet: it is created with the quantity.
        let (a, b) = (
            tuple("i2", "l2", None, "4.25"),
            tuple("i2", "l1", Some("N"), "4.25"),
        );
        apply(&mut t, &update(&COLS, Some(&OldRow::Full(a)), &b).unwrap());
        assert_eq!(point(&t, "i2", "l1", Some("N")).as_deref(), Some("4.25"));
        assert_eq!(point(&t, "i2", "l2", None).as_deref(), Some("1.00"));
        assert_eq!(total(&t, "i2").as_deref(), Some("5.25"));
    }

    #[test]
    fn a_delete_takes_the_quantity_out() {
        let mut t = Tables::default();
        let a = tuple("i1", "l1", None, "100");
        let b = tuple("i1", "l1", None, "-15.125");
        apply(
            &mut t,
            &[insert(&COLS, &a).unwrap(), insert(&COLS, &b).unwrap()],
        );
        apply(&mut t, &[delete(&COLS, &OldRow::Full(b)).unwrap()]);
        assert_eq!(point(&t, "i1", "l1", None).as_deref(), Some("100.000"));
        apply(&mut t, &[delete(&COLS, &OldRow::Full(a)).unwrap()]);
        assert_eq!(point(&t, "i1", "l1", None).as_deref(), Some("0.000"));
        assert_eq!(total(&t, "i1").as_deref(), Some("0.000"));
        // A row the cache never saw: its key gets the negated quantity, as in the table.
        let c = tuple("i3", "l1", None, "2");
        apply(&mut t, &[delete(&COLS, &OldRow::Full(c)).unwrap()]);
        assert_eq!(point(&t, "i3", "l1", None).as_deref(), Some("-2"));
    }

    #[test]
    fn without_the_whole_old_row_the_cache_must_reload() {
        let row = tuple("i1", "l1", None, "1");
        assert_eq!(
            update(&COLS, None, &row),
            Err(NeedsResync::NoOldRow("UPDATE"))
        );
        let key = OldRow::Key(row.clone());
        assert_eq!(
            update(&COLS, Some(&key), &row),
            Err(NeedsResync::NoOldRow("UPDATE"))
        );
        assert_eq!(delete(&COLS, &key), Err(NeedsResync::NoOldRow("DELETE")));
        let mut null_qty = row.clone();
        null_qty[4] = Cell::Null;
        assert_eq!(insert(&COLS, &null_qty), Err(NeedsResync::Incomplete));
        let mut unchanged = row.clone();
        unchanged[2] = Cell::Unchanged;
        assert_eq!(insert(&COLS, &unchanged), Err(NeedsResync::Incomplete));
        assert!(NeedsResync::NoOldRow("DELETE")
            .to_string()
            .contains("REPLICA IDENTITY"));
    }
}
