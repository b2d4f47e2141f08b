//! `inventory_balances` row changes from the replication stream, as changes to the store's
//! mirror of that table. Pure.
//!
//! The mirror is the cache's one source of truth: every answer (quantity, `updated_at`,
//! totals) is read from the rows PostgreSQL has in `inventory_balances`, so an answer is
//! what PostgreSQL answers whatever wrote the table (the balance trigger, a reconciliation
//! job, an operator's UPDATE). The ledger is not summed here; its inserts only serve as a
//! check that the balance rows they changed reached the stream too (see `stream.rs`).
//!
//! - INSERT: the new row is put.
//! - UPDATE: the old row is removed when its key changed, then the new row is put.
//! - DELETE: the old row is removed.
//!
//! UPDATE and DELETE need the whole old row (`REPLICA IDENTITY FULL`, migration 0007);
//! without it the caller resyncs.

use super::pgoutput::{Cell, OldRow};
use super::store::BalanceRow;
use super::timestamp;

/// Positions of org_id, item_id, location_id, lot_id, quantity and updated_at (`None`: the
/// table has no such column) in a tuple of `inventory_balances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub key: [usize; 4],
    pub quantity: usize,
    pub updated_at: Option<usize>,
}

impl Columns {
    /// From the column names of the stream's Relation message.
    pub fn find(names: &[String]) -> Option<Columns> {
        let pos = |c: &str| names.iter().position(|x| x == c);
        Some(Columns {
            key: [
                pos("org_id")?,
                pos("item_id")?,
                pos("location_id")?,
                pos("lot_id")?,
            ],
            quantity: pos("quantity")?,
            updated_at: pos("updated_at"),
        })
    }
}

/// Why a change cannot be mirrored (the cache then reloads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeedsResync {
    #[error(
        "an {0} of inventory_balances arrived without the old row (its REPLICA IDENTITY is not \
         FULL; migration 0007_balances_mirror sets it)"
    )]
    NoOldRow(&'static str),
    #[error("an inventory_balances row with a NULL or missing key column")]
    Incomplete,
}

/// One change to the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(BalanceRow),
    Remove(BalanceRow),
}

/// An inserted row.
pub fn insert(cols: &Columns, new: &[Cell]) -> Result<Change, NeedsResync> {
    Ok(Change::Put(row(cols, new, None)?))
}

/// An updated row: the old one removed when it had another key, the new one put.
pub fn update(
    cols: &Columns,
    old: Option<&OldRow>,
    new: &[Cell],
) -> Result<Vec<Change>, NeedsResync> {
    let Some(OldRow::Full(old)) = old else {
        return Err(NeedsResync::NoOldRow("UPDATE"));
    };
    let before = row(cols, old, None)?;
    // A TOASTed value the update left alone is sent as "unchanged": it is the old one.
    let after = row(cols, new, Some(old))?;
    let same_key = (&before.org, &before.item, &before.location, &before.lot)
        == (&after.org, &after.item, &after.location, &after.lot);
    Ok(match same_key {
        true => vec![Change::Put(after)],
        false => vec![Change::Remove(before), Change::Put(after)],
    })
}

/// A deleted row.
pub fn delete(cols: &Columns, old: &OldRow) -> Result<Change, NeedsResync> {
    match old {
        OldRow::Full(old) => Ok(Change::Remove(row(cols, old, None)?)),
        OldRow::Key(_) => Err(NeedsResync::NoOldRow("DELETE")),
    }
}

