//! Table-driven rewriter tests: one `check(input, expected)` per case, where expected is the
//! exact SQL rendered for tenant `org_a` or `Refused(code, message substring)`. Every expected
//! output is also re-parsed (it must print back identically) and passed through the
//! independent confinement checker in `tests_prop`.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::tests_prop::violations;
use super::{rewrite, Catalog, RewriteCache, TableInfo, TableKind};

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
        Sql("SELECT c.code FROM public.currencies c JOIN (SELECT * FROM app.items WHERE tenant = 'org_a') i ON true"),
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
        Sql("SELECT * FROM (SELECT * FROM app.items WHERE tenant = 'org_a') AS items"),
    );
    c(
        "SELECT * FROM public.items",
        Sql("SELECT * FROM (SELECT * FROM public.items WHERE tenant = 'org_a') AS items"),
    );
    c(
        r#"SELECT * FROM "User""#,
        Sql(r#"SELECT * FROM (SELECT * FROM public."User" WHERE tenant = 'org_a') AS "User""#),
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
        "SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'o''rg') AS items"
    );
    assert_eq!(
        t.render("x' OR '1'='1"),
        "SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'x'' OR ''1''=''1') AS items"
    );
    assert_eq!(
        t.render("a\\'b"),
        "SELECT id FROM (SELECT * FROM public.items WHERE org_id = E'a\\\\''b') AS items"
    );
    assert_eq!(
        t.render("a\0b"),
        "SELECT id FROM (SELECT * FROM public.items WHERE org_id = NULL) AS items"
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
fn cached_templates_never_remember_the_tenant() {
    let cat = Catalog::seed_for_tests();
    let cache = RewriteCache::new(16);
    let sql = "SELECT u.email FROM users u JOIN items i ON i.id = u.id";
    let a = cache.get_or_rewrite(sql, &cat).map(|t| t.render("org_a"));
    let b = cache.get_or_rewrite(sql, &cat).map(|t| t.render("org_b"));
    let a = a.expect("a");
    let b = b.expect("b");
    assert!(a.contains("'org_a'") && !a.contains("'org_b'"));
    assert!(b.contains("'org_b'") && !b.contains("'org_a'"));
    assert_eq!(a.replace("org_a", "org_b"), b);
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

#[test]
fn mixed_rules() {
    check(
        r#"SELECT * FROM items"#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#),
    );
    check(
        r#"SELECT id FROM items WHERE org_id IS NULL OR 1=1"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE org_id IS NULL OR 1 = 1"#,
        ),
    );
    check(
        r#"SELECT i.id, l.name FROM items i JOIN locations l ON l.id = i.id"#,
        Sql(
            r#"SELECT i.id, l.name FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') l ON l.id = i.id"#,
        ),
    );
    check(
        r#"SELECT * FROM items LEFT JOIN inventory_ledger ON inventory_ledger.item_id = items.id"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LEFT JOIN (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') AS inventory_ledger ON inventory_ledger.item_id = items.id"#,
        ),
    );
    check(
        r#"SELECT * FROM items ORDER BY id LIMIT 5"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id LIMIT 5"#,
        ),
    );
    check(
        r#"SELECT (SELECT count(*) FROM users) AS n FROM items"#,
        Sql(
            r#"SELECT (SELECT count(*) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users) AS n FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE EXISTS (SELECT 1 FROM users WHERE users.id = items.id)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE EXISTS (SELECT 1 FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users WHERE users.id = items.id)"#,
        ),
    );
    check(
        r#"WITH users AS (SELECT * FROM users) SELECT * FROM users"#,
        Sql(
            r#"WITH users AS (SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users) SELECT * FROM users"#,
        ),
    );
    check(
        r#"WITH RECURSIVE r AS (SELECT id FROM items UNION ALL SELECT r.id FROM r) SELECT * FROM r"#,
        Sql(
            r#"WITH RECURSIVE r AS (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items UNION ALL SELECT r.id FROM r) SELECT * FROM r"#,
        ),
    );
    check(
        r#"SELECT "public"."users"."email" FROM "public"."users" WHERE "public"."users"."id" = $1"#,
        Sql(
            r#"SELECT "users"."email" FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS "users" WHERE "users"."id" = $1"#,
        ),
    );
    check(
        r#"SELECT * FROM "Users""#,
        Refused("42501", r#"unknown table Users"#),
    );
    check(
        r#"SELECT * FROM Users"#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS Users"#),
    );
    check(
        r#"SELECT * FROM public.feature_flags UNION SELECT * FROM feature_flags"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.feature_flags WHERE org_id = 'org_a') AS feature_flags UNION SELECT * FROM (SELECT * FROM public.feature_flags WHERE org_id = 'org_a') AS feature_flags"#,
        ),
    );
    check(
        r#"SELECT * FROM organizations"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.organizations WHERE id = 'org_a') AS organizations"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_stats"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_stats exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT typname FROM pg_type"#,
        Sql(r#"SELECT typname FROM pg_catalog.pg_type"#),
    );
    check(
        r#"SELECT * FROM information_schema.columns"#,
        Sql(r#"SELECT * FROM information_schema.columns"#),
    );
    check(
        r#"SELECT query_to_xml('select * from users', true, true, '')"#,
        Refused(
            "42501",
            r#"function query_to_xml runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT * FROM items, LATERAL (SELECT * FROM count_lines WHERE count_lines.item_id = items.id) cl"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items, LATERAL (SELECT * FROM (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines WHERE count_lines.item_id = items.id) cl"#,
        ),
    );
    check(
        r#"VALUES ((SELECT email FROM users LIMIT 1))"#,
        Sql(
            r#"VALUES ((SELECT email FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users LIMIT 1))"#,
        ),
    );
    check(
        r#"TABLE items"#,
        Refused(
            "42601",
            r#"cannot parse statement: sql parser error: Expected: an SQL statement, found: TABLE at Line: 1, Column: 1"#,
        ),
    );
    check(
        r#"INSERT INTO users (email) VALUES ('a@b')"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ('a@b', 'org_a')"#),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a@b', 'org_a')"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ('a@b', 'org_a')"#),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a@b', 'org_b')"#,
        Refused(
            "42501",
            r#"tenant value 'org_b' is not the session's tenant"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ($1, $2)"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ($1, $2)"#),
    );
    check(
        r#"INSERT INTO users DEFAULT VALUES"#,
        Sql(r#"INSERT INTO public.users (org_id) VALUES ('org_a')"#),
    );
    check(
        r#"INSERT INTO users VALUES ('id1', 'a@b')"#,
        Sql(r#"INSERT INTO public.users (id, email, org_id) VALUES ('id1', 'a@b', 'org_a')"#),
    );
    check(
        r#"INSERT INTO users (email) SELECT email FROM users"#,
        Sql(
            r#"INSERT INTO public.users (email, org_id) SELECT *, 'org_a' FROM (SELECT email FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users) AS orgwall_src"#,
        ),
    );
    check(
        r#"INSERT INTO users (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET name = excluded.name"#,
        Sql(
            r#"INSERT INTO public.users (email, org_id) VALUES ('a', 'org_a') ON CONFLICT(org_id, email) DO UPDATE SET name = excluded.name WHERE users.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"INSERT INTO items AS i (id) VALUES ('x') ON CONFLICT (id) DO UPDATE SET description = 'p' WHERE i.active"#,
        Sql(
            r#"INSERT INTO public.items AS i (id, org_id) VALUES ('x', 'org_a') ON CONFLICT(id) DO UPDATE SET description = 'p' WHERE i.org_id = 'org_a' AND (i.active)"#,
        ),
    );
    check(
        r#"UPDATE items SET description = 'x' WHERE id IN (SELECT id FROM items LIMIT 1)"#,
        Sql(
            r#"UPDATE public.items SET description = 'x' WHERE items.org_id = 'org_a' AND (id IN (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LIMIT 1))"#,
        ),
    );
    check(
        r#"UPDATE items SET org_id = 'org_b'"#,
        Refused(
            "42501",
            r#"changing the tenant column org_id is not allowed"#,
        ),
    );
    check(
        r#"DELETE FROM items USING locations WHERE items.id = locations.id RETURNING items.*"#,
        Sql(
            r#"DELETE FROM public.items USING (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations WHERE items.org_id = 'org_a' AND (items.id = locations.id) RETURNING items.*"#,
        ),
    );
    check(
        r#"UPDATE organizations SET name = 'x'"#,
        Sql(r#"UPDATE public.organizations SET name = 'x' WHERE organizations.id = 'org_a'"#),
    );
    check(
        r#"DELETE FROM organizations"#,
        Refused(
            "42501",
            r#"DELETE on organizations is not allowed for tenants"#,
        ),
    );
    check(
        r#"INSERT INTO organizations (id, name) VALUES ('x','y')"#,
        Refused(
            "42501",
            r#"INSERT on organizations is not allowed for tenants"#,
        ),
    );
    check(
        r#"MERGE INTO items t USING locations s ON t.id = s.id WHEN MATCHED THEN UPDATE SET description = s.name WHEN NOT MATCHED THEN INSERT (id, item_number) VALUES (s.id, s.name)"#,
        Sql(
            r#"MERGE INTO public.items t USING (SELECT * FROM public.locations WHERE org_id = 'org_a') s ON t.org_id = 'org_a' AND (t.id = s.id) WHEN MATCHED THEN UPDATE SET description = s.name WHEN NOT MATCHED THEN INSERT (id, item_number, org_id) VALUES (s.id, s.name, 'org_a')"#,
        ),
    );
    check(
        r#"COPY items TO STDOUT"#,
        Sql(
            r#"COPY (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) TO STDOUT"#,
        ),
    );
    check(
        r#"COPY items (id, item_number) TO STDOUT WITH (FORMAT csv)"#,
        Sql(
            r#"COPY (SELECT id, item_number FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) TO STDOUT (FORMAT csv)"#,
        ),
    );
    check(
        r#"COPY (SELECT id FROM items) TO STDOUT"#,
        Sql(
            r#"COPY (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) TO STDOUT"#,
        ),
    );
    check(
        r#"COPY items FROM STDIN"#,
        Refused(
            "0A000",
            r#"COPY … FROM is not supported for tenants; use INSERT (Orgwall confines it)"#,
        ),
    );
    check(
        r#"PREPARE p AS SELECT * FROM items WHERE id = $1"#,
        Sql(
            r#"PREPARE p AS SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id = $1"#,
        ),
    );
    check(r#"EXECUTE p('x')"#, Sql(r#"EXECUTE p('x')"#));
    check(
        r#"DECLARE c CURSOR FOR SELECT * FROM items"#,
        Sql(
            r#"DECLARE c CURSOR FOR SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"EXPLAIN ANALYZE SELECT * FROM items"#,
        Sql(
            r#"EXPLAIN ANALYZE SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"DROP TABLE items"#,
        Refused(
            "42501",
            r#"DROP TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"SET search_path = evil"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET statement_timeout = '5s'"#,
        Sql(r#"SET statement_timeout = '5s'"#),
    );
    check(r#"SET TIME ZONE 'UTC'"#, Sql(r#"SET TIME ZONE 'UTC'"#));
    check(
        r#"SET ROLE postgres"#,
        Refused("42501", r#"SET ROLE is not allowed for tenants"#),
    );
    check(
        r#"RESET ALL"#,
        Refused("42501", r#"RESET ALL is not allowed for tenants"#),
    );
    check(r#"BEGIN"#, Sql(r#"BEGIN"#));
    check(r#"COMMIT"#, Sql(r#"COMMIT"#));
    check(r#"SHOW search_path"#, Sql(r#"SHOW search_path"#));
    check(
        r#"DO $$ BEGIN END $$"#,
        Refused("42501", r#"DO is not allowed for tenants"#),
    );
    check(
        r#"LISTEN x"#,
        Refused(
            "42501",
            r#"LISTEN/NOTIFY channels are shared by all tenants and not allowed"#,
        ),
    );
    check(
        r#"SELECT 1; SELECT * FROM items"#,
        Sql(
            r#"SELECT 1; SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"WITH d AS (DELETE FROM items WHERE id = 'x' RETURNING *) SELECT * FROM d"#,
        Sql(
            r#"WITH d AS (DELETE FROM public.items WHERE items.org_id = 'org_a' AND (id = 'x') RETURNING *) SELECT * FROM d"#,
        ),
    );
    check(
        r#"SELECT * FROM generate_series(1, 3)"#,
        Sql(r#"SELECT * FROM generate_series(1, 3)"#),
    );
    check(
        r#"SELECT set_config('search_path', 'x', false)"#,
        Refused(
            "42501",
            r#"function set_config runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT count(*) FROM items GROUP BY active HAVING count(*) > (SELECT count(*) FROM users)"#,
        Sql(
            r#"SELECT count(*) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items GROUP BY active HAVING count(*) > (SELECT count(*) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"#,
        ),
    );
    check(
        r#"SELECT U&"users".id FROM users"#,
        Refused(
            "0A000",
            r#"U&"…" identifiers are not supported; use a plain quoted identifier"#,
        ),
    );
    check(
        r#"SELECT * FROM items FOR UPDATE"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items FOR UPDATE"#,
        ),
    );
}

#[test]
fn reads_and_refusals() {
    check(
        r#"SELECT U&"users".id FROM users"#,
        Refused(
            "0A000",
            r#"U&"…" identifiers are not supported; use a plain quoted identifier"#,
        ),
    );
    check(
        r#"SELECT * FROM U&"items""#,
        Refused(
            "0A000",
            r#"U&"…" identifiers are not supported; use a plain quoted identifier"#,
        ),
    );
    check(
        r#"DO $$ BEGIN END $$"#,
        Refused("42501", r#"DO is not allowed for tenants"#),
    );
    check(
        r#"ALTER SYSTEM SET work_mem = '1GB'"#,
        Refused("42501", r#"ALTER is not allowed for tenants"#),
    );
    check(
        r#"TRUNCATE items"#,
        Refused(
            "42501",
            r#"TRUNCATE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE TABLE x (a int)"#,
        Refused(
            "42501",
            r#"CREATE TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"GRANT ALL ON items TO public"#,
        Refused("42501", r#"GRANT/REVOKE is not allowed for tenants"#),
    );
    check(
        r#"SET SESSION AUTHORIZATION postgres"#,
        Refused(
            "42501",
            r#"SET SESSION AUTHORIZATION is not allowed for tenants"#,
        ),
    );
    check(
        r#"RESET search_path"#,
        Refused("42501", r#"RESET search_path is not allowed for tenants"#),
    );
    check(
        r#"RESET statement_timeout"#,
        Sql(r#"RESET statement_timeout"#),
    );
    check(
        r#"SET LOCAL search_path TO public"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET orgwall.org_id = 'org_b'"#,
        Refused(
            "42501",
            r#"SET orgwall.org_id is handled by the Orgwall session, not passed to the server"#,
        ),
    );
    check(
        r#"SET standard_conforming_strings = off"#,
        Refused(
            "42501",
            r#"SET standard_conforming_strings is not allowed for tenants"#,
        ),
    );
    check(
        r#"SET client_encoding = 'SJIS'"#,
        Refused(
            "42501",
            r#"client encodings other than UTF8 are not allowed for tenants"#,
        ),
    );
    check(
        r#"SET client_encoding = 'UTF8'"#,
        Sql(r#"SET client_encoding = 'UTF8'"#),
    );
    check(
        r#"SET application_name = 'x'"#,
        Sql(r#"SET application_name = 'x'"#),
    );
    check(
        r#"SET datestyle TO ISO, MDY"#,
        Sql(r#"SET datestyle = ISO, MDY"#),
    );
    check(r#"SET work_mem = 64000"#, Sql(r#"SET work_mem = 64000"#));
    check(
        r#"LOAD 'plpgsql'"#,
        Refused("42501", r#"LOAD is not allowed for tenants"#),
    );
    check(
        r#"CALL p()"#,
        Refused("42501", r#"CALL is not allowed for tenants"#),
    );
    check(
        r#"NOTIFY x, 'y'"#,
        Refused(
            "42501",
            r#"LISTEN/NOTIFY channels are shared by all tenants and not allowed"#,
        ),
    );
    check(
        r#"UNLISTEN *"#,
        Refused(
            "42501",
            r#"LISTEN/NOTIFY channels are shared by all tenants and not allowed"#,
        ),
    );
    check(
        r#"SELECT pg_read_file('/etc/passwd')"#,
        Refused(
            "42501",
            r#"function pg_read_file runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT lo_import('/etc/passwd')"#,
        Refused(
            "42501",
            r#"function lo_import runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT dblink('x', 'y')"#,
        Refused(
            "42501",
            r#"function dblink runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_terminate_backend(1)"#,
        Refused(
            "42501",
            r#"function pg_terminate_backend runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(r#"SELECT pg_sleep(1)"#, Sql(r#"SELECT pg_sleep(1)"#));
    check(
        r#"SELECT myfunc(1)"#,
        Refused("42501", r#"function myfunc is not on the allow-list"#),
    );
    check(
        r#"SELECT pg_catalog.count(*) FROM items"#,
        Sql(
            r#"SELECT pg_catalog.count(*) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT pg_catalog.set_config('a','b',false)"#,
        Refused(
            "42501",
            r#"function pg_catalog.set_config runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT public.myfunc(1)"#,
        Refused(
            "42501",
            r#"function public.myfunc is not on the allow-list"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_catalog.pg_statistic"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_statistic exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_stat_activity"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_stat_activity exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_catalog.pg_authid"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_authid exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_shadow"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_shadow exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_user_mappings"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_user_mappings exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_largeobject"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_largeobject exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_stat_statements"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_stat_statements exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM pg_roles"#,
        Refused("42501", r#"unknown table pg_roles"#),
    );
    check(
        r#"SELECT * FROM information_schema.role_table_grants"#,
        Refused(
            "42501",
            r#"system relation information_schema.role_table_grants is not on the tenant allow-list"#,
        ),
    );
    check(
        r#"SELECT * FROM nosuch"#,
        Refused("42501", r#"unknown table nosuch"#),
    );
    check(
        r#"SELECT * FROM other.items"#,
        Refused("42501", r#"unknown table other.items"#),
    );
    check(
        r#"SELECT * FROM db.public.items"#,
        Refused(
            "0A000",
            r#"table name db.public.items has too many parts (cross-database references)"#,
        ),
    );
    check(
        r#"SELECT * FROM "public"."Items""#,
        Refused("42501", r#"unknown table public.Items"#),
    );
    check(
        r#"SELECT * FROM "public".items"#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#),
    );
    check(
        r#"SELECT * FROM PUBLIC.ITEMS"#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS ITEMS"#),
    );
    check(
        r#"SELECT * FROM items AS "I" WHERE "I".id = '1'"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS "I" WHERE "I".id = '1'"#,
        ),
    );
    check(
        r#"SELECT a.id FROM items a FULL JOIN locations b ON a.id = b.id RIGHT JOIN users c ON c.id = a.id"#,
        Sql(
            r#"SELECT a.id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') a FULL JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') b ON a.id = b.id RIGHT JOIN (SELECT * FROM public.users WHERE org_id = 'org_a') c ON c.id = a.id"#,
        ),
    );
    check(
        r#"SELECT * FROM items CROSS JOIN locations"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items CROSS JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations"#,
        ),
    );
    check(
        r#"SELECT * FROM items NATURAL JOIN count_lines"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items NATURAL JOIN (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines"#,
        ),
    );
    check(
        r#"SELECT * FROM items JOIN locations USING (id)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations USING(id)"#,
        ),
    );
    check(
        r#"SELECT * FROM (items JOIN locations ON items.id = locations.id)"#,
        Sql(
            r#"SELECT * FROM ((SELECT * FROM public.items WHERE org_id = 'org_a') AS items JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations ON items.id = locations.id)"#,
        ),
    );
    check(
        r#"SELECT * FROM items i LEFT JOIN LATERAL (SELECT * FROM inventory_balances b WHERE b.item_id = i.id ORDER BY quantity DESC LIMIT 1) top ON true"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i LEFT JOIN LATERAL (SELECT * FROM (SELECT * FROM public.inventory_balances WHERE org_id = 'org_a') b WHERE b.item_id = i.id ORDER BY quantity DESC LIMIT 1) top ON true"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE id IN (SELECT item_id FROM inventory_ledger)"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id IN (SELECT item_id FROM (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') AS inventory_ledger)"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE id = ANY (SELECT item_id FROM inventory_ledger)"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id = ANY(SELECT item_id FROM (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') AS inventory_ledger)"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE NOT EXISTS (SELECT 1 FROM count_lines WHERE count_lines.item_id = items.id)"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines WHERE count_lines.item_id = items.id)"#,
        ),
    );
    check(
        r#"SELECT id FROM items ORDER BY (SELECT max(created_at) FROM inventory_ledger l WHERE l.item_id = items.id)"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY (SELECT max(created_at) FROM (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') l WHERE l.item_id = items.id)"#,
        ),
    );
    check(
        r#"SELECT active, count(*) FROM items GROUP BY active, (SELECT 1 FROM users LIMIT 1)"#,
        Sql(
            r#"SELECT active, count(*) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items GROUP BY active, (SELECT 1 FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users LIMIT 1)"#,
        ),
    );
    check(
        r#"SELECT ARRAY(SELECT id FROM users)"#,
        Sql(
            r#"SELECT ARRAY(SELECT id FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"#,
        ),
    );
    check(
        r#"SELECT id FROM items UNION SELECT id FROM locations EXCEPT SELECT item_id FROM count_lines INTERSECT SELECT id FROM users"#,
        Sql(
            r#"SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items UNION SELECT id FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations EXCEPT SELECT item_id FROM (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines INTERSECT SELECT id FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users"#,
        ),
    );
    check(
        r#"(SELECT id FROM items ORDER BY id LIMIT 1) UNION ALL (SELECT id FROM items ORDER BY id DESC LIMIT 1)"#,
        Sql(
            r#"(SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id LIMIT 1) UNION ALL (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id DESC LIMIT 1)"#,
        ),
    );
    check(
        r#"WITH a AS (SELECT * FROM items), b AS (SELECT * FROM a JOIN locations ON true) SELECT * FROM b"#,
        Sql(
            r#"WITH a AS (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items), b AS (SELECT * FROM a JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations ON true) SELECT * FROM b"#,
        ),
    );
    check(
        r#"WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"#,
        Refused("42501", r#"unknown table b"#),
    );
    check(
        r#"WITH RECURSIVE items AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM items WHERE id < 3) SELECT * FROM items"#,
        Sql(
            r#"WITH RECURSIVE items AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM items WHERE id < 3) SELECT * FROM items"#,
        ),
    );
    check(
        r#"WITH x AS (SELECT 1) SELECT * FROM (WITH items AS (SELECT 2) SELECT * FROM items) s, items"#,
        Sql(
            r#"WITH x AS (SELECT 1) SELECT * FROM (WITH items AS (SELECT 2) SELECT * FROM items) s, (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"WITH items AS (SELECT 2) SELECT * FROM public.items"#,
        Sql(
            r#"WITH items AS (SELECT 2) SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE id = (SELECT id FROM (SELECT * FROM items) q LIMIT 1)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id = (SELECT id FROM (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) q LIMIT 1)"#,
        ),
    );
    check(
        r#"SELECT * FROM feature_flags f WHERE f.enabled"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.feature_flags WHERE org_id = 'org_a') f WHERE f.enabled"#,
        ),
    );
    check(
        r#"SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM users)) FROM items"#,
        Sql(
            r#"SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT row_number() OVER (PARTITION BY active ORDER BY (SELECT 1 FROM users LIMIT 1)) FROM items"#,
        Sql(
            r#"SELECT row_number() OVER (PARTITION BY active ORDER BY (SELECT 1 FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users LIMIT 1)) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT CASE WHEN EXISTS (SELECT 1 FROM users) THEN 1 END"#,
        Sql(
            r#"SELECT CASE WHEN EXISTS (SELECT 1 FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users) THEN 1 END"#,
        ),
    );
    check(
        r#"SELECT coalesce((SELECT name FROM users LIMIT 1), 'x')"#,
        Sql(
            r#"SELECT coalesce((SELECT name FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users LIMIT 1), 'x')"#,
        ),
    );
    check(
        r#"SELECT * FROM items LIMIT (SELECT count(*) FROM users)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LIMIT (SELECT count(*) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"#,
        ),
    );
    check(
        r#"SELECT * FROM items ORDER BY id OFFSET 10 FETCH FIRST 5 ROWS ONLY"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id OFFSET 10 FETCH FIRST 5 ROWS ONLY"#,
        ),
    );
    check(
        r#"SELECT DISTINCT ON (item_number) * FROM items"#,
        Sql(
            r#"SELECT DISTINCT ON (item_number) * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"SELECT i.*, public.items.id FROM public.items AS i"#,
        Sql(
            r#"SELECT i.*, items.id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS i"#,
        ),
    );
    check(
        r#"SELECT public.items.* FROM public.items"#,
        Sql(r#"SELECT items.* FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#),
    );
    check(
        r#"SELECT items.id FROM items, public.items p2"#,
        Sql(
            r#"SELECT items.id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items, (SELECT * FROM public.items WHERE org_id = 'org_a') p2"#,
        ),
    );
    check(
        r#"VALUES (1, 'a'), (2, (SELECT name FROM locations LIMIT 1))"#,
        Sql(
            r#"VALUES (1, 'a'), (2, (SELECT name FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations LIMIT 1))"#,
        ),
    );
    check(
        r#"SELECT * FROM (VALUES (1), (2)) v(x)"#,
        Sql(r#"SELECT * FROM (VALUES (1), (2)) v (x)"#),
    );
    check(
        r#"SELECT * FROM unnest(ARRAY[1,2]) AS u(x)"#,
        Sql(r#"SELECT * FROM UNNEST(ARRAY[1, 2]) AS u (x)"#),
    );
    check(
        r#"SELECT * FROM items TABLESAMPLE SYSTEM (10)"#,
        Refused(
            "0A000",
            r#"table modifier on items (ONLY, TABLESAMPLE, hints) is not supported"#,
        ),
    );
    check(
        r#"SELECT * FROM ONLY items"#,
        Refused(
            "0A000",
            r#"table modifier on items (ONLY, TABLESAMPLE, hints) is not supported"#,
        ),
    );
    check(
        r#"SELECT * INTO newtab FROM items"#,
        Refused("42501", r#"SELECT INTO creates a table (DDL)"#),
    );
    check(
        r#"SELECT * FROM items FOR UPDATE OF items SKIP LOCKED"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items FOR UPDATE OF items SKIP LOCKED"#,
        ),
    );
    check(r#"SELECT 1"#, Sql(r#"SELECT 1"#));
    check(r#"SELECT now()"#, Sql(r#"SELECT now()"#));
    check(r#";"#, Sql(r#""#));
    check(
        r#"SELECT '{"a":1}'::jsonb -> 'a'"#,
        Sql(r#"SELECT '{"a":1}'::JSONB -> 'a'"#),
    );
    check(
        r#"SELECT lower(email), jsonb_build_object('e', email) FROM users WHERE email ILIKE $1"#,
        Sql(
            r#"SELECT lower(email), jsonb_build_object('e', email) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users WHERE email ILIKE $1"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE description LIKE '%x%' AND active = true"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE description LIKE '%x%' AND active = true"#,
        ),
    );
    check(
        r#"SELECT i.item_number, sum(l.quantity_delta) FROM items i JOIN inventory_ledger l ON l.item_id = i.id GROUP BY i.item_number HAVING sum(l.quantity_delta) > 0 ORDER BY 2 DESC LIMIT 10"#,
        Sql(
            r#"SELECT i.item_number, sum(l.quantity_delta) FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i JOIN (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') l ON l.item_id = i.id GROUP BY i.item_number HAVING sum(l.quantity_delta) > 0 ORDER BY 2 DESC LIMIT 10"#,
        ),
    );
}

#[test]
fn bypass_classes() {
    check(
        r#"SELECT * FROM items WHERE org_id = 'org_b'"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE org_id = 'org_b'"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE org_id IS NULL"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE org_id IS NULL"#,
        ),
    );
    check(
        r#"DELETE FROM items WHERE org_id IS NULL OR true"#,
        Sql(
            r#"DELETE FROM public.items WHERE items.org_id = 'org_a' AND (org_id IS NULL OR true)"#,
        ),
    );
    check(
        r#"SELECT * FROM items ORDER BY id DESC LIMIT 1 OFFSET 0"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id DESC LIMIT 1 OFFSET 0"#,
        ),
    );
    check(
        r#"SELECT * FROM items; DROP TABLE items"#,
        Refused(
            "42501",
            r#"DROP TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"SELECT * FROM items; SELECT * FROM users"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items; SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users"#,
        ),
    );
    check(
        r#"UPDATE items SET active = false WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 1)"#,
        Sql(
            r#"UPDATE public.items SET active = false WHERE items.org_id = 'org_a' AND (id IN (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items ORDER BY id LIMIT 1))"#,
        ),
    );
    check(
        r#"DELETE FROM items WHERE id = (SELECT id FROM items LIMIT 1)"#,
        Sql(
            r#"DELETE FROM public.items WHERE items.org_id = 'org_a' AND (id = (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LIMIT 1))"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, name) VALUES ('a', 'b') ON CONFLICT (email) DO UPDATE SET name = (SELECT name FROM users u2 WHERE u2.email = 'x')"#,
        Sql(
            r#"INSERT INTO public.users (email, name, org_id) VALUES ('a', 'b', 'org_a') ON CONFLICT(org_id, email) DO UPDATE SET name = (SELECT name FROM (SELECT * FROM public.users WHERE org_id = 'org_a') u2 WHERE u2.email = 'x') WHERE users.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"INSERT INTO users (id, email) VALUES ('victim', 'x') ON CONFLICT (id) DO UPDATE SET email = excluded.email"#,
        Sql(
            r#"INSERT INTO public.users (id, email, org_id) VALUES ('victim', 'x', 'org_a') ON CONFLICT(id) DO UPDATE SET email = excluded.email WHERE users.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"INSERT INTO users (id, email) VALUES ('victim', 'x') ON CONFLICT (id) DO UPDATE SET org_id = 'org_a'"#,
        Refused(
            "42501",
            r#"changing the tenant column org_id is not allowed"#,
        ),
    );
    check(
        r#"SELECT * FROM items i LEFT JOIN locations l ON l.id = i.id AND l.org_id = 'org_b'"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i LEFT JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') l ON l.id = i.id AND l.org_id = 'org_b'"#,
        ),
    );
    check(
        r#"SELECT * FROM "public"."items" WHERE "public"."items"."org_id" IS NULL"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS "items" WHERE "items"."org_id" IS NULL"#,
        ),
    );
}

#[test]
fn inserts() {
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', DEFAULT)"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ('a', 'org_a')"#),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', NULL)"#,
        Refused(
            "42501",
            r#"org_id may only be given as a string literal or a $n parameter (Orgwall sets it)"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', lower('ORG_A'))"#,
        Refused(
            "42501",
            r#"org_id may only be given as a string literal or a $n parameter (Orgwall sets it)"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', 'org_a'::text)"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ('a', 'org_a'::TEXT)"#),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', 'org_a'), ('b', 'org_b')"#,
        Refused(
            "42501",
            r#"tenant value 'org_b' is not the session's tenant"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, org_id) VALUES ('a', $1), ('b', $3)"#,
        Sql(r#"INSERT INTO public.users (email, org_id) VALUES ('a', $1), ('b', $3)"#),
    );
    check(
        r#"INSERT INTO users (email) VALUES ('a'), ('b') RETURNING id, (SELECT count(*) FROM users)"#,
        Sql(
            r#"INSERT INTO public.users (email, org_id) VALUES ('a', 'org_a'), ('b', 'org_a') RETURNING id, (SELECT count(*) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, org_id) SELECT email, org_id FROM users"#,
        Refused(
            "42501",
            r#"INSERT … SELECT may not supply org_id: Orgwall sets it"#,
        ),
    );
    check(
        r#"INSERT INTO users SELECT * FROM users"#,
        Refused("0A000", r#"INSERT … SELECT needs an explicit column list"#),
    );
    check(
        r#"INSERT INTO users VALUES ('1', 'e', 'n', 'h', 'r', now(), now(), 'org_a', 'extra')"#,
        Refused("42601", r#"INSERT has more expressions than columns"#),
    );
    check(
        r#"INSERT INTO users VALUES ('1', 'e', 'n', 'h', 'r', now(), now(), 'org_b')"#,
        Refused(
            "42501",
            r#"tenant value 'org_b' is not the session's tenant"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) VALUES ((SELECT item_number FROM items LIMIT 1))"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) VALUES ((SELECT item_number FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LIMIT 1), 'org_a')"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) SELECT item_number FROM items UNION SELECT name FROM locations"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) SELECT *, 'org_a' FROM (SELECT item_number FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items UNION SELECT name FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations) AS orgwall_src"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) VALUES ('x') ON CONFLICT (item_number) DO NOTHING"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) VALUES ('x', 'org_a') ON CONFLICT(org_id, item_number) DO NOTHING"#,
        ),
    );
    check(
        r#"INSERT INTO locations (site, name) VALUES ('s', 'n') ON CONFLICT (name, site) DO NOTHING"#,
        Sql(
            r#"INSERT INTO public.locations (site, name, org_id) VALUES ('s', 'n', 'org_a') ON CONFLICT(org_id, name, site) DO NOTHING"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) VALUES ('x') ON CONFLICT ON CONSTRAINT items_orgid_itemnumber_key DO NOTHING"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) VALUES ('x', 'org_a') ON CONFLICT ON CONSTRAINT items_orgid_itemnumber_key DO NOTHING"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) VALUES ('x') ON CONFLICT DO NOTHING"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) VALUES ('x', 'org_a') ON CONFLICT DO NOTHING"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) VALUES ('x') ON CONFLICT (org_id, item_number) DO UPDATE SET description = 'd'"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) VALUES ('x', 'org_a') ON CONFLICT(org_id, item_number) DO UPDATE SET description = 'd' WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"INSERT INTO "public"."users" ("email", "org_id") VALUES ($1, $2) RETURNING "public"."users"."id""#,
        Sql(
            r#"INSERT INTO public.users ("email", "org_id") VALUES ($1, $2) RETURNING "users"."id""#,
        ),
    );
    check(
        r#"INSERT INTO pg_catalog.pg_class (relname) VALUES ('x')"#,
        Refused("42501", r#"INSERT on system relation pg_catalog.pg_class"#),
    );
    check(
        r#"INSERT INTO nosuch (a) VALUES (1)"#,
        Refused("42501", r#"unknown table nosuch"#),
    );
    check(
        r#"WITH src AS (SELECT item_number FROM items) INSERT INTO items (item_number) SELECT item_number FROM src"#,
        Sql(
            r#"WITH src AS (SELECT item_number FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) INSERT INTO public.items (item_number, org_id) SELECT *, 'org_a' FROM (SELECT item_number FROM src) AS orgwall_src"#,
        ),
    );
}

#[test]
fn updates_deletes() {
    check(
        r#"UPDATE items SET description = l.name FROM locations l WHERE l.id = items.id"#,
        Sql(
            r#"UPDATE public.items SET description = l.name FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') l WHERE items.org_id = 'org_a' AND (l.id = items.id)"#,
        ),
    );
    check(
        r#"UPDATE items AS i SET description = 'x' WHERE i.id = 'x' RETURNING i.*"#,
        Sql(
            r#"UPDATE public.items AS i SET description = 'x' WHERE i.org_id = 'org_a' AND (i.id = 'x') RETURNING i.*"#,
        ),
    );
    check(
        r#"UPDATE items SET (description, org_id) = ('x', 'org_b')"#,
        Refused(
            "42501",
            r#"changing the tenant column org_id is not allowed"#,
        ),
    );
    check(
        r#"UPDATE public.items SET description = 'x' WHERE public.items.id = 'x'"#,
        Sql(
            r#"UPDATE public.items SET description = 'x' WHERE items.org_id = 'org_a' AND (items.id = 'x')"#,
        ),
    );
    check(
        r#"UPDATE items SET description = (SELECT name FROM locations LIMIT 1)"#,
        Sql(
            r#"UPDATE public.items SET description = (SELECT name FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations LIMIT 1) WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"UPDATE organizations SET id = 'org_b'"#,
        Refused("42501", r#"changing the tenant column id is not allowed"#),
    );
    check(
        r#"UPDATE organizations SET name = 'x' WHERE id = 'org_b'"#,
        Sql(
            r#"UPDATE public.organizations SET name = 'x' WHERE organizations.id = 'org_a' AND (id = 'org_b')"#,
        ),
    );
    check(
        r#"DELETE FROM items WHERE id IN (SELECT item_id FROM count_lines)"#,
        Sql(
            r#"DELETE FROM public.items WHERE items.org_id = 'org_a' AND (id IN (SELECT item_id FROM (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines))"#,
        ),
    );
    check(
        r#"DELETE FROM items i USING count_lines c WHERE c.item_id = i.id RETURNING i.id"#,
        Sql(
            r#"DELETE FROM public.items i USING (SELECT * FROM public.count_lines WHERE org_id = 'org_a') c WHERE i.org_id = 'org_a' AND (c.item_id = i.id) RETURNING i.id"#,
        ),
    );
    check(
        r#"DELETE FROM pg_catalog.pg_class"#,
        Refused("42501", r#"DELETE on system relation pg_catalog.pg_class"#),
    );
    check(
        r#"UPDATE Items SET description = 'x'"#,
        Sql(r#"UPDATE public.items SET description = 'x' WHERE Items.org_id = 'org_a'"#),
    );
}

#[test]
fn writable_ctes_merge() {
    check(
        r#"WITH i AS (INSERT INTO items (item_number) VALUES ('x') RETURNING id) SELECT * FROM i"#,
        Sql(
            r#"WITH i AS (INSERT INTO public.items (item_number, org_id) VALUES ('x', 'org_a') RETURNING id) SELECT * FROM i"#,
        ),
    );
    check(
        r#"WITH u AS (UPDATE items SET active = false RETURNING id) SELECT count(*) FROM u"#,
        Sql(
            r#"WITH u AS (UPDATE public.items SET active = false WHERE items.org_id = 'org_a' RETURNING id) SELECT count(*) FROM u"#,
        ),
    );
    check(
        r#"WITH d AS (DELETE FROM inventory_balances RETURNING *) INSERT INTO audit_logs (action) SELECT 'deleted' FROM d"#,
        Sql(
            r#"WITH d AS (DELETE FROM public.inventory_balances WHERE inventory_balances.org_id = 'org_a' RETURNING *) INSERT INTO public.audit_logs (action, org_id) SELECT *, 'org_a' FROM (SELECT 'deleted' FROM d) AS orgwall_src"#,
        ),
    );
    check(
        r#"MERGE INTO items t USING locations s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE"#,
        Refused(
            "0A000",
            r#"MERGE … WHEN NOT MATCHED BY SOURCE is not supported for tenants"#,
        ),
    );
    check(
        r#"MERGE INTO items t USING locations s ON t.id = s.id WHEN MATCHED THEN UPDATE SET org_id = 'org_b'"#,
        Refused(
            "42501",
            r#"changing the tenant column org_id is not allowed"#,
        ),
    );
    check(
        r#"MERGE INTO items t USING (SELECT * FROM locations) s ON t.id = s.id WHEN MATCHED THEN DELETE"#,
        Sql(
            r#"MERGE INTO public.items t USING (SELECT * FROM (SELECT * FROM public.locations WHERE org_id = 'org_a') AS locations) s ON t.org_id = 'org_a' AND (t.id = s.id) WHEN MATCHED THEN DELETE"#,
        ),
    );
    check(
        r#"MERGE INTO items t USING locations s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id, org_id) VALUES (s.id, 'org_b')"#,
        Refused(
            "42501",
            r#"tenant value 'org_b' is not the session's tenant"#,
        ),
    );
    check(
        r#"MERGE INTO organizations t USING locations s ON t.id = s.id WHEN MATCHED THEN DELETE"#,
        Refused(
            "42501",
            r#"MERGE on organizations is not allowed for tenants"#,
        ),
    );
}

#[test]
fn copy_prepare_cursor_explain() {
    check(
        r#"COPY items TO '/tmp/x'"#,
        Refused("42501", r#"COPY … TO a file or program is not allowed"#),
    );
    check(
        r#"COPY items TO PROGRAM 'sh'"#,
        Refused("42501", r#"COPY … TO a file or program is not allowed"#),
    );
    check(
        r#"COPY organizations TO STDOUT"#,
        Sql(
            r#"COPY (SELECT * FROM (SELECT * FROM public.organizations WHERE id = 'org_a') AS organizations) TO STDOUT"#,
        ),
    );
    check(
        r#"COPY pg_stats TO STDOUT"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_stats exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"COPY (SELECT * FROM items i JOIN users u ON u.id = i.id) TO STDOUT WITH (FORMAT csv, HEADER)"#,
        Sql(
            r#"COPY (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i JOIN (SELECT * FROM public.users WHERE org_id = 'org_a') u ON u.id = i.id) TO STDOUT (FORMAT csv, HEADER)"#,
        ),
    );
    check(
        r#"PREPARE p (text) AS INSERT INTO users (email, org_id) VALUES ('x', $1)"#,
        Refused(
            "42501",
            r#"PREPARE with a $n parameter for the tenant column cannot be checked; omit the tenant column"#,
        ),
    );
    check(
        r#"PREPARE p (text) AS INSERT INTO users (email) VALUES ($1)"#,
        Sql(r#"PREPARE p (TEXT) AS INSERT INTO public.users (email, org_id) VALUES ($1, 'org_a')"#),
    );
    check(
        r#"PREPARE q AS UPDATE items SET active = true WHERE id = $1"#,
        Sql(
            r#"PREPARE q AS UPDATE public.items SET active = true WHERE items.org_id = 'org_a' AND (id = $1)"#,
        ),
    );
    check(
        r#"EXECUTE p((SELECT email FROM users LIMIT 1))"#,
        Sql(
            r#"EXECUTE p((SELECT email FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users LIMIT 1))"#,
        ),
    );
    check(r#"DEALLOCATE p"#, Sql(r#"DEALLOCATE p"#));
    check(r#"DEALLOCATE ALL"#, Sql(r#"DEALLOCATE ALL"#));
    check(
        r#"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM items i JOIN locations l ON true"#,
        Sql(
            r#"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') l ON true"#,
        ),
    );
    check(r#"FETCH 10 FROM c"#, Sql(r#"FETCH 10 FROM c"#));
    check(r#"CLOSE c"#, Sql(r#"CLOSE c"#));
    check(
        r#"EXPLAIN UPDATE items SET active = true"#,
        Sql(r#"EXPLAIN UPDATE public.items SET active = true WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM users"#,
        Sql(
            r#"EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users"#,
        ),
    );
    check(
        r#"EXPLAIN DROP TABLE items"#,
        Refused("42501", r#"EXPLAIN of DROP TABLE items"#),
    );
}

#[test]
fn transactions_settings() {
    check(
        r#"START TRANSACTION ISOLATION LEVEL SERIALIZABLE"#,
        Sql(r#"START TRANSACTION ISOLATION LEVEL SERIALIZABLE"#),
    );
    check(r#"BEGIN READ ONLY"#, Sql(r#"BEGIN READ ONLY"#));
    check(r#"ROLLBACK"#, Sql(r#"ROLLBACK"#));
    check(r#"SAVEPOINT s1"#, Sql(r#"SAVEPOINT s1"#));
    check(r#"RELEASE SAVEPOINT s1"#, Sql(r#"RELEASE SAVEPOINT s1"#));
    check(
        r#"ROLLBACK TO SAVEPOINT s1"#,
        Sql(r#"ROLLBACK TO SAVEPOINT s1"#),
    );
    check(r#"END"#, Sql(r#"END"#));
    check(r#"SHOW TimeZone"#, Sql(r#"SHOW TimeZone"#));
    check(r#"SHOW ALL"#, Sql(r#"SHOW ALL"#));
    check(
        r#"SET SESSION search_path TO DEFAULT"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET "search_path" = public"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET search_path TO public, evil"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET SESSION ROLE admin"#,
        Refused("42501", r#"SET ROLE is not allowed for tenants"#),
    );
    check(
        r#"SET LOCAL statement_timeout = 1000"#,
        Sql(r#"SET LOCAL statement_timeout = 1000"#),
    );
    check(
        r#"SET extra_float_digits = 3"#,
        Sql(r#"SET extra_float_digits = 3"#),
    );
    check(
        r#"SET intervalstyle = 'iso_8601'"#,
        Sql(r#"SET intervalstyle = 'iso_8601'"#),
    );
    check(
        r#"SET NAMES 'SJIS'"#,
        Refused(
            "42501",
            r#"client encodings other than UTF8 are not allowed for tenants"#,
        ),
    );
    check(r#"SET NAMES 'UTF8'"#, Sql(r#"SET NAMES 'UTF8'"#));
    check(
        r#"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"#,
        Sql(r#"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"#),
    );
    check(
        r#"SET ORGWALL.tenant_token = 'x'"#,
        Refused(
            "42501",
            r#"SET orgwall.tenant_token is handled by the Orgwall session, not passed to the server"#,
        ),
    );
    check(
        r#"SET session_replication_role = replica"#,
        Refused(
            "42501",
            r#"SET session_replication_role is not allowed for tenants"#,
        ),
    );
    check(
        r#"SET statement_timeout = (SELECT 1)"#,
        Refused("0A000", r#"SET statement_timeout to (SELECT 1)"#),
    );
    check(
        r#"RESET ROLE"#,
        Refused("42501", r#"RESET role is not allowed for tenants"#),
    );
    check(
        r#"RESET SESSION AUTHORIZATION"#,
        Refused(
            "42501",
            r#"RESET SESSION AUTHORIZATION is not allowed for tenants"#,
        ),
    );
    check(
        r#"DISCARD ALL"#,
        Refused(
            "42501",
            r#"DISCARD ALL resets the session's role and is not allowed"#,
        ),
    );
    check(r#"DISCARD PLANS"#, Sql(r#"DISCARD PLANS"#));
}

#[test]
fn ddl_and_utility() {
    check(
        r#"ALTER TABLE items DROP COLUMN org_id"#,
        Refused(
            "42501",
            r#"ALTER TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"DROP SCHEMA public CASCADE"#,
        Refused(
            "42501",
            r#"DROP SCHEMA is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE INDEX ON items (id)"#,
        Refused(
            "42501",
            r#"CREATE INDEX ON is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql"#,
        Refused(
            "42501",
            r#"CREATE FUNCTION is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE EXTENSION dblink"#,
        Refused(
            "42501",
            r#"CREATE EXTENSION is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE ROLE r"#,
        Refused(
            "42501",
            r#"CREATE ROLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"ALTER ROLE tenant SUPERUSER"#,
        Refused(
            "42501",
            r#"ALTER ROLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"REVOKE ALL ON items FROM public"#,
        Refused("42501", r#"GRANT/REVOKE is not allowed for tenants"#),
    );
    check(
        r#"VACUUM items"#,
        Refused(
            "42501",
            r#"VACUUM is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"ANALYZE items"#,
        Refused(
            "42501",
            r#"ANALYZE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CLUSTER items"#,
        Refused("42501", r#"CLUSTER is not allowed for tenants"#),
    );
    check(
        r#"REINDEX TABLE items"#,
        Refused("42501", r#"REINDEX is not allowed for tenants"#),
    );
    check(
        r#"COMMENT ON TABLE items IS 'x'"#,
        Refused(
            "42501",
            r#"COMMENT ON TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"LOCK TABLE items"#,
        Refused(
            "42501",
            r#"LOCK TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"REFRESH MATERIALIZED VIEW mv"#,
        Refused(
            "42501",
            r#"REFRESH MATERIALIZED VIEW is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE VIEW v AS SELECT * FROM items"#,
        Refused(
            "42501",
            r#"CREATE VIEW is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CREATE TEMP TABLE t AS SELECT * FROM users"#,
        Refused(
            "42501",
            r#"CREATE TEMPORARY TABLE is not allowed for tenants (DDL and utility statements are refused)"#,
        ),
    );
    check(
        r#"CHECKPOINT"#,
        Refused("42501", r#"CHECKPOINT is not allowed for tenants"#),
    );
}

#[test]
fn functions() {
    check(
        r#"SELECT current_setting('TimeZone')"#,
        Sql(r#"SELECT current_setting('TimeZone')"#),
    );
    check(
        r#"SELECT pg_cancel_backend(1)"#,
        Refused(
            "42501",
            r#"function pg_cancel_backend runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_reload_conf()"#,
        Refused(
            "42501",
            r#"function pg_reload_conf runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT table_to_xml('users', true, true, '')"#,
        Refused(
            "42501",
            r#"function table_to_xml runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT cursor_to_xml('c', 1, true, true, '')"#,
        Refused(
            "42501",
            r#"function cursor_to_xml runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT query_to_xml_and_xmlschema('select 1', true, true, '')"#,
        Refused(
            "42501",
            r#"function query_to_xml_and_xmlschema runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_ls_dir('.')"#,
        Refused(
            "42501",
            r#"function pg_ls_dir runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT lo_get(1)"#,
        Refused(
            "42501",
            r#"function lo_get runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT * FROM dblink('host=x', 'select 1') AS t(a int)"#,
        Refused(
            "42501",
            r#"function dblink runs SQL or reaches the server and is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT evil.fn()"#,
        Refused("42501", r#"function evil.fn is not on the allow-list"#),
    );
    check(
        r#"SELECT date_trunc('day', created_at), count(*) FROM inventory_ledger GROUP BY 1"#,
        Sql(
            r#"SELECT date_trunc('day', created_at), count(*) FROM (SELECT * FROM public.inventory_ledger WHERE org_id = 'org_a') AS inventory_ledger GROUP BY 1"#,
        ),
    );
    check(
        r#"SELECT * FROM items i, LATERAL generate_series(1, 3) g"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i, LATERAL generate_series(1, 3) g"#,
        ),
    );
    check(
        r#"SELECT 'items'::regclass"#,
        Sql(r#"SELECT 'items'::REGCLASS"#),
    );
    check(
        r#"SELECT string_agg(email, ',' ORDER BY email) FROM users"#,
        Sql(
            r#"SELECT string_agg(email, ',' ORDER BY email) FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users"#,
        ),
    );
    check(
        r#"SELECT gen_random_uuid(), to_char(now(), 'YYYY'), greatest(1, 2), round(1.5), nullif(1, 2)"#,
        Sql(
            r#"SELECT gen_random_uuid(), to_char(now(), 'YYYY'), greatest(1, 2), round(1.5), nullif(1, 2)"#,
        ),
    );
}

#[test]
fn identifiers() {
    check(
        r#"SELECT * FROM "users""#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS "users""#),
    );
    check(
        r#"SELECT * FROM "USERS""#,
        Refused("42501", r#"unknown table USERS"#),
    );
    check(
        r#"SELECT * FROM Public.Users"#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS Users"#),
    );
    check(
        r#"SELECT * FROM "public"."users" "U""#,
        Sql(r#"SELECT * FROM (SELECT * FROM public.users WHERE org_id = 'org_a') "U""#),
    );
    check(
        r#"WITH "Items" AS (SELECT 1) SELECT * FROM items"#,
        Sql(
            r#"WITH "Items" AS (SELECT 1) SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items"#,
        ),
    );
    check(
        r#"WITH ITEMS AS (SELECT 1) SELECT * FROM "items""#,
        Sql(r#"WITH ITEMS AS (SELECT 1) SELECT * FROM "items""#),
    );
    check(
        r#"WITH items AS (SELECT * FROM (SELECT * FROM items) q) SELECT * FROM items"#,
        Sql(
            r#"WITH items AS (SELECT * FROM (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) q) SELECT * FROM items"#,
        ),
    );
    check(
        r#"WITH a AS (SELECT * FROM items) SELECT * FROM (SELECT * FROM a) s WHERE EXISTS (SELECT 1 FROM a)"#,
        Sql(
            r#"WITH a AS (SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items) SELECT * FROM (SELECT * FROM a) s WHERE EXISTS (SELECT 1 FROM a)"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE id IN (SELECT id FROM items UNION SELECT id FROM users)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id IN (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items UNION SELECT id FROM (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"#,
        ),
    );
    check(
        r#"SELECT * FROM items i JOIN locations l ON l.id IN (SELECT location_id FROM count_sheets)"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') l ON l.id IN (SELECT location_id FROM (SELECT * FROM public.count_sheets WHERE org_id = 'org_a') AS count_sheets)"#,
        ),
    );
    check(
        r#"SELECT "I"."id" FROM "public"."items" AS "I" INNER JOIN "public"."locations" AS "L" ON ("L"."id") = ("I"."id") WHERE ("I"."active" = $1 AND "I"."item_number" IN ($2, $3)) ORDER BY "I"."id" ASC LIMIT $4 OFFSET $5"#,
        Sql(
            r#"SELECT "I"."id" FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS "I" INNER JOIN (SELECT * FROM public.locations WHERE org_id = 'org_a') AS "L" ON ("L"."id") = ("I"."id") WHERE ("I"."active" = $1 AND "I"."item_number" IN ($2, $3)) ORDER BY "I"."id" ASC LIMIT $4 OFFSET $5"#,
        ),
    );
}

#[test]
fn no_tenant_never_means_no_filter() {
    // An empty or hostile tenant value still renders a predicate: it matches no row.
    let cat = Catalog::seed_for_tests();
    let t = rewrite("SELECT * FROM items WHERE org_id IS NULL", &cat).expect("rewrites");
    assert_eq!(
        t.render(""),
        "SELECT * FROM (SELECT * FROM public.items WHERE org_id = '') AS items WHERE org_id IS NULL"
    );
    let t = rewrite("DELETE FROM items", &cat).expect("rewrites");
    assert_eq!(
        t.render(""),
        "DELETE FROM public.items WHERE items.org_id = ''"
    );
}

#[test]
fn more_forms() {
    check("SELECT * FROM now()", Sql("SELECT * FROM now()"));
    check(
        "INSERT INTO items (id, item_number) OVERRIDING SYSTEM VALUE VALUES ('a', 'b')",
        Sql("INSERT INTO public.items (id, item_number, org_id) OVERRIDING SYSTEM VALUE VALUES ('a', 'b', 'org_a')"),
    );
    check(
        "SELECT * FROM items WHERE id = $1 AND org_id = $2",
        Sql("SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE id = $1 AND org_id = $2"),
    );
    check(
        "SELECT o.name, count(u.id) FROM organizations o LEFT JOIN users u ON u.org_id = o.id GROUP BY o.name",
        Sql("SELECT o.name, count(u.id) FROM (SELECT * FROM public.organizations WHERE id = 'org_a') o LEFT JOIN (SELECT * FROM public.users WHERE org_id = 'org_a') u ON u.org_id = o.id GROUP BY o.name"),
    );
    check(
        "SELECT * FROM items i WHERE i.id IN (WITH x AS (SELECT item_id FROM count_lines) SELECT * FROM x)",
        Sql("SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i WHERE i.id IN (WITH x AS (SELECT item_id FROM (SELECT * FROM public.count_lines WHERE org_id = 'org_a') AS count_lines) SELECT * FROM x)"),
    );
    check(
        "WITH x AS (SELECT 1) SELECT * FROM items WHERE EXISTS (SELECT 1 FROM x, users)",
        Sql("WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items WHERE EXISTS (SELECT 1 FROM x, (SELECT * FROM public.users WHERE org_id = 'org_a') AS users)"),
    );
    check("SELECT * FROM x", Refused("42501", "unknown table x"));
    check(
        "SELECT (WITH items AS (SELECT 1 AS id) SELECT id FROM items), (SELECT id FROM items LIMIT 1)",
        Sql("SELECT (WITH items AS (SELECT 1 AS id) SELECT id FROM items), (SELECT id FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items LIMIT 1)"),
    );
}
