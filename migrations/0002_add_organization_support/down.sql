-- WARNING: This will remove orgId columns and organization data
-- Only use if absolutely necessary

-- 1. Drop foreign key constraints
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_orgId_fkey;
ALTER TABLE items DROP CONSTRAINT IF EXISTS items_orgId_fkey;
ALTER TABLE locations DROP CONSTRAINT IF EXISTS locations_orgId_fkey;
ALTER TABLE inventory_ledger DROP CONSTRAINT IF EXISTS inventory_ledger_orgId_fkey;
ALTER TABLE count_sheets DROP CONSTRAINT IF EXISTS count_sheets_orgId_fkey;
ALTER TABLE count_lines DROP CONSTRAINT IF EXISTS count_lines_orgId_fkey;
ALTER TABLE audit_logs DROP CONSTRAINT IF EXISTS audit_logs_orgId_fkey;
ALTER TABLE feature_flags DROP CONSTRAINT IF EXISTS feature_flags_orgId_fkey;

-- 2. Drop unique constraints
DROP INDEX IF EXISTS users_orgId_email_key;
DROP INDEX IF EXISTS items_orgId_itemNumber_key;
DROP INDEX IF EXISTS locations_orgId_site_name_key;
DROP INDEX IF EXISTS count_sheets_orgId_countNumber_key;
DROP INDEX IF EXISTS feature_flags_orgId_key_key;

-- 3. Restore original unique constraints
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users(email);
CREATE UNIQUE INDEX IF NOT EXISTS items_itemNumber_key ON items(item_number);
CREATE UNIQUE INDEX IF NOT EXISTS locations_site_name_key ON locations(site, name);
CREATE UNIQUE INDEX IF NOT EXISTS count_sheets_countNumber_key ON count_sheets(count_number);
CREATE UNIQUE INDEX IF NOT EXISTS feature_flags_key_key ON feature_flags(key);

-- 4. Drop orgId columns
ALTER TABLE users DROP COLUMN IF EXISTS org_id;
ALTER TABLE items DROP COLUMN IF EXISTS org_id;
ALTER TABLE locations DROP COLUMN IF EXISTS org_id;
ALTER TABLE inventory_ledger DROP COLUMN IF EXISTS org_id;
ALTER TABLE count_sheets DROP COLUMN IF EXISTS org_id;
ALTER TABLE count_lines DROP COLUMN IF EXISTS org_id;
ALTER TABLE audit_logs DROP COLUMN IF EXISTS org_id;
ALTER TABLE feature_flags DROP COLUMN IF EXISTS org_id;

-- 5. Drop organizations table
DROP TABLE IF EXISTS organizations;
