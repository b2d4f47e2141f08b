-- 0005_ledger_replica_identity: ledger UPDATEs and DELETEs keep inventory_balances exact, and
-- reach the balance cache as deltas instead of making it reload.
--
-- - `REPLICA IDENTITY FULL` on inventory_ledger: logical replication then carries the whole
--   old row of every UPDATE and DELETE, so a subscriber (Orgwall's balance cache) can take the
--   old row's quantity out of its key and add the new row's to its (possibly different) key.
-- - The balance trigger of 0003 (same names: `update_inventory_balance()`,
--   `inventory_ledger_balance_trigger`) also fires on UPDATE and DELETE: the old row's
--   quantity_delta is subtracted from its balance, the new row's added to its balance (an
--   UPDATE that changes neither key nor quantity_delta, compared as text so a change of
--   display scale counts, touches nothing); a DELETE subtracts. A balance brought to zero
--   keeps its row, as an INSERT of the opposite movement would. The cache applies exactly
--   these deltas (proxy/src/balances/delta.rs).
--
-- Both steps are idempotent. ALTER TABLE … REPLICA IDENTITY takes a brief ACCESS EXCLUSIVE
-- lock but does not scan or rewrite the table.

-- orgwall:step replica_identity_full
ALTER TABLE inventory_ledger REPLICA IDENTITY FULL;

-- orgwall:step balance_trigger_update_delete
CREATE OR REPLACE FUNCTION update_inventory_balance() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (OLD.org_id, OLD.item_id, OLD.location_id, OLD.lot_id, OLD.quantity_delta::text)
           IS NOT DISTINCT FROM
           (NEW.org_id, NEW.item_id, NEW.location_id, NEW.lot_id, NEW.quantity_delta::text) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO inventory_balances AS b (org_id, item_id, location_id, lot_id, quantity, updated_at)
        VALUES (OLD.org_id, OLD.item_id, OLD.location_id, OLD.lot_id, -OLD.quantity_delta, now())
        ON CONFLICT (org_id, item_id, location_id, lot_id)
        DO UPDATE SET quantity = b.quantity + EXCLUDED.quantity,
                      updated_at = EXCLUDED.updated_at;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO inventory_balances AS b (org_id, item_id, location_id, lot_id, quantity, updated_at)
        VALUES (NEW.org_id, NEW.item_id, NEW.location_id, NEW.lot_id, NEW.quantity_delta, now())
        ON CONFLICT (org_id, item_id, location_id, lot_id)
        DO UPDATE SET quantity = b.quantity + EXCLUDED.quantity,
                      updated_at = EXCLUDED.updated_at;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER inventory_ledger_balance_trigger
    AFTER INSERT OR UPDATE OR DELETE ON inventory_ledger
    FOR EACH ROW EXECUTE FUNCTION update_inventory_balance();
