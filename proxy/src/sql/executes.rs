//! SQL-level references to prepared statements a client made through the protocol: `EXECUTE
//! name [(args)]` and `EXPLAIN [(options)] [ANALYZE] [VERBOSE] EXECUTE name …` (sqlx infers
//! nullability with `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1(NULL)`). When pooling
//! renames statements on the server, the session puts the server's name in their place.
//! Pure: tokens in, the name and where it stands out.

use std::ops::Range;

use super::lex::{self, Token};

/// The statement name `sql` executes (folded as PostgreSQL folds it) and its byte range, when
/// `sql` is one `EXECUTE` or `EXPLAIN … EXECUTE` statement.
pub fn executed_statement(sql: &str) -> Option<(String, Range<usize>)> {
    let tokens: Vec<(Token, Range<usize>)> = lex::spans(sql).collect();
    // One statement: nothing but a trailing `;` after it.
    let end = tokens
        .iter()
        .position(|(t, _)| *t == Token::Punct(b';'))
        .unwrap_or(tokens.len());
    if tokens[end..].iter().any(|(t, _)| *t != Token::Punct(b';')) {
        return None;
    }
    let tokens = &tokens[..end];
    let is = |i: usize, word: &str| matches!(tokens.get(i), Some((Token::Word(w), _)) if w.eq_ignore_ascii_case(word));
    let execute = if is(0, "EXECUTE") {
        0
    } else if is(0, "EXPLAIN") {
        explained_execute(tokens)?
    } else {
        return None;
    };
    let (token, range) = tokens.get(execute + 1)?;
    let name = lex::identifier(*token, &sql[range.clone()])?;
    Some((name, range.clone()))
}

/// The index of `EXECUTE` after `EXPLAIN` and its options: a parenthesised option list, or the
/// old-style `ANALYZE` / `VERBOSE` words.
fn explained_execute(tokens: &[(Token, Range<usize>)]) -> Option<usize> {
    let mut i = 1;
    if tokens.get(i).is_some_and(|(t, _)| *t == Token::Punct(b'(')) {
        let mut depth = 0usize;
        for (j, (t, _)) in tokens.iter().enumerate().skip(i) {
            match t {
                Token::Punct(b'(') => depth += 1,
                Token::Punct(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        i = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        if depth != 0 {
            return None;
        }
    }
    while let Some((Token::Word(w), _)) = tokens.get(i) {
        if w.eq_ignore_ascii_case("EXECUTE") {
            return Some(i);
        }
        if !(w.eq_ignore_ascii_case("ANALYZE") || w.eq_ignore_ascii_case("VERBOSE")) {
            return None;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str, expected: Option<&str>) {
        let got = executed_statement(sql);
        assert_eq!(got.as_ref().map(|(n, _)| n.as_str()), expected, "{sql}");
        if let Some((_, r)) = got {
            let text = &sql[r];
            assert!(
                text.eq_ignore_ascii_case(expected.unwrap()) || text.starts_with('"'),
                "{sql}"
            );
        }
    }

    #[test]
    fn execute_and_explain_execute_name_their_statement() {
        check("EXECUTE s1", Some("s1"));
        check("execute S1(1, 'a')", Some("s1"));
        check("EXECUTE \"S_1\" (1);", Some("S_1"));
        check("EXPLAIN EXECUTE s1(NULL)", Some("s1"));
        check("EXPLAIN ANALYZE VERBOSE EXECUTE s1", Some("s1"));
        check(
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_1(NULL)",
            Some("sqlx_s_1"),
        );
        check("/* c */ EXECUTE s1 -- x", Some("s1"));
    }

    #[test]
    fn other_statements_name_none() {
        check("SELECT 1", None);
        check("EXECUTE s1; SELECT 1", None);
        check("EXPLAIN SELECT 1", None);
        check("EXPLAIN (FORMAT JSON SELECT 1", None);
        check("GRANT EXECUTE ON FUNCTION f() TO x", None);
        check("EXECUTE", None);
        check("EXECUTE 'x'", None);
    }
}
