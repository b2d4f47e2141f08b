//! The embedded migrations and how their SQL splits into steps. Pure: no I/O.
//!
//! A file is one transactional step unless it contains `-- orgwall:step NAME [FLAG]` lines; then
//! each such line starts a step. Flags: `no-transaction` (statements run one by one, outside a
//! transaction — CREATE INDEX CONCURRENTLY) and `batched` (each statement is
//! `UPDATE t SET c = 'v' WHERE c IS NULL` and runs in primary-key batches). The files stay plain
//! SQL that psql can run as they are.

use super::MigrateError;

/// One folder of `migrations/`, compiled in.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The folder name, e.g. `0002_add_organization_support`; also the history key.
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

macro_rules! migration {
    ($name:literal) => {
        Migration {
            name: $name,
            up: include_str!(concat!("../../../migrations/", $name, "/up.sql")),
            down: include_str!(concat!("../../../migrations/", $name, "/down.sql")),
        }
    };
}

/// The migrations in the order they apply.
pub const MIGRATIONS: &[Migration] = &[
    migration!("0001_base_schema"),
    migration!("0002_add_organization_support"),
    migration!("0003_add_balance_table"),
    migration!("0004_tenant_boundary"),
    migration!("0005_ledger_replica_identity"),
    migration!("0006_tenant_copy"),
    migration!("0007_balances_mirror"),
];

impl Migration {
    /// The leading number (`2` for `0002_…`).
    pub fn number(&self) -> u32 {
        let digits: String = self.name.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    }

    /// Hex SHA-256 of `up.sql`, stored in the history to notice edited migrations.
    pub fn checksum(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.up.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// How a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// All statements in one transaction.
    Transaction,
    /// Statement by statement in autocommit (CREATE INDEX CONCURRENTLY).
    NoTransaction,
    /// Key-ordered batches of `UPDATE … WHERE col IS NULL`, one transaction per batch.
    Batched,
}

/// A unit of work inside a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub sql: String,
}

/// One `UPDATE table SET column = 'value' WHERE column IS NULL` of a batched step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub table: String,
    pub column: String,
    /// The SQL literal as written, quotes included.
    pub value: String,
}

/// Splits a migration file into its steps.
pub fn steps(sql: &str) -> Result<Vec<Step>, MigrateError> {
    const MARK: &str = "-- orgwall:step";
    if !sql.lines().any(|l| l.trim_start().starts_with(MARK)) {
        return Ok(vec![Step {
            name: "all".into(),
            kind: StepKind::Transaction,
            sql: sql.to_string(),
        }]);
    }
    let mut out: Vec<Step> = Vec::new();
    for line in sql.lines() {
        if let Some(rest) = line.trim_start().strip_prefix(MARK) {
            let mut words = rest.split_whitespace();
            let name = words
                .next()
                .ok_or_else(|| MigrateError::BadMigration(format!("`{line}` has no step name")))?;
            let kind = match words.next() {
                None => StepKind::Transaction,
                Some("no-transaction") => StepKind::NoTransaction,
                Some("batched") => StepKind::Batched,
                Some(other) => {
                    return Err(MigrateError::BadMigration(format!(
                        "step `{name}`: unknown flag `{other}`"
                    )))
                }
            };
            out.push(Step {
                name: name.into(),
                kind,
                sql: String::new(),
            });
        } else if let Some(step) = out.last_mut() {
            step.sql.push_str(line);
            step.sql.push('\n');
        }
    }
    for step in out.iter().filter(|s| s.kind == StepKind::Batched) {
        backfills(&step.sql)?;
    }
    Ok(out)
}

/// The statements of a step, each without comments-only leftovers.
pub fn statements(sql: &str) -> Vec<&str> {
    crate::sql::split_statements(sql)
        .into_iter()
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"))
        })
        .collect()
}

/// Parses a batched step's statements.
pub fn backfills(sql: &str) -> Result<Vec<Backfill>, MigrateError> {
    statements(sql)
        .into_iter()
        .map(|stmt| {
            let code: Vec<&str> = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .flat_map(str::split_whitespace)
                .collect();
            let ident =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
            match code.as_slice() {
                [upd, table, set, col, "=", value, wh, col2, is, null]
                    if upd.eq_ignore_ascii_case("update")
                        && set.eq_ignore_ascii_case("set")
                        && wh.eq_ignore_ascii_case("where")
                        && is.eq_ignore_ascii_case("is")
                        && null.eq_ignore_ascii_case("null")
                        && col == col2
                        && ident(table)
                        && ident(col)
                        && value.len() >= 2
                        && value.starts_with('\'')
                        && value.ends_with('\'')
                        && !value[1..value.len() - 1].contains('\'') =>
                {
                    Ok(Backfill {
                        table: table.to_string(),
                        column: col.to_string(),
                        value: value.to_string(),
                    })
                }
                _ => Err(MigrateError::BadMigration(format!(
                    "a batched step allows only `UPDATE t SET c = 'v' WHERE c IS NULL`, got `{}`",
                    stmt.trim()
                ))),
            }
        })
        .collect()
}

