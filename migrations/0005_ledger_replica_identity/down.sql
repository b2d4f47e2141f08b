-- 0005_ledger_replica_identity, reversed: back to exactly the 0003/0004 schema — the balance
-- trigger on INSERT only (0003's function, unchanged) and the ledger's default replica
-- identity. Runs in one transaction; every statement tolerates a partly applied up.sql.
-- Balances already adjusted by ledger UPDATEs or DELETEs stay as they are.

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

ALTER TABLE inventory_ledger REPLICA IDENTITY DEFAULT;
