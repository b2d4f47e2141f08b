//! System columns (`ctid`, `xmin`, `tableoid`, …) are refused: a confined table reference is a
//! subquery, which has none, so such a name would either fail or — worse — silently bind to an
//! outer query's table (`UPDATE t … WHERE ctid IN (SELECT ctid FROM t …)` would hit every row).

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Expr, Ident, Statement};

use super::Refusal;

const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

fn is_system(ident: &Ident) -> bool {
    let name = match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    };
    SYSTEM_COLUMNS.contains(&name.as_str())
}

/// Refuses a statement that names a system column anywhere in an expression.
pub(crate) fn check_system_columns(stmt: &Statement) -> Result<(), Refusal> {
    let found = visit_expressions(stmt, |e| {
        let hit = match e {
            Expr::Identifier(i) => is_system(i).then(|| i.value.clone()),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .filter(|i| is_system(i))
                .map(|i| i.value.clone()),
            _ => None,
        };
        match hit {
            Some(name) => ControlFlow::Break(name),
            None => ControlFlow::Continue(()),
        }
    });
    match found {
        ControlFlow::Break(name) => Err(Refusal::unsupported(format!(
            "system column {name} is not available through Orgwall (tables are confined as subqueries)"
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn check(sql: &str) -> Result<(), Refusal> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        stmts.iter().try_for_each(check_system_columns)
    }

    #[test]
    fn system_columns_are_refused_wherever_they_appear() {
        for sql in [
            "SELECT ctid, id FROM users",
            "UPDATE users SET name = 'x' WHERE ctid IN (SELECT ctid FROM users LIMIT 1)",
            "SELECT count(DISTINCT tableoid) FROM items",
            "SELECT u.XMIN FROM users u",
            "DELETE FROM users RETURNING cmax",
        ] {
            let e = check(sql).unwrap_err();
            assert_eq!(e.code, "0A000", "{sql}");
        }
        for sql in [
            "SELECT id, \"CTID\" FROM users",
            "SELECT 'ctid' FROM users",
            "SELECT oid FROM t",
        ] {
            assert!(check(sql).is_ok(), "{sql}");
        }
    }
}