/// The index names a `no-transaction` step builds (`CREATE … INDEX CONCURRENTLY IF NOT EXISTS
/// name`), lowercased as PostgreSQL stores unquoted names: an invalid leftover of a failed
/// build must be dropped before IF NOT EXISTS would skip it.
pub fn concurrent_index_names(sql: &str) -> Vec<String> {
    statements(sql)
        .into_iter()
        .filter_map(|stmt| {
            let words: Vec<String> = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .flat_map(str::split_whitespace)
                .map(str::to_ascii_lowercase)
                .collect();
            let pos = words
                .windows(4)
                .position(|w| w == ["concurrently", "if", "not", "exists"])?;
            words.get(pos + 4).cloned()
        })
        .collect()
}

/// Finds a migration by number (`2`, `0002`) or full name; `0` means "none" (`Ok(None)`).
pub fn resolve(target: &str) -> Result<Option<&'static Migration>, MigrateError> {
    let t = target.trim();
    if let Ok(n) = t.parse::<u32>() {
        if n == 0 {
            return Ok(None);
        }
        if let Some(m) = MIGRATIONS.iter().find(|m| m.number() == n) {
            return Ok(Some(m));
        }
    } else if let Some(m) = MIGRATIONS.iter().find(|m| m.name == t) {
        return Ok(Some(m));
    }
    Err(MigrateError::UnknownMigration {
        given: target.to_string(),
        known: MIGRATIONS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse() {
        for m in MIGRATIONS {
            let up = steps(m.up).unwrap();
            let down = steps(m.down).unwrap();
            assert!(!up.is_empty() && down.len() == 1, "{}", m.name);
        }
        let s = steps(MIGRATIONS[1].up).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names[..3],
            ["organizations", "add_org_id_columns", "backfill"]
        );
        let b = backfills(&s[2].sql).unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(
            b[3],
            Backfill {
                table: "inventory_ledger".into(),
                column: "org_id".into(),
                value: "'org_default'".into()
            }
        );
        let idx = s.iter().find(|s| s.name == "tenant_unique_keys").unwrap();
        assert_eq!(idx.kind, StepKind::NoTransaction);
        assert_eq!(
            concurrent_index_names(&idx.sql)[1],
            "items_orgid_itemnumber_key"
        );

        let s = steps(resolve("4").unwrap().unwrap().up).unwrap();
        let kinds: Vec<(&str, StepKind)> = s.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        use StepKind::{NoTransaction as N, Transaction as T};
        assert_eq!(
            kinds,
            [
                ("tenant_role", T),
                ("tenant_key", T),
                ("current_org", T),
                ("row_level_security", T),
                ("tenant_reference_keys", N),
                ("tenant_reference_constraints", T),
                ("tenant_foreign_keys", T),
                ("validate_tenant_foreign_keys", T),
                ("drop_single_column_foreign_keys", T),
            ]
        );
        assert_eq!(
            concurrent_index_names(&s[4].sql),
            [
                "users_orgid_id_key",
                "items_orgid_id_key",
                "locations_orgid_id_key",
                "count_sheets_orgid_id_key"
            ]
        );
    }

    #[test]
    fn ledger_identity_migration_has_two_transactional_steps() {
        let s = steps(resolve("5").unwrap().unwrap().up).unwrap();
        let kinds: Vec<(&str, StepKind)> = s.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("replica_identity_full", StepKind::Transaction),
                ("balance_trigger_update_delete", StepKind::Transaction),
            ]
        );
        assert_eq!(statements(&s[1].sql).len(), 2);
    }

    #[test]
    fn bad_steps_are_refused() {
        let bad = "-- orgwall:step x batched\nUPDATE t SET c = 1;\n";
        assert!(steps(bad).is_err());
        assert!(steps("-- orgwall:step x weird\nSELECT 1;").is_err());
        assert!(steps("-- orgwall:step\nSELECT 1;").is_err());
    }

    #[test]
    fn resolve_by_number_or_name() {
        assert_eq!(resolve("2").unwrap().unwrap().name, MIGRATIONS[1].name);
        assert_eq!(resolve("0003").unwrap().unwrap().number(), 3);
        assert!(resolve("0").unwrap().is_none());
        assert_eq!(resolve("0001_base_schema").unwrap().unwrap().number(), 1);
        let err = resolve("9").unwrap_err().to_string();
        assert!(err.contains("unknown migration `9`"), "{err}");
        assert!(err.contains("0004_tenant_boundary"), "{err}");
        assert!(err.contains("0005_ledger_replica_identity"), "{err}");
        assert!(resolve("x").is_err());
    }
}
