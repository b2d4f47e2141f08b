-- 0001_base_schema: the single-tenant inventory schema the application started with
-- (before MIGRATION_GUIDE.md). Unique keys are unique indexes named the way the guide's
-- rollback recreates them; unquoted, so `items_itemNumber_key` is stored as
-- `items_itemnumber_key`, exactly what the guide's `DROP INDEX IF EXISTS` statements find.
-- Everything is IF NOT EXISTS, so `orgwall migrate up` on an existing application database
-- records this step without changing anything. Run in one transaction.

CREATE TABLE IF NOT EXISTS users (
    id            text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email         text NOT NULL,
    name          text,
    password_hash text,
    role          text NOT NULL DEFAULT 'member',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (email);

CREATE TABLE IF NOT EXISTS items (
    id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    item_number     text NOT NULL,
    description     text,
    unit_of_measure text NOT NULL DEFAULT 'EA',
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS items_itemNumber_key ON items (item_number);

CREATE TABLE IF NOT EXISTS locations (
    id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    site        text NOT NULL,
    name        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS locations_site_name_key ON locations (site, name);

-- Append-only: every stock movement is one row; the balance is the sum of quantity_delta.
CREATE TABLE IF NOT EXISTS inventory_ledger (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    item_id        text NOT NULL REFERENCES items (id),
    location_id    text NOT NULL REFERENCES locations (id),
    lot_id         text,
    quantity_delta numeric NOT NULL,
    reason         text NOT NULL DEFAULT 'adjustment',
    reference      text,
    user_id        text REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inventory_ledger_item_id_location_id_idx ON inventory_ledger (item_id, location_id);

CREATE TABLE IF NOT EXISTS count_sheets (
    id           text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    count_number text NOT NULL,
    location_id  text REFERENCES locations (id),
    status       text NOT NULL DEFAULT 'open',
    created_by   text REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS count_sheets_countNumber_key ON count_sheets (count_number);

CREATE TABLE IF NOT EXISTS count_lines (
    id                text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    count_sheet_id    text NOT NULL REFERENCES count_sheets (id) ON DELETE CASCADE,
    item_id           text NOT NULL REFERENCES items (id),
    lot_id            text,
    expected_quantity numeric,
    counted_quantity  numeric,
    counted_by        text REFERENCES users (id),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS count_lines_count_sheet_id_idx ON count_lines (count_sheet_id);

CREATE TABLE IF NOT EXISTS audit_logs (
    id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    actor       text,
    action      text NOT NULL,
    entity_type text,
    entity_id   text,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_logs_created_at_idx ON audit_logs (created_at);

CREATE TABLE IF NOT EXISTS feature_flags (
    id          text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    key         text NOT NULL,
    enabled     boolean NOT NULL DEFAULT false,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS feature_flags_key_key ON feature_flags (key);
