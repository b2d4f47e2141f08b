-- 0006_tenant_copy: the tenant identity may create temporary tables in this database, which a
-- tenant's `COPY … FROM STDIN` through Orgwall needs: PostgreSQL refuses COPY FROM into a
-- table under row-level security, so Orgwall copies the stream into a staging table in the
-- server connection's own temporary schema (`pg_temp.orgwall_copy`, created, filled and
-- dropped inside one query string) and inserts it into the tenant table as the tenant (RLS
-- WITH CHECK, tenant-scoped foreign keys and triggers apply as for any INSERT).
--
-- PostgreSQL grants TEMPORARY on every database to PUBLIC by default, so orgwall_tenant
-- usually has it already; a hardened database that revoked it from PUBLIC needs this grant.
-- Tenants still cannot create temporary tables themselves: Orgwall refuses their DDL
-- (`CREATE TEMP TABLE`, `SELECT … INTO`) before it reaches PostgreSQL.

-- orgwall:step tenant_temporary_tables
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO orgwall_tenant', current_database());
END
$$;
