//! `row-limit`: reads of large tables must say how many rows they want. A SELECT that reads
//! one of the configured tables needs a literal `LIMIT` of at most `max_rows`, else it is
//! refused with SQLSTATE 54000 (program_limit_exceeded). Admins are exempt.
//! Config: `max_rows = 1000`, `tables = ["inventory_ledger", "audit_logs"]` (defaults).

use orgwall_policy::{deny, Config, Decision, Operation, Policy, Principal, Role, Statement};

struct RowLimit {
    max_rows: u64,
    tables: Vec<String>,
}

impl Policy for RowLimit {
    fn new(config: &Config) -> Result<Self, String> {
        let max_rows = config.u64("max_rows", 1000)?;
        if max_rows == 0 {
            return Err("`max_rows` must be at least 1".into());
        }
        Ok(RowLimit {
            max_rows,
            tables: config.strings("tables", &["inventory_ledger", "audit_logs"])?,
        })
    }

    fn check(&self, who: &Principal, stmt: &Statement) -> Decision {
        if who.role == Role::Admin || stmt.operation != Operation::Select {
            return Decision::Allow;
        }
        let Some(t) = self.tables.iter().find(|t| stmt.reads(t)) else {
            return Decision::Allow;
        };
        match stmt.limit {
            Some(n) if n <= self.max_rows => Decision::Allow,
            _ => deny(
                "54000",
                format!("reads of {t} need LIMIT {} or less", self.max_rows),
            ),
        }
    }
}

orgwall_policy::policy!(RowLimit);
