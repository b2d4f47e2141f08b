//! The last pass before a confined statement is printed: every string literal is printed by
//! Orgwall's own quoting ([`quote_literal`]), never by sqlparser's. sqlparser's printer leaves
//! a quote that follows a backslash undoubled and a doubled quote as it is, so a value
//! `\'; DELETE …` came out as `'\'; DELETE …'`, which PostgreSQL reads as the string `\` and
//! then a second statement. Literal kinds PostgreSQL reads otherwise than sqlparser
//! (byte and raw strings, triple quotes) are refused, and so are quoted identifiers holding a
//! `"` (the printer's same flaw) or nothing at all (PostgreSQL rejects `""`).

use std::ops::ControlFlow;

use sqlparser::ast::{Statement, Value, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::Refusal;
use crate::sql::quote_literal;

/// Replaces each string literal of `stmt` by its text as Orgwall quotes it.
pub(crate) fn requote(stmt: &mut Statement) -> Result<(), Refusal> {
    match stmt.visit(&mut Requote) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// `e` as PostgreSQL must read it, its string literals quoted by Orgwall (for values the
/// pooler replays).
pub(crate) fn print(e: &sqlparser::ast::Expr) -> Result<String, Refusal> {
    let mut e = e.clone();
    match e.visit(&mut Requote) {
        ControlFlow::Break(r) => Err(r),
        ControlFlow::Continue(()) => Ok(e.to_string()),
    }
}

struct Requote;

impl VisitorMut for Requote {
    type Break = Refusal;

    fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<Refusal> {
        let printed = match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => quote_literal(s),
            Value::DollarQuotedString(d) => quote_literal(&d.value),
            Value::HexStringLiteral(s) if s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                format!("X'{s}'")
            }
            Value::SingleQuotedByteStringLiteral(s)
                if s.bytes().all(|b| b == b'0' || b == b'1') =>
            {
                format!("B'{s}'")
            }
            Value::Number(..) | Value::Boolean(_) | Value::Null | Value::Placeholder(_) => {
                return ControlFlow::Continue(());
            }
            other => {
                return ControlFlow::Break(Refusal::unsupported(format!(
                    "literal {other} is not supported for tenants"
                )))
            }
        };
        if printed == "NULL" {
            return ControlFlow::Break(Refusal::syntax("string literal contains a NUL character"));
        }
        v.value = Value::Placeholder(printed);
        ControlFlow::Continue(())
    }
}

/// Refuses a quoted identifier that sqlparser would print wrongly (one holding `"`) or that
/// PostgreSQL rejects (empty). Only text with `""` can hold either.
pub(crate) fn check_quoted_identifiers(sql: &str) -> Result<(), Refusal> {
    if !sql.contains("\"\"") {
        return Ok(());
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Refusal::syntax(format!("cannot tokenize statement: {e}")))?;
    let bad = tokens.iter().any(|t| {
        matches!(t, Token::Word(w) if w.quote_style == Some('"')
            && (w.value.is_empty() || w.value.contains('"')))
    });
    if bad {
        return Err(Refusal::unsupported(
            "quoted identifiers that are empty or contain \" are not supported for tenants",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sql::rewrite::{rewrite, Catalog};

    #[test]
    fn literals_print_as_postgresql_reads_them() {
        let cat = Catalog::seed_for_tests();
        let cases: &[(&str, Option<&str>)] = &[
            (
                "SELECT '\\''; DELETE FROM users; --'",
                Some("SELECT E'\\\\''; DELETE FROM users; --'"),
            ),
            ("SELECT 'a''''b'", Some("SELECT 'a''''b'")),
            ("SELECT E'it\\'s'", Some("SELECT 'it''s'")),
            ("SELECT $q$a'b$q$", Some("SELECT 'a''b'")),
            ("SELECT X'1f', B'01'", Some("SELECT X'1f', B'01'")),
            ("SELECT B'0''; DELETE FROM users; --'", None),
            ("SELECT \"a\\\"\"; DELETE FROM users; --\" FROM items", None),
            ("SELECT \"\" FROM items", None),
        ];
        for (sql, want) in cases {
            let got = rewrite(sql, &cat).map(|t| t.render("org_a"));
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "{sql}"),
                None => assert!(got.is_err(), "{sql}: {got:?}"),
            }
        }
    }
}
