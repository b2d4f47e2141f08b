//! Which statements certainly only read: a query that writes nothing, locks no rows and calls
//! no function that might act, so its result does not depend on whether its transaction
//! commits (`upstream::mux` may run several clients' such statements in one transaction).
//!
//! A lexer check, conservative by design: anything it does not recognise makes the statement
//! "not read-only", which only costs the optimisation. Function calls must be built-ins known
//! to act on their arguments only (unqualified or `pg_catalog.`); a user function, however
//! harmless, is not. Not seen: a view or operator whose definition calls a function that writes.

use super::lex::{self, Token};

/// First words of a statement that only reads.
const QUERIES: [&str; 4] = ["SELECT", "TABLE", "VALUES", "WITH"];

/// Words that make a query write or lock: data-modifying CTEs, `SELECT INTO`, `FOR UPDATE`,
/// `FOR [KEY] SHARE`. (Every list here is sorted: looked up by binary search.)
const WRITES: [&str; 7] = [
    "COPY", "DELETE", "INSERT", "INTO", "MERGE", "SHARE", "UPDATE",
];

/// Keywords and type names that may stand before `(` without being a function call.
const NOT_CALLS: [&str; 60] = [
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHAR",
    "CHARACTER",
    "COALESCE",
    "CUBE",
    "DECIMAL",
    "DISTINCT",
    "ELSE",
    "EXCEPT",
    "EXISTS",
    "EXTRACT",
    "FILTER",
    "FLOAT",
    "FROM",
    "GREATEST",
    "GROUP",
    "GROUPING",
    "HAVING",
    "ILIKE",
    "IN",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "LATERAL",
    "LEAST",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULLIF",
    "NUMERIC",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OVER",
    "OVERLAY",
    "PARTITION",
    "POSITION",
    "ROLLUP",
    "ROW",
    "SELECT",
    "SETS",
    "SOME",
    "SUBSTRING",
    "THEN",
    "TRIM",
    "UNION",
    "VALUES",
    "VARCHAR",
    "WHEN",
    "WHERE",
];

/// Built-in functions that compute from their arguments (and the clock) only.
const PURE_CALLS: [&str; 78] = [
    "ABS",
    "AGE",
    "ARRAY_AGG",
    "ARRAY_LENGTH",
    "ARRAY_POSITION",
    "ARRAY_TO_STRING",
    "AVG",
    "BOOL_AND",
    "BOOL_OR",
    "BTRIM",
    "CARDINALITY",
    "CEIL",
    "CEILING",
    "CHARACTER_LENGTH",
    "CHAR_LENGTH",
    "CONCAT",
    "CONCAT_WS",
    "COUNT",
    "CUME_DIST",
    "DATE_PART",
    "DATE_TRUNC",
    "DENSE_RANK",
    "EVERY",
    "FIRST_VALUE",
    "FLOOR",
    "GENERATE_SERIES",
    "INITCAP",
    "JSONB_AGG",
    "JSONB_ARRAY_LENGTH",
    "JSONB_BUILD_ARRAY",
    "JSONB_BUILD_OBJECT",
    "JSONB_EXTRACT_PATH_TEXT",
    "JSONB_OBJECT_AGG",
    "JSONB_TYPEOF",
    "JSON_AGG",
    "JSON_BUILD_ARRAY",
    "JSON_BUILD_OBJECT",
    "JSON_EXTRACT_PATH_TEXT",
    "JSON_OBJECT_AGG",
    "LAG",
    "LAST_VALUE",
    "LEAD",
    "LEFT",
    "LENGTH",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAX",
    "MD5",
    "MIN",
    "MOD",
    "NOW",
    "NTH_VALUE",
    "NTILE",
    "OCTET_LENGTH",
    "PERCENT_RANK",
    "POWER",
    "RANK",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "ROW_NUMBER",
    "ROW_TO_JSON",
    "RPAD",
    "RTRIM",
    "SIGN",
    "SPLIT_PART",
    "SQRT",
    "STRING_AGG",
    "STRPOS",
    "SUBSTR",
    "SUM",
    "TO_CHAR",
    "TO_JSON",
    "TO_JSONB",
    "TRUNC",
    "UNNEST",
];

/// Longest word in any list: a longer word is in none.
const MAX_WORD: usize = 24;

/// Whether one statement (no `;`) certainly only reads; see the module comment.
pub fn is_read_only(stmt: &str) -> bool {
    // Literals, numbers and parameters cannot make a statement write: not even looked at.
    let mut tokens =
        lex::tokens(stmt).filter(|t| !matches!(t, Token::Literal | Token::Number | Token::Param));
    let Some(Token::Word(first)) = tokens.next() else {
        return false;
    };
    if !listed(&QUERIES, first) {
        return false;
    }
    // The two tokens before `prev`, `prev`, and the one after it.
    let (mut back, mut prev, mut cur) = ([None, None], Token::Word(first), tokens.next());
    loop {
        let called = cur == Some(Token::Punct(b'('));
        match prev {
            Token::Word(w) if listed(&WRITES, w) => return false,
            Token::Word(w) if called && !allowed_call(w, back) => return false,
            Token::Quoted if called => return false,
            _ => {}
        }
        let Some(next) = cur else {
            return true;
        };
        back = [back[1], Some(prev)];
        (prev, cur) = (next, tokens.next());
    }
}

