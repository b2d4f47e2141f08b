-- 0006_tenant_copy, reversed: the grant of up.sql withdrawn (orgwall_tenant keeps whatever
-- PUBLIC has). Tolerates a missing role (0004 already down by hand).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orgwall_tenant') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM orgwall_tenant', current_database());
    END IF;
END
$$;
