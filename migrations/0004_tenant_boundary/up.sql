-- 0004_tenant_boundary: PostgreSQL's own wall around each tenant (DESIGN.md §4a).
--
-- - Role `orgwall_tenant`: the login Orgwall uses upstream for tenant traffic. Owns nothing,
--   not superuser, no BYPASSRLS; DML on the tenant tables, SELECT and UPDATE on organizations,
--   USAGE on schemas public and orgwall, EXECUTE on orgwall.current_org() and nothing else.
-- - `orgwall.tenant_key`: a random 32-byte HMAC key (with its precomputed pads), readable by the
--   owner only.
-- - `orgwall.token_org(token)`: verifies a signed token `<mac>.<expiry>.<org>` (mac = lowercase
--   hex HMAC-SHA256(key, '<expiry>.<org>'), expiry in Unix seconds): its org, or NULL.
-- - `orgwall.tenant_tokens`: the tokens Orgwall issued, registered by the owner login, each
--   checked by token_org() as it is inserted.
-- - `orgwall.current_org()`: the org of the session's `orgwall.tenant` token if it is registered
--   and unexpired, else NULL.
-- - Row-level security on the ten tenant tables, policy `orgwall_tenant_isolation` for
--   orgwall_tenant only, `org_id = (SELECT orgwall.current_org())` (NOT forced: the owner still
--   reads and writes everything).
-- - Tenant-scoped foreign keys: `(org_id, item_id) REFERENCES items (org_id, id)` and so on, so a
--   row of one tenant can never point at another tenant's row.
--
-- Like 0002: every step runs in its own transaction (the `no-transaction` one statement by
-- statement), every statement is idempotent, no step scans a table under ACCESS EXCLUSIVE (the
-- new keys are built CONCURRENTLY, the new foreign keys added NOT VALID and validated later).
-- Roles are cluster-wide: a second database of the same cluster reuses the role.
-- By hand: `psql -v ON_ERROR_STOP=1 -f up.sql` (not --single-transaction).

-- orgwall:step tenant_role
CREATE SCHEMA IF NOT EXISTS orgwall;

-- Create the role, or repair its attributes. A concurrent run in another database may create it
-- first (duplicate_object / unique_violation), repair it first ("tuple concurrently updated")
-- or, running `down`, drop it under us (undefined_object): try again. The GRANT records a
-- dependency on the role, which locks it until this transaction ends, so it cannot be dropped
-- between here and the commit.
DO $$
DECLARE
    r record;
    exists_already boolean;
    attempt int := 0;
BEGIN
    LOOP
        attempt := attempt + 1;
        SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolinherit, rolreplication,
               rolcanlogin
          INTO r FROM pg_catalog.pg_roles WHERE rolname = 'orgwall_tenant';
        exists_already := FOUND;
        BEGIN
            IF NOT exists_already THEN
                CREATE ROLE orgwall_tenant LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
                    NOINHERIT NOREPLICATION;
            ELSIF r.rolsuper OR r.rolbypassrls OR r.rolcreatedb OR r.rolcreaterole
                  OR r.rolinherit OR r.rolreplication OR NOT r.rolcanlogin THEN
                ALTER ROLE orgwall_tenant LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
                    NOINHERIT NOREPLICATION;
            END IF;
            GRANT USAGE ON SCHEMA public TO orgwall_tenant;
            EXIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation OR undefined_object THEN
                IF attempt >= 5 THEN
                    RAISE;
                END IF;
            WHEN internal_error THEN
                IF attempt >= 5 OR SQLERRM NOT LIKE '%concurrently updated%' THEN
                    RAISE;
                END IF;
        END;
    END LOOP;
END
$$;

