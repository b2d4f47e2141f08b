//! System columns (`ctid`, `xmin`, `tableoid`, …) are refused: a confined table reference is a
//! subquery, which has none, so such a name would either fail or — worse — silently bind to an
//! outer query's table (`UPDATE t … WHERE ctid IN (SELECT ctid FROM t …)` would hit every row).

use sqlparser::ast::{Expr, Ident};

use super::Refusal;

const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

fn is_system(ident: &Ident) -> bool {
    match ident.quote_style {
        Some(_) => SYSTEM_COLUMNS.contains(&ident.value.as_str()),
        // Unquoted names fold to lower case (ASCII only): compare folded, without allocating.
        None => SYSTEM_COLUMNS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&ident.value)),
    }
}

/// The system column `e` names, as written, if it is one. Called for every expression of a
/// statement by the one check pass in `functions` (which refuses with [`refusal`]).
pub(crate) fn system_column(e: &Expr) -> Option<&str> {
    let i = match e {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    is_system(i).then_some(i.value.as_str())
}

/// The refusal for a statement that names the system column `name` anywhere in an expression.
pub(crate) fn refusal(name: &str) -> Refusal {
    Refusal::unsupported(format!(
        "system column {name} is not available through Orgwall (tables are confined as subqueries)"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{functions::check_statement, Catalog, Refusal};
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn check(sql: &str) -> Result<(), Refusal> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let catalog = Catalog::seed_for_tests();
        stmts.iter().try_for_each(|s| check_statement(s, &catalog))
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
