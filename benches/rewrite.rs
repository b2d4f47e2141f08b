//! Rewrite latency (issue 3 benchmark): `orgwall::sql::rewrite::rewrite` over ORM-style
//! statements against the seed catalog, cold (parse + rewrite + print) and cached
//! (`Planner::get_or_rewrite`: a plan that holds its rewrite + `Template::render`), and with new literal values on
//! every call (the simple protocol's case: served by the plan's shape).
//!
//! Run: `cargo bench -p orgwall-benches --bench rewrite` (criterion prints the median of
//! each; the issue's targets are cold ≤ 30 µs for the 3-table join, cached ≤ 1 µs).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use orgwall::plan::Planner;
use orgwall::sql::rewrite::{rewrite, Catalog};

/// (name, SQL): what ORMs and hand-written code send.
const CORPUS: &[(&str, &str)] = &[
    ("point_lookup", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
    (
        "prisma_find_first",
        r#"SELECT "public"."users"."id", "public"."users"."email", "public"."users"."name" FROM "public"."users" WHERE "public"."users"."email" = $1 LIMIT $2 OFFSET $3"#,
    ),
    (
        "join_3_tables",
        "SELECT u.email, i.item_number, l.quantity_delta FROM inventory_ledger l JOIN items i ON i.id = l.item_id JOIN users u ON u.id = l.user_id WHERE l.created_at > $1 ORDER BY l.created_at DESC LIMIT 50",
    ),
    (
        "left_join_subquery_cte",
        "WITH open AS (SELECT id FROM count_sheets WHERE status = 'open') SELECT cl.id, cs.count_number FROM count_lines cl LEFT JOIN count_sheets cs ON cs.id = cl.count_sheet_id WHERE cl.count_sheet_id IN (SELECT id FROM open) AND EXISTS (SELECT 1 FROM items i WHERE i.id = cl.item_id)",
    ),
    (
        "insert_on_conflict",
        "INSERT INTO users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name",
    ),
    (
        "update_from",
        "UPDATE count_lines cl SET counted_quantity = $1 FROM count_sheets cs WHERE cs.id = cl.count_sheet_id AND cs.count_number = $2",
    ),
];

fn catalog() -> Catalog {
    // The seed catalog plus pgbench_accounts, so the pgbench statement is a tenant table too.
    Catalog::seed_for_tests()
}

fn bench(c: &mut Criterion) {
    let cat = catalog();
    let mut cold = c.benchmark_group("rewrite_cold");
    for (name, sql) in CORPUS {
        if rewrite(sql, &cat).is_err() {
            // e.g. pgbench_accounts is not in the seed catalog: measured below only if known.
            continue;
        }
        cold.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| rewrite(black_box(sql), &cat).expect("rewrites"))
        });
    }
    cold.finish();

    let cache = Planner::new(1024, None);
    let mut cached = c.benchmark_group("rewrite_cached");
    for (name, sql) in CORPUS {
        if cache.get_or_rewrite(sql, &cat).is_err() {
            continue;
        }
        cached.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| {
                let t = cache.get_or_rewrite(black_box(sql), &cat).expect("cached");
                black_box(t.render(black_box("org_a")))
            })
        });
    }
    cached.finish();

    // Simple-protocol traffic: the same statement with new literals every time. The exact-text
    // cache misses; the shape cache serves a template with the literals put back.
    let mut shaped = c.benchmark_group("rewrite_new_literals");
    for (name, sql) in CORPUS {
        let texts: Vec<String> = (0..4096)
            .map(|i| {
                sql.replace("$1", &format!("'v{i}'"))
                    .replace("$2", &i.to_string())
                    .replace("$3", "'x'")
            })
            .collect();
        if cache.get_or_rewrite(&texts[0], &cat).is_err() {
            continue;
        }
        let mut i = 0;
        shaped.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                let t = cache
                    .get_or_rewrite(black_box(&texts[i]), &cat)
                    .expect("rewrites");
                black_box(t.render(black_box("org_a")))
            })
        });
    }
    shaped.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
