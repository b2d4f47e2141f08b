//! Statement shape keys: one string per SQL text that is equal for two texts exactly when they
//! are the same token sequence with (possibly) different literal values. Caches of anything
//! derived from the parse tree but not from literal values (policy analysis and decisions) key
//! on it, so `... WHERE id = 1` and `... WHERE id = 2` share an entry.
//!
//! Built from sqlparser's own tokenizer — the one the parser uses — so two texts with equal
//! keys parse to trees that differ only in literals. Whitespace and comments are dropped;
//! every kept token is written length-prefixed, so no two token sequences share a key (a
//! lexical fingerprint that drops whitespace would make `e mail` and `email` equal).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The shape key of `sql`, or `None` when it does not tokenize (it will not parse either).
pub fn shape_key(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut key = String::with_capacity(sql.len() + sql.len() / 2);
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
    use super::shape_key;

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
            assert_eq!(shape_key(a), shape_key(b), "{a} / {b}");
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
            ("SELECT $1 FROM t", "SELECT $2 FROM t"),
        ];
        for (a, b) in different {
            assert_ne!(shape_key(a), shape_key(b), "{a} / {b}");
        }
        assert_eq!(shape_key("SELECT 'unterminated"), None);
    }
}
