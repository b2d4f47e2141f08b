//! The SQL lexer shared by the pure checks in `sql`: tokens of one statement, with comments
//! skipped and string literals, dollar quotes, numbers and parameters as single tokens.
//!
//! Enough to find keywords and calls without being fooled by text inside quotes or comments;
//! not a parser (that is sqlparser, in `rewrite` and `analyze`).

use std::ops::Range;

/// One token; words borrow the statement's text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    /// An unquoted word (keyword or name), as written.
    Word(&'a str),
    /// A quoted identifier.
    Quoted,
    /// A string literal (`'…'`, `E'…'` after its prefix word, `$tag$…$tag$`).
    Literal,
    /// A numeric constant.
    Number,
    /// A parameter (`$1`).
    Param,
    Punct(u8),
}

/// The tokens of `stmt`.
pub fn tokens(stmt: &str) -> Tokens<'_> {
    Tokens {
        b: stmt.as_bytes(),
        s: stmt,
        i: 0,
        start: 0,
    }
}

/// The tokens of `stmt` with the byte range each covers.
pub fn spans(stmt: &str) -> impl Iterator<Item = (Token<'_>, Range<usize>)> {
    let mut t = tokens(stmt);
    std::iter::from_fn(move || t.next().map(|tok| (tok, t.start..t.i)))
}

/// The name an identifier token stands for, as PostgreSQL resolves it: a word folded to lower
/// case, a quoted name as written (`""` unescaped); `text` is the token's text. `None` for
/// other tokens.
pub fn identifier(token: Token<'_>, text: &str) -> Option<String> {
    match token {
        Token::Word(w) => Some(truncate_identifier(w.to_ascii_lowercase())),
        Token::Quoted if text.len() >= 2 => Some(truncate_identifier(
            text[1..text.len() - 1].replace("\"\"", "\""),
        )),
        _ => None,
    }
}

/// PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1), cut at a character
/// boundary.
pub fn truncate_identifier(mut name: String) -> String {
    const MAX: usize = 63;
    if name.len() > MAX {
        let mut end = MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// Whether a byte may continue an identifier (PostgreSQL's `ident_cont`; bytes of a
/// multi-byte character count as letters).
pub fn is_ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || !c.is_ascii()
}

pub struct Tokens<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    /// Where the token last returned starts.
    start: usize,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.b;
        while self.i < b.len() {
            let (i, c) = (self.i, b[self.i]);
            self.start = i;
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
                self.i = skip_line_comment(b, i);
            } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                self.i = skip_block_comment(b, i);
            } else if c == b'\'' {
                self.i = skip_quoted(b, i, c);
                return Some(Token::Literal);
            } else if c == b'"' {
                self.i = skip_quoted(b, i, c);
                return Some(Token::Quoted);
            } else if c == b'$' {
                let end = skip_dollar(b, i);
                if end > i + 1 {
                    self.i = end;
                    return Some(Token::Literal);
                }
                // A parameter `$1`: its digits too.
                self.i = end + b[end..].iter().take_while(|c| c.is_ascii_digit()).count();
                return Some(Token::Param);
            } else if c.is_ascii_alphabetic() || c == b'_' || !c.is_ascii() {
                let len = b[i..]
                    .iter()
                    .take_while(|&&c| {
                        c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || !c.is_ascii()
                    })
                    .count();
                self.i += len;
                // `E'…'`, `U&"…"`: the prefix is a word of its own, the rest a literal or name.
                return Some(Token::Word(&self.s[i..i + len]));
            } else if c.is_ascii_digit() {
                self.i += b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.')
                    .count();
                return Some(Token::Number);
            } else {
                self.i += 1;
                return Some(Token::Punct(c));
            }
        }
        None
    }
}

/// The end of the `--` comment starting at `i` (after its newline: `\n` or `\r`, as
/// PostgreSQL's scanner ends it).
pub fn skip_line_comment(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(b.len(), |p| i + p + 1)
}

/// Whether the quote at `i` opens an `E'…'` string: PostgreSQL's scanner (version 15) reads
/// `E'` only where the `E` starts a token. The run of identifier bytes before the quote is
/// split as the scanner would: a word (one token), or a number — digits, with `e<digits>` an
/// exponent, and a bare `e` after the digits thrown back to start a token of its own (`1e'…'`
/// is `1` then `e'…'`).
fn opens_escape_string(b: &[u8], i: usize) -> bool {
    let start = b[..i]
        .iter()
        .rposition(|&c| !is_ident_cont(c))
        .map_or(0, |p| p + 1);
    let mut run = &b[start..i];
    if run.first().is_some_and(u8::is_ascii_digit) {
        let digits = |r: &[u8]| r.iter().take_while(|c| c.is_ascii_digit()).count();
        run = &run[digits(run)..];
        if matches!(run.first(), Some(b'e' | b'E')) && run.get(1).is_some_and(u8::is_ascii_digit) {
            run = &run[1 + digits(&run[1..])..];
        }
    }
    matches!(run, [b'e' | b'E'])
}

