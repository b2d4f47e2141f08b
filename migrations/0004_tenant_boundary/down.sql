-- 0004_tenant_boundary, reversed: back to exactly the 0003 schema. Runs in one transaction;
-- every statement tolerates a partly applied up.sql.
-- The role is cluster-wide: it is dropped only when nothing else depends on it (another
-- database that still has 0004 keeps it; a NOTICE says so).
-- Not undone: a REVOKE CREATE ON SCHEMA public FROM PUBLIC that up.sql made on a database
-- whose PUBLIC still had it (PostgreSQL 15 and later never give it).

-- 1. Row-level security off, policies gone.
DROP POLICY IF EXISTS orgwall_tenant_isolation ON organizations;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON users;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON items;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON locations;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON inventory_ledger;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON count_sheets;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON count_lines;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON audit_logs;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON feature_flags;
DROP POLICY IF EXISTS orgwall_tenant_isolation ON inventory_balances;
ALTER TABLE organizations DISABLE ROW LEVEL SECURITY;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
ALTER TABLE items DISABLE ROW LEVEL SECURITY;
ALTER TABLE locations DISABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_ledger DISABLE ROW LEVEL SECURITY;
ALTER TABLE count_sheets DISABLE ROW LEVEL SECURITY;
ALTER TABLE count_lines DISABLE ROW LEVEL SECURITY;
ALTER TABLE audit_logs DISABLE ROW LEVEL SECURITY;
ALTER TABLE feature_flags DISABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_balances DISABLE ROW LEVEL SECURITY;

-- 2. The single-column foreign keys of 0001 and 0003, under their names and with their actions,
--    instead of the composite ones.
ALTER TABLE inventory_ledger DROP CONSTRAINT IF EXISTS inventory_ledger_org_id_item_id_fkey;
ALTER TABLE inventory_ledger DROP CONSTRAINT IF EXISTS inventory_ledger_org_id_location_id_fkey;
ALTER TABLE inventory_ledger DROP CONSTRAINT IF EXISTS inventory_ledger_org_id_user_id_fkey;
ALTER TABLE count_sheets DROP CONSTRAINT IF EXISTS count_sheets_org_id_location_id_fkey;
ALTER TABLE count_sheets DROP CONSTRAINT IF EXISTS count_sheets_org_id_created_by_fkey;
ALTER TABLE count_lines DROP CONSTRAINT IF EXISTS count_lines_org_id_count_sheet_id_fkey;
ALTER TABLE count_lines DROP CONSTRAINT IF EXISTS count_lines_org_id_item_id_fkey;
ALTER TABLE count_lines DROP CONSTRAINT IF EXISTS count_lines_org_id_counted_by_fkey;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
               WHERE conrelid = 'inventory_balances'::regclass AND cardinality(conkey) = 2
                 AND conname IN ('inventory_balances_itemid_fkey',
                                 'inventory_balances_locationid_fkey'))
    THEN
        ALTER TABLE inventory_balances DROP CONSTRAINT IF EXISTS inventory_balances_itemId_fkey;
        ALTER TABLE inventory_balances DROP CONSTRAINT IF EXISTS inventory_balances_locationId_fkey;
    END IF;
END
$$;

DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('inventory_ledger', 'item_id', 'items', 'inventory_ledger_item_id_fkey', ''),
        ('inventory_ledger', 'location_id', 'locations', 'inventory_ledger_location_id_fkey', ''),
        ('inventory_ledger', 'user_id', 'users', 'inventory_ledger_user_id_fkey', ''),
        ('count_sheets', 'location_id', 'locations', 'count_sheets_location_id_fkey', ''),
        ('count_sheets', 'created_by', 'users', 'count_sheets_created_by_fkey', ''),
        ('count_lines', 'count_sheet_id', 'count_sheets', 'count_lines_count_sheet_id_fkey', ' ON DELETE CASCADE'),
        ('count_lines', 'item_id', 'items', 'count_lines_item_id_fkey', ''),
        ('count_lines', 'counted_by', 'users', 'count_lines_counted_by_fkey', ''),
        ('inventory_balances', 'item_id', 'items', 'inventory_balances_itemid_fkey', ''),
        ('inventory_balances', 'location_id', 'locations', 'inventory_balances_locationid_fkey', '')
    ) AS v (tbl, col, ref, name, action)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conrelid = f.tbl::regclass AND conname = f.name)
        THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES %I (id)%s',
                           f.tbl, f.name, f.col, f.ref, f.action);
        END IF;
    END LOOP;
END
$$;

-- 3. The (org_id, id) keys (their constraints, or an index a stopped up.sql left).
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_orgId_id_key;
ALTER TABLE items DROP CONSTRAINT IF EXISTS items_orgId_id_key;
ALTER TABLE locations DROP CONSTRAINT IF EXISTS locations_orgId_id_key;
ALTER TABLE count_sheets DROP CONSTRAINT IF EXISTS count_sheets_orgId_id_key;
DROP INDEX IF EXISTS users_orgId_id_key;
DROP INDEX IF EXISTS items_orgId_id_key;
DROP INDEX IF EXISTS locations_orgId_id_key;
DROP INDEX IF EXISTS count_sheets_orgId_id_key;

-- 4. The verifier and its key.
DROP FUNCTION IF EXISTS orgwall.current_org();
DROP TABLE IF EXISTS orgwall.tenant_tokens;
DROP FUNCTION IF EXISTS orgwall.token_org(text);
DROP TABLE IF EXISTS orgwall.tenant_key;

-- 5. The role's rights in this database, then the role itself unless something else (another
--    database of the cluster, most likely) still depends on it.
DO $$
DECLARE s regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orgwall_tenant') THEN
        RETURN;
    END IF;
    REVOKE ALL ON TABLE organizations, users, items, locations, inventory_ledger, count_sheets,
        count_lines, audit_logs, feature_flags, inventory_balances FROM orgwall_tenant;
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
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM orgwall_tenant', s);
    END LOOP;
    REVOKE ALL ON SCHEMA public FROM orgwall_tenant;
    IF to_regnamespace('orgwall') IS NOT NULL THEN
        REVOKE ALL ON SCHEMA orgwall FROM orgwall_tenant;
    END IF;
    BEGIN
        DROP ROLE orgwall_tenant;
    EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
        RAISE NOTICE 'role orgwall_tenant kept: %', SQLERRM;
    END;
END
$$;
