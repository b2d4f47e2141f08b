//! The one parse of a tenant's SQL: sqlparser's PostgreSQL dialect over its own tokens, with
//! the few PostgreSQL forms it lacks handled on those tokens — a statement that is `TABLE
//! name`, and the row locks `FOR NO KEY UPDATE` / `FOR KEY SHARE`, read as the stronger
//! `FOR UPDATE` / `FOR SHARE` (the same rows, locked at least as strongly), and a FROM-less
//! `INSERT … SELECT 'x', 'y' ON CONFLICT` (read with a no-op `WHERE TRUE`). Forms it cannot
//! read at all get a refusal that says what to write instead (`known_gap`).

use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, Query, SetExpr, Statement, VisitMut, VisitorMut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::build::{select_query, star, table_factor};

/// Parses `sql` into statements.
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let tokens = weaker_locks_as_stronger(tokens);
    match parse_tokens(tokens.clone()) {
        Err(e) => match where_true_before_on_conflict(tokens) {
            // sqlparser takes the ON of `INSERT … SELECT 'x', 'y' ON CONFLICT` for the last
            // select item's alias (PostgreSQL reserves ON). Only a FROM-less select list can
            // end right before that ON, and there `WHERE TRUE` is a no-op that ends it.
            Some(retry) => parse_tokens(retry).map_err(|_| e),
            None => Err(e),
        },
        ok => ok,
    }
}

/// The statements of `tokens`.
fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut stmts = Vec::new();
    loop {
        while p.consume_token(&Token::SemiColon) {}
        let stmt = match &p.peek_token_ref().token {
            Token::EOF => break,
            Token::Word(w) if w.keyword == Keyword::TABLE => Statement::Query(p.parse_query()?),
            _ => p.parse_statement()?,
        };
        let mut stmt = stmt;
        let _ = stmt.visit(&mut TableAsSelect);
        stmts.push(stmt);
        match &p.peek_token_ref().token {
            Token::EOF | Token::SemiColon => {}
            _ => return p.expected("end of statement", p.peek_token()),
        }
    }
    Ok(stmts)
}

/// Replaces every `TABLE name` query body by `SELECT * FROM name`, which PostgreSQL reads it
/// as: every reader of the parse (the rewriter, the analysis policy plugins see, masks) then
/// sees the table read, as it sees any FROM item.
struct TableAsSelect;

impl VisitorMut for TableAsSelect {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        expand(&mut q.body);
        ControlFlow::Continue(())
    }
}

fn expand(body: &mut SetExpr) {
    match body {
        SetExpr::Table(t) => {
            let parts: Vec<_> = t.schema_name.iter().chain(&t.table_name).cloned().collect();
            let from = table_factor(ObjectName::from(parts));
            *body = *select_query(vec![star()], from, None).body;
        }
        SetExpr::SetOperation { left, right, .. } => {
            expand(left);
            expand(right);
        }
        _ => {}
    }
}

fn keyword(t: &Token) -> Option<Keyword> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

/// `tokens` with `WHERE TRUE` before the first `ON CONFLICT` that does not follow a closing
/// parenthesis (VALUES lists and subqueries end with one), if there is one.
fn where_true_before_on_conflict(tokens: Vec<TokenWithSpan>) -> Option<Vec<TokenWithSpan>> {
    let words: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let at = words.windows(3).find_map(|w| {
        let on = keyword(&tokens[w[1]].token) == Some(Keyword::ON);
        let conflict = keyword(&tokens[w[2]].token) == Some(Keyword::CONFLICT);
        (on && conflict && tokens[w[0]].token != Token::RParen).then_some(w[1])
    })?;
    let span = tokens[at].span;
    let word = |w: &str| TokenWithSpan::new(Token::make_keyword(w), span);
    let space = || {
        TokenWithSpan::new(
            Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
            span,
        )
    };
    let mut out = tokens;
    out.splice(at..at, [word("WHERE"), space(), word("TRUE"), space()]);
    Some(out)
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
    let copy_from = kws.first() == Some(&Some(Keyword::COPY)) && kws.contains(&Some(Keyword::FROM));
    if copy_from && kws.contains(&Some(Keyword::WHERE)) {
        return Some(
            "COPY … FROM … WHERE is not supported for tenants: send only the rows to load",
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
        assert_eq!(one("TABLE items"), "SELECT * FROM items");
        assert_eq!(
            one("table s.t; TABLE u;"),
            "SELECT * FROM s.t; SELECT * FROM u"
        );
        assert_eq!(
            one("SELECT * FROM (TABLE a UNION ALL (TABLE b)) x"),
            "SELECT * FROM (SELECT * FROM a UNION ALL (SELECT * FROM b)) x"
        );
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
        assert_eq!(
            one("INSERT INTO t (a, b) SELECT 'x', 'y' ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) SELECT 'x', 'y' WHERE true ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            one("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2"),
            "INSERT INTO t (a) VALUES (1) ON CONFLICT(a) DO UPDATE SET a = 2"
        );
        assert!(parse("SELECT 1 ON CONFLICT").is_err());
    }

    #[test]
    fn known_gaps_say_what_to_write() {
        assert!(super::known_gap("SELECT * FROM ROWS FROM (f(1), g(2))")
            .is_some_and(|m| m.contains("unnest")));
        assert_eq!(super::known_gap("SELEC 1"), None);
    }
}