-- Schema public: USAGE only. PostgreSQL 15 gives PUBLIC no CREATE there; a database that still
-- does (upgraded from an older release) loses it, since PUBLIC's rights are the tenant's too.
REVOKE CREATE ON SCHEMA public FROM orgwall_tenant;
DO $$
BEGIN
    IF has_schema_privilege('orgwall_tenant', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        RAISE NOTICE 'revoked CREATE on schema public from PUBLIC (orgwall_tenant had it through PUBLIC)';
    END IF;
    IF has_schema_privilege('orgwall_tenant', 'public', 'CREATE') THEN
        RAISE EXCEPTION 'orgwall_tenant can still CREATE in schema public';
    END IF;
END
$$;

-- The tenant tables: DML, and nothing else (no TRUNCATE, REFERENCES, TRIGGER). Organizations:
-- read and rename its own row (the policy keeps `id`); no INSERT or DELETE.
REVOKE ALL ON TABLE organizations, users, items, locations, inventory_ledger, count_sheets,
    count_lines, audit_logs, feature_flags, inventory_balances FROM orgwall_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE users, items, locations, inventory_ledger,
    count_sheets, count_lines, audit_logs, feature_flags, inventory_balances TO orgwall_tenant;
GRANT SELECT, UPDATE ON TABLE organizations TO orgwall_tenant;

-- Sequences owned by their columns (none in the seed schema: ids are uuid text), for nextval
-- and currval.
DO $$
DECLARE s regclass;
BEGIN
    FOR s IN
        SELECT d.objid::regclass
        FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.deptype IN ('a', 'i') AND c.relkind = 'S'
          AND d.refobjid = ANY (ARRAY['organizations', 'users', 'items', 'locations',
                                      'inventory_ledger', 'count_sheets', 'count_lines',
                                      'audit_logs', 'feature_flags',
                                      'inventory_balances']::regclass[])
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO orgwall_tenant', s);
    END LOOP;
END
$$;

-- Schema orgwall (the migration history, the key): USAGE for current_org(), no table.
REVOKE ALL ON SCHEMA orgwall FROM PUBLIC;
GRANT USAGE ON SCHEMA orgwall TO orgwall_tenant;
REVOKE ALL ON ALL TABLES IN SCHEMA orgwall FROM PUBLIC, orgwall_tenant;

-- Every tenant session is this one role, and a role may read the statement texts of its own
-- sessions in pg_stat_activity: with Orgwall's rewrite bypassed, one tenant would see what
-- another is running. A superuser-only setting keeps them out (Orgwall logs statements by
-- fingerprint instead).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s
               JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
               WHERE r.rolname = 'orgwall_tenant' AND s.setdatabase = 0
                 AND 'track_activities=off' = ANY (s.setconfig)) THEN
        RETURN;
    END IF;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        BEGIN
            ALTER ROLE orgwall_tenant SET track_activities = off;
        EXCEPTION WHEN internal_error THEN
            -- Another database's run set it at the same moment ("tuple concurrently updated").
            IF SQLERRM NOT LIKE '%concurrently%' THEN
                RAISE;
            END IF;
        END;
    ELSE
        RAISE NOTICE 'not a superuser: run ALTER ROLE orgwall_tenant SET track_activities = off as one';
    END IF;
END
$$;

-- orgwall:step tenant_key
-- One row: the key and its HMAC pads (key zero-padded to 64 bytes, XOR 0x36 / XOR 0x5c),
-- computed once here so current_org() runs no loop. gen_random_uuid() draws from PostgreSQL's
-- strong random source. A re-run keeps the existing key.
CREATE TABLE IF NOT EXISTS orgwall.tenant_key (
    id   int PRIMARY KEY CHECK (id = 1),
    key  bytea NOT NULL CHECK (length(key) = 32),
    ipad bytea NOT NULL CHECK (length(ipad) = 64),
    opad bytea NOT NULL CHECK (length(opad) = 64)
);
REVOKE ALL ON TABLE orgwall.tenant_key FROM PUBLIC, orgwall_tenant;

