//! Rewriter cases: transactions and settings, DDL and utilities, functions, identifiers.

use super::*;

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
    check(r#"SHOW ALL"#, Refused("42501", "SHOW ALL is not available"));
    check(r#"SHOW "all""#, Sql(r#"SHOW "all""#));
    check(
        r#"SHOW orgwall.tenant"#,
        Refused("42501", "orgwall.tenant is not a setting"),
    );
    check(
        r#"SHOW "orgwall.tenant""#,
        Refused("42501", "orgwall.tenant is not a setting"),
    );
    check(
        r#"SET SESSION search_path TO DEFAULT"#,
        Refused("42501", r#"SET search_path is not allowed for tenants"#),
    );
    check(
        r#"SET "search_path" = public"#,
        Sql(r#"SET "search_path" = public"#),
    );
    check(
        r#"SET search_path TO 'public'"#,
        Sql(r#"SET search_path = 'public'"#),
    );
    for path in [
        "pg_catalog, public",
        "public, pg_catalog",
        "\"Public\"",
        "public, public",
        "\"$user\", public",
    ] {
        let sql = format!("SET search_path TO {path}");
        let e = rewrite(&sql, &Catalog::seed_for_tests()).unwrap_err();
        assert_eq!(e.code, "42501", "{sql}");
    }
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
            r#"function pg_cancel_backend is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_reload_conf()"#,
        Refused(
            "42501",
            r#"function pg_reload_conf is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT table_to_xml('users', true, true, '')"#,
        Refused(
            "42501",
            r#"function table_to_xml is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT cursor_to_xml('c', 1, true, true, '')"#,
        Refused(
            "42501",
            r#"function cursor_to_xml is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT query_to_xml_and_xmlschema('select 1', true, true, '')"#,
        Refused(
            "42501",
            r#"function query_to_xml_and_xmlschema is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_ls_dir('.')"#,
        Refused("42501", r#"function pg_ls_dir is not allowed for tenants"#),
    );
    check(
        r#"SELECT lo_get(1)"#,
        Refused("42501", r#"function lo_get is not allowed for tenants"#),
    );
    check(
        r#"SELECT * FROM dblink('host=x', 'select 1') AS t(a int)"#,
        Refused("42501", r#"function dblink is not allowed for tenants"#),
    );
    check(
        r#"SELECT evil.fn()"#,
        Refused("42501", r#"function evil.fn is not on the allow-list"#),
    );
    check(
        r#"SELECT date_trunc('day', created_at), count(*) FROM inventory_ledger GROUP BY 1"#,
        Sql(
            r#"SELECT date_trunc('day', created_at), count(*) FROM public.inventory_ledger AS inventory_ledger WHERE inventory_ledger.org_id = 'org_a' GROUP BY 1"#,
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
            r#"SELECT string_agg(email, ',' ORDER BY email) FROM public.users AS users WHERE users.org_id = 'org_a'"#,
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
        Sql(r#"SELECT * FROM public.users AS "users" WHERE "users".org_id = 'org_a'"#),
    );
    check(
        r#"SELECT * FROM "USERS""#,
        Refused("42501", r#"unknown table USERS"#),
    );
    check(
        r#"SELECT * FROM Public.Users"#,
        Sql(r#"SELECT * FROM public.users AS Users WHERE Users.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT * FROM "public"."users" "U""#,
        Sql(r#"SELECT * FROM public.users "U" WHERE "U".org_id = 'org_a'"#),
    );
    check(
        r#"WITH "Items" AS (SELECT 1) SELECT * FROM items"#,
        Sql(
            r#"WITH "Items" AS (SELECT 1) SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"WITH ITEMS AS (SELECT 1) SELECT * FROM "items""#,
        Sql(r#"WITH ITEMS AS (SELECT 1) SELECT * FROM "items""#),
    );
    check(
        r#"WITH items AS (SELECT * FROM (SELECT * FROM items) q) SELECT * FROM items"#,
        Sql(
            r#"WITH items AS (SELECT * FROM (SELECT * FROM public.items AS items WHERE items.org_id = 'org_a') q) SELECT * FROM items"#,
        ),
    );
    check(
        r#"WITH a AS (SELECT * FROM items) SELECT * FROM (SELECT * FROM a) s WHERE EXISTS (SELECT 1 FROM a)"#,
        Sql(
            r#"WITH a AS (SELECT * FROM public.items AS items WHERE items.org_id = 'org_a') SELECT * FROM (SELECT * FROM a) s WHERE EXISTS (SELECT 1 FROM a)"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE id IN (SELECT id FROM items UNION SELECT id FROM users)"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (id IN (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' UNION SELECT id FROM public.users AS users WHERE users.org_id = 'org_a'))"#,
        ),
    );
    check(
        r#"SELECT * FROM items i JOIN locations l ON l.id IN (SELECT location_id FROM count_sheets)"#,
        Sql(
            r#"SELECT * FROM public.items i JOIN public.locations l ON l.id IN (SELECT location_id FROM public.count_sheets AS count_sheets WHERE count_sheets.org_id = 'org_a') WHERE i.org_id = 'org_a' AND l.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT "I"."id" FROM "public"."items" AS "I" INNER JOIN "public"."locations" AS "L" ON ("L"."id") = ("I"."id") WHERE ("I"."active" = $1 AND "I"."item_number" IN ($2, $3)) ORDER BY "I"."id" ASC LIMIT $4 OFFSET $5"#,
        Sql(
            r#"SELECT "I"."id" FROM public.items AS "I" INNER JOIN public.locations AS "L" ON ("L"."id") = ("I"."id") WHERE "I".org_id = 'org_a' AND "L".org_id = 'org_a' AND (("I"."active" = $1 AND "I"."item_number" IN ($2, $3))) ORDER BY "I"."id" ASC LIMIT $4 OFFSET $5"#,
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
        "SELECT * FROM public.items AS items WHERE items.org_id = '' AND (org_id IS NULL)"
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
        Sql("SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (id = $1 AND org_id = $2)"),
    );
    check(
        "SELECT o.name, count(u.id) FROM organizations o LEFT JOIN users u ON u.org_id = o.id GROUP BY o.name",
        Sql("SELECT o.name, count(u.id) FROM (SELECT * FROM public.organizations WHERE id = 'org_a') o LEFT JOIN (SELECT * FROM public.users WHERE org_id = 'org_a') u ON u.org_id = o.id GROUP BY o.name"),
    );
    check(
        "SELECT * FROM items i WHERE i.id IN (WITH x AS (SELECT item_id FROM count_lines) SELECT * FROM x)",
        Sql("SELECT * FROM public.items i WHERE i.org_id = 'org_a' AND (i.id IN (WITH x AS (SELECT item_id FROM public.count_lines AS count_lines WHERE count_lines.org_id = 'org_a') SELECT * FROM x))"),
    );
    check(
        "WITH x AS (SELECT 1) SELECT * FROM items WHERE EXISTS (SELECT 1 FROM x, users)",
        Sql("WITH x AS (SELECT 1) SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (EXISTS (SELECT 1 FROM x, public.users AS users WHERE users.org_id = 'org_a'))"),
    );
    check("SELECT * FROM x", Refused("42501", "unknown table x"));
    check(
        "SELECT (WITH items AS (SELECT 1 AS id) SELECT id FROM items), (SELECT id FROM items LIMIT 1)",
        Sql("SELECT (WITH items AS (SELECT 1 AS id) SELECT id FROM items), (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' LIMIT 1)"),
    );
}

/// Issue 18: what drivers and ORMs send that used to be refused for tenants.
#[test]
fn stacks_false_refusals() {
    let cat = Catalog::seed_for_tests()
        .with_sequences([("public".to_string(), "items_seq".to_string())])
        .with_undeclared(
            "org_id",
            [("public".to_string(), "knex_migrations_lock".to_string())],
        );
    let c = |i, e| check_with(&cat, i, e);
    for same in [
        "SET standard_conforming_strings = on",
        "SELECT current_schemas(false)",
        "SELECT pg_catalog.current_schemas(true)",
        "SELECT * FROM information_schema._pg_expandarray(ARRAY[1, 2])",
        "SELECT to_tsvector('english', 'a b') @@ plainto_tsquery('english', 'a'), ts_rank(to_tsvector('x'), to_tsquery('x')), websearch_to_tsquery('a or b')",
        "SELECT txid_current(), pg_current_xact_id()",
        "SELECT sha256('x'::BYTEA), hashtext('x'), array_to_json(ARRAY[1, 2]), convert_from('x'::BYTEA, 'UTF8')",
        "SELECT pg_advisory_unlock_all()",
        "SELECT current_setting('TimeZone'), current_setting('app.x', true)",
    ] {
        c(same, Sql(same));
    }
    c(
        "SELECT pg_try_advisory_xact_lock(42), pg_advisory_xact_lock_shared(1, $1)",
        Sql("SELECT pg_try_advisory_xact_lock(pg_catalog.hashtext('org_a'), pg_catalog.hashtext((42::TEXT))), pg_advisory_xact_lock_shared(pg_catalog.hashtext('org_a'), pg_catalog.hashtext((1::TEXT || ',' || $1::TEXT)))"),
    );
    c(
        "SELECT nextval('items_seq'), currval('Public.ITEMS_SEQ'::regclass)",
        Sql(
            r#"SELECT nextval('"public"."items_seq"'::REGCLASS), currval('"public"."items_seq"'::REGCLASS)"#,
        ),
    );
    for (sql, code, part) in [
        (
            "SELECT nextval('other_seq')",
            "42501",
            "owned by a column of a tenant table",
        ),
        ("SELECT nextval($1)", "42501", "named by a string literal"),
        (
            "SELECT nextval('x_seq' || '')",
            "42501",
            "named by a string literal",
        ),
        ("SELECT setval('items_seq', 1)", "42501", "setval"),
        ("SELECT lastval()", "42501", "lastval"),
        ("SELECT * FROM nextval('items_seq')", "0A000", "in FROM"),
        ("SELECT * FROM pg_advisory_xact_lock(1)", "0A000", "in FROM"),
        ("SELECT pg_advisory_lock(1)", "42501", "pg_advisory_lock"),
        (
            "SELECT pg_try_advisory_lock(1)",
            "42501",
            "pg_try_advisory_lock",
        ),
        (
            "SELECT current_setting('orgwall.tenant')",
            "42501",
            "belongs to Orgwall",
        ),
        (
            "SELECT current_setting('ORGWALL.TENANT', true)",
            "42501",
            "belongs to Orgwall",
        ),
        (
            "SELECT current_setting(name) FROM pg_settings",
            "42501",
            "literal name only",
        ),
        ("SELECT ts_stat('SELECT 1')", "42501", "ts_stat"),
        (
            "SELECT ts_rewrite('a'::tsquery, 'SELECT 1')",
            "42501",
            "ts_rewrite",
        ),
        ("SELECT txid_status(1)", "42501", "txid_status"),
        (
            "SELECT * FROM knex_migrations_lock",
            "42501",
            "public.knex_migrations_lock has no org_id column and is not declared global",
        ),
        (
            "SELECT * FROM public.knex_migrations_lock",
            "42501",
            "[tenancy] global_tables",
        ),
        ("SELECT * FROM nosuch", "42501", "unknown table nosuch"),
        (
            "UPDATE pg_settings SET setting = 'x'",
            "42501",
            "system relation",
        ),
    ] {
        c(sql, Refused(code, part));
    }
    c(
        "SELECT setting FROM pg_catalog.pg_settings s WHERE name = 'max_index_keys'",
        Sql("SELECT setting FROM (SELECT * FROM pg_catalog.pg_settings WHERE name NOT LIKE '%.%' OFFSET 0) s WHERE name = 'max_index_keys'"),
    );
    c(
        "SELECT usename FROM pg_user",
        Sql("SELECT usename FROM (SELECT * FROM pg_catalog.pg_user WHERE usename = current_user OFFSET 0) AS pg_user"),
    );
    c(
        "SELECT id FROM items WHERE active FOR NO KEY UPDATE SKIP LOCKED",
        Sql("SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (active) FOR UPDATE SKIP LOCKED"),
    );
    c(
        "SELECT id FROM items FOR KEY SHARE",
        Sql("SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' FOR SHARE"),
    );
    c(
        "SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY['a']))",
        Refused("0A000", "ROWS FROM"),
    );
    c(
        "INSERT INTO items (id, item_number) SELECT 'x', 'y' ON CONFLICT DO NOTHING",
        Sql("INSERT INTO public.items (id, item_number, org_id) SELECT *, 'org_a' FROM (SELECT 'x', 'y' WHERE true) AS orgwall_src ON CONFLICT DO NOTHING"),
    );
}

/// Confined calls are rewritten wherever the rewriter walks expressions.
#[test]
fn confined_calls_everywhere() {
    let cat =
        Catalog::seed_for_tests().with_sequences([("public".to_string(), "items_seq".to_string())]);
    let c = |i, e| check_with(&cat, i, e);
    c(
        "INSERT INTO items (id, item_number) VALUES (nextval('items_seq')::text, 'x')",
        Sql(
            r#"INSERT INTO public.items (id, item_number, org_id) VALUES (nextval('"public"."items_seq"'::REGCLASS)::TEXT, 'x', 'org_a')"#,
        ),
    );
    c(
        "UPDATE items SET item_number = currval('items_seq')::text WHERE pg_try_advisory_xact_lock(1)",
        Sql(r#"UPDATE public.items SET item_number = currval('"public"."items_seq"'::REGCLASS)::TEXT WHERE items.org_id = 'org_a' AND (pg_try_advisory_xact_lock(pg_catalog.hashtext('org_a'), pg_catalog.hashtext((1::TEXT))))"#),
    );
    c(
        "SELECT id FROM items WHERE id IN (SELECT nextval('items_seq')::text)",
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (id IN (SELECT nextval('"public"."items_seq"'::REGCLASS)::TEXT))"#,
        ),
    );
}