fn row(
    cols: &Columns,
    tuple: &[Cell],
    unchanged: Option<&[Cell]>,
) -> Result<BalanceRow, NeedsResync> {
    let cell = |i: usize| -> Option<&Cell> {
        match tuple.get(i)? {
            Cell::Unchanged => unchanged?.get(i),
            c => Some(c),
        }
    };
    let text = |i: usize| match cell(i) {
        Some(Cell::Text(s)) => Ok(s.clone()),
        _ => Err(NeedsResync::Incomplete),
    };
    let [org, item, location, lot] = cols.key;
    let lot = match cell(lot) {
        Some(Cell::Text(s)) => Some(s.clone()),
        Some(Cell::Null) => None,
        _ => return Err(NeedsResync::Incomplete),
    };
    // A NULL quantity (not in the seed's schema) is kept as a value never served.
    let quantity = match cell(cols.quantity) {
        Some(Cell::Text(s)) => s.clone(),
        Some(Cell::Null) => "NaN".into(),
        _ => return Err(NeedsResync::Incomplete),
    };
    let updated_at = match cols.updated_at.map(cell) {
        None | Some(Some(Cell::Null)) => timestamp::NULL,
        Some(Some(Cell::Text(s))) => timestamp::parse_iso(s),
        Some(_) => return Err(NeedsResync::Incomplete),
    };
    Ok(BalanceRow {
        org: text(org)?,
        item: text(item)?,
        location: text(location)?,
        lot,
        quantity,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::super::store::{Lookup, Tables};
    use super::*;

    const COLS: Columns = Columns {
        key: [0, 1, 2, 3],
        quantity: 4,
        updated_at: Some(5),
    };
    const AT: &str = "2026-12-05 04:21:17.5+00";

    fn tuple(item: &str, location: &str, lot: Option<&str>, qty: &str) -> Vec<Cell> {
        let t = |s: &str| Cell::Text(s.into());
        vec![
            t("org_a"),
            t(item),
            t(location),
            lot.map_or(Cell::Null, t),
            t(qty),
            t(AT),
        ]
    }

    fn apply(t: &mut Tables, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Put(r) => t.put(r),
                Change::Remove(r) => t.remove(r),
            }
        }
    }

    fn text(l: Lookup) -> Option<String> {
        match l {
            Lookup::Found(d) => Some(d.to_text()),
            Lookup::Missing => None,
            Lookup::Unservable => Some("unservable".into()),
        }
    }

    #[test]
    fn rows_are_mirrored_as_postgres_has_them() {
        let mut t = Tables::default();
        let a = tuple("i1", "l1", None, "10.50");
        let b = tuple("i1", "l2", Some("LOT"), "2");
        apply(
            &mut t,
            &[insert(&COLS, &a).unwrap(), insert(&COLS, &b).unwrap()],
        );
        assert_eq!(text(t.total("org_a", "i1")).as_deref(), Some("12.50"));
        assert_eq!(
            t.updated_at("org_a", "i1", "l1", None),
            Some(timestamp::parse_iso(AT))
        );
        // An UPDATE in place sets the row (a smaller scale: the item's sum is summed again).
        let mut a2 = tuple("i1", "l1", None, "3");
        a2[5] = Cell::Text("2026-12-05 05:00:00+00".into());
        apply(
            &mut t,
            &update(&COLS, Some(&OldRow::Full(a.clone())), &a2).unwrap(),
        );
        assert_eq!(
            text(t.point("org_a", "i1", "l1", None)).as_deref(),
            Some("3")
        );
        assert_eq!(text(t.total("org_a", "i1")).as_deref(), Some("5"));
        assert_eq!(
            text(t.location_sum("org_a", &["l1"])),
            Some("unservable".into())
        );
        // An UPDATE that moves the row to another key.
        let moved = tuple("i2", "l2", Some("LOT"), "3.00");
        let ms = update(&COLS, Some(&OldRow::Full(a2)), &moved).unwrap();
        assert_eq!(ms.len(), 2);
        apply(&mut t, &ms);
        assert_eq!(t.point("org_a", "i1", "l1", None), Lookup::Missing);
        assert_eq!(text(t.total("org_a", "i2")).as_deref(), Some("3.00"));
        assert_eq!(text(t.total("org_a", "i1")).as_deref(), Some("2"));
        // A DELETE of the item's last row: its total is NULL again.
        apply(&mut t, &[delete(&COLS, &OldRow::Full(b)).unwrap()]);
        assert_eq!(t.total("org_a", "i1"), Lookup::Missing);
        assert_eq!(
            text(t.location_sum("org_a", &["l2"])).as_deref(),
            Some("3.00")
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn ledger_driven_updates_keep_every_total_exact() {
        let mut t = Tables::default();
        let a = tuple("i1", "l1", None, "1.5");
        apply(&mut t, &[insert(&COLS, &a).unwrap()]);
        // quantity + delta never lowers the scale: the running sums stay servable.
        let a2 = tuple("i1", "l1", None, "0.25");
        apply(&mut t, &update(&COLS, Some(&OldRow::Full(a)), &a2).unwrap());
        assert_eq!(
            text(t.location_sum("org_a", &["l1"])).as_deref(),
            Some("0.25")
        );
        assert_eq!(text(t.total("org_a", "i1")).as_deref(), Some("0.25"));
    }

    #[test]
    fn a_no_op_and_toasted_update_puts_the_same_row() {
        let row = tuple("i1", "l1", Some("LOT"), "3.10");
        let mut new = row.clone();
        new[1] = Cell::Unchanged;
        let got = update(&COLS, Some(&OldRow::Full(row.clone())), &new).unwrap();
        assert_eq!(got, vec![insert(&COLS, &row).unwrap()]);
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
        let mut null_item = row.clone();
        null_item[1] = Cell::Null;
        assert_eq!(insert(&COLS, &null_item), Err(NeedsResync::Incomplete));
        let mut unchanged = row.clone();
        unchanged[2] = Cell::Unchanged;
        assert_eq!(insert(&COLS, &unchanged), Err(NeedsResync::Incomplete));
        let mut odd_time = row;
        odd_time[5] = Cell::Text("infinity".into());
        let Change::Put(r) = insert(&COLS, &odd_time).unwrap() else {
            panic!("a put")
        };
        assert_eq!(r.updated_at, timestamp::UNSERVABLE);
    }
}
