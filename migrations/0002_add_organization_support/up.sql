-- 0002_add_organization_support: MIGRATION_GUIDE.md "add_organization_support".
-- Adds `organizations`, moves every existing row into the "Default Organization", makes
-- `org_id` mandatory on all eight tables and turns each business unique key into a
-- tenant-composite one (two tenants may both have item number "W-100").
-- Constraint and index names follow the guide (unquoted, so stored lowercase); down.sql is the
-- guide's "Rollback Organization Migration", verbatim. Run in one transaction.

CREATE TABLE IF NOT EXISTS organizations (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The org that owns all pre-existing data (set DEFAULT_ORG_ID=org_default for fallbacks).
INSERT INTO organizations (id, name) VALUES ('org_default', 'Default Organization')
ON CONFLICT (id) DO NOTHING;

-- 1. Add the tenant column (nullable until backfilled).
ALTER TABLE users ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE items ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE locations ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE inventory_ledger ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE count_sheets ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE count_lines ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE audit_logs ADD COLUMN IF NOT EXISTS org_id text;
ALTER TABLE feature_flags ADD COLUMN IF NOT EXISTS org_id text;

-- 2. Backfill existing rows into the default organization.
UPDATE users SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE items SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE locations SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE inventory_ledger SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE count_sheets SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE count_lines SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE audit_logs SET org_id = 'org_default' WHERE org_id IS NULL;
UPDATE feature_flags SET org_id = 'org_default' WHERE org_id IS NULL;

-- 3. Make it mandatory.
ALTER TABLE users ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE items ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE locations ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE inventory_ledger ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE count_sheets ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE count_lines ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE audit_logs ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE feature_flags ALTER COLUMN org_id SET NOT NULL;

-- 4. Foreign keys to organizations.
ALTER TABLE users ADD CONSTRAINT users_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE items ADD CONSTRAINT items_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE locations ADD CONSTRAINT locations_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE inventory_ledger ADD CONSTRAINT inventory_ledger_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE count_sheets ADD CONSTRAINT count_sheets_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE count_lines ADD CONSTRAINT count_lines_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE feature_flags ADD CONSTRAINT feature_flags_orgId_fkey
    FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT;

-- 5. Business keys become unique per tenant.
DROP INDEX IF EXISTS users_email_key;
DROP INDEX IF EXISTS items_itemNumber_key;
DROP INDEX IF EXISTS locations_site_name_key;
DROP INDEX IF EXISTS count_sheets_countNumber_key;
DROP INDEX IF EXISTS feature_flags_key_key;
CREATE UNIQUE INDEX users_orgId_email_key ON users (org_id, email);
CREATE UNIQUE INDEX items_orgId_itemNumber_key ON items (org_id, item_number);
CREATE UNIQUE INDEX locations_orgId_site_name_key ON locations (org_id, site, name);
CREATE UNIQUE INDEX count_sheets_orgId_countNumber_key ON count_sheets (org_id, count_number);
CREATE UNIQUE INDEX feature_flags_orgId_key_key ON feature_flags (org_id, key);

-- 6. Every tenant-scoped lookup starts with org_id.
CREATE INDEX IF NOT EXISTS users_org_id_idx ON users (org_id);
CREATE INDEX IF NOT EXISTS items_org_id_idx ON items (org_id);
CREATE INDEX IF NOT EXISTS locations_org_id_idx ON locations (org_id);
CREATE INDEX IF NOT EXISTS inventory_ledger_org_id_idx ON inventory_ledger (org_id);
CREATE INDEX IF NOT EXISTS count_sheets_org_id_idx ON count_sheets (org_id);
CREATE INDEX IF NOT EXISTS count_lines_org_id_idx ON count_lines (org_id);
CREATE INDEX IF NOT EXISTS audit_logs_org_id_idx ON audit_logs (org_id);
CREATE INDEX IF NOT EXISTS feature_flags_org_id_idx ON feature_flags (org_id);
