//! What the pooler must know about a tenant statement — its session effects, whether it may
//! share a server connection, whether it only reads — read from the parse the rewriter
//! confines and renders, so the SQL PostgreSQL runs and what Orgwall tracks about it come from
//! one reading (never from a second, lexical one of the client's text).

use std::ops::ControlFlow;

use sqlparser::ast::{
    ContextModifier, Expr, Query, Reset, ResetStatement, Select, Set, SetExpr, Statement, Visit,
    Visitor,
};

use super::statements::{set_config_calls, ConfigValue, SetConfig};
use super::{literals, names};
use crate::sql::{quote_literal, read_only, SessionEffect, Summary};

/// The summary of parsed statements (one `Query` message's worth).
pub(crate) fn summarize(stmts: &[Statement]) -> Summary {
    let mut effects = Vec::new();
    let mut batchable = !stmts.is_empty();
    let mut read_only = batchable;
    for stmt in stmts {
        let effect = effect(stmt);
        batchable &= effect.is_none() && is_batchable(stmt);
        effects.extend(effect);
        read_only &= batchable && only_reads(stmt);
    }
    Summary {
        statements: stmts.len(),
        effects,
        batchable,
        read_only,
    }
}

/// The effect of one statement that outlives its transaction (or marks a savepoint).
fn effect(stmt: &Statement) -> Option<SessionEffect> {
    let ident = |i: &sqlparser::ast::Ident| names::norm(i).ok();
    match stmt {
        Statement::Set(set) => set_effect(set),
        Statement::Reset(ResetStatement { reset }) => match reset {
            Reset::ALL => Some(SessionEffect::ResetAll),
            Reset::SessionAuthorization => {
                Some(SessionEffect::Pinned("SET ROLE / SESSION AUTHORIZATION"))
            }
            Reset::ConfigurationParameter(name) => Some(match setting_name(name) {
                Some(name) => SessionEffect::Reset { name },
                None => SessionEffect::Pinned("an unrecognised RESET form"),
            }),
        },
        Statement::Savepoint { name } => ident(name).map(SessionEffect::Savepoint),
        Statement::ReleaseSavepoint { name } => ident(name).map(SessionEffect::Release),
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => ident(name).map(SessionEffect::RollbackTo),
        Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
            Some(SessionEffect::Pinned("WITH HOLD cursors"))
        }
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
            Some(SessionEffect::Pinned(
                "SQL-level PREPARE/EXECUTE/DEALLOCATE",
            ))
        }
        Statement::Discard { .. } => Some(SessionEffect::Pinned("DISCARD")),
        Statement::LISTEN { .. } => Some(SessionEffect::Pinned("LISTEN")),
        Statement::Load { .. } => Some(SessionEffect::Pinned("LOAD")),
        Statement::Query(_) => set_config_effect(stmt),
        _ => None,
    }
}

fn set_effect(set: &Set) -> Option<SessionEffect> {
    match set {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => {
            if matches!(scope, Some(ContextModifier::Local)) {
                return None;
            }
            let Some(name) = setting_name(variable) else {
                return Some(SessionEffect::Pinned("an unrecognised SET form"));
            };
            let value = values
                .iter()
                .map(literals::print)
                .collect::<Result<Vec<_>, _>>();
            match value {
                Ok(v) => Some(SessionEffect::Set {
                    name,
                    value: v.join(", "),
                }),
                Err(_) => Some(SessionEffect::Pinned("an unrecognised SET form")),
            }
        }
        Set::SetTimeZone { local: true, .. } | Set::SetTransaction { .. } => None,
        Set::SetTimeZone {
            local: false,
            value,
        } => Some(match literals::print(value) {
            Ok(value) => SessionEffect::Set {
                name: "timezone".into(),
                value,
            },
            Err(_) => SessionEffect::Pinned("an unrecognised SET form"),
        }),
        Set::SetNames { charset_name, .. } => Some(SessionEffect::Set {
            name: "client_encoding".into(),
            value: quote_literal(&charset_name.value),
        }),
        Set::SetNamesDefault {} => Some(SessionEffect::Reset {
            name: "client_encoding".into(),
        }),
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
            Some(SessionEffect::Pinned("SET ROLE / SESSION AUTHORIZATION"))
        }
        _ => Some(SessionEffect::Pinned("an unrecognised SET form")),
    }
}

/// A setting's name as PostgreSQL knows it (parts folded and joined with `.`), if every part
/// is a plain identifier, so the name can be printed back unquoted when settings are replayed.
pub(crate) fn setting_name(name: &sqlparser::ast::ObjectName) -> Option<String> {
    // Setting names are case-insensitive, quoted or not.
    let parts: Vec<String> = names::parts(name)
        .ok()?
        .into_iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    parts
        .iter()
        .all(|p| crate::sql::is_plain_setting_part(p))
        .then(|| parts.join("."))
}

