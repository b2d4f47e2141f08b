//! Per-statement cost of policy plugins (criterion): statement analysis alone, then the full
//! `PolicyEngine::check` with 1 and 3 plugins, with and without the decision cache, for a
//! repeated text and for the same statement with a new literal every time. Builds
//! `plugins/` for wasm32-wasip2 first (its own target dir under target/plugins).
//! Run: `cargo bench -p orgwall-benches --bench plugins`.

#[path = "wasm.rs"]
mod wasm;

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use orgwall::config::{PluginSpec, Role};
use orgwall::plan::Planner;
use orgwall::policy::{PolicyEngine, Who};

const SQL: &str = "SELECT id, name FROM items WHERE org_id = 'org_a' AND id = 'i_a1'";

fn spec(dir: &Path, name: &str, cache: bool) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path: dir.join(format!("{name}.wasm")),
        config_json: "{}".into(),
        fuel: 5_000_000,
        init_fuel: 50_000_000,
        memory_bytes: 16 << 20,
        cache,
    }
}

fn bench(c: &mut Criterion) {
    let dir = wasm::build_plugins();
    let who = Who {
        user: "acme",
        org_id: Some("org_a"),
        role: Role::Tenant,
    };
    c.bench_function("analyze_only", |b| {
        b.iter(|| orgwall::sql::analyze::analyze(std::hint::black_box(SQL)).map(|v| v.len()))
    });
    for cache in [false, true] {
        for names in [
            &["append_only_ledger"][..],
            &["append_only_ledger", "audit_admin_only", "row_limit"][..],
        ] {
            let specs: Vec<PluginSpec> = names.iter().map(|n| spec(&dir, n, cache)).collect();
            let engine = PolicyEngine::new(&specs).expect("engine");
            let planner = Planner::new(4096, None);
            let label = format!(
                "check/{}_plugins/{}",
                names.len(),
                if cache { "cache" } else { "nocache" }
            );
            c.bench_function(&label, |b| {
                b.iter(|| {
                    let sql = std::hint::black_box(SQL);
                    engine
                        .check(&who, sql, || planner.plan(sql).analysis())
                        .is_ok()
                })
            });
            // Simple-protocol traffic: the same statement with a new literal each time (the
            // analysis and decisions are found by shape, after one tokenizer pass).
            let texts: Vec<String> = (0..4096)
                .map(|i| SQL.replace("'i_a1'", &format!("'i_{i}'")))
                .collect();
            let mut i = 0;
            c.bench_function(&format!("{label}/new_literals"), |b| {
                b.iter(|| {
                    i = (i + 1) % texts.len();
                    let sql = std::hint::black_box(&texts[i]);
                    engine
                        .check(&who, sql, || planner.plan(sql).analysis())
                        .is_ok()
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
