-- MIGRATION_GUIDE.md "Rollback Balance Table", then the table itself (the guide drops it via
-- `npx prisma migrate dev --name remove_balance_table`).

-- 1. Drop trigger
DROP TRIGGER IF EXISTS inventory_ledger_balance_trigger ON inventory_ledger;

-- 2. Drop function
DROP FUNCTION IF EXISTS update_inventory_balance();

-- 3. Drop table
DROP TABLE IF EXISTS inventory_balances;
