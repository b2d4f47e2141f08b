//! `migrate verify`: the guide's verification queries as named pass/fail checks.
//!
//! Checks belonging to a migration that the history says is not applied are skipped, not failed,
//! so `verify` is meaningful at every point of the sequence.

use tokio_postgres::Client;

use super::boundary::{
    self, sign_tenant, POLICY, REFERENCED_TABLES, RLS_TABLES, TENANT_FOREIGN_KEYS, TENANT_ROLE,
};
use super::runner::read_history;
use super::{reconcile, MigrateError, Target};

/// The eight tables that get an `org_id`.
pub const TENANT_TABLES: [&str; 8] = [
    "users",
    "items",
    "locations",
    "inventory_ledger",
    "count_sheets",
    "count_lines",
    "audit_logs",
    "feature_flags",
];

/// The tenant-composite unique indexes and the global ones they replace (stored lowercase).
const UNIQUE_KEYS: [(&str, &str); 5] = [
    ("users_orgid_email_key", "users_email_key"),
    ("items_orgid_itemnumber_key", "items_itemnumber_key"),
    ("locations_orgid_site_name_key", "locations_site_name_key"),
    (
        "count_sheets_orgid_countnumber_key",
        "count_sheets_countnumber_key",
    ),
    ("feature_flags_orgid_key_key", "feature_flags_key_key"),
];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One line of the verification table.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

/// Runs every check; a failing query is a failed check, not an error.
pub async fn verify(target: &Target) -> Result<Vec<Check>, MigrateError> {
    let client = target.connect().await?;
    let history = read_history(&client).await?;
    let has = |n: &str| history.keys().any(|k| k.starts_with(n));
    let (org, bal, wall) = (has("0002_"), has("0003_"), has("0004_"));
    let deltas = has("0005_");
    let mirror = has("0007_");
    let mut out = Vec::new();
    let mut push = |name, applies: bool, why: &str, r: Result<(bool, String), MigrateError>| {
        let (outcome, detail) = match (applies, r) {
            (false, _) => (Outcome::Skip, format!("{why} not applied")),
            (true, Ok((true, d))) => (Outcome::Pass, d),
            (true, Ok((false, d))) => (Outcome::Fail, d),
            (true, Err(e)) => (Outcome::Fail, e.to_string()),
        };
        out.push(Check {
            name,
            outcome,
            detail,
        })
    };
    let c = &client;
    push("tables exist", true, "", tables_exist(c, org, bal).await);
    push(
        "default organization present",
        org,
        "0002",
        default_org(c).await,
    );
    push(
        "org_id is NOT NULL everywhere",
        org,
        "0002",
        not_null(c).await,
    );
    push("every row has an org_id", org, "0002", counts(c).await);
    push("no orphaned org_id", org, "0002", orphans(c).await);
    push("org foreign keys valid", org, "0002", foreign_keys(c).await);
    push("unique keys per tenant", org, "0002", unique_keys(c).await);
    push("balance trigger enabled", bal, "0003", trigger(c).await);
    push(
        "balance rows = ledger keys",
        bal,
        "0003",
        balance_rows(c).await,
    );
    push("balances match the ledger", bal, "0003", balances(c).await);
    push(
        "ledger updates reach balances",
        deltas,
        "0005",
        ledger_deltas(c).await,
    );
    push(
        "balances can be mirrored",
        mirror,
        "0007",
        balances_identity(c).await,
    );
    push(
        "tenant role least-privilege",
        wall,
        "0004",
        tenant_role(c).await,
    );
    push(
        "tenant role table rights",
        wall,
        "0004",
        tenant_rights(c).await,
    );
    push(
        "row-level security + policy",
        wall,
        "0004",
        row_security(c).await,
    );
    push(
        "current_org() definer, pinned",
        wall,
        "0004",
        current_org_fn(c).await,
    );
    push("tenant key owner-only", wall, "0004", tenant_key(c).await);
    push(
        "current_org() verifies tokens",
        wall,
        "0004",
        tokens(c).await,
    );
    push(
        "tenant-scoped foreign keys",
        wall,
        "0004",
        tenant_fks(c).await,
    );
    Ok(out)
}

