//! Statement shape keys: one string per SQL text that is equal for two texts exactly when they
//! are the same token sequence with (possibly) different literal values. Caches of anything
//! derived from the parse tree but not from literal values (policy analysis and decisions) key
//! on it, so `... WHERE id = 1` and `... WHERE id = 2` share an entry.
//!
//! Two ways to build it, in separate key spaces:
//! - fast (`F…`), for plain text — no backslash, comment, dollar quote or prefixed string
//!   (`E'…'`, `U&…`, `B'…'`): the text byte for byte, with each plain `'…'` string and each
//!   plain number replaced by a NUL marker (NUL cannot occur in PostgreSQL text). Two texts
//!   with equal fast keys differ only inside literals that every lexer delimits alike.
//! - exact (`S…`), for everything else: sqlparser's own tokenizer (the one the parser uses),
//!   whitespace and comments dropped, each token written length-prefixed, so no two token
//!   sequences share a key (a fingerprint that drops whitespace makes `e mail` equal `email`).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The shape key of `sql`, or `None` when it does not tokenize (it will not parse either).
pub fn shape_key(sql: &str) -> Option<String> {
    fast_key(sql).or_else(|| exact_key(sql))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A literal of plain text: a `'…'` string or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub kind: LiteralKind,
    /// Byte range in the text, quotes included.
    pub span: std::ops::Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralKind {
    String,
    Number,
}

/// The literals of plain text, in order; `None` when the text is not plain: it has a
/// backslash, NUL, comment, dollar quote, prefixed string (`E'…'`, `B'…'`, `U&'…'`), a `$`
/// inside a quoted identifier, an unterminated quote, or a `$n` past PostgreSQL's 65535.
pub fn plain_literals(sql: &str) -> Option<Vec<Literal>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // The end of a quoted run starting at `i` (`q` doubled inside), past the closing quote.
    let quoted = |mut i: usize, q: u8| -> Option<usize> {
        i += 1;
        loop {
            match b.get(i) {
                None => return None,
                Some(&c) if c == q && b.get(i + 1) == Some(&q) => i += 2,
                Some(&c) if c == q => return Some(i + 1),
                Some(_) => i += 1,
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        match c {
            b'\\' | 0 => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'$' => {
                if is_ident_byte(prev) || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                let start = i + 1;
                i = start;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if sql[start..i].parse::<u32>().map_or(true, |n| n > 65_535) {
                    return None;
                }
            }
            b'\'' => {
                if is_ident_byte(prev) || prev == b'&' {
                    return None; // E'…', B'…', X'…', N'…', U&'…'
                }
                let end = quoted(i, b'\'')?;
                out.push(Literal {
                    kind: LiteralKind::String,
                    span: i..end,
                });
                i = end;
            }
            b'"' => {
                let end = quoted(i, b'"')?;
                if prev == b'&' || b[i..end].contains(&b'$') {
                    return None; // U&"…"; `$` kept out of identifiers for `shaped` templates
                }
                i = end;
            }
            b'0'..=b'9' if !is_ident_byte(prev) && prev != b'.' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                // `1e5`, `0x1F`, `1_000`, `1.`, `1abc`: kept as written (no sharing).
                if !b.get(i).is_some_and(|&n| is_ident_byte(n) || n == b'.') {
                    out.push(Literal {
                        kind: LiteralKind::Number,
                        span: start..i,
                    });
                }
            }
            _ => i += 1,
        }
    }
    Some(out)
}

/// `sql` with each literal replaced by `with(index, literal)`.
pub fn replace_literals(
    sql: &str,
    literals: &[Literal],
    mut with: impl FnMut(usize, &Literal, &mut String),
) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut at = 0;
    for (k, l) in literals.iter().enumerate() {
        out.push_str(&sql[at..l.span.start]);
        with(k, l, &mut out);
        at = l.span.end;
    }
    out.push_str(&sql[at..]);
    out
}

/// The fast key (see the module docs), for plain text only.
fn fast_key(sql: &str) -> Option<String> {
    Some(fast_key_of(sql, &plain_literals(sql)?))
}

