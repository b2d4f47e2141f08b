//! The one parse of a tenant's SQL: sqlparser's PostgreSQL dialect over its own tokens, with
//! the few PostgreSQL forms it lacks handled on those tokens — a statement that is `TABLE
//! name`, and the row locks `FOR NO KEY UPDATE` / `FOR KEY SHARE`, read as the stronger
//! `FOR UPDATE` / `FOR SHARE` (the same rows, locked at least as strongly). Forms it cannot
//! read at all get a refusal that says what to write instead (`known_gap`).

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Parses `sql` into statements.
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let mut p = Parser::new(&dialect).with_tokens_with_locations(weaker_locks_as_stronger(tokens));
    let mut stmts = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let stmt = match &p.peek_token_ref().token {
            Token::EOF => break,
            Token::Word(w) if w.keyword == Keyword::TABLE => Statement::Query(p.parse_query()?),
            _ => p.parse_statement()?,
        };
        stmts.push(stmt);
        match &p.peek_token_ref().token {
            Token::EOF | Token::SemiColon => {}
            _ => return p.expected("end of statement", p.peek_token()),
        }
    }
    Ok(stmts)
}

fn keyword(t: &Token) -> Option<Keyword> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

/// Drops `NO KEY` from `FOR NO KEY UPDATE` and `KEY` from `FOR KEY SHARE` (unquoted words,
/// whitespace and comments between them allowed).
fn weaker_locks_as_stronger(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let words: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let kw = |j: usize| words.get(j).and_then(|&i| keyword(&tokens[i].token));
    let mut drop = vec![false; tokens.len()];
    for j in 0..words.len() {
        if kw(j) != Some(Keyword::FOR) {
            continue;
        }
        match (kw(j + 1), kw(j + 2), kw(j + 3)) {
            (Some(Keyword::NO), Some(Keyword::KEY), Some(Keyword::UPDATE)) => {
                drop[words[j + 1]] = true;
                drop[words[j + 2]] = true;
            }
            (Some(Keyword::KEY), Some(Keyword::SHARE), _) => drop[words[j + 1]] = true,
            _ => {}
        }
    }
    tokens
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| t)
        .collect()
}

/// For SQL the parser rejected: what to write instead, where the cause is a known gap in
/// sqlparser rather than bad SQL.
pub(crate) fn known_gap(sql: &str) -> Option<&'static str> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let kws: Vec<Option<Keyword>> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .map(keyword)
        .collect();
    let has = |a: Keyword, b: Keyword| kws.windows(2).any(|w| w == [Some(a), Some(b)]);
    if has(Keyword::ROWS, Keyword::FROM) {
        return Some(
            "ROWS FROM (…) is not supported by Orgwall's SQL parser: for arrays use \
             unnest(a, b); otherwise join the function calls WITH ORDINALITY on the ordinality",
        );
    }
    if has(Keyword::ON, Keyword::CONFLICT) {
        return Some(
            "Orgwall's SQL parser reads `SELECT … 'y' ON CONFLICT` without FROM as an alias \
             named ON: give the last select item an alias (`'y' AS b`) or add `WHERE true`",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn postgresql_forms_sqlparser_lacks() {
        let one = |sql: &str| {
            parse(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert_eq!(one("TABLE items"), "TABLE items");
        assert_eq!(one("table s.t; TABLE u;"), "TABLE s.t; TABLE u");
        assert_eq!(
            one("SELECT 1 FROM t FOR NO KEY UPDATE"),
            "SELECT 1 FROM t FOR UPDATE"
        );
        assert_eq!(
            one("SELECT 1 FROM t FOR /* c */ KEY SHARE SKIP LOCKED"),
            "SELECT 1 FROM t FOR SHARE SKIP LOCKED"
        );
        // Quoted words and words elsewhere are left alone.
        assert_eq!(
            one("SELECT 'for no key update'"),
            "SELECT 'for no key update'"
        );
        assert!(parse("SELECT 1 FROM t FOR \"NO\" KEY UPDATE").is_err());
        assert!(parse("TABLE items x").is_err());
    }

    #[test]
    fn known_gaps_say_what_to_write() {
        assert!(super::known_gap("SELECT * FROM ROWS FROM (f(1), g(2))")
            .is_some_and(|m| m.contains("unnest")));
        assert!(
            super::known_gap("INSERT INTO t (a) SELECT 'x' ON CONFLICT DO NOTHING")
                .is_some_and(|m| m.contains("alias"))
        );
        assert_eq!(super::known_gap("SELEC 1"), None);
    }
}