async fn one<T>(c: &Client, sql: &str) -> Result<T, MigrateError>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    Ok(c.query_one(sql, &[])
        .await
        .map_err(MigrateError::sql(
            sql.split_whitespace().take(6).collect::<Vec<_>>().join(" "),
        ))?
        .get(0))
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

async fn tables_exist(c: &Client, org: bool, bal: bool) -> Result<(bool, String), MigrateError> {
    let mut want: Vec<&str> = TENANT_TABLES.to_vec();
    want.extend(org.then_some("organizations"));
    want.extend(bal.then_some("inventory_balances"));
    let mut missing = Vec::new();
    for t in &want {
        let ok: bool = c
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[t])
            .await
            .map_err(MigrateError::sql("to_regclass"))?
            .get(0);
        if !ok {
            missing.push(t.to_string());
        }
    }
    Ok(match missing.is_empty() {
        true => (true, format!("{} tables", want.len())),
        false => (false, format!("missing: {}", list(&missing))),
    })
}

async fn default_org(c: &Client) -> Result<(bool, String), MigrateError> {
    let id: Option<String> = one(
        c,
        "SELECT min(id) FROM organizations WHERE name = 'Default Organization'",
    )
    .await?;
    Ok(match id {
        Some(id) => (true, id),
        None => (false, "no organization named 'Default Organization'".into()),
    })
}

async fn not_null(c: &Client) -> Result<(bool, String), MigrateError> {
    // The guide's query: all should show 'NO' for is_nullable.
    let rows = c
        .query(
            "SELECT table_name::text, is_nullable::text FROM information_schema.columns
             WHERE column_name = 'org_id' AND table_schema = 'public'",
            &[],
        )
        .await
        .map_err(MigrateError::sql("information_schema.columns"))?;
    let mut bad: Vec<String> = TENANT_TABLES
        .iter()
        .filter(|t| !rows.iter().any(|r| r.get::<_, String>(0) == **t))
        .map(|t| format!("{t} (no column)"))
        .collect();
    bad.extend(
        rows.iter()
            .filter(|r| r.get::<_, String>(1) != "NO")
            .map(|r| format!("{} (nullable)", r.get::<_, String>(0))),
    );
    Ok((
        bad.is_empty(),
        if bad.is_empty() {
            format!("{} columns", rows.len())
        } else {
            list(&bad)
        },
    ))
}

async fn counts(c: &Client) -> Result<(bool, String), MigrateError> {
    let (mut total, mut bad) = (0i64, Vec::new());
    for t in TENANT_TABLES {
        let r = c
            .query_one(&format!("SELECT COUNT(*), COUNT(org_id) FROM {t}"), &[])
            .await
            .map_err(MigrateError::sql(format!("counting {t}")))?;
        let (n, with): (i64, i64) = (r.get(0), r.get(1));
        total += n;
        if n != with {
            bad.push(format!("{t}: {with} of {n}"));
        }
    }
    Ok((
        bad.is_empty(),
        if bad.is_empty() {
            format!("{total} rows")
        } else {
            list(&bad)
        },
    ))
}

async fn orphans(c: &Client) -> Result<(bool, String), MigrateError> {
    let mut bad = Vec::new();
    for t in TENANT_TABLES {
        let n: i64 = one(c, &format!(
            "SELECT COUNT(*) FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = x.org_id)"
        ))
        .await?;
        if n > 0 {
            bad.push(format!("{t}: {n}"));
        }
    }
    Ok((
        bad.is_empty(),
        if bad.is_empty() {
            "none".into()
        } else {
            list(&bad)
        },
    ))
}

