//! Rewriter cases: reads in every scope, refusals, and the known bypass classes.

use super::*;

#[test]
fn mixed_rules() {
    check(
        r#"SELECT * FROM items"#,
        Sql(r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT id FROM items WHERE org_id IS NULL OR 1=1"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (org_id IS NULL OR 1 = 1)"#,
        ),
    );
    check(
        r#"SELECT i.id, l.name FROM items i JOIN locations l ON l.id = i.id"#,
        Sql(
            r#"SELECT i.id, l.name FROM public.items i JOIN public.locations l ON l.id = i.id WHERE i.org_id = 'org_a' AND l.org_id = 'org_a'"#,
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
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id LIMIT 5"#,
        ),
    );
    check(
        r#"SELECT (SELECT count(*) FROM users) AS n FROM items"#,
        Sql(
            r#"SELECT (SELECT count(*) FROM public.users AS users WHERE users.org_id = 'org_a') AS n FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE EXISTS (SELECT 1 FROM users WHERE users.id = items.id)"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (EXISTS (SELECT 1 FROM public.users AS users WHERE users.org_id = 'org_a' AND (users.id = items.id)))"#,
        ),
    );
    check(
        r#"WITH users AS (SELECT * FROM users) SELECT * FROM users"#,
        Sql(
            r#"WITH users AS (SELECT * FROM public.users AS users WHERE users.org_id = 'org_a') SELECT * FROM users"#,
        ),
    );
    check(
        r#"WITH RECURSIVE r AS (SELECT id FROM items UNION ALL SELECT r.id FROM r) SELECT * FROM r"#,
        Sql(
            r#"WITH RECURSIVE r AS (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' UNION ALL SELECT r.id FROM r) SELECT * FROM r"#,
        ),
    );
    check(
        r#"SELECT "public"."users"."email" FROM "public"."users" WHERE "public"."users"."id" = $1"#,
        Sql(
            r#"SELECT "users"."email" FROM public.users AS "users" WHERE "users".org_id = 'org_a' AND ("users"."id" = $1)"#,
        ),
    );
    check(
        r#"SELECT * FROM "Users""#,
        Refused("42501", r#"unknown table Users"#),
    );
    check(
        r#"SELECT * FROM Users"#,
        Sql(r#"SELECT * FROM public.users AS Users WHERE Users.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT * FROM public.feature_flags UNION SELECT * FROM feature_flags"#,
        Sql(
            r#"SELECT * FROM public.feature_flags AS feature_flags WHERE feature_flags.org_id = 'org_a' UNION SELECT * FROM public.feature_flags AS feature_flags WHERE feature_flags.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT * FROM organizations"#,
        Sql(
            r#"SELECT * FROM public.organizations AS organizations WHERE organizations.id = 'org_a'"#,
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
    // What drivers and ORMs run on connect and when reflecting: psycopg's type lookup,
    // SQLAlchemy's has_table and column reflection (schema metadata, shared by all tenants).
    check(
        r#"SELECT typname, oid, typarray, oid::regtype::text FROM pg_type t WHERE t.oid = to_regtype($1)"#,
        Sql(
            r#"SELECT typname, oid, typarray, oid::regtype::TEXT FROM pg_catalog.pg_type t WHERE t.oid = to_regtype($1)"#,
        ),
    );
    check(
        r#"SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ($1) AND pg_catalog.pg_table_is_visible(c.oid)"#,
        Sql(
            r#"SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ($1) AND pg_catalog.pg_table_is_visible(c.oid)"#,
        ),
    );
    check(
        r#"SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.pg_get_constraintdef(k.oid), pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_attrdef d, pg_constraint k, pg_index i, pg_opclass o"#,
        Sql(
            r#"SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.pg_get_constraintdef(k.oid), pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_attrdef d, pg_catalog.pg_constraint k, pg_catalog.pg_index i, pg_catalog.pg_opclass o"#,
        ),
    );
    // set_config alone with literals is the SET it stands for (Django sets TimeZone so).
    check(
        r#"SELECT set_config('TimeZone', 'UTC', false)"#,
        Sql(r#"SELECT set_config('TimeZone', 'UTC', false)"#),
    );
    check(
        r#"SELECT pg_catalog.set_config('statement_timeout', '5s', true)"#,
        Sql(r#"SELECT pg_catalog.set_config('statement_timeout', '5s', true)"#),
    );
    check(
        r#"SELECT set_config('search_path', 'evil', false)"#,
        Refused(
            "42501",
            r#"set_config of search_path is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT set_config('Role', 'postgres', false)"#,
        Refused("42501", r#"set_config of role is not allowed for tenants"#),
    );
    check(
        r#"SELECT set_config('orgwall.org_id', 'org_b', false)"#,
        Refused(
            "42501",
            r#"set_config of orgwall.org_id is handled by the Orgwall session, not passed to the server"#,
        ),
    );
    check(
        r#"SELECT set_config('client_encoding', 'LATIN1', false)"#,
        Refused(
            "42501",
            r#"client encodings other than UTF8 are not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT set_config('TimeZone', $1, false)"#,
        Sql(r#"SELECT set_config('TimeZone', $1, false)"#),
    );
    check(
        r#"SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new"#,
        Sql(r#"SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new"#),
    );
    check(
        r#"SELECT set_config('search_path', 'x', false), pg_read_file('/etc/passwd')"#,
        Refused(
            "42501",
            r#"set_config of search_path is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT set_config('statement_timeout', '1s', false), pg_read_file('/etc/passwd')"#,
        Refused(
            "42501",
            r#"function pg_read_file is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT set_config('client_encoding', $1, false)"#,
        Refused(
            "42501",
            r#"set_config is allowed for tenants only as set_config('name', value, true|false) with a literal or $n value, as a select-list item"#,
        ),
    );
    check(
        r#"SELECT set_config('TimeZone', 'UTC', false) FROM items"#,
        Refused("42501", r#"function set_config is not allowed for tenants"#),
    );
    check(
        r#"SELECT 1, set_config('search_path', 'evil', false)"#,
        Refused(
            "42501",
            r#"set_config of search_path is not allowed for tenants"#,
        ),
    );
    check(
        r#"SET client_min_messages TO warning; SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE"#,
        Sql(r#"SET client_min_messages = warning; SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE"#),
    );
    check(
        r#"SET statement_timeout = INTERVAL '1' SECOND"#,
        Refused("0A000", r#"SET statement_timeout to INTERVAL '1' SECOND"#),
    );
    // psql's \dt and \d: owners' names and statistics definitions, not the statistics.
    check(
        r#"SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c"#,
        Sql(
            r#"SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c"#,
        ),
    );
    check(
        r#"SELECT stxname FROM pg_catalog.pg_statistic_ext"#,
        Sql(r#"SELECT stxname FROM pg_catalog.pg_statistic_ext"#),
    );
    check(
        r#"SELECT * FROM pg_catalog.pg_statistic_ext_data"#,
        Refused(
            "42501",
            r#"pg_catalog.pg_statistic_ext_data exposes other tenants' data or server secrets"#,
        ),
    );
    check(
        r#"SELECT * FROM information_schema.columns"#,
        Sql(r#"SELECT * FROM information_schema.columns"#),
    );
    check(
        r#"SELECT query_to_xml('select * from users', true, true, '')"#,
        Refused(
            "42501",
            r#"function query_to_xml is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT * FROM items, LATERAL (SELECT * FROM count_lines WHERE count_lines.item_id = items.id) cl"#,
        Sql(
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items, LATERAL (SELECT * FROM public.count_lines AS count_lines WHERE count_lines.org_id = 'org_a' AND (count_lines.item_id = items.id)) cl"#,
        ),
    );
    check(
        r#"VALUES ((SELECT email FROM users LIMIT 1))"#,
        Sql(
            r#"VALUES ((SELECT email FROM public.users AS users WHERE users.org_id = 'org_a' LIMIT 1))"#,
        ),
    );
    check(
        r#"TABLE items"#,
        Sql(r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#),
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
            r#"INSERT INTO public.users (email, org_id) SELECT *, 'org_a' FROM (SELECT email FROM public.users AS users WHERE users.org_id = 'org_a') AS orgwall_src"#,
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
            r#"UPDATE public.items SET description = 'x' WHERE items.org_id = 'org_a' AND (id IN (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' LIMIT 1))"#,
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
        Sql(r#"COPY (SELECT * FROM public.items AS items WHERE items.org_id = 'org_a') TO STDOUT"#),
    );
    check(
        r#"COPY items (id, item_number) TO STDOUT WITH (FORMAT csv)"#,
        Sql(
            r#"COPY (SELECT id, item_number FROM public.items AS items WHERE items.org_id = 'org_a') TO STDOUT (FORMAT csv)"#,
        ),
    );
    check(
        r#"COPY (SELECT id FROM items) TO STDOUT"#,
        Sql(
            r#"COPY (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a') TO STDOUT"#,
        ),
    );
    check(
        r#"COPY items FROM '/etc/passwd'"#,
        Refused("42501", r#"COPY … FROM a file or program is not allowed"#),
    );
    check(
        r#"PREPARE p AS SELECT * FROM items WHERE id = $1"#,
        Sql(
            r#"PREPARE p AS SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (id = $1)"#,
        ),
    );
    check(r#"EXECUTE p('x')"#, Sql(r#"EXECUTE p('x')"#));
    check(
        r#"DECLARE c CURSOR FOR SELECT * FROM items"#,
        Sql(
            r#"DECLARE c CURSOR FOR SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"EXPLAIN ANALYZE SELECT * FROM items"#,
        Refused("42501", "EXPLAIN ANALYZE"),
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
    check(r#"RESET ALL"#, Sql(r#"RESET ALL"#));
    check(
        r#"SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;"#,
        Sql(r#"SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"#),
    );
    check(
        r#"RESET ALL; SELECT * FROM items"#,
        Refused("0A000", r#"RESET ALL must be the last statement"#),
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
        Sql(r#"SELECT 1; SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#),
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
            r#"set_config of search_path is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT count(*) FROM items GROUP BY active HAVING count(*) > (SELECT count(*) FROM users)"#,
        Sql(
            r#"SELECT count(*) FROM public.items AS items WHERE items.org_id = 'org_a' GROUP BY active HAVING count(*) > (SELECT count(*) FROM public.users AS users WHERE users.org_id = 'org_a')"#,
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
        Sql(r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' FOR UPDATE"#),
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
        Sql(r#"SET LOCAL search_path = public"#),
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
            r#"standard_conforming_strings is pinned to on for tenants"#,
        ),
    );
    check(
        r#"SET standard_conforming_strings = on"#,
        Sql(r#"SET standard_conforming_strings = on"#),
    );
    check(
        r#"SELECT set_config('backslash_quote', $1, false)"#,
        Refused("42501", r#"set_config is allowed for tenants only as"#),
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
    check(r#"UNLISTEN *"#, Sql(r#"UNLISTEN *"#));
    check(
        r#"SELECT pg_read_file('/etc/passwd')"#,
        Refused(
            "42501",
            r#"function pg_read_file is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT lo_import('/etc/passwd')"#,
        Refused("42501", r#"function lo_import is not allowed for tenants"#),
    );
    check(
        r#"SELECT dblink('x', 'y')"#,
        Refused("42501", r#"function dblink is not allowed for tenants"#),
    );
    check(
        r#"SELECT pg_terminate_backend(1)"#,
        Refused(
            "42501",
            r#"function pg_terminate_backend is not allowed for tenants"#,
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
            r#"SELECT pg_catalog.count(*) FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT 1 FROM items WHERE pg_catalog.set_config('a.b','c',false) = 'c'"#,
        Refused(
            "42501",
            r#"function pg_catalog.set_config is not allowed for tenants"#,
        ),
    );
    check(
        r#"SELECT pg_catalog.set_config('a.b', (SELECT 'c'), false)"#,
        Refused(
            "42501",
            r#"set_config is allowed for tenants only as set_config('name', value, true|false) with a literal or $n value, as a select-list item"#,
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
        Sql(
            r#"SELECT * FROM (SELECT * FROM pg_catalog.pg_roles WHERE rolname = current_user OFFSET 0) AS pg_roles"#,
        ),
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
        Sql(r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT * FROM PUBLIC.ITEMS"#,
        Sql(r#"SELECT * FROM public.items AS ITEMS WHERE ITEMS.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT * FROM items AS "I" WHERE "I".id = '1'"#,
        Sql(r#"SELECT * FROM public.items AS "I" WHERE "I".org_id = 'org_a' AND ("I".id = '1')"#),
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
            r#"SELECT * FROM public.items AS items CROSS JOIN public.locations AS locations WHERE items.org_id = 'org_a' AND locations.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT * FROM items NATURAL JOIN count_lines"#,
        Sql(
            r#"SELECT * FROM public.items AS items NATURAL JOIN public.count_lines AS count_lines WHERE items.org_id = 'org_a' AND count_lines.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT * FROM items JOIN locations USING (id)"#,
        Sql(
            r#"SELECT * FROM public.items AS items JOIN public.locations AS locations USING(id) WHERE items.org_id = 'org_a' AND locations.org_id = 'org_a'"#,
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
            r#"SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') i LEFT JOIN LATERAL (SELECT * FROM public.inventory_balances b WHERE b.org_id = 'org_a' AND (b.item_id = i.id) ORDER BY quantity DESC LIMIT 1) top ON true"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE id IN (SELECT item_id FROM inventory_ledger)"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (id IN (SELECT item_id FROM public.inventory_ledger AS inventory_ledger WHERE inventory_ledger.org_id = 'org_a'))"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE id = ANY (SELECT item_id FROM inventory_ledger)"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (id = ANY(SELECT item_id FROM public.inventory_ledger AS inventory_ledger WHERE inventory_ledger.org_id = 'org_a'))"#,
        ),
    );
    check(
        r#"SELECT id FROM items WHERE NOT EXISTS (SELECT 1 FROM count_lines WHERE count_lines.item_id = items.id)"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' AND (NOT EXISTS (SELECT 1 FROM public.count_lines AS count_lines WHERE count_lines.org_id = 'org_a' AND (count_lines.item_id = items.id)))"#,
        ),
    );
    check(
        r#"SELECT id FROM items ORDER BY (SELECT max(created_at) FROM inventory_ledger l WHERE l.item_id = items.id)"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY (SELECT max(created_at) FROM public.inventory_ledger l WHERE l.org_id = 'org_a' AND (l.item_id = items.id))"#,
        ),
    );
    check(
        r#"SELECT active, count(*) FROM items GROUP BY active, (SELECT 1 FROM users LIMIT 1)"#,
        Sql(
            r#"SELECT active, count(*) FROM public.items AS items WHERE items.org_id = 'org_a' GROUP BY active, (SELECT 1 FROM public.users AS users WHERE users.org_id = 'org_a' LIMIT 1)"#,
        ),
    );
    check(
        r#"SELECT ARRAY(SELECT id FROM users)"#,
        Sql(r#"SELECT ARRAY(SELECT id FROM public.users AS users WHERE users.org_id = 'org_a')"#),
    );
    check(
        r#"SELECT id FROM items UNION SELECT id FROM locations EXCEPT SELECT item_id FROM count_lines INTERSECT SELECT id FROM users"#,
        Sql(
            r#"SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' UNION SELECT id FROM public.locations AS locations WHERE locations.org_id = 'org_a' EXCEPT SELECT item_id FROM public.count_lines AS count_lines WHERE count_lines.org_id = 'org_a' INTERSECT SELECT id FROM public.users AS users WHERE users.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"(SELECT id FROM items ORDER BY id LIMIT 1) UNION ALL (SELECT id FROM items ORDER BY id DESC LIMIT 1)"#,
        Sql(
            r#"(SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id LIMIT 1) UNION ALL (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id DESC LIMIT 1)"#,
        ),
    );
    check(
        r#"WITH a AS (SELECT * FROM items), b AS (SELECT * FROM a JOIN locations ON true) SELECT * FROM b"#,
        Sql(
            r#"WITH a AS (SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'), b AS (SELECT * FROM a JOIN public.locations AS locations ON true WHERE locations.org_id = 'org_a') SELECT * FROM b"#,
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
            r#"WITH items AS (SELECT 2) SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE id = (SELECT id FROM (SELECT * FROM items) q LIMIT 1)"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (id = (SELECT id FROM (SELECT * FROM public.items AS items WHERE items.org_id = 'org_a') q LIMIT 1))"#,
        ),
    );
    check(
        r#"SELECT * FROM feature_flags f WHERE f.enabled"#,
        Sql(r#"SELECT * FROM public.feature_flags f WHERE f.org_id = 'org_a' AND (f.enabled)"#),
    );
    check(
        r#"SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM users)) FROM items"#,
        Sql(
            r#"SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM public.users AS users WHERE users.org_id = 'org_a')) FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT row_number() OVER (PARTITION BY active ORDER BY (SELECT 1 FROM users LIMIT 1)) FROM items"#,
        Sql(
            r#"SELECT row_number() OVER (PARTITION BY active ORDER BY (SELECT 1 FROM public.users AS users WHERE users.org_id = 'org_a' LIMIT 1)) FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT CASE WHEN EXISTS (SELECT 1 FROM users) THEN 1 END"#,
        Sql(
            r#"SELECT CASE WHEN EXISTS (SELECT 1 FROM public.users AS users WHERE users.org_id = 'org_a') THEN 1 END"#,
        ),
    );
    check(
        r#"SELECT coalesce((SELECT name FROM users LIMIT 1), 'x')"#,
        Sql(
            r#"SELECT coalesce((SELECT name FROM public.users AS users WHERE users.org_id = 'org_a' LIMIT 1), 'x')"#,
        ),
    );
    check(
        r#"SELECT * FROM items LIMIT (SELECT count(*) FROM users)"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' LIMIT (SELECT count(*) FROM public.users AS users WHERE users.org_id = 'org_a')"#,
        ),
    );
    check(
        r#"SELECT * FROM items ORDER BY id OFFSET 10 FETCH FIRST 5 ROWS ONLY"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id OFFSET 10 FETCH FIRST 5 ROWS ONLY"#,
        ),
    );
    check(
        r#"SELECT DISTINCT ON (item_number) * FROM items"#,
        Sql(
            r#"SELECT DISTINCT ON (item_number) * FROM public.items AS items WHERE items.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"SELECT i.*, public.items.id FROM public.items AS i"#,
        Sql(r#"SELECT i.*, items.id FROM public.items AS i WHERE i.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT public.items.* FROM public.items"#,
        Sql(r#"SELECT items.* FROM public.items AS items WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT items.id FROM items, public.items p2"#,
        Sql(
            r#"SELECT items.id FROM public.items AS items, public.items p2 WHERE items.org_id = 'org_a' AND p2.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"VALUES (1, 'a'), (2, (SELECT name FROM locations LIMIT 1))"#,
        Sql(
            r#"VALUES (1, 'a'), (2, (SELECT name FROM public.locations AS locations WHERE locations.org_id = 'org_a' LIMIT 1))"#,
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
        Sql(r#"SELECT * FROM ONLY public.items AS items WHERE items.org_id = 'org_a'"#),
    );
    check(
        r#"SELECT FROM ONLY items LEFT JOIN users * ON true"#,
        Sql(
            r#"SELECT FROM (SELECT * FROM ONLY public.items WHERE org_id = 'org_a') AS items LEFT JOIN (SELECT * FROM public.users WHERE org_id = 'org_a') AS users ON true"#,
        ),
    );
    check(
        r#"SELECT * INTO newtab FROM items"#,
        Refused("42501", r#"SELECT INTO creates a table (DDL)"#),
    );
    check(
        r#"SELECT * FROM items FOR UPDATE OF items SKIP LOCKED"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' FOR UPDATE OF items SKIP LOCKED"#,
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
            r#"SELECT lower(email), jsonb_build_object('e', email) FROM public.users AS users WHERE users.org_id = 'org_a' AND (email ILIKE $1)"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE description LIKE '%x%' AND active = true"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (description LIKE '%x%' AND active = true)"#,
        ),
    );
    check(
        r#"SELECT i.item_number, sum(l.quantity_delta) FROM items i JOIN inventory_ledger l ON l.item_id = i.id GROUP BY i.item_number HAVING sum(l.quantity_delta) > 0 ORDER BY 2 DESC LIMIT 10"#,
        Sql(
            r#"SELECT i.item_number, sum(l.quantity_delta) FROM public.items i JOIN public.inventory_ledger l ON l.item_id = i.id WHERE i.org_id = 'org_a' AND l.org_id = 'org_a' GROUP BY i.item_number HAVING sum(l.quantity_delta) > 0 ORDER BY 2 DESC LIMIT 10"#,
        ),
    );
}

#[test]
fn bypass_classes() {
    check(
        r#"SELECT * FROM items WHERE org_id = 'org_b'"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (org_id = 'org_b')"#,
        ),
    );
    check(
        r#"SELECT * FROM items WHERE org_id IS NULL"#,
        Sql(
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' AND (org_id IS NULL)"#,
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
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id DESC LIMIT 1 OFFSET 0"#,
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
            r#"SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'; SELECT * FROM public.users AS users WHERE users.org_id = 'org_a'"#,
        ),
    );
    check(
        r#"UPDATE items SET active = false WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 1)"#,
        Sql(
            r#"UPDATE public.items SET active = false WHERE items.org_id = 'org_a' AND (id IN (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' ORDER BY id LIMIT 1))"#,
        ),
    );
    check(
        r#"DELETE FROM items WHERE id = (SELECT id FROM items LIMIT 1)"#,
        Sql(
            r#"DELETE FROM public.items WHERE items.org_id = 'org_a' AND (id = (SELECT id FROM public.items AS items WHERE items.org_id = 'org_a' LIMIT 1))"#,
        ),
    );
    check(
        r#"INSERT INTO users (email, name) VALUES ('a', 'b') ON CONFLICT (email) DO UPDATE SET name = (SELECT name FROM users u2 WHERE u2.email = 'x')"#,
        Sql(
            r#"INSERT INTO public.users (email, name, org_id) VALUES ('a', 'b', 'org_a') ON CONFLICT(org_id, email) DO UPDATE SET name = (SELECT name FROM public.users u2 WHERE u2.org_id = 'org_a' AND (u2.email = 'x')) WHERE users.org_id = 'org_a'"#,
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
            r#"SELECT * FROM public.items AS "items" WHERE "items".org_id = 'org_a' AND ("items"."org_id" IS NULL)"#,
        ),
    );
}
