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
        Token::Word(w) => Some(w.to_lowercase()),
        Token::Quoted if text.len() >= 2 => Some(text[1..text.len() - 1].replace("\"\"", "\"")),
        _ => None,
    }
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

/// The end of the `--` comment starting at `i` (after its newline).
pub fn skip_line_comment(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p + 1)
}

pub fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    // Backslash escapes only in E'' strings; a doubled quote is an escaped quote either way.
    let escapes = q == b'\'' && i > 0 && matches!(b[i - 1], b'e' | b'E');
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
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
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
    fn spans_cover_each_token_and_nothing_between() {
        let sql = " select 'a''b' /* c */,$1 ;x\"Q\"";
        let texts: Vec<&str> = spans(sql).map(|(_, r)| &sql[r]).collect();
        assert_eq!(texts, ["select", "'a''b'", ",", "$1", ";", "x", "\"Q\""]);
    }
}