async fn foreign_keys(c: &Client) -> Result<(bool, String), MigrateError> {
    let mut bad = Vec::new();
    for t in TENANT_TABLES {
        let name = format!("{t}_orgid_fkey");
        let valid: Option<bool> = c
            .query_opt(
                "SELECT convalidated FROM pg_constraint WHERE conname = $1 AND contype = 'f'",
                &[&name],
            )
            .await
            .map_err(MigrateError::sql("pg_constraint"))?
            .map(|r| r.get(0));
        match valid {
            Some(true) => {}
            Some(false) => bad.push(format!("{name} (not validated)")),
            None => bad.push(format!("{name} (missing)")),
        }
    }
    Ok((
        bad.is_empty(),
        if bad.is_empty() {
            "8 valid".into()
        } else {
            list(&bad)
        },
    ))
}

async fn unique_keys(c: &Client) -> Result<(bool, String), MigrateError> {
    let mut bad = Vec::new();
    for (composite, global) in UNIQUE_KEYS {
        let state = |name: &'static str| async move {
            c.query_opt(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
                 WHERE x.relname = $1 AND pg_table_is_visible(x.oid)",
                &[&name],
            )
            .await
            .map(|r| r.map(|r| r.get::<_, bool>(0)))
            .map_err(MigrateError::sql("pg_index"))
        };
        if state(composite).await? != Some(true) {
            bad.push(format!("{composite} missing or invalid"));
        }
        if state(global).await?.is_some() {
            bad.push(format!("{global} still present"));
        }
    }
    Ok((
        bad.is_empty(),
        if bad.is_empty() {
            "5 composite".into()
        } else {
            list(&bad)
        },
    ))
}

async fn trigger(c: &Client) -> Result<(bool, String), MigrateError> {
    let state: Option<String> = one(
        c,
        "SELECT min(tgenabled::text) FROM pg_trigger WHERE tgname = 'inventory_ledger_balance_trigger'",
    )
    .await?;
    Ok(match state.as_deref() {
        None => (false, "inventory_ledger_balance_trigger missing".into()),
        Some("D") => (false, "inventory_ledger_balance_trigger disabled".into()),
        Some(_) => (true, "inventory_ledger_balance_trigger".into()),
    })
}

/// 0005: the ledger replicates whole old rows and the balance trigger fires on every change.
async fn ledger_deltas(c: &Client) -> Result<(bool, String), MigrateError> {
    const EVENTS: i32 = 4 | 8 | 16; // TRIGGER_TYPE_INSERT | _DELETE | _UPDATE
    let r = c
        .query_one(
            "SELECT c.relreplident::text,
                    (SELECT t.tgtype::int FROM pg_trigger t
                     WHERE t.tgrelid = c.oid AND t.tgname = 'inventory_ledger_balance_trigger')
             FROM pg_class c WHERE c.oid = 'inventory_ledger'::regclass",
            &[],
        )
        .await
        .map_err(MigrateError::sql("reading the ledger's replica identity"))?;
    let (identity, events): (String, Option<i32>) = (r.get(0), r.get(1));
    let mut bad = Vec::new();
    if identity != "f" {
        bad.push(format!(
            "inventory_ledger REPLICA IDENTITY is {identity:?}, not FULL"
        ));
    }
    if events.is_none_or(|t| t & EVENTS != EVENTS) {
        bad.push(
            "inventory_ledger_balance_trigger does not fire on INSERT, UPDATE and DELETE".into(),
        );
    }
    Ok(match bad.is_empty() {
        true => (
            true,
            "REPLICA IDENTITY FULL, trigger on INSERT/UPDATE/DELETE".into(),
        ),
        false => (false, list(&bad)),
    })
}

/// 0007: inventory_balances replicates whole old rows (the cache mirrors it).
async fn balances_identity(c: &Client) -> Result<(bool, String), MigrateError> {
    let identity: String = c
        .query_one(
            "SELECT relreplident::text FROM pg_class WHERE oid = 'inventory_balances'::regclass",
            &[],
        )
        .await
        .map_err(MigrateError::sql(
            "reading inventory_balances' replica identity",
        ))?
        .get(0);
    Ok(match identity.as_str() {
        "f" => (true, "inventory_balances REPLICA IDENTITY FULL".into()),
        other => (
            false,
            format!("inventory_balances REPLICA IDENTITY is {other:?}, not FULL"),
        ),
    })
}

