//! `append-only-ledger`: the ledger is history. UPDATE, DELETE, MERGE and TRUNCATE of the
//! configured tables are refused for everyone (admins included); INSERT and reads are allowed.
//! Config: `tables = ["inventory_ledger"]` (default).

use orgwall_policy::{deny, Config, Decision, Operation, Policy, Principal, Statement};

struct AppendOnly {
    tables: Vec<String>,
}

impl Policy for AppendOnly {
    fn new(config: &Config) -> Result<Self, String> {
        Ok(AppendOnly {
            tables: config.strings("tables", &["inventory_ledger"])?,
        })
    }

    fn check(&self, _who: &Principal, stmt: &Statement) -> Decision {
        let changes_rows = matches!(
            stmt.operation,
            Operation::Update | Operation::Delete | Operation::Merge | Operation::Truncate
        );
        if !changes_rows {
            return Decision::Allow;
        }
        match self.tables.iter().find(|t| stmt.writes(t)) {
            Some(t) => deny(
                "42501",
                format!("{t} is append-only: record a correcting entry instead"),
            ),
            None => Decision::Allow,
        }
    }
}

orgwall_policy::policy!(AppendOnly);