/// The fast key of plain text whose literals are known.
pub fn fast_key_of(sql: &str, literals: &[Literal]) -> String {
    let mut key = String::from("F");
    key += &replace_literals(sql, literals, |_, l, out| {
        out.push_str(match l.kind {
            LiteralKind::String => "\0s",
            LiteralKind::Number => "\0n",
        })
    });
    key
}

/// The token-based key (see the module docs).
fn exact_key(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut key = String::with_capacity(sql.len() + sql.len() / 2);
    key.push('S');
    for t in &tokens {
        let text = match t {
            Token::Whitespace(_) | Token::EOF => continue,
            t if is_literal(t) => std::borrow::Cow::Borrowed("?"),
            // Unquoted names fold to lower case, as PostgreSQL folds them (ASCII only).
            Token::Word(w) => std::borrow::Cow::Owned(match w.quote_style {
                Some(q) => format!("{q}{}", w.value),
                None => format!(" {}", w.value.to_ascii_lowercase()),
            }),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        key.push_str(&text.len().to_string());
        key.push(':');
        key.push_str(&text);
    }
    Some(key)
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

#[cfg(test)]
mod tests {
    use super::{exact_key, fast_key, shape_key};

    #[test]
    fn literals_do_not_change_the_key_and_everything_else_does() {
        let same = [
            (
                "SELECT a FROM t WHERE id = 1",
                "select  a\nFROM t /* c */ WHERE id = 22",
            ),
            ("SELECT 'x' FROM t", "SELECT E'\\'y' FROM t"),
            ("SELECT $$a$$ FROM t", "SELECT 'b' FROM t -- trailing"),
        ];
        for (a, b) in same {
            assert_eq!(exact_key(a), exact_key(b), "{a} / {b}");
        }
        let fast_same = [
            (
                "SELECT a FROM t WHERE id = 1",
                "SELECT a FROM t WHERE id = 22.5",
            ),
            (
                "SELECT 'x' FROM t WHERE b = $1",
                "SELECT 'it''s' FROM t WHERE b = $1",
            ),
            (
                "SELECT \"a\"\"b\" FROM t1 LIMIT 1",
                "SELECT \"a\"\"b\" FROM t1 LIMIT 1000",
            ),
        ];
        for (a, b) in fast_same {
            assert!(fast_key(a).is_some(), "{a} should take the fast path");
            assert_eq!(shape_key(a), shape_key(b), "{a} / {b}");
        }
        // Anything the fast path does not understand takes the exact one.
        for sql in [
            "SELECT E'\\'' FROM t",
            "SELECT 1 -- c",
            "SELECT /* c */ 1",
            "SELECT $$x$$",
            "SELECT U&'d\\0061t'",
            "SELECT B'101'",
            "SELECT a$b FROM t",
        ] {
            assert_eq!(fast_key(sql), None, "{sql}");
            assert!(shape_key(sql).is_some_and(|k| k.starts_with('S')), "{sql}");
        }
        let different = [
            ("SELECT e mail FROM users", "SELECT email FROM users"),
            ("SELECT \"Email\" FROM users", "SELECT \"email\" FROM users"),
            ("SELECT email FROM users", "SELECT \"email\" FROM users"),
            ("SELECT \"a\"\" \"\"b\" FROM t", "SELECT \"a\" \"b\" FROM t"),
            (
                "SELECT E'\\' FROM audit_logs --' FROM users",
                "SELECT E'x' FROM audit_logs --' FROM users",
            ),
            ("SELECT 1; SELECT 1", "SELECT 1; DELETE FROM t"),
            ("SELECT x ? 'k' FROM t", "SELECT x '?' 'k' FROM t"),
            ("SELECT 1email FROM users", "SELECT 2email FROM users"),
            ("SELECT 1 FROM t", "SELECT '1' FROM t"),
            ("SELECT $1 FROM t", "SELECT $2 FROM t"),
        ];
        for (a, b) in different {
            assert_ne!(shape_key(a), shape_key(b), "{a} / {b}");
        }
        assert_eq!(shape_key("SELECT 'unterminated"), None);
    }
}