/// The guide's count, less balance rows at zero whose ledger rows were all deleted or moved
/// to another key (0005's trigger keeps such a row, as `orgwall reconcile` does).
async fn balance_rows(c: &Client) -> Result<(bool, String), MigrateError> {
    let r = c
        .query_one(
            "SELECT (SELECT COUNT(DISTINCT (org_id, item_id, location_id, lot_id)) FROM inventory_ledger),
                    (SELECT COUNT(*) FROM inventory_balances),
                    (SELECT COUNT(*) FROM inventory_balances b WHERE b.quantity = 0 AND NOT EXISTS
                        (SELECT 1 FROM inventory_ledger l
                         WHERE (l.org_id, l.item_id, l.location_id) = (b.org_id, b.item_id, b.location_id)
                           AND l.lot_id IS NOT DISTINCT FROM b.lot_id))",
            &[],
        )
        .await
        .map_err(MigrateError::sql("counting balance keys"))?;
    let (keys, rows, emptied): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    let detail = match emptied {
        0 => format!("{keys} ledger keys, {rows} balance rows"),
        n => format!("{keys} ledger keys, {rows} balance rows ({n} at zero without ledger rows)"),
    };
    Ok((keys == rows - emptied, detail))
}

async fn balances(c: &Client) -> Result<(bool, String), MigrateError> {
    let drift = reconcile::find_drift(c).await?;
    Ok(match drift.len() {
        0 => (true, "no drift".into()),
        n => (false, format!("{n} key(s) drift; see `orgwall reconcile`")),
    })
}

fn verdict(bad: Vec<String>, ok: impl Into<String>) -> (bool, String) {
    match bad.is_empty() {
        true => (true, ok.into()),
        false => (false, list(&bad)),
    }
}

async fn tenant_role(c: &Client) -> Result<(bool, String), MigrateError> {
    let row = c
        .query_opt(
            "SELECT r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole,
                    r.rolreplication, r.rolinherit,
                    (SELECT string_agg(g.rolname, ' ' ORDER BY g.rolname) FROM pg_auth_members m
                     JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid),
                    (SELECT string_agg(x.oid::regclass::text, ' ' ORDER BY 1) FROM pg_class x
                     WHERE x.relowner = r.oid),
                    (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
                      + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid),
                    has_schema_privilege(r.oid, 'public', 'CREATE'),
                    has_database_privilege(r.oid, current_database(), 'CREATE')
             FROM pg_roles r WHERE r.rolname = $1",
            &[&TENANT_ROLE],
        )
        .await
        .map_err(MigrateError::sql("pg_roles"))?;
    let Some(r) = row else {
        return Ok((false, format!("role {TENANT_ROLE} missing")));
    };
    let mut bad = Vec::new();
    for (i, what) in [
        (1, "superuser"),
        (2, "BYPASSRLS"),
        (3, "CREATEDB"),
        (4, "CREATEROLE"),
        (5, "REPLICATION"),
        (6, "INHERIT"),
    ] {
        if r.get::<_, bool>(i) {
            bad.push(what.to_string());
        }
    }
    if !r.get::<_, bool>(0) {
        bad.push("NOLOGIN".into());
    }
    if let Some(m) = r.get::<_, Option<String>>(7) {
        bad.push(format!("member of {m}"));
    }
    if let Some(owned) = r.get::<_, Option<String>>(8) {
        bad.push(format!("owns {owned}"));
    }
    if r.get::<_, i64>(9) > 0 {
        bad.push("owns functions or schemas".into());
    }
    if r.get::<_, bool>(10) {
        bad.push("may CREATE in schema public".into());
    }
    if r.get::<_, bool>(11) {
        bad.push("may CREATE in this database".into());
    }
    Ok(verdict(
        bad.into_iter()
            .map(|b| format!("{TENANT_ROLE}: {b}"))
            .collect(),
        TENANT_ROLE,
    ))
}