pub fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    // Backslash escapes only in E'' strings; a doubled quote is an escaped quote either way.
    let escapes = q == b'\'' && opens_escape_string(b, i);
    let mut j = i + 1;
    while j < b.len() {
        if escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

pub fn skip_block_comment(b: &[u8], i: usize) -> usize {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < b.len() {
        if b[j] == b'/' && b[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

pub fn skip_dollar(b: &[u8], i: usize) -> usize {
    // `$tag$` opens a dollar quote only if the tag is an identifier (or empty); `$1` is a parameter.
    let tag_end = b[i + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || !c.is_ascii()))
        .map(|p| i + 1 + p);
    let Some(end) = tag_end.filter(|&e| b[e] == b'$') else {
        return i + 1;
    };
    if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        return i + 1;
    }
    let tag = &b[i..=end];
    let body = end + 1;
    b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_skip_comments_and_keep_literals_whole() {
        use Token::*;
        let cases: &[(&str, &[Token])] = &[
            (
                "SELECT a.b",
                &[Word("SELECT"), Word("a"), Punct(b'.'), Word("b")],
            ),
            (
                "select 'x;y' -- c\n, 1.5e3",
                &[Word("select"), Literal, Punct(b','), Number],
            ),
            (
                "E'it\\'s' /* a /* nested */ b */ $1",
                &[Word("E"), Literal, Param],
            ),
            ("$q$ ; 'x' $q$ $$ $$ \"Id\"", &[Literal, Literal, Quoted]),
            ("U&\"d\\0061t\"", &[Word("U"), Punct(b'&'), Quoted]),
            ("café_1 $2x", &[Word("café_1"), Param, Word("x")]),
            ("", &[]),
        ];
        for (sql, want) in cases {
            assert_eq!(tokens(sql).collect::<Vec<_>>(), *want, "{sql:?}");
        }
    }

    #[test]
    fn escape_strings_start_where_postgresql_starts_them() {
        // (text, statements as PostgreSQL 15 splits it)
        let cases: &[(&str, usize)] = &[
            // `ELSE'\'`: a plain string after the keyword ELSE, not E'…'.
            (
                "SELECT CASE WHEN false THEN 'a' ELSE'\\' END || '; SET x TO off; SELECT '",
                1,
            ),
            ("SELECT E'\\'; SELECT 2'", 1),
            ("SELECT e'\\'';' ; SELECT 2", 2),
            ("SELECT 1e'\\';'; SELECT 2", 2),
            ("SELECT 1.5e'\\';'; SELECT 2", 2),
            ("SELECT 2e5e'\\';'; SELECT 2", 2),
            ("SELECT x1e'\\'; SELECT 2", 2),
            ("SELECT 1ex'\\'; SELECT 2", 2),
            ("SELECT 1 --\r; SELECT 2", 2),
            ("SELECT $é$ ; $é$; SELECT 2", 2),
        ];
        for (sql, n) in cases {
            let semis = tokens(sql).filter(|t| *t == Token::Punct(b';')).count();
            assert_eq!(semis + 1, *n, "{sql:?}");
        }
    }

    #[test]
    fn identifiers_fold_ascii_only_and_truncate_at_63_bytes() {
        assert_eq!(identifier(Token::Word("ÉtatX"), "ÉtatX").unwrap(), "Étatx");
        let long = "a".repeat(70);
        assert_eq!(identifier(Token::Word(&long), &long).unwrap().len(), 63);
        let multi = format!("{}é", "a".repeat(62));
        assert_eq!(identifier(Token::Word(&multi), &multi).unwrap().len(), 62);
    }

    #[test]
    fn spans_cover_each_token_and_nothing_between() {
        let sql = " select 'a''b' /* c */,$1 ;x\"Q\"";
        let texts: Vec<&str> = spans(sql).map(|(_, r)| &sql[r]).collect();
        assert_eq!(texts, ["select", "'a''b'", ",", "$1", ";", "x", "\"Q\""]);
    }
}
