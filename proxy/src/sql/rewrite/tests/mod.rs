//! Table-driven rewriter tests: one `check(input, expected)` per case, where expected is the
//! exact SQL rendered for tenant `org_a` or `Refused(code, message substring)`. Every expected
//! output is also re-parsed (it must print back identically) and passed through the
//! independent confinement checker in `tests_prop`.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::tests_prop::violations;
use super::{rewrite, Catalog, TableInfo, TableKind};

enum Expect {
    Sql(&'static str),
    Refused(&'static str, &'static str),
}
use Expect::*;

fn check(input: &str, expected: Expect) {
    check_with(&Catalog::seed_for_tests(), input, expected);
}

fn check_with(cat: &Catalog, input: &str, expected: Expect) {
    let got = rewrite(input, cat).and_then(|t| t.render_checked("org_a"));
    shaped_agrees(cat, input, &got);
    match (expected, got) {
        (Sql(want), Ok(sql)) => {
            assert_eq!(sql, want, "rewrite of {input}");
            let again = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
                .unwrap_or_else(|e| panic!("output of {input} does not parse: {e}"))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            assert_eq!(
                again, sql,
                "output of {input} is not stable under re-parsing"
            );
            let problems = violations(&sql, cat);
            assert!(problems.is_empty(), "{input} => {sql}: {problems:?}");
        }
        (Refused(code, part), Err(e)) => {
            assert_eq!(e.code, code, "code for {input}: {}", e.message);
            assert!(
                e.message.contains(part),
                "message for {input}: {:?} lacks {part:?}",
                e.message
            );
        }
        (Sql(want), Err(e)) => panic!("{input}: expected {want}, refused {e:?}"),
        (Refused(code, _), Ok(sql)) => panic!("{input}: expected refusal {code}, got {sql}"),
    }
}

/// When `input` can be shaped (see `shaped.rs`), the shaped template with its own literals
/// renders exactly what rewriting it directly renders, and never lets through what the
/// rewriter refuses.
fn shaped_agrees(cat: &Catalog, input: &str, direct: &Result<String, super::Refusal>) {
    let Some(literals) = super::shaped::literals_of(input) else {
        return;
    };
    let Some(shape) = super::shaped::shape(input, &literals, cat) else {
        return;
    };
    let via = shape.instantiate(input, &literals).render_checked("org_a");
    match (direct, &via) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "shaped rewrite of {input}"),
        (Err(a), Err(b)) => assert_eq!(a.code, b.code, "shaped refusal of {input}"),
        _ => panic!("shaped rewrite of {input} disagrees: direct {direct:?}, shaped {via:?}"),
    }
}

/// A catalog with a global table, a second schema first on the search path, a mixed-case
/// table and an allow-listed user function.
fn custom_catalog() -> Catalog {
    let tenant = |schema: &str, name: &str| TableInfo {
        schema: schema.into(),
        name: name.into(),
        kind: TableKind::Tenant {
            column: "tenant".into(),
        },
        columns: vec!["id".into(), "tenant".into()],
        tenant_unique: vec![],
    };
    Catalog::new(
        vec![
            TableInfo {
                schema: "public".into(),
                name: "currencies".into(),
                kind: TableKind::Global,
                columns: vec!["code".into()],
                tenant_unique: vec![],
            },
            tenant("app", "items"),
            tenant("public", "items"),
            tenant("public", "User"),
        ],
        vec!["app".into(), "public".into()],
        vec!["public.my_fn".into(), "other_fn".into()],
    )
    .with_callable(super::catalog::test_callable())
}