async fn tenant_rights(c: &Client) -> Result<(bool, String), MigrateError> {
    let tables: Vec<String> = RLS_TABLES.iter().map(|t| t.to_string()).collect();
    let rows = c
        .query(
            "SELECT t, has_table_privilege($1, t, 'SELECT')
                      AND has_table_privilege($1, t, 'UPDATE'),
                    has_table_privilege($1, t, 'INSERT, DELETE'),
                    has_table_privilege($1, t, 'INSERT') AND has_table_privilege($1, t, 'DELETE'),
                    has_table_privilege($1, t, 'TRUNCATE, REFERENCES, TRIGGER')
             FROM unnest($2::text[]) AS t",
            &[&TENANT_ROLE, &tables],
        )
        .await
        .map_err(MigrateError::sql("has_table_privilege"))?;
    let mut bad = Vec::new();
    for r in rows {
        let t: String = r.get(0);
        // Organizations: SELECT and UPDATE only (a tenant renames its own row).
        let (read_update, insert_or_delete, insert_and_delete, other): (bool, bool, bool, bool) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        let full = t != "organizations";
        if !read_update || (full && !insert_and_delete) {
            bad.push(format!("{t}: missing rights"));
        }
        if (!full && insert_or_delete) || other {
            bad.push(format!("{t}: too many rights"));
        }
    }
    Ok(verdict(
        bad,
        "DML on 9 tables, SELECT/UPDATE on organizations",
    ))
}

async fn row_security(c: &Client) -> Result<(bool, String), MigrateError> {
    let tables: Vec<String> = RLS_TABLES.iter().map(|t| t.to_string()).collect();
    let rows = c
        .query(
            "SELECT t, x.relrowsecurity,
                    (SELECT p.polpermissive AND p.polcmd = '*'
                            AND p.polroles = ARRAY[(SELECT oid FROM pg_roles WHERE rolname = $2)]
                            AND pg_get_expr(p.polqual, p.polrelid) = format($3, col)
                            AND pg_get_expr(p.polwithcheck, p.polrelid) = format($3, col)
                     FROM pg_policy p WHERE p.polrelid = x.oid AND p.polname = $1)
             FROM unnest($4::text[]) AS t
             JOIN pg_class x ON x.oid = t::regclass,
             LATERAL (SELECT CASE t WHEN 'organizations' THEN 'id' ELSE 'org_id' END AS col) AS k",
            &[
                &POLICY,
                &TENANT_ROLE,
                &"(%s = ( SELECT orgwall.current_org() AS current_org))",
                &tables,
            ],
        )
        .await
        .map_err(MigrateError::sql("pg_policy"))?;
    let mut bad = Vec::new();
    for r in rows {
        let t: String = r.get(0);
        if !r.get::<_, bool>(1) {
            bad.push(format!("{t}: row-level security off"));
        }
        match r.get::<_, Option<bool>>(2) {
            None => bad.push(format!("{t}: no policy {POLICY}")),
            Some(false) => bad.push(format!("{t}: policy {POLICY} changed")),
            Some(true) => {}
        }
    }
    Ok(verdict(bad, format!("{} tables", RLS_TABLES.len())))
}

