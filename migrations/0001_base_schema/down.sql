-- 0001_base_schema, reversed: drops the inventory schema and all its data.
DROP TABLE IF EXISTS count_lines;
DROP TABLE IF EXISTS count_sheets;
DROP TABLE IF EXISTS inventory_ledger;
DROP TABLE IF EXISTS audit_logs;
DROP TABLE IF EXISTS feature_flags;
DROP TABLE IF EXISTS items;
DROP TABLE IF EXISTS locations;
DROP TABLE IF EXISTS users;
