//! Rewriter cases: INSERT, UPDATE/DELETE, writable CTEs, MERGE, COPY, PREPARE, cursors, EXPLAIN.

use super::*;

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
            r#"INSERT INTO public.users (email, org_id) VALUES ('a', 'org_a'), ('b', 'org_a') RETURNING id, (SELECT count(*) FROM public.users AS users WHERE users.org_id = 'org_a')"#,
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
            r#"INSERT INTO public.items (item_number, org_id) VALUES ((SELECT item_number FROM public.items AS items WHERE items.org_id = 'org_a' LIMIT 1), 'org_a')"#,
        ),
    );
    check(
        r#"INSERT INTO items (item_number) SELECT item_number FROM items UNION SELECT name FROM locations"#,
        Sql(
            r#"INSERT INTO public.items (item_number, org_id) SELECT *, 'org_a' FROM (SELECT item_number FROM public.items AS items WHERE items.org_id = 'org_a' UNION SELECT name FROM public.locations AS locations WHERE locations.org_id = 'org_a') AS orgwall_src"#,
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
            r#"WITH src AS (SELECT item_number FROM public.items AS items WHERE items.org_id = 'org_a') INSERT INTO public.items (item_number, org_id) SELECT *, 'org_a' FROM (SELECT item_number FROM src) AS orgwall_src"#,
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
            r#"UPDATE public.items SET description = (SELECT name FROM public.locations AS locations WHERE locations.org_id = 'org_a' LIMIT 1) WHERE items.org_id = 'org_a'"#,
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
            r#"DELETE FROM public.items WHERE items.org_id = 'org_a' AND (id IN (SELECT item_id FROM public.count_lines AS count_lines WHERE count_lines.org_id = 'org_a'))"#,
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
            r#"MERGE INTO public.items t USING (SELECT * FROM public.locations AS locations WHERE locations.org_id = 'org_a') s ON t.org_id = 'org_a' AND (t.id = s.id) WHEN MATCHED THEN DELETE"#,
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
            r#"COPY (SELECT * FROM public.organizations AS organizations WHERE organizations.id = 'org_a') TO STDOUT"#,
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
            r#"COPY (SELECT * FROM public.items i JOIN public.users u ON u.id = i.id WHERE i.org_id = 'org_a' AND u.org_id = 'org_a') TO STDOUT (FORMAT csv, HEADER)"#,
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
            r#"EXECUTE p((SELECT email FROM public.users AS users WHERE users.org_id = 'org_a' LIMIT 1))"#,
        ),
    );
    check(r#"DEALLOCATE p"#, Sql(r#"DEALLOCATE p"#));
    check(r#"DEALLOCATE ALL"#, Sql(r#"DEALLOCATE ALL"#));
    check(
        r#"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM items i JOIN locations l ON true"#,
        Sql(
            r#"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM public.items i JOIN public.locations l ON true WHERE i.org_id = 'org_a' AND l.org_id = 'org_a'"#,
        ),
    );
    check(r#"FETCH 10 FROM c"#, Sql(r#"FETCH 10 FROM c"#));
    check(r#"CLOSE c"#, Sql(r#"CLOSE c"#));
    let explaining = Catalog::seed_for_tests().allowing_explain(true);
    check_with(
        &explaining,
        r#"EXPLAIN UPDATE items SET active = true"#,
        Sql(r#"EXPLAIN UPDATE public.items SET active = true WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"EXPLAIN UPDATE items SET active = true"#,
        Refused("42501", "[tenancy] allow_explain = true allows it"),
    );
    for analyze in [
        r#"EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM users"#,
        r#"EXPLAIN (FORMAT JSON, analyze false) SELECT * FROM users"#,
        r#"EXPLAIN ANALYZE VERBOSE SELECT * FROM users"#,
    ] {
        check_with(
            &explaining,
            analyze,
            Refused(
                "42501",
                "EXPLAIN ANALYZE (its row counts include other tenants' rows)",
            ),
        );
    }
    // PostgreSQL's British spelling does not parse here: refused all the same.
    check_with(
        &explaining,
        r#"explain analyse select * from users"#,
        Refused("42601", "cannot parse"),
    );
    check_with(
        &explaining,
        r#"EXPLAIN DROP TABLE items"#,
        Refused("42501", r#"EXPLAIN of DROP TABLE items"#),
    );
}
