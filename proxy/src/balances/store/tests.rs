use super::*;

fn mv(org: &str, item: &str, loc: &str, lot: Option<&str>, q: &str) -> BalanceRow {
    BalanceRow {
        org: org.into(),
        item: item.into(),
        location: loc.into(),
        lot: lot.map(Into::into),
        quantity: q.into(),
        updated_at: 0,
    }
}

fn text(l: Lookup) -> String {
    match l {
        Lookup::Found(d) => d.to_text(),
        other => format!("{other:?}"),
    }
}

#[test]
fn balances_and_totals_follow_the_rows() {
    let s = Store::new();
    s.write(|s| {
        s.load(&mv("a", "i1", "l1", None, "10.5"));
        s.put(&mv("a", "i1", "l1", None, "10.25"));
        s.put(&mv("a", "i1", "l2", Some("lot9"), "3"));
        s.put(&mv("b", "i1", "l1", None, "7"));
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
        s.put(&mv("a", "i1", "l1", None, "NaN"));
        s.put(&mv("a", "i2", "l1", None, "1"));
    });
    s.read(|s| {
        assert_eq!(s.point("a", "i1", "l1", None), Lookup::Unservable);
        assert_eq!(s.total("a", "i1"), Lookup::Unservable);
        assert_eq!(text(s.point("a", "i2", "l1", None)), "1");
    });
}

#[test]
fn wide_values_stay_exact_and_shrink_back() {
    let big = "100000000000000000000.5";
    let s = Store::new();
    s.write(|s| {
        s.load(&mv("a", "i1", "l1", None, big));
        s.load(&mv("a", "i1", "l2", None, "1.25"));
    });
    s.read(|s| {
        assert_eq!(text(s.point("a", "i1", "l1", None)), big);
        assert_eq!(text(s.total("a", "i1")), "100000000000000000001.75");
    });
    // The balance and location l1's total (an item's sum is summed from its rows).
    assert_eq!(s.read(|t| t.wide.len()), 2);
    s.write(|s| s.put(&mv("a", "i1", "l1", None, "0.5")));
    s.read(|s| {
        assert_eq!(text(s.point("a", "i1", "l1", None)), "0.5");
        assert_eq!(text(s.total("a", "i1")), "1.75");
    });
    // Both went back to the packed form: the side map is empty again.
    assert_eq!(s.read(|t| t.wide.len()), 0);
}

#[test]
fn duplicate_load_is_unservable() {
    let s = Store::new();
    s.write(|s| {
        s.load(&mv("a", "i1", "l1", None, "1"));
        s.load(&mv("a", "i1", "l1", None, "1"));
    });
    assert_eq!(
        s.read(|s| s.point("a", "i1", "l1", None)),
        Lookup::Unservable
    );
    assert_eq!(s.read(|s| s.total("a", "i1")), Lookup::Unservable);
}

#[test]
fn snapshot_names_every_key() {
    let s = Store::new();
    s.write(|s| {
        s.put(&mv("a", "i1", "l1", Some("x"), "2.0"));
        s.put(&mv("a", "i2", "l1", None, "NaN"));
    });
    let mut snap = s.snapshot();
    snap.sort_by(|a, b| a.0.item.cmp(&b.0.item));
    assert_eq!(
        snap,
        vec![
            (mv("a", "i1", "l1", Some("x"), "2.0"), true),
            (mv("a", "i2", "l1", None, ""), false)
        ]
    );
    s.write(|s| s.clear());
    assert!(s.is_empty());
}

#[test]
fn a_slot_is_16_bytes_of_key_and_16_of_value() {
    assert_eq!(std::mem::size_of::<Key>(), 16);
    assert_eq!(std::mem::size_of::<Entry>(), 16);
}

