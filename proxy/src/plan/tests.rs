//! The planner's cache against computing each facet directly: same answers, shared by shape,
//! bounded, never remembering a tenant, invalidated by a catalog change.

use super::*;
use crate::balances::shape::recognise;
use crate::sql::rewrite::rewrite;

fn planner() -> Planner {
    Planner::new(4, Some("public".into()))
}

#[test]
fn templates_never_remember_the_tenant() {
    let cat = Catalog::seed_for_tests();
    let p = planner();
    for sql in [
        "SELECT id FROM items",
        "SELECT u.email FROM users u JOIN items i ON i.id = u.id",
    ] {
        let a = p.get_or_rewrite(sql, &cat).map(|t| t.render("org_a"));
        let b = p.get_or_rewrite(sql, &cat).map(|t| t.render("org_b"));
        let (a, b) = (a.expect("a"), b.expect("b"));
        assert!(a.contains("'org_a'") && !a.contains("'org_b'"), "{a}");
        assert_eq!(a.replace("org_a", "org_b"), b);
    }
    assert_eq!(
        p.get_or_rewrite("SELECT id FROM items", &cat)
            .map(|t| t.render("org_a")),
        Ok("SELECT id FROM public.items AS items WHERE items.org_id = 'org_a'".to_string())
    );
}

#[test]
fn refusals_are_kept_and_capacity_is_bounded() {
    let cat = Catalog::seed_for_tests();
    let p = planner();
    for i in 0..20 {
        let _ = p.get_or_rewrite(&format!("SELECT x{i} FROM items"), &cat);
        assert!(p.counts().entries <= 4);
    }
    for _ in 0..2 {
        let r = p.get_or_rewrite("DROP TABLE items", &cat);
        assert_eq!(r.err().map(|e| e.code), Some("42501"));
    }
}

#[test]
fn texts_differing_in_literals_share_a_shape() {
    let cat = Catalog::seed_for_tests();
    let p = planner();
    for (id, qty) in [("a", "1"), ("it''s", "22.5"), ("b", "3")] {
        let sql = format!("SELECT id FROM items WHERE id = '{id}' AND 1 < {qty}");
        let got = p.get_or_rewrite(&sql, &cat).map(|t| t.render("org_b"));
        let want = rewrite(&sql, &cat).map(|t| t.render("org_b"));
        assert_eq!(got, want);
        assert!(got.is_ok_and(|s| s.contains(&format!("id = '{id}' AND 1 < {qty}"))));
    }
    // The first text is kept by text; the others were answered by its shape.
    let c = p.counts();
    assert_eq!((c.entries, c.shape_hits, c.misses), (1, 2, 1));
    // A literal tenant value is the rewriter's to check: never shaped.
    for org in ["org_a", "org_b"] {
        let sql = format!("INSERT INTO items (org_id, id) VALUES ('{org}', 'x')");
        let t = p.get_or_rewrite(&sql, &cat).expect("rewrite");
        assert_eq!(t.render_checked("org_a").is_ok(), org == "org_a", "{sql}");
    }
}

#[test]
fn a_catalog_change_invalidates_text_and_shape() {
    let cat = Catalog::seed_for_tests();
    let empty = Catalog::new(vec![], vec![], vec![]);
    assert_ne!(empty.version(), cat.version());
    let p = planner();
    for sql in ["SELECT * FROM items", "SELECT * FROM items WHERE id = 'a'"] {
        assert!(p.get_or_rewrite(sql, &cat).is_ok());
        // A catalog in which items is unknown: the kept template must not be reused.
        let r = p.get_or_rewrite(sql, &empty);
        assert_eq!(r.err().map(|e| e.code), Some("42501"), "{sql}");
        assert!(p.get_or_rewrite(sql, &cat).is_ok());
    }
    let r = p.get_or_rewrite("SELECT * FROM items WHERE id = 'b'", &empty);
    assert_eq!(r.err().map(|e| e.code), Some("42501"));
}

#[test]
fn balance_shapes_equal_recognition() {
    let p = planner();
    let sqls = [
        "SELECT quantity FROM inventory_balances WHERE item_id = 'i1' AND location_id = 'l1' AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = 'it''s' AND location_id = 'l2' AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = 5 AND location_id = 'l2' AND lot_id IS NULL",
        "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $1 AND location_id = 'l1' AND lot_id = 'x'",
        "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $2 AND location_id = 'l1' AND lot_id = 'x'",
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = 'i9'",
        "SELECT sum(quantity) AS total FROM public.inventory_balances WHERE item_id = $1",
        "SELECT quantity FROM inventory_balances WHERE item_id = 'a' OR location_id = 'b'",
        "SELECT id FROM items WHERE id = 'a'",
    ];
    for _ in 0..2 {
        for sql in sqls {
            let plan = p.plan(sql);
            assert_eq!(
                p.balance(&plan).as_deref(),
                recognise(sql, "public").as_ref(),
                "{sql}"
            );
        }
    }
    // Without the balance cache nothing is recognised.
    let off = Planner::new(4, None);
    assert!(off.balance(&off.plan(sqls[0])).is_none());
}

#[test]
fn analyses_are_shared_by_shape_unless_a_literal_decides() {
    let p = planner();
    let a = p.plan("SELECT id FROM items WHERE id = 'a'").analysis();
    let b = p.plan("SELECT id FROM items WHERE id = 'b'").analysis();
    assert!(Arc::ptr_eq(&a.expect("a"), &b.expect("b")));
    let a = p
        .plan("SELECT id FROM items LIMIT 5")
        .analysis()
        .expect("a");
    let b = p
        .plan("SELECT id FROM items LIMIT 7")
        .analysis()
        .expect("b");
    assert!(!Arc::ptr_eq(&a, &b));
    assert_ne!(
        a.infos.iter().map(|i| i.limit).collect::<Vec<_>>(),
        b.infos.iter().map(|i| i.limit).collect::<Vec<_>>()
    );
    let r = p.plan("SELEC 1").analysis();
    assert_eq!(r.err().map(|e| e.code), Some("42601"));
}

#[test]
fn the_lexical_summary_and_ledger_reading() {
    let p = planner();
    let plan = p.plan("INSERT INTO inventory_ledger (id) VALUES ('x')");
    assert!(crate::balances::names_ledger(plan.text()) && !plan.lexical().read_only);
    let plan = p.plan("SELECT 1");
    assert!(!crate::balances::names_ledger(plan.text()) && plan.lexical().read_only);
}