/// `name(` with the two tokens before it: a keyword, or a pure built-in (qualified by
/// `pg_catalog` if at all).
fn allowed_call(name: &str, back: [Option<Token<'_>>; 2]) -> bool {
    match back {
        [Some(Token::Word(schema)), Some(Token::Punct(b'.'))] => {
            schema.eq_ignore_ascii_case("pg_catalog") && listed(&PURE_CALLS, name)
        }
        [_, Some(Token::Punct(b'.'))] => false,
        _ => listed(&NOT_CALLS, name) || listed(&PURE_CALLS, name),
    }
}

/// Whether `name` (any case, already resolved: `pg_catalog.` dropped) is a built-in that
/// computes from its arguments only. Shared with the parse-tree reading of tenant statements.
pub fn is_pure_call(name: &str) -> bool {
    listed(&PURE_CALLS, name)
}

/// Whether `word` (any case) is in the sorted upper-case `list`.
fn listed(list: &[&str], word: &str) -> bool {
    if word.len() > MAX_WORD {
        return false;
    }
    let mut buf = [0u8; MAX_WORD];
    let upper = &mut buf[..word.len()];
    upper.copy_from_slice(word.as_bytes());
    upper.make_ascii_uppercase();
    list.binary_search_by(|k| k.as_bytes().cmp(upper)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_lists_are_sorted_upper_case_and_short() {
        for list in [&QUERIES[..], &WRITES, &NOT_CALLS, &PURE_CALLS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
            assert!(list
                .iter()
                .all(|w| w.len() <= MAX_WORD && *w == w.to_ascii_uppercase()));
        }
    }

    #[test]
    fn only_queries_that_cannot_write_are_read_only() {
        let cases: &[(&str, bool)] = &[
            ("SELECT abalance FROM pgbench_accounts WHERE aid = $1", true),
            (
                "select * from items where id = ANY($1) and org_id = 'a'",
                true,
            ),
            ("SELECT count(*), max(qty) FROM items GROUP BY sku", true),
            ("SELECT pg_catalog.lower(name) FROM t", true),
            (
                "SELECT \"id\", \"name\" FROM \"public\".\"User\" WHERE \"id\" IN ($1, $2)",
                true,
            ),
            ("SELECT a FROM t WHERE (a, b) = (1, 2) ORDER BY (a)", true),
            (
                "SELECT x::numeric(10,2), cast(y AS varchar(20)) FROM t",
                true,
            ),
            (
                "SELECT count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b) FROM t",
                true,
            ),
            ("SELECT 'insert into t values (nextval(1))' AS s", true),
            (
                "SELECT $$ delete $$, e'it''s \\' update' FROM t -- for update\n",
                true,
            ),
            ("SELECT 1 /* into */", true),
            ("WITH x AS (SELECT a FROM t) SELECT * FROM x", true),
            ("VALUES (1, 'a')", true),
            ("TABLE t", true),
            ("SELECT now(), 1.5e3 FROM t", true),
            ("SELECT a FROM t FOR UPDATE", false),
            ("SELECT a FROM t FOR NO KEY UPDATE", false),
            ("SELECT a FROM t FOR KEY SHARE", false),
            ("SELECT a INTO newtable FROM t", false),
            (
                "WITH x AS (DELETE FROM t RETURNING a) SELECT * FROM x",
                false,
            ),
            (
                "WITH x AS (INSERT INTO t VALUES (1) RETURNING a) SELECT 1",
                false,
            ),
            ("SELECT nextval('s')", false),
            ("SELECT my_function(1)", false),
            ("SELECT public.count(a) FROM t", false),
            ("SELECT \"count\"(a) FROM t", false),
            ("SELECT pg_advisory_xact_lock(1)", false),
            ("SELECT set_config('a.b', 'c', true)", false),
            ("SELECT pg_sleep(1)", false),
            ("SELECT * FROM dblink('x', 'delete from t')", false),
            ("UPDATE t SET a = 1", false),
            ("INSERT INTO t VALUES (1)", false),
            ("DELETE FROM t", false),
            ("(SELECT 1)", false),
            ("EXPLAIN SELECT 1", false),
            ("SHOW search_path", false),
            ("", false),
        ];
        for (sql, want) in cases {
            assert_eq!(is_read_only(sql), *want, "{sql:?}");
        }
    }
}
