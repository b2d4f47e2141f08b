//! `migrate verify`: the guide's verification queries as named pass/fail checks.
//!
//! Checks belonging to a migration that the history says is not applied are skipped, not failed,
//! so `verify` is meaningful at every point of the sequence.

use tokio_postgres::Client;

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
    let (org, bal) = (has("0002_"), has("0003_"));
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

async fn balance_rows(c: &Client) -> Result<(bool, String), MigrateError> {
    let r = c
        .query_one(
            "SELECT (SELECT COUNT(DISTINCT (org_id, item_id, location_id, lot_id)) FROM inventory_ledger),
                    (SELECT COUNT(*) FROM inventory_balances)",
            &[],
        )
        .await
        .map_err(MigrateError::sql("counting balance keys"))?;
    let (keys, rows): (i64, i64) = (r.get(0), r.get(1));
    Ok((
        keys == rows,
        format!("{keys} ledger keys, {rows} balance rows"),
    ))
}

async fn balances(c: &Client) -> Result<(bool, String), MigrateError> {
    let drift = reconcile::find_drift(c).await?;
    Ok(match drift.len() {
        0 => (true, "no drift".into()),
        n => (false, format!("{n} key(s) drift; see `orgwall reconcile`")),
    })
}
