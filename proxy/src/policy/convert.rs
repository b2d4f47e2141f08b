//! Runs one analysed statement through the plugin set: builds the WIT principal and statement
//! once, asks each plugin in order, and folds the answers (first deny wins, masks add up).
//! A plugin that fails is a deny naming it (fail closed).

use super::mask::Mask;
use super::wit;
use super::{PluginSet, Slot, Who};
use crate::config::Role;
use crate::sql::analyze::{Access, Operation, StatementInfo};

/// The combined verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny { code: String, message: String },
    Mask(Vec<Mask>),
}

/// Asks every plugin in `set` about one statement.
pub(super) fn decide(
    set: &PluginSet,
    who: &Who<'_>,
    sql: &str,
    fingerprint: u64,
    info: &StatementInfo,
) -> Outcome {
    let principal = principal(who);
    let stmt = statement(sql, fingerprint, info);
    let key = (
        fingerprint,
        info.limit,
        who.role.as_str(),
        who.user.to_string(),
        who.org_id.map(str::to_string),
    );
    let mut masks = Vec::new();
    for slot in &set.slots {
        let plugin = match slot {
            Slot::Ready(p) => p,
            Slot::Failed { spec, why } => {
                return Outcome::Deny {
                    code: "42501".into(),
                    message: format!("policy plugin `{}` is not loaded ({why})", spec.name),
                }
            }
        };
        match plugin.check(&key, &principal, &stmt) {
            Ok(wit::Decision::Allow) => {}
            Ok(wit::Decision::Deny(d)) => {
                return Outcome::Deny {
                    code: d.sqlstate,
                    message: format!("{}: {}", plugin.name, d.message),
                }
            }
            Ok(wit::Decision::Mask(cols)) => masks.extend(cols.into_iter().map(|c| Mask {
                table: c.table,
                column: c.column,
                with: match c.replacement {
                    wit::Replacement::Null => None,
                    wit::Replacement::Text(t) => Some(t),
                },
            })),
            Err(e) => {
                tracing::error!(plugin = %plugin.name, fingerprint = %format!("{fingerprint:016x}"), error = %e, "policy plugin failed; statement refused");
                return Outcome::Deny {
                    code: "42501".into(),
                    message: format!("policy plugin `{}` failed; statement refused", plugin.name),
                };
            }
        }
    }
    if masks.is_empty() {
        Outcome::Allow
    } else {
        Outcome::Mask(masks)
    }
}

fn principal(who: &Who<'_>) -> wit::Principal {
    wit::Principal {
        user: who.user.to_string(),
        org_id: who.org_id.map(str::to_string),
        role: match who.role {
            Role::Tenant => wit::Role::Tenant,
            Role::Switcher => wit::Role::Switcher,
            Role::Admin => wit::Role::Admin,
        },
    }
}

fn statement(sql: &str, fingerprint: u64, info: &StatementInfo) -> wit::Statement {
    wit::Statement {
        sql: sql.to_string(),
        fingerprint,
        operation: match info.operation {
            Operation::Select => wit::Operation::Select,
            Operation::Insert => wit::Operation::Insert,
            Operation::Update => wit::Operation::Update,
            Operation::Delete => wit::Operation::Delete,
            Operation::Merge => wit::Operation::Merge,
            Operation::Truncate => wit::Operation::Truncate,
            Operation::Copy => wit::Operation::Copy,
            Operation::Ddl => wit::Operation::Ddl,
            Operation::Utility => wit::Operation::Utility,
            Operation::Other => wit::Operation::Other,
        },
        tables: info
            .tables
            .iter()
            .map(|t| wit::TableRef {
                schema: t.schema.clone(),
                name: t.name.clone(),
                access: match t.access {
                    Access::Read => wit::Access::Read,
                    Access::Write => wit::Access::Write,
                },
                columns: t.columns.clone(),
            })
            .collect(),
        limit: info.limit,
    }
}