#[test]
fn global_tables_search_path_and_allowed_functions() {
    let cat = custom_catalog();
    let c = |i, e| check_with(&cat, i, e);
    c(
        "SELECT * FROM currencies",
        Sql("SELECT * FROM public.currencies"),
    );
    c(
        "SELECT c.code FROM currencies c JOIN items i ON true",
        Sql("SELECT c.code FROM public.currencies c JOIN app.items i ON true WHERE i.tenant = 'org_a'"),
    );
    c(
        "INSERT INTO currencies (code) VALUES ('EUR')",
        Refused("42501", "read-only for tenants"),
    );
    c(
        "UPDATE currencies SET code = 'x'",
        Refused("42501", "read-only"),
    );
    c("DELETE FROM currencies", Refused("42501", "read-only"));
    c(
        "SELECT * FROM items",
        Sql("SELECT * FROM app.items AS items WHERE items.tenant = 'org_a'"),
    );
    c(
        "SELECT * FROM public.items",
        Sql("SELECT * FROM public.items AS items WHERE items.tenant = 'org_a'"),
    );
    c(
        r#"SELECT * FROM "User""#,
        Sql(r#"SELECT * FROM public."User" AS "User" WHERE "User".tenant = 'org_a'"#),
    );
    c("SELECT * FROM User", Refused("42501", "unknown table user"));
    c(
        "SELECT * FROM users",
        Refused("42501", "unknown table users"),
    );
    c(
        "INSERT INTO items (id) VALUES (1)",
        Sql("INSERT INTO app.items (id, tenant) VALUES (1, 'org_a')"),
    );
    c(
        "SELECT public.my_fn(1), other_fn()",
        Sql("SELECT public.my_fn(1), other_fn()"),
    );
    c("SELECT my_fn(1)", Refused("42501", "allow-list"));
    c("SELECT app.other_fn()", Refused("42501", "allow-list"));
}

#[test]
fn render_escapes_the_tenant() {
    let cat = Catalog::seed_for_tests();
    let t = rewrite("SELECT id FROM items", &cat).expect("rewrites");
    assert_eq!(
        t.render("o'rg"),
        "SELECT id FROM public.items AS items WHERE items.org_id = 'o''rg'"
    );
    assert_eq!(
        t.render("x' OR '1'='1"),
        "SELECT id FROM public.items AS items WHERE items.org_id = 'x'' OR ''1''=''1'"
    );
    assert_eq!(
        t.render("a\\'b"),
        "SELECT id FROM public.items AS items WHERE items.org_id = E'a\\\\''b'"
    );
    assert_eq!(
        t.render("a\0b"),
        "SELECT id FROM public.items AS items WHERE items.org_id = NULL"
    );
    // The rendered SQL always parses to exactly the intended literal.
    for org in [
        "o'rg",
        "x' OR '1'='1",
        "';DROP TABLE items;--",
        "\"",
        "$$",
        "a\\'b",
    ] {
        let sql = t.render(org);
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, &sql).expect("parses");
        assert_eq!(stmts.len(), 1, "{sql}");
    }
}

#[test]
fn template_records_checks_and_counts() {
    let cat = Catalog::seed_for_tests();
    let t = rewrite(
        "INSERT INTO users (email, org_id) VALUES ($1, $2), ($3, 'org_a'); SELECT 1; BEGIN",
        &cat,
    )
    .expect("rewrites");
    assert_eq!(t.param_checks(), &[2]);
    assert_eq!(t.literal_checks(), &["org_a".to_string()]);
    assert_eq!(t.statement_count(), 3);
    assert!(t.render_checked("org_a").is_ok());
    let refused = t.render_checked("org_b").err().map(|e| e.code);
    assert_eq!(refused, Some("42501"));
    // render() never writes the client's literal: the row goes to the session's tenant.
    assert!(t.render("org_b").contains("($3, 'org_b')"));
    assert_eq!(rewrite("", &cat).map(|t| t.statement_count()), Ok(0));
    assert_eq!(
        rewrite(" ; ", &cat).map(|t| t.render("org_a")),
        Ok(String::new())
    );
}

#[test]
fn odd_input_is_refused() {
    check("SELECT 1\0", Refused("42601", "NUL"));
    check("SELEC * FROM items", Refused("42601", "cannot parse"));
    check(
        "SELECT * FROM items WHERE",
        Refused("42601", "cannot parse"),
    );
    check("SELECT `x` FROM items", Refused("42601", ""));
    check("", Sql(""));
}

mod reads;
mod statements;
mod writes;