DO $$
DECLARE
    k bytea;
    ipad bytea;
    opad bytea;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM orgwall.tenant_key) THEN
        k := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                               || clock_timestamp()::text, 'UTF8'));
        ipad := k || '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        opad := ipad;
        FOR i IN 0..63 LOOP
            ipad := set_byte(ipad, i, get_byte(ipad, i) # 54);  -- 0x36
            opad := set_byte(opad, i, get_byte(opad, i) # 92);  -- 0x5c
        END LOOP;
        INSERT INTO orgwall.tenant_key (id, key, ipad, opad) VALUES (1, k, ipad, opad)
        ON CONFLICT (id) DO NOTHING;
    END IF;
END
$$;

-- orgwall:step current_org
-- Tokens: `<64 hex mac>.<expiry>.<org>`, valid when the mac is HMAC-SHA256(key, '<expiry>.<org>'
-- as UTF-8) and expiry (Unix seconds) is after now(). orgwall.token_org(token) checks one and
-- returns its org, or NULL: the mac is checked before anything of the token is parsed, and no
-- input (NULL, '', garbage, huge, even a signed one with a malformed expiry) raises an error;
-- the macs are compared through one more keyed hash, so the comparison's timing tells nothing.
-- PL/pgSQL, not SQL (a SQL function's plan is rebuilt for every query: ~140 µs a call), and no
-- regular expression over the 64-character mac (several µs).
CREATE OR REPLACE FUNCTION orgwall.token_org(v text) RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    rest text;
    ipad bytea;
    opad bytea;
    dot int;
BEGIN
    IF v IS NULL OR length(v) < 67 OR substr(v, 65, 1) <> '.' THEN
        RETURN NULL;
    END IF;
    rest := substr(v, 66);
    SELECT k.ipad, k.opad INTO ipad, opad FROM orgwall.tenant_key AS k WHERE k.id = 1;
    IF opad IS NULL
       OR sha256(opad || convert_to(substr(v, 1, 64), 'UTF8'))
          <> sha256(opad || convert_to(encode(sha256(opad || sha256(ipad
                                                   || convert_to(rest, 'UTF8'))), 'hex'), 'UTF8'))
    THEN
        RETURN NULL;
    END IF;
    dot := strpos(rest, '.');
    IF dot NOT BETWEEN 2 AND 13 OR substr(rest, 1, dot - 1) !~ '^[0-9]+$'
       OR substr(rest, 1, dot - 1)::bigint <= extract(epoch FROM now()) THEN
        RETURN NULL;
    END IF;
    RETURN nullif(substr(rest, dot + 1), '');
END
$fn$;
REVOKE ALL ON FUNCTION orgwall.token_org(text) FROM PUBLIC;

-- The tokens Orgwall issued: it signs each one and registers it here (as the owner) the first
-- time a tenant needs one, one per tenant and hour. The CHECK admits only tokens whose
-- signature holds for their org, whoever inserts them (IS NOT DISTINCT FROM: a CHECK that is
-- NULL passes, and token_org() is NULL for every bad token).
CREATE TABLE IF NOT EXISTS orgwall.tenant_tokens (
    token   text PRIMARY KEY,
    org     text NOT NULL,
    expires timestamptz NOT NULL,
    CONSTRAINT tenant_tokens_signed CHECK (orgwall.token_org(token) IS NOT DISTINCT FROM org)
);
REVOKE ALL ON TABLE orgwall.tenant_tokens FROM PUBLIC, orgwall_tenant;

-- The tenant of this session, or NULL: the org of the token in `orgwall.tenant` (set by Orgwall
-- on each server connection before a tenant's work runs on it) if that token is registered and
-- unexpired. Verified once, when registered, instead of on every query: one index lookup
-- (~3 µs of a query's time under pgbench -S, against ~10 µs for token_org() and ~8 µs for a
-- view the policy would have to plan on every query). Policies call it as
-- `(SELECT orgwall.current_org())`: once per query.
CREATE OR REPLACE FUNCTION orgwall.current_org() RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o text;
BEGIN
    SELECT t.org INTO o FROM orgwall.tenant_tokens AS t
    WHERE t.token = current_setting('orgwall.tenant', true) AND t.expires > now();
    RETURN o;
END
$fn$;

REVOKE ALL ON FUNCTION orgwall.current_org() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orgwall.current_org() TO orgwall_tenant;

-- orgwall:step row_level_security
-- Enabled, not forced: policies bind orgwall_tenant; the owner keeps reading everything.
DO $$
DECLARE
    t text;
    c text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organizations', 'users', 'items', 'locations', 'inventory_ledger',
                             'count_sheets', 'count_lines', 'audit_logs', 'feature_flags',
                             'inventory_balances'] LOOP
        c := CASE t WHEN 'organizations' THEN 'id' ELSE 'org_id' END;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy
                       WHERE polrelid = t::regclass AND polname = 'orgwall_tenant_isolation')
        THEN
            EXECUTE format('CREATE POLICY orgwall_tenant_isolation ON %I AS PERMISSIVE FOR ALL '
                           'TO orgwall_tenant USING (%I = (SELECT orgwall.current_org())) '
                           'WITH CHECK (%I = (SELECT orgwall.current_org()))', t, c, c);
        END IF;
        IF NOT (SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = t::regclass) THEN
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        END IF;
    END LOOP;
END
$$;

-- orgwall:step tenant_reference_keys no-transaction
-- Composite foreign keys need a unique key on (org_id, id) in each referenced table; built
-- without blocking writes ...
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_orgId_id_key ON users (org_id, id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_orgId_id_key ON items (org_id, id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS locations_orgId_id_key ON locations (org_id, id);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS count_sheets_orgId_id_key ON count_sheets (org_id, id);

-- orgwall:step tenant_reference_constraints
-- ... then turned into constraints (catalog only).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'items', 'locations', 'count_sheets'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conrelid = t::regclass AND conname = lower(t || '_orgId_id_key'))
        THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE USING INDEX %I',
                           t, lower(t || '_orgId_id_key'), lower(t || '_orgId_id_key'));
        END IF;
    END LOOP;
END
$$;

-- orgwall:step tenant_foreign_keys
-- Composite foreign keys beside the single-column ones, NOT VALID (no scan) ...
-- inventory_balances keeps its 0003 names: its single-column keys are replaced in place.
-- ON DELETE actions are 0001's; nullable columns (user_id, created_by, counted_by,
-- count_sheets.location_id) are MATCH SIMPLE: a NULL skips the check, as before.
DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('inventory_ledger', 'item_id', 'items', 'inventory_ledger_org_id_item_id_fkey', ''),
        ('inventory_ledger', 'location_id', 'locations', 'inventory_ledger_org_id_location_id_fkey', ''),
        ('inventory_ledger', 'user_id', 'users', 'inventory_ledger_org_id_user_id_fkey', ''),
        ('count_sheets', 'location_id', 'locations', 'count_sheets_org_id_location_id_fkey', ''),
        ('count_sheets', 'created_by', 'users', 'count_sheets_org_id_created_by_fkey', ''),
        ('count_lines', 'count_sheet_id', 'count_sheets', 'count_lines_org_id_count_sheet_id_fkey', ' ON DELETE CASCADE'),
        ('count_lines', 'item_id', 'items', 'count_lines_org_id_item_id_fkey', ''),
        ('count_lines', 'counted_by', 'users', 'count_lines_org_id_counted_by_fkey', ''),
        ('inventory_balances', 'item_id', 'items', 'inventory_balances_itemid_fkey', ''),
        ('inventory_balances', 'location_id', 'locations', 'inventory_balances_locationid_fkey', '')
    ) AS v (tbl, col, ref, name, action)
    LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conrelid = f.tbl::regclass AND conname = f.name AND contype = 'f'
                     AND cardinality(conkey) = 1)
        THEN
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', f.tbl, f.name);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conrelid = f.tbl::regclass AND conname = f.name)
        THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (org_id, %I) '
                           'REFERENCES %I (org_id, id)%s NOT VALID',
                           f.tbl, f.name, f.col, f.ref, f.action);
        END IF;
    END LOOP;