async fn current_org_fn(c: &Client) -> Result<(bool, String), MigrateError> {
    let row = c
        .query_opt(
            "SELECT p.prosecdef, p.provolatile::text, array_to_string(p.proconfig, ';'),
                    pg_get_userbyid(p.proowner) = $1,
                    has_function_privilege($1, p.oid, 'EXECUTE'),
                    EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))
                            WHERE grantee = 0)
             FROM pg_proc p WHERE p.oid = to_regprocedure('orgwall.current_org()')",
            &[&TENANT_ROLE],
        )
        .await
        .map_err(MigrateError::sql("pg_proc"))?;
    let Some(r) = row else {
        return Ok((false, "orgwall.current_org() missing".into()));
    };
    let mut bad = Vec::new();
    if !r.get::<_, bool>(0) {
        bad.push("not SECURITY DEFINER".to_string());
    }
    if r.get::<_, String>(1) != "s" {
        bad.push("not STABLE".into());
    }
    let config: Option<String> = r.get(2);
    if config.as_deref() != Some("search_path=pg_catalog, pg_temp") {
        bad.push(format!(
            "settings {config:?}, not search_path=pg_catalog, pg_temp"
        ));
    }
    if r.get::<_, bool>(3) {
        bad.push(format!("owned by {TENANT_ROLE}"));
    }
    if !r.get::<_, bool>(4) {
        bad.push(format!("{TENANT_ROLE} may not call it"));
    }
    if r.get::<_, bool>(5) {
        bad.push("PUBLIC may call it".into());
    }
    Ok(verdict(bad, "SECURITY DEFINER, search_path pinned"))
}

async fn tenant_key(c: &Client) -> Result<(bool, String), MigrateError> {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM orgwall.tenant_key),
                    (SELECT length(key) FROM orgwall.tenant_key WHERE id = 1),
                    has_table_privilege($1, 'orgwall.tenant_key',
                                        'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
                    has_table_privilege($1, 'orgwall.schema_migrations',
                                        'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
                    EXISTS (SELECT 1 FROM aclexplode((SELECT relacl FROM pg_class
                                                      WHERE oid = 'orgwall.tenant_key'::regclass))
                            WHERE grantee = 0)",
            &[&TENANT_ROLE],
        )
        .await
        .map_err(MigrateError::sql("orgwall.tenant_key"))?;
    let mut bad = Vec::new();
    let (rows, len): (i64, Option<i32>) = (r.get(0), r.get(1));
    if rows != 1 || len != Some(32) {
        bad.push(format!("{rows} row(s), key of {len:?} bytes"));
    }
    if r.get::<_, bool>(2) {
        bad.push(format!("{TENANT_ROLE} may use orgwall.tenant_key"));
    }
    if r.get::<_, bool>(3) {
        bad.push(format!("{TENANT_ROLE} may use orgwall.schema_migrations"));
    }
    if r.get::<_, bool>(4) {
        bad.push("PUBLIC may use orgwall.tenant_key".into());
    }
    Ok(verdict(bad, "1 key, 32 bytes"))
}

/// Orgwall's signing ([`sign_tenant`]) against the function, on this connection only: a token
/// for a probe org that owns nothing is accepted, a forged one is not.
async fn tokens(c: &Client) -> Result<(bool, String), MigrateError> {
    let probe = "orgwall-verify-probe";
    let r = c
        .query_one(
            "SELECT (SELECT key FROM orgwall.tenant_key WHERE id = 1), extract(epoch FROM now())::bigint",
            &[],
        )
        .await
        .map_err(MigrateError::sql("reading orgwall.tenant_key"))?;
    let (key, now): (Option<Vec<u8>>, i64) = (r.get(0), r.get(1));
    let Some(key) = key else {
        return Ok((false, "no key".into()));
    };
    let expiry = u64::try_from(now).unwrap_or(0) + 300;
    let good = sign_tenant(&key, probe, expiry);
    let forged = sign_tenant(&key, probe, expiry).replace(probe, "orgwall-verify-other");
    // Registered (the table's CHECK verifies the signature), then read back as the policies
    // do; a forged token is refused both times.
    let check = |token: String| async move {
        let r = c
            .query_one(
                "SELECT set_config($1, $2, true) IS NULL, orgwall.current_org()",
                &[&boundary::TENANT_SETTING, &token],
            )
            .await;
        r.map(|r| r.get::<_, Option<String>>(1))
    };
    let register = |token: String| async move {
        c.batch_execute("SAVEPOINT probe").await?;
        let r = c
            .execute(
                "INSERT INTO orgwall.tenant_tokens (token, org, expires)
                 VALUES ($1, $2, now() + interval '5 minutes')",
                &[&token, &probe],
            )
            .await;
        if r.is_err() {
            c.batch_execute("ROLLBACK TO SAVEPOINT probe").await?;
        }
        Ok::<bool, tokio_postgres::Error>(r.is_ok())
    };
    c.batch_execute("BEGIN")
        .await
        .map_err(MigrateError::sql("BEGIN"))?;
    let registered = (register(good.clone()).await, register(forged.clone()).await);
    let results = (check(good).await, check(forged).await);
    let _ = c.batch_execute("ROLLBACK").await;
    match registered {
        (Ok(true), Ok(false)) => {}
        (Ok(a), Ok(b)) => return Ok((false, format!("registering: signed → {a}, forged → {b}"))),
        (Err(e), _) | (_, Err(e)) => return Err(MigrateError::sql("registering a probe token")(e)),
    }
    let what = MigrateError::sql("calling orgwall.current_org()");
    Ok(match results {
        (Ok(Some(org)), Ok(None)) if org == probe => {
            (true, "signed accepted, forged refused".into())
        }
        (Ok(a), Ok(b)) => (false, format!("signed → {a:?}, forged → {b:?}")),
        (Err(e), _) | (_, Err(e)) => return Err(what(e)),
    })
}