/// `SELECT set_config('name', value, false)` as a whole select-list item of a plain `SELECT`
/// (also how the admin path reads such a statement, in `sql`).
pub(crate) fn set_config_effect(stmt: &Statement) -> Option<SessionEffect> {
    let calls = set_config_calls(stmt)?;
    let untracked = SessionEffect::Pinned("set_config with a session setting Orgwall cannot track");
    let [Some(SetConfig { name, value, local })] = calls.as_slice() else {
        return Some(match super::statements::set_config_by_params(stmt) {
            Some((name, value)) => SessionEffect::SetNamedParam { name, value },
            None => untracked,
        });
    };
    if *local {
        return None;
    }
    let name = name.clone();
    Some(match value {
        ConfigValue::Literal(v) => match literals::print(&Expr::value(v.clone())) {
            Ok(value) => SessionEffect::Set { name, value },
            Err(_) => untracked,
        },
        ConfigValue::Param(n) => SessionEffect::SetParam { name, param: *n },
        ConfigValue::Other => untracked,
    })
}

/// Statements that run to completion inside an implicit transaction and leave nothing behind.
fn is_batchable(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => set_config_calls(stmt).is_none(),
        _ => false,
    }
}

/// A query that writes nothing, locks no rows and calls only pure built-ins.
fn only_reads(stmt: &Statement) -> bool {
    let Statement::Query(_) = stmt else {
        return false;
    };
    stmt.visit(&mut ReadsOnly).is_continue()
}

struct ReadsOnly;

impl Visitor for ReadsOnly {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let writes = !q.locks.is_empty()
            || matches!(
                q.body.as_ref(),
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
            );
        if writes {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if matches!(s, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let pure = match names::parts(&f.name).ok().as_deref() {
            Some([n]) => read_only::is_pure_call(n),
            Some([s, n]) => s == "pg_catalog" && read_only::is_pure_call(n),
            _ => false,
        };
        if pure {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::summarize;
    use crate::sql::SessionEffect::{self, *};
    use crate::sql::Summary;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn of(sql: &str) -> Summary {
        summarize(&Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql))
    }

    fn set(name: &str, value: &str) -> SessionEffect {
        Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn effects_come_from_the_parse_tree() {
        let cases: &[(&str, &[SessionEffect])] = &[
            ("SET statement_timeout = 5", &[set("statement_timeout", "5")]),
            ("SET/**/app.x = 'it''s'", &[set("app.x", "'it''s'")]),
            ("SET app.x = '\\''; RESET ALL; --'", &[set("app.x", "E'\\\\''; RESET ALL; --'")]),
            ("SET \"App\".x TO 'a'", &[set("app.x", "'a'")]),
            ("SET \"a;b\".x TO 'a'", &[Pinned("an unrecognised SET form")]),
            ("set SESSION TimeZone TO 'UTC'", &[set("timezone", "'UTC'")]),
            ("SET TIME ZONE 'Europe/Paris'", &[set("timezone", "'Europe/Paris'")]),
            ("SET LOCAL statement_timeout = 5", &[]),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[]),
            ("RESET statement_timeout", &[Reset { name: "statement_timeout".into() }]),
            ("RESET ALL", &[ResetAll]),
            ("SAVEPOINT \"A\"; ROLLBACK TO a; RELEASE SAVEPOINT b", &[
                Savepoint("A".into()),
                RollbackTo("a".into()),
                Release("b".into()),
            ]),
            ("DECLARE c CURSOR WITH/**/HOLD FOR SELECT 1", &[Pinned("WITH HOLD cursors")]),
            ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", &[]),
            (
                "SELECT \"set_config\"('app.x', 'v', false)",
                &[set("app.x", "'v'")],
            ),
            ("SELECT set_config('a.b', 'c', true)", &[]),
            (
                // A string that merely contains a SET is a string.
                "SELECT CASE WHEN false THEN 'a' ELSE'\\' END || '; SET standard_conforming_strings TO off; SELECT '",
                &[],
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(of(sql).effects, *want, "{sql}");
        }
    }

    #[test]
    fn sharing_comes_from_the_parse_tree() {
        let cases: &[(&str, bool, bool)] = &[
            ("SELECT id FROM items WHERE id = 1", true, true),
            ("SELECT lower(name) FROM items", true, true),
            ("SELECT nextval('s')", true, false),
            ("SELECT * FROM items FOR UPDATE", true, false),
            (
                "WITH d AS (DELETE FROM items RETURNING id) SELECT * FROM d",
                true,
                false,
            ),
            ("INSERT INTO items (id) VALUES (1)", true, false),
            ("SET/**/statement_timeout = 1", false, false),
            ("SELECT set_config('a.b', 'c', true)", false, false),
            ("BEGIN", false, false),
            ("SELECT 1; SELECT 2", true, true),
            ("SELECT 1; COMMIT", false, false),
        ];
        for (sql, batchable, read_only) in cases {
            let s = of(sql);
            assert_eq!(
                (s.batchable, s.read_only),
                (*batchable, *read_only),
                "{sql}"
            );
        }
    }
}
