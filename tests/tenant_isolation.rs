//! Differential tenant isolation (issue 3): what a tenant reads and changes through Orgwall must
//! equal what the same tenant reads and changes directly against PostgreSQL under row-level
//! security (a non-owner role with `FORCE`d policies `org_id = current_setting('app.org_id')`).
//!
//! - reads: a corpus of ORM-style and hand-written SELECTs, as tenant A and as tenant B, in the
//!   simple protocol, the extended protocol (unnamed statement) and named prepared statements
//!   (executed repeatedly); rows are compared byte for byte (binary values in extended mode).
//! - writes: a corpus of writes as A applied to two copies of the data — one through Orgwall,
//!   one under RLS — statement by statement; afterwards both copies must hold the same rows for
//!   every tenant, and B's rows must be byte-identical to what they were before.
//!
//! Refusals by Orgwall are printed; a refusal of something RLS answers fails the test unless it
//! is in an explicit allow-list with its reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use orgwall_e2e::clients::connect;
use orgwall_e2e::tenancy::{
    admin_direct, inline_params, org_checksums, org_rows, rls_client, run_extended, run_prepared,
    run_simple, run_write, setup_rls, tenant_db, tenant_proxy, Outcome, P, TENANT_A, TENANT_B,
    TENANT_TABLES,
};
use orgwall_e2e::{bounded, ProxyOptions};

/// One read of the corpus: a name, SQL with `$n` parameters, and their values.
struct Read {
    name: &'static str,
    sql: &'static str,
    params: &'static [P],
}

const fn r(name: &'static str, sql: &'static str, params: &'static [P]) -> Read {
    Read { name, sql, params }
}

use P::{B as Bo, I, T};

