-- 0002_add_organization_support: MIGRATION_GUIDE.md "add_organization_support".
-- Adds `organizations`, moves every existing row into the "Default Organization", makes
-- `org_id` mandatory on all eight tables and turns each business unique key into a
-- tenant-composite one (two tenants may both have item number "W-100").
-- Constraint and index names follow the guide (unquoted, so stored lowercase); down.sql is the
-- guide's "Rollback Organization Migration", verbatim.
--
-- Written for large tables that stay online: no step holds ACCESS EXCLUSIVE for longer than a
-- catalog change. `orgwall migrate up` runs each `-- orgwall:step` section in its own
-- transaction (`no-transaction` sections statement by statement, as CREATE INDEX CONCURRENTLY
-- requires), and the `batched` section's UPDATEs in primary-key order, --batch-size rows per
-- transaction. Every statement is idempotent, so a run that stopped part-way (the guide's
-- "column already exists") is completed by running `up` again.
-- By hand: `psql -v ON_ERROR_STOP=1 -f up.sql` (not --single-transaction).

-- orgwall:step organizations
CREATE TABLE IF NOT EXISTS organizations (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The org that owns all pre-existing data (set DEFAULT_ORG_ID=org_default for fallbacks).
INSERT INTO organizations (id, name) VALUES ('org_default', 'Default Organization')
ON CONFLICT (id) DO NOTHING;

-- orgwall:step add_org_id_columns
-- 1. Add the tenant column, nullable until backfilled (a catalog-only change).
ALTER TABLE users ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE items ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE locations ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE inventory_ledger ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE count_sheets ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE count_lines ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE audit_logs ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE feature_flags ADD COLUMN IF NOT EXISTS org_id text;

-- orgwall:step backfill batched
-- 2. Backfill existing rows into the default organization (row locks only).
UPDATE users SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE items SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE locations SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE inventory_ledger SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE count_sheets SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE count_lines SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE audit_logs SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE feature_flags SET org_id = 'org_default' WHERE org_id IS NULL;

-- orgwall:step not_null_checks
-- 3a. Make it mandatory without a table scan under ACCESS EXCLUSIVE: a NOT VALID check first
--     (catalog only; new rows are checked from now on) ...
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'items', 'locations', 'inventory_ledger', 'count_sheets',
                             'count_lines', 'audit_logs', 'feature_flags'] LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = t::regclass AND attname = 'org_id' AND NOT attnotnull)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint
                           WHERE conrelid = t::regclass AND conname = t || '_org_id_not_null_check')
        THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (org_id IS NOT NULL) NOT VALID',
                           t, t || '_org_id_not_null_check');
        END IF;
    END LOOP;
END
$$;

-- orgwall:step validate_not_null_checks
-- 3b. ... validated under SHARE UPDATE EXCLUSIVE (reads and writes go on during the scan) ...
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'items', 'locations', 'inventory_ledger', 'count_sheets',
                             'count_lines', 'audit_logs', 'feature_flags'] LOOP
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = t::regclass
                   AND conname = t || '_org_id_not_null_check' AND NOT convalidated)
        THEN
            EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', t, t || '_org_id_not_null_check');
        END IF;
    END LOOP;
END
$$;

-- orgwall:step set_not_null
-- 3c. ... so SET NOT NULL skips its scan (PostgreSQL 12+ trusts the validated check), and the
--     helper check goes.
ALTER TABLE users ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE items ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE locations ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE inventory_ledger ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE count_sheets ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE count_lines ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE audit_logs ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE feature_flags ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_org_id_not_null_check;
ALTER TABLE items DROP CONSTRAINT IF EXISTS items_org_id_not_null_check;
ALTER TABLE locations DROP CONSTRAINT IF EXISTS locations_org_id_not_null_check;
ALTER TABLE inventory_ledger DROP CONSTRAINT IF EXISTS inventory_ledger_org_id_not_null_check;
ALTER TABLE count_sheets DROP CONSTRAINT IF EXISTS count_sheets_org_id_not_null_check;
ALTER TABLE count_lines DROP CONSTRAINT IF EXISTS count_lines_org_id_not_null_check;
ALTER TABLE audit_logs DROP CONSTRAINT IF EXISTS audit_logs_org_id_not_null_check;
ALTER TABLE feature_flags DROP CONSTRAINT IF EXISTS feature_flags_org_id_not_null_check;

-- orgwall:step foreign_keys
-- 4a. Foreign keys to organizations (`<table>_orgId_fkey`), NOT VALID: no scan here ...
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'items', 'locations', 'inventory_ledger', 'count_sheets',
                             'count_lines', 'audit_logs', 'feature_flags'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = t::regclass AND conname = lower(t || '_orgId_fkey'))
        THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (org_id) '
                           'REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT '
                           'NOT VALID', t, lower(t || '_orgId_fkey'));
        END IF;
    END LOOP;
END
$$;

-- orgwall:step validate_foreign_keys
-- 4b. ... validated without blocking writes.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'items', 'locations', 'inventory_ledger', 'count_sheets',
                             'count_lines', 'audit_logs', 'feature_flags'] LOOP
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = t::regclass
                   AND conname = lower(t || '_orgId_fkey') AND NOT convalidated)
        THEN
            EXECUTE format('ALTER TABLE %I VALIDATE CONSTRAINT %I', t, lower(t || '_orgId_fkey'));
        END IF;
    END LOOP;
END
$$;

-- orgwall:step tenant_unique_keys no-transaction
-- 5a. Business keys become unique per tenant: build the composite keys first, without blocking
--     writes ...
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_orgId_email_key ON users (org_id, email);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_orgId_itemNumber_key ON items (org_id, item_number);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS locations_orgId_site_name_key ON locations (org_id, site, name);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS count_sheets_orgId_countNumber_key ON count_sheets (org_id, count_number);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS feature_flags_orgId_key_key ON feature_flags (org_id, key);

-- orgwall:step drop_global_unique_keys
-- 5b. ... then drop the global ones, so the tables are never without a unique key.
DROP INDEX IF EXISTS users_email_key;
DROP INDEX IF EXISTS items_itemNumber_key;
DROP INDEX IF EXISTS locations_site_name_key;
DROP INDEX IF EXISTS count_sheets_countNumber_key;
DROP INDEX IF EXISTS feature_flags_key_key;

-- orgwall:step org_id_indexes no-transaction
-- 6. Every tenant-scoped lookup starts with org_id.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_org_id_idx ON users (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS items_org_id_idx ON items (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS locations_org_id_idx ON locations (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS inventory_ledger_org_id_idx ON inventory_ledger (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS count_sheets_org_id_idx ON count_sheets (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS count_lines_org_id_idx ON count_lines (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_org_id_idx ON audit_logs (org_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS feature_flags_org_id_idx ON feature_flags (org_id);
