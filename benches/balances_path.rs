//! CPU cost of the balance cache's answer path, piece by piece (issue 5: where a cached lookup
//! spends its time in the proxy): shape recognition (sqlparser, on every Query/Parse), the
//! tenant rewrite (cold: what every distinct simple-protocol text pays; cached: same text
//! again), the store lookup on 1M balances, and building RowDescription + DataRow.
//!
//! Run: `cargo bench -p orgwall-benches --bench balances_path -- --warm-up-time 1
//! --measurement-time 2` (criterion prints the median of each).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use orgwall::balances::answer::{self, ColumnMeta, Columns};
use orgwall::balances::decimal::Decimal;
use orgwall::balances::store::{BalanceRow, Store};
use orgwall::balances::{request, shape};
use orgwall::plan::Planner;
use orgwall::sql::rewrite::{rewrite, Catalog};

const LITERAL: &str = "SELECT quantity FROM inventory_balances \
                       WHERE item_id = '417' AND location_id = '42' AND lot_id IS NULL";
const PARAMS: &str = "SELECT quantity FROM inventory_balances \
                      WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";
const STAR: &str = "SELECT * FROM inventory_balances \
                    WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL";

fn store_1m() -> Store {
    let store = Store::new();
    store.write(|t| {
        let mut m = BalanceRow {
            org: "org_bench".into(),
            item: String::new(),
            location: String::new(),
            lot: None,
            quantity: "12.25".into(),
            updated_at: 849_759_677_500_000,
        };
        for n in 0..1_000_000u32 {
            m.item = (n / 100).to_string();
            m.location = (n % 100).to_string();
            t.load(&m);
        }
    });
    store
}

fn columns() -> Columns {
    let c = |attnum, type_oid, typlen| ColumnMeta {
        table_oid: 16_400,
        attnum,
        type_oid,
        typlen,
        typmod: -1,
    };
    Columns {
        org_id: c(1, 25, -1),
        item_id: c(2, 25, -1),
        location_id: c(3, 25, -1),
        lot_id: c(4, 25, -1),
        quantity: c(5, 1700, -1),
        updated_at: Some(c(6, 1184, 8)),
        bytewise: true,
        star: true,
        names: shape::STAR.iter().map(|c| c.name().to_string()).collect(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("balances_path");
    g.bench_function("recognise_literal", |b| {
        b.iter(|| shape::recognise(black_box(LITERAL), "public").expect("shape"))
    });
    g.bench_function("recognise_params", |b| {
        b.iter(|| shape::recognise(black_box(PARAMS), "public").expect("shape"))
    });
    let cat = Catalog::seed_for_tests();
    g.bench_function("rewrite_cold_literal", |b| {
        b.iter(|| rewrite(black_box(LITERAL), &cat).expect("rewrites"))
    });
    let cache = Planner::new(1024, None);
    g.bench_function("rewrite_cached_params", |b| {
        b.iter(|| {
            let t = cache
                .get_or_rewrite(black_box(PARAMS), &cat)
                .expect("cached");
            black_box(t.render(black_box("org_bench")))
        })
    });
    let store = store_1m();
    g.bench_function("store_point_1m", |b| {
        b.iter(|| store.read(|t| t.point("org_bench", black_box("417"), "42", None)))
    });
    let cols = columns();
    let params: [Option<&[u8]>; 2] = [Some(b"417"), Some(b"42")];
    for (name, sql) in [
        ("answer_binary_row", PARAMS),
        ("answer_text_star_row", STAR),
    ] {
        let shape = shape::recognise(sql, "public").expect("shape");
        let format = i16::from(sql == PARAMS);
        g.bench_function(name, |b| {
            b.iter(|| {
                let formats = answer::formats(&shape, &[format]).expect("formats");
                let r = request::resolve(&shape, black_box(&params), &[]).expect("resolved");
                let shape::Shape::Rows {
                    cols: outs, order, ..
                } = &shape
                else {
                    panic!("a row lookup")
                };
                let rows = store.read(|t| {
                    request::select(t, "org_bench", &r, order, true)
                        .expect("servable")
                        .iter()
                        .map(|row| answer::data_row(outs, "org_bench", row, &formats, true))
                        .collect::<Option<Vec<_>>>()
                        .expect("written")
                });
                black_box((answer::row_description(&shape, &cols, &formats), rows))
            })
        });
    }
    let d = Decimal::parse("1234.25").expect("decimal");
    g.bench_function("decimal_to_binary", |b| b.iter(|| black_box(d).to_binary()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
