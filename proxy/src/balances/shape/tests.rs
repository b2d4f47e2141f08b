use super::*;

fn out(c: Column, n: &str) -> Out {
    Out {
        column: c,
        name: n.into(),
    }
}

fn p(n: usize) -> Val {
    Val::Param(n)
}

fn lit(s: &str) -> Val {
    Val::Literal(s.into())
}

fn is(vs: Vec<Val>) -> Option<Cond> {
    Some(Cond::Values(vs))
}

fn check(sql: &str, want: Option<Shape>) {
    assert_eq!(recognise(sql, "public"), want, "{sql}");
}

fn q() -> Vec<Out> {
    vec![out(Column::Quantity, "quantity")]
}

fn rows(cols: Vec<Out>, filter: Filter, order: Vec<Order>) -> Shape {
    Shape::Rows {
        cols: cols.into(),
        filter,
        order,
        star: false,
    }
}

#[test]
fn row_lookups() {
    let cases = vec![
        (
            "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
            rows(q(), Filter { item: is(vec![p(1)]), location: is(vec![p(2)]), lot: Some(Cond::Null), org: None }, vec![]),
        ),
        (
            "select QUANTITY from public.inventory_balances where location_id = $2 and item_id = $1 and lot_id = $3",
            rows(q(), Filter { item: is(vec![p(1)]), location: is(vec![p(2)]), lot: is(vec![p(3)]), org: None }, vec![]),
        ),
        (
            "SELECT b.quantity AS Q, b.lot_id, org_id FROM inventory_balances b WHERE b.item_id = 'i1' AND 'l1' = location_id AND lot_id IS NULL",
            rows(
                vec![out(Column::Quantity, "q"), out(Column::LotId, "lot_id"), out(Column::OrgId, "org_id")],
                Filter { item: is(vec![lit("i1")]), location: is(vec![lit("l1")]), lot: Some(Cond::Null), org: None },
                vec![],
            ),
        ),
        (
            "SELECT quantity AS \"Qty\" FROM inventory_balances AS x WHERE x.item_id = $1 AND x.location_id = $1 AND x.lot_id = $2;",
            rows(vec![out(Column::Quantity, "Qty")], Filter { item: is(vec![p(1)]), location: is(vec![p(1)]), lot: is(vec![p(2)]), org: None }, vec![]),
        ),
        // Without the lot: every lot of the key.
        (
            "SELECT quantity, lot_id FROM inventory_balances WHERE item_id = $1 AND location_id = $2",
            rows(vec![out(Column::Quantity, "quantity"), out(Column::LotId, "lot_id")], Filter { item: is(vec![p(1)]), location: is(vec![p(2)]), ..Filter::default() }, vec![]),
        ),
        // Every location and lot of an item, IN lists, = ANY, org_id, ORDER BY.
        (
            "SELECT location_id, quantity FROM inventory_balances WHERE org_id = $1 AND item_id IN ($2, 'x') AND location_id = ANY($3) ORDER BY location_id DESC, lot_id",
            rows(
                vec![out(Column::LocationId, "location_id"), out(Column::Quantity, "quantity")],
                Filter { org: is(vec![p(1)]), item: is(vec![p(2), lit("x")]), location: Some(Cond::Array(3)), lot: None },
                vec![Order { column: Column::LocationId, desc: true }, Order { column: Column::LotId, desc: false }],
            ),
        ),
        // A bare ORDER BY name is the output column's: `location_id` here is item_id.
        (
            "SELECT item_id AS location_id FROM inventory_balances WHERE item_id = $1 ORDER BY location_id",
            rows(
                vec![out(Column::ItemId, "location_id")],
                Filter { item: is(vec![p(1)]), ..Filter::default() },
                vec![Order { column: Column::ItemId, desc: false }],
            ),
        ),
    ];
    for (sql, want) in cases {
        check(sql, Some(want));
    }
}

