//! `audit-admin-only`: the audit trail is readable only by principals whose role is listed, or
//! whose org is listed (tenants that bought the audit feature read their own, confined trail).
//! Config: `tables = ["audit_logs"]`, `roles = ["admin"]`, `orgs = []` (defaults).

use orgwall_policy::{deny, Config, Decision, Policy, Principal, Statement};

struct AuditAdminOnly {
    tables: Vec<String>,
    roles: Vec<String>,
    orgs: Vec<String>,
}

impl Policy for AuditAdminOnly {
    fn new(config: &Config) -> Result<Self, String> {
        Ok(AuditAdminOnly {
            tables: config.strings("tables", &["audit_logs"])?,
            roles: config.strings("roles", &["admin"])?,
            orgs: config.strings("orgs", &[])?,
        })
    }

    fn check(&self, who: &Principal, stmt: &Statement) -> Decision {
        if self.roles.iter().any(|r| r == who.role.as_str())
            || who
                .org_id
                .as_ref()
                .is_some_and(|o| self.orgs.iter().any(|x| x == o))
        {
            return Decision::Allow;
        }
        match self.tables.iter().find(|t| stmt.reads(t)) {
            Some(t) => deny(
                "42501",
                format!("reading {t} requires role {}", self.roles.join(" or ")),
            ),
            None => Decision::Allow,
        }
    }
}

orgwall_policy::policy!(AuditAdminOnly);
