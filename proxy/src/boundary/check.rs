//! The start-up check of the second wall: before any tenant login is served, the tenant identity
//! is shown to be least-privileged and every tenant table to be under Orgwall's row-level
//! security policy; then the signing key is read (owner login) and a probe token is signed,
//! registered (PostgreSQL checks the signature) and read back through `orgwall.current_org()`,
//! so Orgwall's tokens and the function the policies call are known to agree.

use super::Wall;
use crate::errors::{code, UserFacing};
use crate::sql::quote_literal;
use crate::sql::rewrite::{Catalog, TableKind};
use crate::upstream::{Pool, UpstreamError};

/// The policy migration 0004 creates on every tenant table.
const POLICY: &str = "orgwall_tenant_isolation";

/// Predefined roles that reach the server's files, programs or every table.
const DANGEROUS_ROLES: &[&str] = &[
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_read_all_data",
    "pg_write_all_data",
];

/// Why tenant logins are refused.
#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("cannot check the tenant boundary in PostgreSQL: {0}")]
    Connect(UpstreamError),
    /// `Connect` seen by a check a few seconds ago, not repeated yet.
    #[error("PostgreSQL was unreachable at the last check of the tenant boundary")]
    Unreachable,
    #[error("the tenant boundary in PostgreSQL is not in place: {0}; run `orgwall migrate up` (or see the README's \"Two walls\" for a deployment with its own roles)")]
    Unsafe(String),
}

/// Tenant logins end (FATAL) while the wall is not known to stand.
impl UserFacing for WallError {
    fn sqlstate(&self) -> &'static str {
        match self {
            WallError::Connect(u) => u.sqlstate(),
            WallError::Unreachable => code::CONNECTION_FAILURE,
            WallError::Unsafe(_) => code::OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
    fn fatal(&self) -> bool {
        true
    }
    fn client_message(&self) -> String {
        match self {
            WallError::Connect(u) => u.client_message(),
            WallError::Unreachable => "upstream unavailable".into(),
            WallError::Unsafe(_) => format!("tenant logins are refused: {self}"),
        }
    }
}

/// Runs the start-up check; on success, the wall sessions use.
pub async fn establish(
    owner: &Pool,
    tenant: &Pool,
    catalog: &Catalog,
    tenant_user: &str,
) -> Result<Wall, WallError> {
    let mut lease = tenant.acquire().await.map_err(WallError::Connect)?;
    let problems = tenant_problems(&mut lease.conn, catalog).await;
    if problems.is_err() || problems.as_ref().is_ok_and(|p| !p.is_empty()) {
        tenant.release(lease);
        return Err(WallError::Unsafe(match problems {
            Ok(p) => p.join("; "),
            Err(e) => format!("checking the tenant identity failed ({e})"),
        }));
    }
    let key = read_key(owner).await?;
    let wall = Wall::new(key, tenant_user.to_string());
    // A probe org that owns no rows: its token reveals nothing, even in the server's logs.
    // Signed and registered as every token is (registering it checks the signature), it must
    // then be what `orgwall.current_org()`, which the policies call, answers.
    let probe = "orgwall-startup-probe";
    let verified = match wall.ticket(Some(probe), super::unix_now(), owner).await {
        Ok(ticket) => {
            let set = lease.conn.set_context(&ticket.token).await;
            let read = lease
                .conn
                .query_text(
                    "SELECT orgwall.current_org(); \
                     RESET orgwall.tenant",
                )
                .await;
            set.and(read)
        }
        Err(e) => Err(e),
    };
    tenant.release(lease);
    let row = match verified {
        Ok(rows) => rows.into_iter().next().unwrap_or_default(),
        Err(e) => {
            return Err(WallError::Unsafe(format!(
                "the tenant context cannot be set ({e})"
            )))
        }
    };
    let col = |i: usize| row.get(i).cloned().flatten();
    if col(0).as_deref() != Some(probe) {
        return Err(WallError::Unsafe(
            "orgwall.current_org() does not accept a token Orgwall registered".into(),
        ));
    }
    Ok(wall)
}

async fn read_key(owner: &Pool) -> Result<Vec<u8>, WallError> {
    let mut lease = owner.acquire().await.map_err(WallError::Connect)?;
    let rows = lease
        .conn
        .query_text("SELECT encode(key, 'hex') FROM orgwall.tenant_key WHERE id = 1")
        .await;
    owner.release(lease);
    let hex = rows
        .map_err(|e| WallError::Unsafe(format!("the signing key cannot be read ({e})")))?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| WallError::Unsafe("orgwall.tenant_key holds no key".into()))?;
    let key: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    key.filter(|k| k.len() >= 16)
        .ok_or_else(|| WallError::Unsafe("orgwall.tenant_key holds a malformed key".into()))
}

