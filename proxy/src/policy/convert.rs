//! Runs one analysed statement through the plugin set: builds the WIT principal and statement
//! once, asks each plugin in order, and folds the answers (first deny wins, masks add up).
//! A plugin that fails is a deny naming it (fail closed).

use std::sync::Arc;

use super::mask::Mask;
use super::plugin::CacheKey;
use super::wit;
use super::{PluginSet, Slot, Who};
use crate::config::Role;
use crate::errors::code;
use crate::sql::analyze::{Access, Operation, StatementInfo};

/// The combined verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny { code: String, message: String },
    Mask(Vec<Mask>),
}

/// Where a statement is: its SQL string, the string's fingerprint and shape key, and its
/// position in the string.
pub(super) struct At<'a> {
    pub sql: &'a str,
    pub fingerprint: u64,
    pub shape: &'a Arc<str>,
    pub index: usize,
}

/// Asks every plugin in `set` about one statement and then about each write nested in it
/// (`StatementInfo::nested`, each presented as a statement of its own with the same SQL), so a
/// plugin that decides by operation sees a `DELETE` inside a `WITH` as a `Delete`.
pub(super) fn decide(set: &PluginSet, who: &Who<'_>, at: &At<'_>, info: &StatementInfo) -> Outcome {
    let mut masks = Vec::new();
    for (part, view) in std::iter::once(info).chain(&info.nested).enumerate() {
        match decide_part(set, who, at, part, view) {
            Outcome::Allow => {}
            Outcome::Mask(m) => masks.extend(m),
            deny @ Outcome::Deny { .. } => return deny,
        }
    }
    if masks.is_empty() {
        Outcome::Allow
    } else {
        Outcome::Mask(masks)
    }
}

/// [`decide`] for one part (0: the statement itself). The WIT principal and statement are
/// built only if some plugin has no cached decision.
fn decide_part(
    set: &PluginSet,
    who: &Who<'_>,
    at: &At<'_>,
    part: usize,
    info: &StatementInfo,
) -> Outcome {
    let key: CacheKey = (
        at.shape.clone(),
        (at.index, part),
        info.limit,
        who.role.as_str(),
        who.user.to_string(),
        who.org_id.map(str::to_string),
    );
    let fingerprint = at.fingerprint;
    let mut built = None;
    let mut masks = Vec::new();
    for slot in &set.slots {
        let plugin = match slot {
            Slot::Ready(p) => p,
            Slot::Failed { spec, why } => {
                return Outcome::Deny {
                    code: code::INSUFFICIENT_PRIVILEGE.into(),
                    message: format!("policy plugin `{}` is not loaded ({why})", spec.name),
                }
            }
        };
        let answer = match plugin.cached(&key) {
            Some(d) => Ok(d),
            None => {
                let (principal, stmt) = built
                    .get_or_insert_with(|| (principal(who), statement(at.sql, fingerprint, info)));
                plugin.check(&key, principal, stmt)
            }
        };
        match answer {
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
                    code: code::INSUFFICIENT_PRIVILEGE.into(),
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