END
$$;

-- orgwall:step validate_tenant_foreign_keys
-- ... validated under SHARE UPDATE EXCLUSIVE (reads and writes go on during the scan) ...
DO $$
DECLARE f record;
BEGIN
    FOR f IN
        SELECT conrelid::regclass AS tbl, conname
        FROM pg_catalog.pg_constraint
        WHERE contype = 'f' AND NOT convalidated
          AND conname IN ('inventory_ledger_org_id_item_id_fkey',
                          'inventory_ledger_org_id_location_id_fkey',
                          'inventory_ledger_org_id_user_id_fkey',
                          'count_sheets_org_id_location_id_fkey',
                          'count_sheets_org_id_created_by_fkey',
                          'count_lines_org_id_count_sheet_id_fkey',
                          'count_lines_org_id_item_id_fkey',
                          'count_lines_org_id_counted_by_fkey',
                          'inventory_balances_itemid_fkey',
                          'inventory_balances_locationid_fkey')
          AND conrelid = ANY (ARRAY['inventory_ledger', 'count_sheets', 'count_lines',
                                    'inventory_balances']::regclass[])
    LOOP
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', f.tbl, f.conname);
    END LOOP;
END
$$;

-- orgwall:step drop_single_column_foreign_keys
-- ... and the single-column keys they replace go (0001 named them `<table>_<column>_fkey`;
-- found by their columns, whatever their names).
DO $$
DECLARE f record;
BEGIN
    FOR f IN
        SELECT c.conrelid::regclass AS tbl, c.conname
        FROM (VALUES
            ('inventory_ledger', 'item_id', 'items'),
            ('inventory_ledger', 'location_id', 'locations'),
            ('inventory_ledger', 'user_id', 'users'),
            ('count_sheets', 'location_id', 'locations'),
            ('count_sheets', 'created_by', 'users'),
            ('count_lines', 'count_sheet_id', 'count_sheets'),
            ('count_lines', 'item_id', 'items'),
            ('count_lines', 'counted_by', 'users')
        ) AS v (tbl, col, ref)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = v.tbl::regclass AND a.attname = v.col
        JOIN pg_catalog.pg_constraint c
          ON c.conrelid = v.tbl::regclass AND c.contype = 'f'
         AND c.confrelid = v.ref::regclass AND c.conkey = ARRAY[a.attnum]
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', f.tbl, f.conname);
    END LOOP;
END
$$;