/// ORM-style (Prisma, Rails, Django, Sequelize) and hand-written reads over the seed schema.
const READS: &[Read] = &[
    // --- Prisma: quoted, schema-qualified, parameters for everything ---
    r("prisma_find_first", r#"SELECT "public"."users"."id", "public"."users"."email", "public"."users"."name", "public"."users"."role", "public"."users"."org_id" FROM "public"."users" WHERE "public"."users"."email" = $1 LIMIT $2 OFFSET $3"#, &[T("alice@shared.test"), I(1), I(0)]),
    r("prisma_find_unique_other_tenant_id", r#"SELECT "public"."users"."id", "public"."users"."name" FROM "public"."users" WHERE ("public"."users"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3"#, &[T("u_b1"), I(1), I(0)]),
    r("prisma_find_many_and", r#"SELECT "public"."items"."id", "public"."items"."item_number", "public"."items"."description", "public"."items"."active" FROM "public"."items" WHERE ("public"."items"."item_number" = $1 AND "public"."items"."active" = $2) ORDER BY "public"."items"."id" ASC OFFSET $3"#, &[T("W-100"), Bo(true), I(0)]),
    r("prisma_relation_in", r#"SELECT "public"."inventory_ledger"."id", "public"."inventory_ledger"."item_id", "public"."inventory_ledger"."quantity_delta" FROM "public"."inventory_ledger" WHERE "public"."inventory_ledger"."item_id" IN ($1,$2,$3) OFFSET $4"#, &[T("i_a1"), T("i_b1"), T("i_b2"), I(0)]),
    r("prisma_count", r#"SELECT COUNT(*) AS "_count._all" FROM (SELECT "public"."users"."id" FROM "public"."users" WHERE 1=1 OFFSET $1) AS "sub""#, &[I(0)]),
    r("prisma_aggregate", r#"SELECT SUM("sub"."quantity") AS "_sum.quantity", COUNT("sub"."item_id") AS "_count.item_id" FROM (SELECT "public"."inventory_balances"."quantity", "public"."inventory_balances"."item_id" FROM "public"."inventory_balances" WHERE "public"."inventory_balances"."location_id" = $1 OFFSET $2) AS "sub""#, &[T("l_a1"), I(0)]),
    r("prisma_group_by", r#"SELECT "public"."items"."unit_of_measure", COUNT("public"."items"."id") AS "_count.id" FROM "public"."items" WHERE 1=1 GROUP BY "public"."items"."unit_of_measure" OFFSET $1"#, &[I(0)]),
    r("prisma_nested_select", r#"SELECT "public"."count_sheets"."id", "public"."count_sheets"."count_number", "public"."count_sheets"."location_id" FROM "public"."count_sheets" WHERE "public"."count_sheets"."id" IN (SELECT "t1"."count_sheet_id" FROM "public"."count_lines" AS "t1" WHERE ("t1"."item_id" = $1 AND "t1"."count_sheet_id" IS NOT NULL)) OFFSET $2"#, &[T("i_a2"), I(0)]),
    r("prisma_json_filter", r#"SELECT "public"."audit_logs"."id", "public"."audit_logs"."payload" FROM "public"."audit_logs" WHERE "public"."audit_logs"."payload" @> $1::jsonb OFFSET $2"#, &[T(r#"{"item_number": "W-100"}"#), I(0)]),
    // --- Rails / Sequelize / Django ---
    r("rails_find_by", r#"SELECT "items".* FROM "items" WHERE "items"."item_number" = $1 LIMIT $2"#, &[T("W-200"), I(1)]),
    r("rails_inner_join", r#"SELECT "inventory_ledger".* FROM "inventory_ledger" INNER JOIN "items" ON "items"."id" = "inventory_ledger"."item_id" WHERE "items"."item_number" = $1"#, &[T("W-100")]),
    r("rails_includes_left_outer", r#"SELECT "users"."id" AS t0_r0, "users"."email" AS t0_r1, "inventory_ledger"."id" AS t1_r0, "inventory_ledger"."quantity_delta" AS t1_r1 FROM "users" LEFT OUTER JOIN "inventory_ledger" ON "inventory_ledger"."user_id" = "users"."id""#, &[]),
    r("sequelize_alias", r#"SELECT "User"."id", "User"."email" FROM "users" AS "User" WHERE "User"."email" LIKE $1 ORDER BY "User"."id""#, &[T("%shared%")]),
    r("django_inner_join", r#"SELECT "count_lines"."id", "count_lines"."count_sheet_id", "count_sheets"."count_number" FROM "count_lines" INNER JOIN "count_sheets" ON ("count_lines"."count_sheet_id" = "count_sheets"."id")"#, &[]),
    r("django_exists", r#"SELECT (1) AS "a" FROM "feature_flags" WHERE "feature_flags"."key" = $1 LIMIT 1"#, &[T("beta")]),
    r("django_select_related_left", r#"SELECT "count_sheets"."id", "count_sheets"."count_number", "locations"."id", "locations"."name", "users"."email" FROM "count_sheets" LEFT OUTER JOIN "locations" ON ("count_sheets"."location_id" = "locations"."id") LEFT OUTER JOIN "users" ON ("count_sheets"."created_by" = "users"."id")"#, &[]),
    // --- joins of every kind ---
    r("left_join_right_side_tenant", "SELECT cl.id, cs.count_number FROM count_lines cl LEFT JOIN count_sheets cs ON cs.id = cl.count_sheet_id", &[]),
    r("right_join", "SELECT cs.id, cl.id FROM count_lines cl RIGHT JOIN count_sheets cs ON cs.id = cl.count_sheet_id", &[]),
    r("full_join", "SELECT l.id, i.id FROM inventory_ledger l FULL JOIN items i ON i.id = l.item_id", &[]),
    r("left_join_extra_on_condition", "SELECT u.id, l.id FROM users u LEFT JOIN inventory_ledger l ON l.user_id = u.id AND l.quantity_delta > 0", &[]),
    r("left_join_where_is_null", "SELECT l.id FROM inventory_ledger l LEFT JOIN items i ON i.id = l.item_id WHERE i.id IS NULL", &[]),
    r("cross_join_count", "SELECT count(*) FROM items CROSS JOIN locations", &[]),
    r("comma_join", "SELECT i.item_number, l.name FROM items i, locations l WHERE l.name = 'A-01'", &[]),
    r("self_join_same_email", "SELECT a.id, b.id FROM users a JOIN users b ON a.email = b.email AND a.id <> b.id", &[]),
    r("three_table_join", "SELECT u.email, i.item_number, l.quantity_delta FROM inventory_ledger l JOIN items i ON i.id = l.item_id JOIN users u ON u.id = l.user_id", &[]),
    r("four_table_left_chain", "SELECT cl.id, cs.count_number, loc.name, i.item_number FROM count_lines cl LEFT JOIN count_sheets cs ON cs.id = cl.count_sheet_id LEFT JOIN locations loc ON loc.id = cs.location_id LEFT JOIN items i ON i.id = cl.item_id", &[]),
    r("join_using", "SELECT item_id, b.quantity, l.quantity_delta FROM inventory_balances b JOIN inventory_ledger l USING (item_id, location_id)", &[]),
    r("natural_join_like", "SELECT count(*) FROM items i JOIN inventory_balances b ON b.item_id = i.id AND b.org_id = i.org_id", &[]),
    r("lateral_cross", "SELECT i.id, x.total FROM items i CROSS JOIN LATERAL (SELECT sum(quantity_delta) AS total FROM inventory_ledger l WHERE l.item_id = i.id) x", &[]),
    r("lateral_left_on_true", "SELECT i.id, b.location_id, b.quantity FROM items i LEFT JOIN LATERAL (SELECT * FROM inventory_balances b WHERE b.item_id = i.id ORDER BY quantity DESC LIMIT 1) b ON true", &[]),
    r("join_on_subquery", "SELECT i.id, l.id FROM items i JOIN locations l ON l.id IN (SELECT location_id FROM inventory_ledger WHERE item_id = i.id)", &[]),
    r("values_left_join", "SELECT v.x, i.id FROM (VALUES ('W-100'), ('W-400')) v(x) LEFT JOIN items i ON i.item_number = v.x", &[]),
    // --- subqueries in every clause ---
    r("scalar_subquery_select", "SELECT i.id, (SELECT count(*) FROM inventory_ledger l WHERE l.item_id = i.id) FROM items i", &[]),
    r("in_subquery", "SELECT id FROM users WHERE id IN (SELECT user_id FROM inventory_ledger)", &[]),
    r("not_in_subquery", "SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM inventory_ledger)", &[]),
    r("exists", "SELECT id FROM items i WHERE EXISTS (SELECT 1 FROM count_lines c WHERE c.item_id = i.id)", &[]),
    r("not_exists", "SELECT id FROM items i WHERE NOT EXISTS (SELECT 1 FROM inventory_balances b WHERE b.item_id = i.id)", &[]),
    r("having_subquery", "SELECT item_id, sum(quantity_delta) FROM inventory_ledger GROUP BY item_id HAVING sum(quantity_delta) > (SELECT min(quantity_delta) FROM inventory_ledger)", &[]),
    r("order_by_subquery", "SELECT id FROM users ORDER BY (SELECT count(*) FROM inventory_ledger l WHERE l.user_id = users.id), id", &[]),
    r("derived_table", "SELECT t.item_number, t.n FROM (SELECT item_number, count(*) n FROM items GROUP BY item_number) t", &[]),
    r("nested_derived", "SELECT * FROM (SELECT * FROM (SELECT id, email FROM users) a WHERE a.email LIKE '%shared%') b", &[]),
    r("scalar_subquery_other_item", "SELECT id FROM items WHERE item_number = (SELECT item_number FROM items WHERE id = 'i_b4')", &[]),
    r("any_array_subquery", "SELECT id FROM users WHERE id = ANY(ARRAY(SELECT user_id FROM inventory_ledger))", &[]),
    r("case_exists", "SELECT u.id, CASE WHEN EXISTS (SELECT 1 FROM count_lines c WHERE c.counted_by = u.id) THEN 'counter' ELSE 'other' END FROM users u", &[]),
    r("in_subquery_other_tenant_literal", "SELECT id FROM users u WHERE u.email IN (SELECT email FROM users WHERE org_id = 'org_b')", &[]),
    r("created_by_in_users", "SELECT id FROM count_sheets cs WHERE cs.created_by IN (SELECT id FROM users)", &[]),
    r("two_in_subqueries", "SELECT count(*) FROM inventory_ledger l WHERE l.item_id IN (SELECT id FROM items WHERE item_number = 'W-100') AND l.location_id IN (SELECT id FROM locations WHERE name = 'A-01')", &[]),
    r("values_with_subquery", "SELECT * FROM (VALUES ((SELECT count(*) FROM users)), ((SELECT count(*) FROM items))) v(n)", &[]),
    r("subquery_limit_in_from", "SELECT * FROM (SELECT id FROM items ORDER BY item_number DESC LIMIT 2) t", &[]),
    r("organizations_scalar_other", "SELECT (SELECT name FROM organizations WHERE id = 'org_b') AS other", &[]),
    // --- CTEs ---
    r("cte_simple", "WITH a AS (SELECT id, email FROM users) SELECT * FROM a", &[]),
    r("cte_shadows_table", "WITH users AS (SELECT * FROM users WHERE role = 'admin') SELECT id, email FROM users", &[]),
    r("cte_chain", "WITH i AS (SELECT id FROM items WHERE active), l AS (SELECT * FROM inventory_ledger WHERE item_id IN (SELECT id FROM i)) SELECT id, quantity_delta FROM l", &[]),
    // The flat form (inner joins only): grouping by a primary key, shadowed aliases,
    // schema-qualified column references.
    r("group_by_primary_key", "SELECT i.id, i.item_number, count(l.id) FROM items i JOIN inventory_ledger l ON l.item_id = i.id GROUP BY i.id", &[]),
    r("shadowed_alias_in_exists", "SELECT i.id FROM items i WHERE EXISTS (SELECT 1 FROM items i WHERE i.item_number = 'W-100')", &[]),
    r("schema_qualified_columns", "SELECT public.items.id FROM public.items WHERE public.items.item_number <> 'W-400' ORDER BY public.items.id", &[]),
    r("cte_recursive_constant", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT r.n, i.id FROM r CROSS JOIN items i", &[]),
    r("cte_recursive_tenant", "WITH RECURSIVE x AS (SELECT id, 1 AS d FROM items WHERE item_number = 'W-100' UNION ALL SELECT i.id, x.d + 1 FROM x JOIN items i ON i.item_number = 'W-200' WHERE x.d < 2) SELECT * FROM x", &[]),
    r("cte_materialized_param", "WITH b AS MATERIALIZED (SELECT * FROM inventory_balances WHERE quantity > $1) SELECT item_id, location_id, quantity FROM b", &[I(0)]),
    // --- set operations ---
    r("union", "SELECT email FROM users UNION SELECT actor FROM audit_logs", &[]),
    r("union_all_other_tenant_literal", "SELECT id FROM items WHERE org_id = 'org_a' UNION ALL SELECT id FROM items WHERE org_id = 'org_b'", &[]),
    r("intersect", "SELECT item_number FROM items INTERSECT SELECT item_number FROM items WHERE org_id = 'org_b'", &[]),
    r("except", "SELECT item_number FROM items EXCEPT SELECT 'W-100'", &[]),
    r("union_parenthesized_limits", "(SELECT id FROM users ORDER BY id LIMIT 1) UNION ALL (SELECT id FROM items ORDER BY id LIMIT 1)", &[]),
    // --- aggregates, windows, ordering ---
    r("group_by_org", "SELECT org_id, count(*), sum(quantity_delta), avg(quantity_delta) FROM inventory_ledger GROUP BY org_id", &[]),
    r("string_agg", "SELECT string_agg(email, ',' ORDER BY email), count(DISTINCT email) FROM users", &[]),
    r("window", "SELECT id, row_number() OVER (ORDER BY id), sum(quantity_delta) OVER (PARTITION BY item_id) FROM inventory_ledger", &[]),
    r("order_limit_offset", "SELECT id FROM users ORDER BY email DESC, id LIMIT 2 OFFSET 1", &[]),
    r("fetch_first", "SELECT id FROM users ORDER BY id FETCH FIRST 2 ROWS ONLY", &[]),
    r("distinct_on", "SELECT DISTINCT ON (item_id) item_id, id FROM inventory_ledger ORDER BY item_id, id", &[]),
    r("rollup", "SELECT site, name, count(*) FROM locations GROUP BY ROLLUP (site, name)", &[]),
    r("count_filter", "SELECT count(*) FILTER (WHERE active), count(*) FROM items", &[]),
    r("group_having_join", "SELECT i.item_number, count(*) FROM items i JOIN inventory_ledger l ON l.item_id = i.id GROUP BY i.item_number HAVING count(*) >= 1", &[]),
    // --- tenant-column predicates and other tables ---
    r("org_id_param_other", "SELECT * FROM users WHERE org_id = $1", &[T("org_b")]),
    r("org_id_not_equal", "SELECT id FROM users WHERE org_id <> 'org_a'", &[]),
    r("org_id_is_null_or_true", "SELECT count(*) FROM users WHERE org_id IS NULL OR 1=1", &[]),
    r("by_other_tenant_id", "SELECT * FROM items WHERE id = 'i_b1'", &[]),
    r("organizations_all", "SELECT * FROM organizations", &[]),
    r("organizations_left_join_users", "SELECT o.name, count(u.id) FROM organizations o LEFT JOIN users u ON u.org_id = o.id GROUP BY o.name", &[]),
    r("balance_point_lookup", "SELECT quantity FROM inventory_balances WHERE item_id = $1 AND location_id = $2 AND lot_id IS NULL", &[T("i_b1"), T("l_b1")]),
    r("balance_totals", "SELECT item_id, sum(quantity) FROM inventory_balances GROUP BY item_id", &[]),
    r("jsonb_arrow", "SELECT id, payload ->> 'item_number' FROM audit_logs WHERE payload ->> 'item_number' IS NOT NULL", &[]),
    r("feature_flag_by_key", "SELECT * FROM feature_flags WHERE key = $1", &[T("beta")]),
    r("alias_named_like_other_table", "SELECT users.id FROM items AS users", &[]),
    r("qualified_column_refs", "SELECT public.items.id, items.item_number FROM public.items", &[]),
    r("upper_case_unquoted", "SELECT ID, EMAIL FROM USERS WHERE EMAIL = 'alice@shared.test'", &[]),
    r("for_update", "SELECT id FROM items WHERE item_number = 'W-100' FOR UPDATE", &[]),
    r("select_star_every_column", "SELECT * FROM count_lines", &[]),
    // --- system columns (a derived-table wrapper hides them; they must not bind outward) ---
    r("system_columns", "SELECT ctid, id FROM users", &[]),
    r("correlated_ctid_in", "SELECT id FROM users u WHERE ctid IN (SELECT ctid FROM users WHERE email LIKE 'alice%')", &[]),
    r("tableoid_count", "SELECT count(DISTINCT tableoid) FROM items", &[]),
];

/// Reads Orgwall may refuse although RLS answers them, with the reason it is acceptable.
/// Keep this short: every entry is a query a real application could send.
const EXPECTED_READ_REFUSALS: &[(&str, &str)] = &[
    (
        "system_columns",
        "system columns are refused (0A000): a confined table is a subquery without them",
    ),
    (
        "correlated_ctid_in",
        "system columns are refused (0A000): an inner ctid would bind to the outer table",
    ),
    (
        "tableoid_count",
        "system columns are refused (0A000): a confined table is a subquery without them",
    ),
];

#[derive(Default)]
struct Report {
    refused_expected: Vec<String>,
    refused_unexpected: Vec<String>,
    mismatches: Vec<String>,
    both_error: Vec<String>,
    compared: usize,
    /// Queries whose unconfined result (superuser, no RLS) differs from the tenant's: the
    /// ones that would catch a proxy that forgot to rewrite.
    discriminating: usize,
}

fn compare(report: &mut Report, what: &str, name: &str, proxy: Outcome, rls: Outcome) {
    report.compared += 1;
    match (&proxy, &rls) {
        (Outcome::Error { .. }, Outcome::Error { .. }) => {
            report
                .both_error
                .push(format!("{what}: proxy {proxy} / RLS {rls}"));
        }
        (Outcome::Error { .. }, _) => {
            let line = format!("{what}: Orgwall {proxy}; RLS answered {rls}");
            match EXPECTED_READ_REFUSALS.iter().find(|(n, _)| *n == name) {
                Some((_, why)) => report
                    .refused_expected
                    .push(format!("{line} (allowed: {why})")),
                None => report.refused_unexpected.push(line),
            }
        }
        _ if proxy != rls => report
            .mismatches
            .push(format!("{what}\n    Orgwall: {proxy}\n    RLS:     {rls}")),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_row_level_security_in_every_protocol() {
    reads_match_row_level_security(true).await;
}

/// The same corpus with Orgwall's rewrite off: PostgreSQL's own row-level security on the
/// signed tenant context (the second wall) gives the reference's rows by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_row_level_security_with_the_second_wall_alone() {
    reads_match_row_level_security(false).await;
}

async fn reads_match_row_level_security(first_wall: bool) {
    bounded(600, async {
        let db = tenant_db(&format!("tenant_reads_{first_wall}")).await;
        let role = setup_rls(&db).await;
        let opts = ProxyOptions {
            first_wall,
            ..ProxyOptions::default()
        };
        let proxy = tenant_proxy(&db, opts).await;
        let mut report = Report::default();
        let unconfined = admin_direct(&db).await;
        for login in [TENANT_A, TENANT_B] {
            let via_proxy = connect(&proxy.conn_str(login)).await;
            let rls = rls_client(&db, &role, login.org_id).await;
            for q in READS {
                let inlined = inline_params(q.sql, q.params);
                let tag = |mode: &str| format!("[{} {mode}] {}: {}", login.org_id, q.name, q.sql);
                let (p, d) = (
                    run_simple(&via_proxy, &inlined).await,
                    run_simple(&rls, &inlined).await,
                );
                if run_simple(&unconfined, &inlined).await != d {
                    report.discriminating += 1;
                }
                compare(&mut report, &tag("simple"), q.name, p, d);
                let (p, d) = (
                    run_extended(&via_proxy, q.sql, q.params).await,
                    run_extended(&rls, q.sql, q.params).await,
                );
                compare(&mut report, &tag("extended"), q.name, p, d);
                let (p, d) = (
                    run_prepared(&via_proxy, q.sql, q.params, 3).await,
                    run_prepared(&rls, q.sql, q.params, 3).await,
                );
                compare(&mut report, &tag("prepared"), q.name, p, d);
                // Whatever happened, the connection must still be usable.
                via_proxy
                    .simple_query("SELECT 1")
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{}: connection unusable afterwards: {e}", tag("*"))
                    });
            }
        }
        let mut out = format!(
            "differential reads: {} queries x 3 protocols x 2 tenants = {} comparisons; \
             {} of {} (query, tenant) pairs would differ without confinement\n",
            READS.len(),
            report.compared,
            report.discriminating,
            READS.len() * 2
        );
        let mut section = |title: &str, v: &[String]| {
            let _ = writeln!(out, "--- {title}: {}", v.len());
            for l in v {
                let _ = writeln!(out, "  {l}");
            }
        };
        section("ROW MISMATCHES (Orgwall vs RLS)", &report.mismatches);
        section(
            "UNEXPECTED REFUSALS (RLS answered)",
            &report.refused_unexpected,
        );
        section("expected refusals (allow-listed)", &report.refused_expected);
        section("errors on both sides", &report.both_error);
        println!("{out}");
        assert!(
            report.mismatches.is_empty() && report.refused_unexpected.is_empty(),
            "Orgwall disagrees with row-level security:\n{out}"
        );
        // Guard against a vacuous corpus: most queries must see tenant-specific data.
        assert!(
            report.discriminating * 3 >= READS.len() * 2 * 2,
            "the corpus barely depends on the tenant:\n{out}"
        );
    })
    .await;
}

/// One write of the corpus, run as tenant A on both copies. `rls_sql` replaces `sql` on the
/// RLS copy when plain PostgreSQL needs the statement spelled the way Orgwall rewrites it.
struct Write {
    name: &'static str,
    sql: &'static str,
    params: &'static [P],
    rls_sql: Option<&'static str>,
    /// Send with the simple protocol (multi-statement strings).
    simple: bool,
}

const fn w(name: &'static str, sql: &'static str, params: &'static [P]) -> Write {
    Write {
        name,
        sql,
        params,
        rls_sql: None,
        simple: false,
    }
}

const WRITES: &[Write] = &[
    w("insert_without_org_id", "INSERT INTO users (id, email, name) VALUES ('u_a10', 'new@shared.test', 'New')", &[]),
    w("insert_org_id_literal_own", "INSERT INTO users (id, org_id, email) VALUES ('u_a11', 'org_a', 'carol@b.test')", &[]),
    w("insert_org_id_literal_other", "INSERT INTO users (id, org_id, email) VALUES ('u_x1', 'org_b', 'evil@b.test')", &[]),
    w("insert_org_id_param_other", "INSERT INTO users (id, org_id, email) VALUES ($1, $2, $3)", &[T("u_x2"), T("org_b"), T("evil2@b.test")]),
    w("insert_org_id_param_own", "INSERT INTO users (id, org_id, email) VALUES ($1, $2, $3)", &[T("u_a12"), T("org_a"), T("p@a.test")]),
    w("insert_multi_row_mixed_tenants", "INSERT INTO items (id, org_id, item_number) VALUES ('i_a20', 'org_a', 'W-900'), ('i_x20', 'org_b', 'W-900')", &[]),
    w("insert_quoted_org_id_other", r#"INSERT INTO users ("id", "org_id", "email") VALUES ('u_x3', 'org_b', 'q@b.test')"#, &[]),
    w("insert_org_id_expression_other", "INSERT INTO users (id, org_id, email) VALUES ('u_x4', (SELECT 'org_b'), 'z@b.test')", &[]),
    w("insert_default_values", "INSERT INTO audit_logs DEFAULT VALUES", &[]),
    w("insert_select_copy", "INSERT INTO items (id, item_number, description) SELECT 'copy_' || id, item_number || '-C', description FROM items WHERE active", &[]),
    w("insert_select_org_other_literal", "INSERT INTO locations (id, org_id, site, name) SELECT 'x_' || id, 'org_b', 'X', name FROM locations", &[]),
    w("insert_select_reads_other_by_id", "INSERT INTO audit_logs (id, action, entity_id, payload) SELECT 'aud_copy_' || id, 'copy', id, payload FROM audit_logs", &[]),
    Write {
        name: "upsert_on_conflict_email",
        sql: "INSERT INTO users (id, email, name) VALUES ('u_a13', 'alice@shared.test', 'Alice Upserted') ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name",
        params: &[],
        rls_sql: Some("INSERT INTO users (id, email, name) VALUES ('u_a13', 'alice@shared.test', 'Alice Upserted') ON CONFLICT (org_id, email) DO UPDATE SET name = EXCLUDED.name"),
        simple: false,
    },
    Write {
        name: "upsert_on_conflict_email_param",
        sql: "INSERT INTO users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
        params: &[T("u_a14"), T("bob@shared.test"), T("Bob Upserted")],
        rls_sql: Some("INSERT INTO users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (org_id, email) DO UPDATE SET name = EXCLUDED.name, updated_at = now()"),
        simple: false,
    },
    w("upsert_do_nothing", "INSERT INTO users (id, email) VALUES ('u_a15', 'carol@b.test') ON CONFLICT DO NOTHING", &[]),
    w("upsert_on_id_of_other_tenant", "INSERT INTO users (id, email, name) VALUES ('u_b1', 'zzz@a.test', 'hijack') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name", &[]),
    w("update_simple", "UPDATE items SET description = 'Anvil v2' WHERE item_number = 'W-100'", &[]),
    w("update_other_tenant_by_org", "UPDATE users SET name = 'x' WHERE org_id = 'org_b'", &[]),
    w("update_other_tenant_by_id", "UPDATE items SET active = false WHERE id = 'i_b1'", &[]),
    w("update_from_join", "UPDATE count_lines cl SET counted_quantity = cl.expected_quantity FROM count_sheets cs WHERE cs.id = cl.count_sheet_id AND cs.status = 'open'", &[]),
    w("update_in_subquery", "UPDATE items SET description = 'has stock' WHERE id IN (SELECT item_id FROM inventory_balances WHERE quantity > 0)", &[]),
    w("update_from_other_tenant_row", "UPDATE items i SET description = u.name FROM users u WHERE u.id = 'u_b1' AND i.id = 'i_a1'", &[]),
    w("update_scalar_subquery_other", "UPDATE items SET description = (SELECT name FROM users WHERE id = 'u_b1') WHERE id = 'i_a2'", &[]),
    w("update_set_org_id_other", "UPDATE users SET org_id = 'org_b' WHERE id = 'u_a3'", &[]),
    // The "filter only on the inner subquery of UPDATE … LIMIT" class, by key (the ctid form is
    // refused outright, see tenant_attacks).
    w("update_limit_via_subquery", "UPDATE users SET name = 'first' WHERE id IN (SELECT id FROM users WHERE name IS NULL ORDER BY id LIMIT 1)", &[]),
    w("update_returning", "UPDATE users SET role = 'owner' WHERE email = 'bob@shared.test' RETURNING id, email", &[]),
    w("update_unique_violation", "UPDATE users SET email = 'alice@shared.test' WHERE id = 'u_a2'", &[]),
    w("update_params", "UPDATE users SET name = $1 WHERE email = $2", &[T("Bob P"), T("bob@shared.test")]),
    w("update_balances", "UPDATE inventory_balances SET quantity = 0 WHERE item_id = 'i_a1'", &[]),
    w("update_organizations_own", "UPDATE organizations SET name = 'Alpha 2' WHERE id = 'org_a'", &[]),
    w("update_organizations_all", "UPDATE organizations SET name = 'pwned'", &[]),
    w("insert_organization", "INSERT INTO organizations (id, name) VALUES ('org_c', 'C')", &[]),
    w("delete_organization_other", "DELETE FROM organizations WHERE id = 'org_b'", &[]),
    w("ledger_insert_trigger", "INSERT INTO inventory_ledger (id, item_id, location_id, quantity_delta) VALUES ('led_a10', 'i_a1', 'l_a1', 5)", &[]),
    w("ledger_insert_other_tenant_refs", "INSERT INTO inventory_ledger (id, item_id, location_id, lot_id, quantity_delta) VALUES ('led_a11', 'i_b2', 'l_b1', 'LOT-7', 1)", &[]),
    w("delete_using", "DELETE FROM count_lines cl USING count_sheets cs WHERE cs.id = cl.count_sheet_id AND cs.count_number = 'CNT-0001'", &[]),
    w("delete_in_self_fk_violation", "DELETE FROM items WHERE id IN (SELECT id FROM items)", &[]),
    w("delete_unreferenced", "DELETE FROM items WHERE id NOT IN (SELECT item_id FROM inventory_ledger) AND id NOT IN (SELECT item_id FROM count_lines) AND id NOT IN (SELECT item_id FROM inventory_balances)", &[]),
    w("delete_other_by_org", "DELETE FROM users WHERE org_id = 'org_b'", &[]),
    w("delete_with_cte", "WITH b AS (SELECT id FROM users WHERE email = 'carol@b.test') DELETE FROM users WHERE id IN (SELECT id FROM b)", &[]),
    w("delete_returning", "DELETE FROM feature_flags WHERE key = 'cycle_counts' RETURNING id", &[]),
    w("writable_cte", "WITH moved AS (UPDATE items SET active = true WHERE active = false RETURNING id) SELECT count(*) FROM moved", &[]),
    w("merge", "MERGE INTO feature_flags f USING (VALUES ('cycle_counts', false), ('beta', true)) v(k, e) ON f.key = v.k WHEN MATCHED THEN UPDATE SET enabled = v.e WHEN NOT MATCHED THEN INSERT (id, key, enabled) VALUES ('ff_a_' || v.k, v.k, v.e)", &[]),
    Write {
        name: "multi_statement_simple",
        sql: "UPDATE items SET active = true WHERE id = 'copy_i_a1'; DELETE FROM audit_logs WHERE id = 'aud_b1'; UPDATE users SET name = 'multi' WHERE id = 'u_b2'",
        params: &[],
        rls_sql: None,
        simple: true,
    },
];

/// Writes where Orgwall and RLS may end differently, with the reason. The final checksums
/// must still agree.
const EXPECTED_WRITE_DIVERGENCES: &[(&str, &str)] = &[
    (
        "insert_org_id_expression_other",
        "RLS refuses the row; Orgwall may refuse a non-literal tenant value at rewrite",
    ),
    (
        "writable_cte",
        "DESIGN §4: writable CTEs may be rejected (not passed unexamined)",
    ),
    (
        "merge",
        "DESIGN §4: MERGE may be rejected (not passed unexamined)",
    ),
    (
        "delete_organization_other",
        "Orgwall refuses DELETE on organizations for tenants: stricter than RLS, changes nothing",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_match_row_level_security_and_leave_other_tenant_byte_identical() {
    bounded(600, async {
        let db = tenant_db("tenant_writes_proxy").await;
        let reference = tenant_db("tenant_writes_rls").await;
        let role = setup_rls(&reference).await;
        let proxy = tenant_proxy(&db, ProxyOptions::default()).await;
        let admin = admin_direct(&db).await;
        let ref_admin = admin_direct(&reference).await;
        let b_before = org_checksums(&admin, "org_b", false).await;

        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let rls = rls_client(&reference, &role, "org_a").await;
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for wr in WRITES {
            let rls_sql = wr.rls_sql.unwrap_or(wr.sql);
            let (p, d) = if wr.simple {
                (run_simple(&a, wr.sql).await, run_simple(&rls, rls_sql).await)
            } else {
                (
                    run_write(&a, wr.sql, wr.params).await,
                    run_write(&rls, rls_sql, wr.params).await,
                )
            };
            let line = format!("{}: Orgwall {p} | RLS {d}", wr.name);
            let agree = match (&p, &d) {
                (Outcome::Error { .. }, Outcome::Error { .. }) => true,
                // RLS raises when an upsert's conflicting row is another tenant's; Orgwall's
                // confined DO UPDATE matches no row. Neither changes anything.
                (Outcome::Count(0), Outcome::Error { code, .. }) if code == "42501" => true,
                _ => p == d,
            };
            if !agree {
                match EXPECTED_WRITE_DIVERGENCES.iter().find(|(n, _)| *n == wr.name) {
                    Some((_, why)) => lines.push(format!("{line}  [allowed divergence: {why}]")),
                    None => failures.push(line.clone()),
                }
            } else {
                lines.push(line);
            }
            a.simple_query("SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("{}: connection unusable afterwards: {e}", wr.name));
        }

        // A named prepared INSERT whose tenant value is a parameter: checked at every Bind.
        let sql = "INSERT INTO feature_flags (id, org_id, key) VALUES ($1, $2, $3)";
        let ps = a.prepare(sql).await;
        let rs = rls.prepare(sql).await.expect("prepare on RLS");
        for (id, org, key) in [("ff_a10", "org_a", "k1"), ("ff_x11", "org_b", "k2"), ("ff_a12", "org_a", "k3")] {
            let p = match &ps {
                Ok(s) => match a.execute(s, &[&id, &org, &key]).await {
                    Ok(n) => Outcome::Count(n),
                    Err(e) => Outcome::from_error(&e),
                },
                Err(e) => Outcome::from_error(e),
            };
            let d = match rls.execute(&rs, &[&id, &org, &key]).await {
                Ok(n) => Outcome::Count(n),
                Err(e) => Outcome::from_error(&e),
            };
            let line = format!("prepared insert org_id={org}: Orgwall {p} | RLS {d}");
            let agree = matches!((&p, &d), (Outcome::Error { .. }, Outcome::Error { .. })) || p == d;
            if agree {
                lines.push(line)
            } else {
                failures.push(line)
            }
        }

        let mut out = String::from("write corpus, as tenant A (Orgwall vs RLS copy):\n");
        for l in &lines {
            let _ = writeln!(out, "  {l}");
        }
        let _ = writeln!(out, "--- DIVERGENT OUTCOMES: {}", failures.len());
        for l in &failures {
            let _ = writeln!(out, "  {l}");
        }

        // Afterwards: B byte-identical; both copies hold the same rows for every tenant.
        let b_after = org_checksums(&admin, "org_b", false).await;
        let mut state_failures = Vec::new();
        for t in TENANT_TABLES {
            if b_before[t] != b_after[t] {
                state_failures.push(format!(
                    "org_b rows of {t} changed: {:?}",
                    org_rows(&admin, t, "org_b").await
                ));
            }
        }
        for org in ["org_a", "org_b", "org_default", "org_c"] {
            let mine: BTreeMap<_, _> = org_checksums(&admin, org, true).await;
            let theirs = org_checksums(&ref_admin, org, true).await;
            for t in TENANT_TABLES {
                if mine[t] != theirs[t] {
                    state_failures.push(format!(
                        "{org} rows of {t} differ from the RLS copy:\n    Orgwall: {:?}\n    RLS:     {:?}",
                        org_rows(&admin, t, org).await,
                        org_rows(&ref_admin, t, org).await
                    ));
                }
            }
        }
        let _ = writeln!(out, "--- FINAL STATE DIFFERENCES: {}", state_failures.len());
        for l in &state_failures {
            let _ = writeln!(out, "  {l}");
        }
        println!("{out}");
        assert!(
            failures.is_empty() && state_failures.is_empty(),
            "writes through Orgwall disagree with row-level security:\n{out}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_are_not_shared_across_tenants() {
    bounded(300, async {
        let db = tenant_db("tenant_stmt_reuse").await;
        // One server connection: both tenants' statements land on the same backend, where
        // Orgwall names prepared statements by a hash of their SQL.
        let proxy = tenant_proxy(&db, ProxyOptions::pool(1, "transaction")).await;
        let a = connect(&proxy.conn_str(TENANT_A)).await;
        let b = connect(&proxy.conn_str(TENANT_B)).await;
        let sql = "SELECT id FROM users ORDER BY id";
        let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        };
        let sa = a.prepare(sql).await.expect("A prepares");
        let sb = b.prepare(sql).await.expect("B prepares");
        let want_a = vec!["u_a1", "u_a2", "u_a3"];
        let want_b = vec!["u_b1", "u_b2", "u_b3"];
        for round in 0..3 {
            assert_eq!(
                ids(a.query(&sa, &[]).await.expect("A runs")),
                want_a,
                "round {round}: A"
            );
            assert_eq!(
                ids(b.query(&sb, &[]).await.expect("B runs")),
                want_b,
                "round {round}: B"
            );
            // Unnamed statements and the simple protocol with the same text, interleaved.
            assert_eq!(
                ids(a.query(sql, &[]).await.expect("A unnamed")),
                want_a,
                "round {round}: A unnamed"
            );
            assert_eq!(
                ids(b.query(sql, &[]).await.expect("B unnamed")),
                want_b,
                "round {round}: B unnamed"
            );
        }
        // Same statement inside interleaved transactions is impossible with one connection;
        // a parameterised one with a tenant-looking value must still be confined.
        let sql = "SELECT id FROM items WHERE org_id = $1 OR $1 = $1 ORDER BY id";
        let pa = a
            .prepare_typed(sql, &[tokio_postgres::types::Type::TEXT])
            .await
            .expect("A prepares 2");
        let pb = b
            .prepare_typed(sql, &[tokio_postgres::types::Type::TEXT])
            .await
            .expect("B prepares 2");
        assert_eq!(
            ids(a.query(&pa, &[&"org_b"]).await.expect("A runs 2")),
            vec!["i_a1", "i_a2", "i_a3"]
        );
        assert_eq!(
            ids(b.query(&pb, &[&"org_a"]).await.expect("B runs 2")),
            vec!["i_b1", "i_b2", "i_b4"]
        );
    })
    .await;
}