async fn tenant_fks(c: &Client) -> Result<(bool, String), MigrateError> {
    let rows = c
        .query(
            "SELECT conrelid::regclass::text, confrelid::regclass::text, conname::text, contype::text,
                    convalidated, confdeltype::text,
                    ARRAY(SELECT a.attname::text FROM unnest(conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY k.i),
                    ARRAY(SELECT a.attname::text FROM unnest(confkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint WHERE contype IN ('f', 'u')
               AND conrelid = ANY (ARRAY['users', 'items', 'locations', 'inventory_ledger',
                                         'count_sheets', 'count_lines', 'inventory_balances']::regclass[])",
            &[],
        )
        .await
        .map_err(MigrateError::sql("pg_constraint"))?;
    struct Con {
        table: String,
        refd: String,
        name: String,
        kind: String,
        valid: bool,
        on_delete: String,
        cols: Vec<String>,
        refcols: Vec<String>,
    }
    let cons: Vec<Con> = rows
        .iter()
        .map(|r| Con {
            table: r.get(0),
            refd: r.get(1),
            name: r.get(2),
            kind: r.get(3),
            valid: r.get(4),
            on_delete: r.get(5),
            cols: r.get(6),
            refcols: r.get(7),
        })
        .collect();
    let mut bad = Vec::new();
    for t in REFERENCED_TABLES {
        let name = format!("{t}_orgid_id_key");
        if !cons
            .iter()
            .any(|k| k.table == t && k.name == name && k.kind == "u" && k.cols == ["org_id", "id"])
        {
            bad.push(format!("{name} missing"));
        }
    }
    for f in TENANT_FOREIGN_KEYS {
        let fks = || {
            cons.iter()
                .filter(|k| k.kind == "f" && k.table == f.table && k.refd == f.referenced)
        };
        let name = f.name();
        match fks().find(|k| k.name == name) {
            None => bad.push(format!("{name} missing")),
            Some(k) if k.cols != ["org_id", f.column] || k.refcols != ["org_id", "id"] => {
                bad.push(format!("{name} is on ({})", k.cols.join(", ")))
            }
            Some(k) if !k.valid => bad.push(format!("{name} not validated")),
            Some(k) if k.on_delete != if f.cascade { "c" } else { "a" } => {
                bad.push(format!("{name} ON DELETE changed"))
            }
            Some(_) => {}
        }
        if let Some(k) = fks().find(|k| k.cols == [f.column]) {
            bad.push(format!(
                "{} ({}.{}) still single-column",
                k.name, f.table, f.column
            ));
        }
    }
    Ok(verdict(
        bad,
        format!("{} composite", TENANT_FOREIGN_KEYS.len()),
    ))
}