/// Everything wrong with the tenant identity (run as that identity).
async fn tenant_problems(
    conn: &mut crate::upstream::ServerConn,
    catalog: &Catalog,
) -> Result<Vec<String>, UpstreamError> {
    let mut problems = Vec::new();
    // Every role whose rights the login has (itself included).
    for row in conn
        .query_text(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole \
             FROM pg_catalog.pg_roles r \
             WHERE pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1",
        )
        .await?
    {
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let name = col(0);
        let who = format!("role {}", quote_literal(&name));
        if col(1) == "t" {
            problems.push(format!("{who} is a superuser"));
        }
        if col(2) == "t" {
            problems.push(format!("{who} has BYPASSRLS"));
        }
        if col(3) == "t" {
            problems.push(format!("{who} has CREATEROLE"));
        }
        if DANGEROUS_ROLES.contains(&name.as_str()) {
            problems.push(format!("the tenant identity is a member of {name}"));
        }
    }
    let (tenant, global) = tables(catalog);
    let list = |names: &[String]| {
        let quoted: Vec<String> = names.iter().map(|n| quote_literal(n)).collect();
        format!("ARRAY[{}]::text[]", quoted.join(","))
    };
    // Tenant tables: RLS on, not owned, Orgwall's policy present and no other permissive
    // policy that applies to this login.
    let sql = format!(
        "WITH mine AS (SELECT oid FROM pg_catalog.pg_roles \
                       WHERE pg_catalog.pg_has_role(current_user, oid, 'MEMBER')) \
         SELECT t.name, c.oid IS NOT NULL, coalesce(c.relrowsecurity, false), \
                coalesce(pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER'), false), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid \
                        AND p.polname = '{POLICY}' AND p.polpermissive AND p.polcmd = '*' \
                        AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) LIKE '%orgwall.current_org()%' \
                        AND pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%orgwall.current_org()%' \
                        AND (p.polroles && ARRAY(SELECT oid FROM mine) OR p.polroles = '{{0}}')), \
                (SELECT count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid \
                        AND p.polname <> '{POLICY}' AND p.polpermissive \
                        AND (p.polroles && ARRAY(SELECT oid FROM mine) OR p.polroles = '{{0}}')) \
         FROM unnest({}) AS t(name) \
         LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(t.name) \
         ORDER BY 1",
        list(&tenant)
    );
    for row in conn.query_text(&sql).await? {
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let t = col(0);
        if col(1) != "t" {
            continue; // dropped since the catalog was read
        }
        if col(3) == "t" {
            problems.push(format!(
                "the tenant identity owns (or is a member of the owner of) {t}"
            ));
        }
        if col(2) != "t" {
            problems.push(format!("{t} has no row-level security"));
        } else if col(4) != "t" {
            problems.push(format!("{t} lacks the policy {POLICY}"));
        }
        if col(5) != "0" {
            problems.push(format!(
                "{t} has other permissive policies for the tenant identity"
            ));
        }
    }
    // Relations of the protected schemas the login may use that are neither a tenant table
    // nor a declared global table (read-only), e.g. a view over tenant tables (views run as
    // their owner, past row-level security).
    let schemas = &catalog.search_path;
    let sql = format!(
        "SELECT n.nspname || '.' || c.relname, \
                pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY({}) AND c.relkind IN ('r','p','v','m','f') \
           AND pg_catalog.has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') \
           AND NOT (n.nspname || '.' || c.relname = ANY({})) ORDER BY 1",
        list(schemas),
        list(&tenant)
    );
    for row in conn.query_text(&sql).await? {
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let name = col(0);
        if !global.contains(&name) {
            problems.push(format!(
                "the tenant identity may use {name}, which is neither a tenant table nor listed in [tenancy] global_tables"
            ));
        } else if col(1) == "t" {
            problems.push(format!(
                "the tenant identity may write the global table {name}"
            ));
        }
    }
    let sql = "SELECT pg_catalog.to_regprocedure('orgwall.current_org()') IS NOT NULL \
                      AND pg_catalog.to_regclass('orgwall.tenant_tokens') IS NOT NULL, \
               pg_catalog.to_regclass('orgwall.tenant_key') IS NOT NULL \
               AND pg_catalog.has_table_privilege('orgwall.tenant_key', 'SELECT, INSERT, UPDATE, DELETE'), \
               pg_catalog.to_regclass('orgwall.tenant_tokens') IS NOT NULL \
               AND pg_catalog.has_table_privilege('orgwall.tenant_tokens', 'SELECT, INSERT, UPDATE, DELETE')";
    let row = conn
        .query_text(sql)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let yes = |i: usize| row.get(i).cloned().flatten().as_deref() == Some("t");
    if !yes(0) {
        problems.push("orgwall.current_org() or orgwall.tenant_tokens does not exist".into());
    }
    if yes(1) {
        problems.push("the tenant identity may use orgwall.tenant_key".into());
    }
    if yes(2) {
        problems.push("the tenant identity may use orgwall.tenant_tokens".into());
    }
    Ok(problems)
}

/// Schema-qualified names of the catalog's tenant tables (organizations included) and global
/// tables.
fn tables(catalog: &Catalog) -> (Vec<String>, Vec<String>) {
    let (mut tenant, mut global) = (Vec::new(), Vec::new());
    for t in catalog.tables() {
        let name = format!("{}.{}", t.schema, t.name);
        match t.kind {
            TableKind::Global => global.push(name),
            TableKind::Tenant { .. } | TableKind::Organizations => tenant.push(name),
        }
    }
    tenant.sort();
    global.sort();
    (tenant, global)
}
