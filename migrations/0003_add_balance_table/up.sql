-- 0003_add_balance_table: MIGRATION_GUIDE.md "add_balance_table" + trigger.sql + backfill.
-- inventory_balances materializes SUM(inventory_ledger.quantity_delta) per
-- (org_id, item_id, location_id, lot_id); lot_id may be NULL and NULL lots are one key
-- (NULLS NOT DISTINCT, PostgreSQL 15+). The trigger keeps it exact on every ledger insert.
-- Run in one transaction: CREATE TRIGGER locks out ledger writes until the backfill commits,
-- so no movement is counted twice or missed. Idempotent: a re-run recomputes the balances.

CREATE TABLE IF NOT EXISTS inventory_balances (
    org_id      text NOT NULL,
    item_id     text NOT NULL,
    location_id text NOT NULL,
    lot_id      text,
    quantity    numeric NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_balances_orgId_fkey
        FOREIGN KEY (org_id) REFERENCES organizations (id) ON UPDATE CASCADE ON DELETE RESTRICT,
    CONSTRAINT inventory_balances_itemId_fkey FOREIGN KEY (item_id) REFERENCES items (id),
    CONSTRAINT inventory_balances_locationId_fkey FOREIGN KEY (location_id) REFERENCES locations (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS inventory_balances_orgId_itemId_locationId_lotId_key
    ON inventory_balances (org_id, item_id, location_id, lot_id) NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS inventory_balances_org_id_idx ON inventory_balances (org_id);

-- Called after each inserted ledger row; adds its delta to the matching balance row.
CREATE OR REPLACE FUNCTION update_inventory_balance() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO inventory_balances AS b (org_id, item_id, location_id, lot_id, quantity, updated_at)
    VALUES (NEW.org_id, NEW.item_id, NEW.location_id, NEW.lot_id, NEW.quantity_delta, now())
    ON CONFLICT (org_id, item_id, location_id, lot_id)
    DO UPDATE SET quantity = b.quantity + EXCLUDED.quantity,
                  updated_at = EXCLUDED.updated_at;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER inventory_ledger_balance_trigger
    AFTER INSERT ON inventory_ledger
    FOR EACH ROW EXECUTE FUNCTION update_inventory_balance();

-- Backfill from the ledger written before the trigger existed.
INSERT INTO inventory_balances (org_id, item_id, location_id, lot_id, quantity, updated_at)
SELECT org_id, item_id, location_id, lot_id, SUM(quantity_delta), max(created_at)
FROM inventory_ledger
GROUP BY org_id, item_id, location_id, lot_id
ON CONFLICT (org_id, item_id, location_id, lot_id)
DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = EXCLUDED.updated_at;