#[test]
fn every_column_and_star() {
    let star = |extra: Vec<Out>| -> Vec<Out> {
        let mut v: Vec<Out> = STAR.iter().map(|&c| out(c, c.name())).collect();
        v.extend(extra);
        v
    };
    let filter = Filter {
        item: is(vec![p(1)]),
        location: is(vec![p(2)]),
        lot: Some(Cond::Null),
        org: None,
    };
    check(
        "SELECT quantity, updated_at AS at FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        Some(rows(vec![out(Column::Quantity, "quantity"), out(Column::UpdatedAt, "at")], filter.clone(), vec![])),
    );
    for (sql, extra) in [
        ("SELECT * FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL", vec![]),
        ("SELECT b.*, quantity FROM inventory_balances b WHERE b.item_id = $1 AND location_id = $2 AND lot_id IS NULL", vec![out(Column::Quantity, "quantity")]),
        ("select INVENTORY_BALANCES.* from inventory_balances where item_id = $1 and location_id = $2 and lot_id is null", vec![]),
    ] {
        let want = Shape::Rows { cols: star(extra).into(), filter: filter.clone(), order: vec![], star: true };
        check(sql, Some(want));
    }
}

#[test]
fn totals() {
    check(
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
        Some(Shape::Total {
            name: "sum".into(),
            filter: Filter {
                item: is(vec![p(1)]),
                ..Filter::default()
            },
        }),
    );
    check(
        "SELECT SUM(b.quantity) AS total FROM public.inventory_balances b WHERE b.item_id = 'x' AND location_id = $1",
        Some(Shape::Total {
            name: "total".into(),
            filter: Filter { item: is(vec![lit("x")]), location: is(vec![p(1)]), ..Filter::default() },
        }),
    );
    check(
        "SELECT sum(quantity) FROM inventory_balances WHERE location_id IN ($1, $2)",
        Some(Shape::Total {
            name: "sum".into(),
            filter: Filter {
                location: is(vec![p(1), p(2)]),
                ..Filter::default()
            },
        }),
    );
}

#[test]
fn everything_else_is_not_a_shape() {
    for sql in [
        "SELECT quantity FROM inventory_balances WHERE location_id = $1",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL ORDER BY 1",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 ORDER BY quantity",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 ORDER BY item_id NULLS FIRST",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 ORDER BY item_id USING <",
        "SELECT item_id AS a, location_id AS a FROM inventory_balances WHERE item_id = $1 ORDER BY a",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL LIMIT 1",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL FOR UPDATE",
        "SELECT quantity FROM inventory_balances WHERE (item_id = $1 AND location_id = $2) AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 OR location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND item_id = $2 AND location_id = $3 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $3 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id NOT IN ($1)",
        "SELECT quantity FROM inventory_balances WHERE item_id IN (SELECT id FROM items)",
        "SELECT quantity FROM inventory_balances WHERE item_id = ANY($1) AND location_id = $1",
        "SELECT quantity FROM inventory_balances WHERE item_id = ANY('{a}')",
        "SELECT quantity FROM inventory_balances WHERE item_id = ALL($1)",
        "SELECT quantity FROM inventory_balances WHERE item_id <> $1",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND quantity = $2",
        "SELECT * EXCLUDE (quantity) FROM inventory_balances WHERE item_id = $1",
        "SELECT x.* FROM inventory_balances b WHERE item_id = $1",
        "SELECT inventory_balances.* FROM inventory_balances b WHERE item_id = $1",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND updated_at = $2",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 ORDER BY updated_at",
        "SELECT DISTINCT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM other.inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM \"Inventory_balances\" WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances, items WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = 1 AND location_id = $2 AND lot_id IS NULL",
        "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL; SELECT 1",
        "SELECT sum(quantity) FROM inventory_balances WHERE location_id = $1 AND lot_id IS NULL",
        "SELECT sum(quantity) FROM inventory_balances WHERE org_id = $1",
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 ORDER BY item_id",
        "SELECT sum(quantity), item_id FROM inventory_balances WHERE item_id = $1",
        "SELECT sum(DISTINCT quantity) FROM inventory_balances WHERE item_id = $1",
        "SELECT sum(quantity) FILTER (WHERE quantity > 0) FROM inventory_balances WHERE item_id = $1",
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 GROUP BY item_id",
        "SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1 HAVING sum(quantity) > 0",
        "WITH x AS (SELECT 1) SELECT sum(quantity) FROM inventory_balances WHERE item_id = $1",
        "SELECT max(quantity) FROM inventory_balances WHERE item_id = $1",
        "UPDATE inventory_balances SET quantity = 0 WHERE item_id = $1",
        "SELECT quantity FROM inventory_balances b WHERE inventory_balances.item_id = $1 AND location_id = $2 AND lot_id IS NULL",
        "not sql at all",
    ] {
        check(sql, None);
    }
}
