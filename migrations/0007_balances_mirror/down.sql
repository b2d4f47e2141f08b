-- 0007_balances_mirror, reversed: inventory_balances back to the default replica identity.
-- First it leaves every publication that names it (Orgwall's included: a running cache
-- notices — the next ledger insert arrives without its balance change — and reloads, then
-- stays off until 0007 is applied again): published without an identity, every UPDATE of it,
-- and so every ledger insert, would fail. A publication FOR ALL TABLES or FOR TABLES IN
-- SCHEMA cannot drop one table; with one of those the reversal is refused. One transaction.

DO $$
DECLARE
    p record;
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_publication_tables t
        WHERE t.schemaname = current_schema() AND t.tablename = 'inventory_balances'
          AND NOT EXISTS (
              SELECT 1 FROM pg_catalog.pg_publication_rel r
              JOIN pg_catalog.pg_publication q ON q.oid = r.prpubid
              WHERE q.pubname = t.pubname AND r.prrelid = 'inventory_balances'::regclass))
    THEN
        RAISE EXCEPTION 'inventory_balances is published by a FOR ALL TABLES or FOR TABLES IN SCHEMA publication: without REPLICA IDENTITY FULL its updates would fail';
    END IF;
    FOR p IN
        SELECT q.pubname FROM pg_catalog.pg_publication_rel r
        JOIN pg_catalog.pg_publication q ON q.oid = r.prpubid
        WHERE r.prrelid = 'inventory_balances'::regclass
    LOOP
        EXECUTE format('ALTER PUBLICATION %I DROP TABLE inventory_balances', p.pubname);
    END LOOP;
END
$$;

ALTER TABLE inventory_balances REPLICA IDENTITY DEFAULT;
