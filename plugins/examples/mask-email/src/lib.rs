//! `mask-email`: personal data stays hidden from applications. `users.email` (configurable)
//! comes back masked unless the principal is an admin.
//! Config: `table = "users"`, `columns = ["email"]`, `with = "***"` (absent: NULL).

use orgwall_policy::{
    Config, Decision, MaskedColumn, Policy, Principal, Replacement, Role, Statement,
};

struct MaskEmail {
    table: String,
    columns: Vec<String>,
    with: Option<String>,
}

impl Policy for MaskEmail {
    fn new(config: &Config) -> Result<Self, String> {
        Ok(MaskEmail {
            table: config.string("table", "users")?,
            columns: config.strings("columns", &["email"])?,
            with: config.opt_string("with")?,
        })
    }

    fn check(&self, who: &Principal, stmt: &Statement) -> Decision {
        if who.role == Role::Admin {
            return Decision::Allow;
        }
        let masked: Vec<MaskedColumn> = self
            .columns
            .iter()
            .filter(|c| stmt.reads_column(&self.table, c))
            .map(|c| MaskedColumn {
                table: self.table.clone(),
                column: c.clone(),
                replacement: match &self.with {
                    Some(t) => Replacement::Text(t.clone()),
                    None => Replacement::Null,
                },
            })
            .collect();
        if masked.is_empty() {
            Decision::Allow
        } else {
            Decision::Mask(masked)
        }
    }
}

orgwall_policy::policy!(MaskEmail);