/// Issue 5's memory target, at its scale: 1M balances (1 org, 20,000 items × 50 locations,
/// a third with lots) must cost at most 150 bytes each by the store's own estimate (checked
/// against the process RSS by `benches/balances_memory.rs`).
#[test]
fn a_million_balances_fit_in_150_bytes_each() {
    let items: Vec<String> = (0..20_000).map(|i| format!("itm_{i:07}")).collect();
    let locations: Vec<String> = (0..50).map(|l| format!("loc_{l:05}")).collect();
    let lots: Vec<String> = (0..97).map(|l| format!("LOT-{l:04}")).collect();
    let quantities = ["12", "3.5", "-0.250", "1000.25"];
    let s = Store::new();
    let mut m = mv("org_bench", "", "", None, "");
    s.write(|s| {
        for n in 0..1_000_000usize {
            m.item.clone_from(&items[n % items.len()]);
            m.location.clone_from(&locations[n / items.len()]);
            m.lot = n.is_multiple_of(3).then(|| lots[n % lots.len()].clone());
            m.quantity.clear();
            m.quantity.push_str(quantities[n % 4]);
            s.load(&m);
        }
    });
    assert_eq!(s.len(), 1_000_000);
    let per = s.bytes_per_balance();
    assert!(per <= 150, "{per} bytes per balance");
    s.read(|s| {
        assert_eq!(
            text(s.point("org_bench", "itm_0000001", "loc_00000", None)),
            "3.5"
        );
        // Item 3's 50 balances are n = 3 + 20,000 × location: all n ≡ 3 (mod 4) → 1000.25.
        assert_eq!(text(s.total("org_bench", "itm_0000003")), "50012.50");
    });
}

#[test]
fn selections_without_lot_or_location_and_their_sums() {
    let s = Store::new();
    s.write(|s| {
        s.load(&mv("a", "i1", "l1", None, "1"));
        s.load(&mv("a", "i1", "l1", Some("x"), "2.50"));
        s.load(&mv("a", "i1", "l2", Some("y"), "-1"));
        s.load(&mv("a", "i2", "l1", None, "10"));
        s.load(&mv("b", "i1", "l1", None, "100"));
    });
    let sel = |items: &'static [&'static str], locations: Option<&'static [&'static str]>, lots| {
        Selection {
            org: "a",
            items,
            locations,
            lots,
        }
    };
    s.read(|t| {
        let names = |q: Selection<'_>| -> Vec<(String, String, Option<String>, String)> {
            let mut v: Vec<_> = t
                .select(&q)
                .expect("servable")
                .iter()
                .map(|r| {
                    (
                        r.item.into(),
                        r.location.into(),
                        r.lot.map(Into::into),
                        r.quantity.to_text(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let row = |i: &str, l: &str, lot: Option<&str>, q: &str| {
            (
                i.to_string(),
                l.to_string(),
                lot.map(Into::into),
                q.to_string(),
            )
        };
        assert_eq!(
            names(sel(&["i1"], Some(&["l1"]), Lots::Any)),
            vec![
                row("i1", "l1", None, "1"),
                row("i1", "l1", Some("x"), "2.50")
            ]
        );
        assert_eq!(
            names(sel(&["i1"], None, Lots::Null)),
            vec![row("i1", "l1", None, "1")]
        );
        assert_eq!(
            names(sel(&["i1", "i2", "nope"], None, Lots::In(&["y", "nope"]))),
            vec![row("i1", "l2", Some("y"), "-1")]
        );
        assert_eq!(names(sel(&["i2"], Some(&["l2"]), Lots::Any)), vec![]);
        assert_eq!(text(t.sum(&sel(&["i1", "i2"], None, Lots::Any))), "12.50");
        assert_eq!(text(t.sum(&sel(&["i1"], Some(&["l1"]), Lots::Any))), "3.50");
        assert_eq!(t.sum(&sel(&["i9"], None, Lots::Any)), Lookup::Missing);
        assert_eq!(
            t.sum(&sel(&["i1"], Some(&["l9"]), Lots::Any)),
            Lookup::Missing
        );
        assert_eq!(text(t.location_sum("a", &["l1"])), "13.50");
        assert_eq!(text(t.location_sum("a", &["l1", "l2"])), "12.50");
        assert_eq!(text(t.location_sum("b", &["l1"])), "100");
        assert_eq!(t.location_sum("a", &["l9"]), Lookup::Missing);
    });
}
