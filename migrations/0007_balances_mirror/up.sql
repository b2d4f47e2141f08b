-- 0007_balances_mirror: the balance cache mirrors inventory_balances rows through logical
-- replication (Orgwall publishes the table together with the ledger), so that every column
-- of a lookup — quantity, updated_at, `SELECT *` — is answered exactly as the table holds it.
--
-- `REPLICA IDENTITY FULL` on inventory_balances: its UPDATEs and DELETEs then carry the whole
-- old row (the cache needs the old key). It is also what makes the table publishable at all:
-- it has no primary key (lot_id is nullable, so no index can be the identity), and PostgreSQL
-- refuses UPDATE and DELETE on a published table without a replica identity — every ledger
-- insert (whose trigger upserts a balance row) would fail. Orgwall therefore adds the table
-- to its publication only once this migration is applied, and the cache stays off (reads go
-- to PostgreSQL) until then.
--
-- Idempotent. ALTER TABLE … REPLICA IDENTITY takes a brief ACCESS EXCLUSIVE lock but does
-- not scan or rewrite the table. Each balance UPDATE then also writes its old row to the WAL
-- (about one more row image per ledger insert).

-- orgwall:step balances_replica_identity_full
ALTER TABLE inventory_balances REPLICA IDENTITY FULL;
