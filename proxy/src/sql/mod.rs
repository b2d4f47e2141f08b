//! Pure functions over SQL text: no I/O, no globals.
//!
//! Today this is the statement splitter and the classifier that finds session-level effects
//! (which cannot survive transaction pooling). It is a lexer, not a parser: it understands
//! quotes, dollar quotes, comments and `;`, which is all these checks need, and costs one pass.
//! The tenant rewriter (DESIGN.md §4) lives in [`rewrite`]; what a statement reads and writes,
//! for policy plugins, in [`analyze`]; literal-blind statement keys in [`shape_key`].

pub mod analyze;
pub mod executes;
pub mod lex;
pub mod limits;
pub mod read_only;
pub mod rewrite;
pub mod shape_key;
pub use shape_key::shape_key;

use lex::Token;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// `v` as an SQL string literal: `'…'` with quotes doubled; `E'…'` when a backslash is present
/// so the result reads the same whatever `standard_conforming_strings` says. A NUL (impossible
/// in PostgreSQL text) yields `NULL`, which matches no row and violates every NOT NULL column.
/// The one quoting function: the rewriter's tenant literal, settings replay, catalog and
/// balance-feed queries all use it.
pub fn quote_literal(v: &str) -> String {
    if v.contains('\0') {
        return "NULL".to_string();
    }
    let body = v.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A statement effect that outlives the transaction it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEffect {
    /// `SET [SESSION] name {TO|=} value` (also `SET TIME ZONE value`): replayable.
    Set { name: String, value: String },
    /// `SELECT set_config('name', $n, false)`: a `Set` (or a `Reset`, for NULL) once the
    /// parameter is bound.
    SetParam { name: String, param: usize },
    /// `SELECT set_config($n, $m, false)`: a `Set` once both parameters are bound (the
    /// name must then be a plain setting name).
    SetNamedParam { name: usize, value: usize },
    /// `RESET name`.
    Reset { name: String },
    /// `RESET ALL`.
    ResetAll,
    /// Something that cannot be carried across pooled connections.
    Pinned(&'static str),
    /// `SAVEPOINT name`: a later rollback to it undoes the SETs after it.
    Savepoint(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
}

/// What the pooler needs to know about one SQL string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Number of non-empty statements.
    pub statements: usize,
    /// Session-level effects, in order.
    pub effects: Vec<SessionEffect>,
    /// Every statement is plain DML or a query that can neither open a transaction block nor
    /// leave session state behind: it may share a server connection with other clients'
    /// implicit transactions (`upstream::mux`).
    pub batchable: bool,
    /// Batchable, and every statement certainly only reads ([`read_only::is_read_only`]).
    pub read_only: bool,
}

/// Splits SQL text into statements (without the `;`), skipping empty ones.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (t, r) in lex::spans(sql) {
        if t == Token::Punct(b';') {
            push_stmt(&mut out, &sql[start..r.start]);
            start = r.end;
        }
    }
    push_stmt(&mut out, &sql[start..]);
    out
}

fn push_stmt<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    if !words(s, 1).is_empty() {
        out.push(s.trim());
    }
}

/// A fingerprint of a statement's shape: literals and numbers do not change it, so logs can
/// name a statement without carrying tenant data.
pub fn fingerprint(sql: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (t, r) in lex::spans(sql) {
        match t {
            Token::Literal | Token::Number => b'?'.hash(&mut h),
            Token::Word(w) => w.bytes().for_each(|c| c.to_ascii_lowercase().hash(&mut h)),
            _ => sql[r].hash(&mut h),
        }
        // Token boundaries count: `a b` is not `ab`.
        b' '.hash(&mut h);
    }
    h.finish()
}

/// The first `n` tokens of a statement, words upper-cased, other tokens as their first
/// character (a literal is `'`, a quoted name `"`, a number `0`, a parameter `$`).
fn words(stmt: &str, n: usize) -> Vec<String> {
    lex::tokens(stmt)
        .take(n)
        .map(|t| match t {
            Token::Word(w) => w.to_ascii_uppercase(),
            Token::Quoted => "\"".into(),
            Token::Literal => "'".into(),
            Token::Number => "0".into(),
            Token::Param => "$".into(),
            Token::Punct(c) => char::from(c).to_string(),
        })
        .collect()
}

/// Functions that take a session-level advisory lock.
const SESSION_ADVISORY: [&str; 4] = [
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Classifies one SQL string (possibly several statements).
pub fn summarize(sql: &str) -> Summary {
    let stmts = split_statements(sql);
    let mut effects = Vec::new();
    let mut batchable = !stmts.is_empty();
    let mut read_only = batchable;
    for s in &stmts {
        let w = words(s, 4);
        let scan = Scan::of(s);
        let effect = classify(s, &w, &scan);
        batchable &= effect.is_none() && is_batchable(&w, &scan);
        effects.extend(effect);
        read_only &= batchable && read_only::is_read_only(s);
    }
    Summary {
        statements: stmts.len(),
        effects,
        batchable,
        read_only,
    }
}

/// Statement kinds that run to completion inside an implicit transaction.
const BATCHABLE: [&str; 8] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "MERGE",
];

fn is_batchable(w: &[String], scan: &Scan) -> bool {
    w.first().is_some_and(|k| BATCHABLE.contains(&k.as_str()))
        && !scan.calls(|f| f == "set_config" || f.starts_with("pg_advisory_unlock"))
}

/// One statement's tokens (comments skipped), built once for every test of it: what the
/// checks below look for are tokens (a word, a call), never substrings of the text.
struct Scan<'a> {
    text: &'a str,
    tokens: Vec<(Token<'a>, std::ops::Range<usize>)>,
}

impl<'a> Scan<'a> {
    fn of(text: &'a str) -> Scan<'a> {
        Scan {
            text,
            tokens: lex::spans(text).collect(),
        }
    }

    /// The identifier token `i` names (folded as PostgreSQL folds it), if it is one.
    fn ident(&self, i: usize) -> Option<String> {
        let (t, r) = self.tokens.get(i)?;
        lex::identifier(*t, &self.text[r.clone()])
    }

    /// Whether some `name(` (a word or quoted name before `(`) satisfies `f`.
    fn calls(&self, f: impl Fn(&str) -> bool) -> bool {
        (0..self.tokens.len()).any(|i| {
            self.tokens
                .get(i + 1)
                .is_some_and(|(t, _)| *t == Token::Punct(b'('))
                && self.ident(i).is_some_and(|n| f(&n))
        })
    }

    /// Whether the words `seq` (upper case) appear as consecutive tokens.
    fn has_words(&self, seq: &[&str]) -> bool {
        self.tokens.windows(seq.len()).any(|w| {
            w.iter()
                .zip(seq)
                .all(|((t, _), s)| matches!(t, Token::Word(x) if x.eq_ignore_ascii_case(s)))
        })
    }
}

fn classify(stmt: &str, w: &[String], scan: &Scan) -> Option<SessionEffect> {
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["SET", "LOCAL", ..] | ["SET", "TRANSACTION", ..] => None,
        ["SET", "CONSTRAINTS", ..] => None,
        ["SET", "SESSION", "CHARACTERISTICS", ..] => {
            Some(SessionEffect::Pinned("SET SESSION CHARACTERISTICS"))
        }
        ["SET", "SESSION", "AUTHORIZATION", ..] | ["SET", "ROLE", ..] => {
            Some(SessionEffect::Pinned("SET ROLE / SESSION AUTHORIZATION"))
        }
        ["SET", ..] => Some(parse_set(scan)),
        ["RESET", "ALL", ..] => Some(SessionEffect::ResetAll),
        ["RESET", ..] => Some(match setting_name(scan, 1) {
            Some((name, next)) if next == scan.tokens.len() => SessionEffect::Reset { name },
            _ => SessionEffect::Pinned("an unrecognised RESET form"),
        }),
        ["SAVEPOINT", ..] => savepoint_name(stmt).map(SessionEffect::Savepoint),
        ["RELEASE", ..] => savepoint_name(stmt).map(SessionEffect::Release),
        ["ROLLBACK", "TO", ..] | ["ROLLBACK", "WORK" | "TRANSACTION", "TO", ..] => {
            savepoint_name(stmt).map(SessionEffect::RollbackTo)
        }
        ["LISTEN", ..] => Some(SessionEffect::Pinned("LISTEN")),
        // Two-phase commit: `PREPARE TRANSACTION 'gid'` ends the transaction (its GID is a
        // string; `PREPARE transaction AS …` would be a statement named "transaction").
        ["PREPARE", "TRANSACTION", ..]
            if matches!(scan.tokens.get(2), Some((Token::Literal, _))) =>
        {
            None
        }
        // (`EXECUTE` runs what PREPARE made, refused here, or a protocol-level statement the
        // session maps to its server name: it leaves nothing behind.)
        ["PREPARE", ..] | ["DEALLOCATE", ..] => Some(SessionEffect::Pinned(
            "SQL-level PREPARE/EXECUTE/DEALLOCATE",
        )),
        ["DISCARD", ..] => Some(SessionEffect::Pinned("DISCARD")),
        ["LOAD", ..] => Some(SessionEffect::Pinned("LOAD")),
        ["CREATE", "TEMP" | "TEMPORARY", ..]
        | ["CREATE", "GLOBAL" | "LOCAL", "TEMP" | "TEMPORARY", ..]
        | ["CREATE", "UNLOGGED" | "OR", ..]
            if is_temp(scan) =>
        {
            Some(SessionEffect::Pinned("temporary tables"))
        }
        // Without the word: a table, view or sequence created in `pg_temp` is temporary too.
        ["CREATE", ..] if names_temp_schema(scan) && !scan.has_words(&["ON", "COMMIT", "DROP"]) => {
            Some(SessionEffect::Pinned("temporary tables"))
        }
        ["DECLARE", ..] if scan.has_words(&["WITH", "HOLD"]) => {
            Some(SessionEffect::Pinned("WITH HOLD cursors"))
        }
        _ if scan.calls(|f| SESSION_ADVISORY.contains(&f)) => {
            Some(SessionEffect::Pinned("session-level advisory locks"))
        }
        ["SELECT", ..] if scan.calls(|f| f == "set_config") => set_config_effect(stmt),
        _ => None,
    }
}

fn set_config_effect(stmt: &str) -> Option<SessionEffect> {
    limits::with_stack_for(stmt, || set_config_effect_unbounded(stmt)).unwrap_or(Some(
        SessionEffect::Pinned("a statement too complex to classify"),
    ))
}

fn set_config_effect_unbounded(stmt: &str) -> Option<SessionEffect> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, stmt).ok()?;
    let [parsed] = parsed.as_slice() else {
        return None;
    };
    rewrite::summary::set_config_effect(parsed)
}

fn savepoint_name(stmt: &str) -> Option<String> {
    let (t, r) = lex::spans(stmt).last()?;
    lex::identifier(t, &stmt[r])
}

/// Whether a name is qualified by the session's temporary schema (`pg_temp.x`, or its real
/// name `pg_temp_3.x`), quoted or not.
fn names_temp_schema(scan: &Scan) -> bool {
    (0..scan.tokens.len()).any(|i| {
        scan.tokens
            .get(i + 1)
            .is_some_and(|(t, _)| *t == Token::Punct(b'.'))
            && scan.ident(i).is_some_and(|n| {
                n == "pg_temp"
                    || n.strip_prefix("pg_temp_")
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
    })
}

fn is_temp(scan: &Scan) -> bool {
    (scan.has_words(&["TEMP"]) || scan.has_words(&["TEMPORARY"]))
        && !scan.has_words(&["ON", "COMMIT", "DROP"])
}

/// Whether one dot-separated part of a setting name (already lower case) can be printed
/// unquoted when settings are replayed: a letter or `_`, then letters, digits, `_`, `$`.
pub(crate) fn is_plain_setting_part(p: &str) -> bool {
    p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// A setting name starting at token `i`: identifiers joined by `.`, each a plain name (so it
/// can be replayed unquoted); with the index of the token after it.
fn setting_name(scan: &Scan, mut i: usize) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    loop {
        // Setting names are case-insensitive, quoted or not.
        let part = scan
            .ident(i)
            .map(|p| p.to_ascii_lowercase())
            .filter(|p| is_plain_setting_part(p))?;
        parts.push(part);
        i += 1;
        if scan.tokens.get(i).map(|(t, _)| *t) != Some(Token::Punct(b'.')) {
            return Some((parts.join("."), i));
        }
        i += 1;
    }
}

/// `SET [SESSION] name {TO | =} value` or `SET [SESSION] TIME ZONE value`, read from tokens;
/// the value is the rest of the statement's text as written.
fn parse_set(scan: &Scan) -> SessionEffect {
    let word = |i: usize, w: &str| matches!(scan.tokens.get(i), Some((Token::Word(x), _)) if x.eq_ignore_ascii_case(w));
    let rest = |i: usize| scan.tokens.get(i).map(|(_, r)| scan.text[r.start..].trim());
    let mut i = 1;
    if word(i, "SESSION") {
        i += 1;
    }
    if word(i, "TIME") && word(i + 1, "ZONE") {
        if let Some(value) = rest(i + 2) {
            return SessionEffect::Set {
                name: "timezone".into(),
                value: value.to_string(),
            };
        }
    }
    let unrecognised = SessionEffect::Pinned("an unrecognised SET form");
    let Some((name, i)) = setting_name(scan, i) else {
        return unrecognised;
    };
    let assigns = word(i, "TO") || scan.tokens.get(i).map(|(t, _)| *t) == Some(Token::Punct(b'='));
    match rest(i + 1) {
        Some(value) if assigns && !value.is_empty() => SessionEffect::Set {
            name,
            value: value.to_string(),
        },
        _ => unrecognised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionEffect::*;

    #[test]
    fn quote_literal_doubles_quotes_and_escapes_backslashes() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\'b"), r"E'a\\''b'");
        assert_eq!(quote_literal("a\0b"), "NULL");
        assert_eq!(quote_literal(""), "''");
    }

    fn check(sql: &str, statements: usize, effects: &[SessionEffect]) {
        let s = summarize(sql);
        assert_eq!(s.statements, statements, "statement count of {sql:?}");
        assert_eq!(s.effects, effects, "effects of {sql:?}");
    }

    fn set(name: &str, value: &str) -> SessionEffect {
        Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn set_config_with_literals_is_a_session_set() {
        check(
            "SELECT set_config('TimeZone', 'UTC', false)",
            1,
            &[set("timezone", "'UTC'")],
        );
        check(
            "select pg_catalog.set_config('app.who', 'it''s', false); SELECT 1",
            2,
            &[set("app.who", "'it''s'")],
        );
        check(
            "SELECT set_config('statement_timeout', 5, false)",
            1,
            &[set("statement_timeout", "5")],
        );
        // asyncpg, before it introspects types.
        check(
            "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new",
            1,
            &[set("jit", "'off'")],
        );
        check(
            "SELECT set_config('jit', $1, false)",
            1,
            &[SetParam {
                name: "jit".into(),
                param: 1,
            }],
        );
        // SET LOCAL, or set_config inside another query: nothing to track.
        check("SELECT set_config('TimeZone', 'UTC', true)", 1, &[]);
        check("SELECT set_config('a.b', 'c', false) FROM t", 1, &[]);
        check("SELECT upper(set_config('a.b', 'c', false))", 1, &[]);
        // What cannot be tracked is said so (refused under transaction pooling).
        let untracked = Pinned("set_config with a session setting Orgwall cannot track");
        check(
            "SELECT set_config('a.b', 'c', false), set_config('a.c', 'd', false)",
            1,
            std::slice::from_ref(&untracked),
        );
        check(
            "SELECT set_config($1, 'c', false)",
            1,
            std::slice::from_ref(&untracked),
        );
        check(
            "SELECT set_config($1, $2, false)",
            1,
            &[SetNamedParam { name: 1, value: 2 }],
        );
        check("SELECT set_config($1, $2, true)", 1, &[untracked]);
    }

    #[test]
    fn only_self_contained_statements_are_batchable() {
        let cases: &[(&str, bool)] = &[
            ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", true),
            ("  select 1; INSERT INTO t VALUES (1)", true),
            (
                "/* c */ WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x",
                true,
            ),
            ("UPDATE t SET a = 1", true),
            ("values (1)", true),
            ("TABLE t", true),
            (
                "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
                true,
            ),
            ("", false),
            ("BEGIN", false),
            ("select 1; begin", false),
            ("START TRANSACTION", false),
            ("COMMIT", false),
            ("ROLLBACK", false),
            ("SAVEPOINT a", false),
            ("SET statement_timeout = 1", false),
            ("SET LOCAL statement_timeout = 1", false),
            ("LISTEN x", false),
            ("COPY t FROM STDIN", false),
            ("COPY t TO STDOUT", false),
            ("CREATE TABLE t (a int)", false),
            ("CALL p()", false),
            ("DO $$ BEGIN COMMIT; END $$", false),
            ("DECLARE c CURSOR FOR SELECT 1", false),
            ("EXPLAIN ANALYZE DELETE FROM t", false),
            ("SELECT pg_advisory_lock(1)", false),
            ("SELECT pg_advisory_unlock(1)", false),
            ("select pg_catalog.set_config('a.b', 'c', false)", false),
            ("SELECT SET_CONFIG ('a.b', 'c', false)", false),
            ("PREPARE p AS SELECT 1", false),
            ("DISCARD ALL", false),
        ];
        for (sql, want) in cases {
            assert_eq!(summarize(sql).batchable, *want, "{sql:?}");
        }
    }

    #[test]
    fn splitting_respects_quotes_comments_and_dollar_quotes() {
        check("", 0, &[]);
        check(" ; ;", 0, &[]);
        check("select 1; select 2;", 2, &[]);
        check("select ';' ; select 'it''s;'", 2, &[]);
        check("select E'\\';' ; select 2", 2, &[]);
        check("select \";\" from t", 1, &[]);
        check("select 1 -- ; comment\n", 1, &[]);
        check("select /* ; /* nested ; */ */ 1", 1, &[]);
        check("do $$ begin; end $$; select $1", 2, &[]);
        check("select $tag$ ; $tag$", 1, &[]);
        check("-- only a comment", 0, &[]);
        // `$` inside a name opens no dollar quote.
        check("select a$b$ from t; select 2", 2, &[]);
        check("select a$b$ from t; select 2 $b$", 2, &[]);
    }

    #[test]
    fn session_sets_are_recognised_and_local_ones_ignored() {
        check(
            "SET statement_timeout = '5s'",
            1,
            &[set("statement_timeout", "'5s'")],
        );
        check(
            "set SESSION search_path TO a, b",
            1,
            &[set("search_path", "a, b")],
        );
        check("SET TIME ZONE 'UTC'", 1, &[set("timezone", "'UTC'")]);
        check(
            "SET client_min_messages TO warning; SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE",
            2,
            &[
                set("client_min_messages", "warning"),
                set("timezone", "INTERVAL '+00:00' HOUR TO MINUTE"),
            ],
        );
        check("set \"DateStyle\" to iso", 1, &[set("datestyle", "iso")]);
        check("SET LOCAL statement_timeout = 1", 1, &[]);
        check("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 1, &[]);
        check(
            "RESET work_mem",
            1,
            &[Reset {
                name: "work_mem".into(),
            }],
        );
        check("reset all", 1, &[ResetAll]);
        check(
            "SET ROLE admin",
            1,
            &[Pinned("SET ROLE / SESSION AUTHORIZATION")],
        );
        // PostgreSQL rejects it; Orgwall does not track what it cannot read.
        check("SET foo", 1, &[Pinned("an unrecognised SET form")]);
    }

    #[test]
    fn savepoints_are_named_as_postgresql_resolves_them() {
        check(
            "BEGIN; SAVEPOINT a; SET x = 1; ROLLBACK TO SAVEPOINT a; RELEASE a; COMMIT",
            6,
            &[
                Savepoint("a".into()),
                set("x", "1"),
                RollbackTo("a".into()),
                Release("a".into()),
            ],
        );
        check(
            "savepoint \"Mixed\"\"q\"",
            1,
            &[Savepoint("Mixed\"q".into())],
        );
        check("ROLLBACK WORK TO Sp1", 1, &[RollbackTo("sp1".into())]);
        check(
            "rollback transaction to savepoint b",
            1,
            &[RollbackTo("b".into())],
        );
        check("RELEASE SAVEPOINT c", 1, &[Release("c".into())]);
        check("ROLLBACK", 1, &[]);
        check("ROLLBACK AND CHAIN", 1, &[]);
    }

    #[test]
    fn fingerprints_ignore_literals_but_not_shape() {
        let f = fingerprint;
        assert_eq!(
            f("select * from t where a = 1"),
            f("SELECT *  FROM t WHERE a = 42")
        );
        assert_eq!(f("select 'x'"), f("select 'it''s'"));
        assert_ne!(
            f("select * from t where a = $1"),
            f("select * from t where a = $2")
        );
        assert_ne!(f("select a from t"), f("select b from t"));
        assert_ne!(f("select * from t1"), f("select * from t2"));
        assert_ne!(f("select ab from t"), f("select a b from t"));
        assert_eq!(
            f("SELECT \"A\" FROM t -- x"),
            f("select \"A\" from T /* y */")
        );
        assert_ne!(f("select \"A\" from t"), f("select \"a\" from t"));
    }

    #[test]
    fn pinning_statements_are_found() {
        check("LISTEN chan", 1, &[Pinned("LISTEN")]);
        // Two-phase commit ends its transaction and moves with no connection.
        check("PREPARE TRANSACTION 'gid-1'", 1, &[]);
        check("COMMIT PREPARED 'gid-1'", 1, &[]);
        check("ROLLBACK PREPARED 'gid-1'", 1, &[]);
        check(
            "PREPARE transaction AS SELECT 1",
            1,
            &[Pinned("SQL-level PREPARE/EXECUTE/DEALLOCATE")],
        );
        check(
            "select pg_advisory_lock(1)",
            1,
            &[Pinned("session-level advisory locks")],
        );
        check("select pg_advisory_xact_lock(1)", 1, &[]);
        check(
            "select PG_TRY_ADVISORY_LOCK (1)",
            1,
            &[Pinned("session-level advisory locks")],
        );
        check(
            "create temp table t(x int)",
            1,
            &[Pinned("temporary tables")],
        );
        check("CREATE TEMPORARY TABLE t(x int) ON COMMIT DROP", 1, &[]);
        check("create table temp(x int)", 1, &[]);
        for temp in [
            "CREATE TABLE pg_temp.t (x int)",
            "create view PG_TEMP.pg_type as select 1",
            r#"CREATE SEQUENCE "pg_temp".s"#,
            "CREATE TABLE pg_temp_3.t AS SELECT 1",
        ] {
            check(temp, 1, &[Pinned("temporary tables")]);
        }
        check("CREATE TABLE pg_temp.t (x int) ON COMMIT DROP", 1, &[]);
        check("CREATE TABLE pg_temporary.t (x int)", 1, &[]);
        check(
            "CREATE VIEW v AS SELECT pg_temp.f()",
            1,
            &[Pinned("temporary tables")],
        );
        check(
            "PREPARE p AS select 1",
            1,
            &[Pinned("SQL-level PREPARE/EXECUTE/DEALLOCATE")],
        );
        check(
            "declare c cursor with hold for select 1",
            1,
            &[Pinned("WITH HOLD cursors")],
        );
        check("declare c cursor for select 1", 1, &[]);
        // A string is a string: only a call pins.
        check("select 'pg_advisory_lock(1)'", 1, &[]);
        check(
            "select \"pg_advisory_lock\"/**/(1)",
            1,
            &[Pinned("session-level advisory locks")],
        );
        check(
            "declare c cursor with/**/hold for select 1",
            1,
            &[Pinned("WITH HOLD cursors")],
        );
        check(
            "SET/**/app.x = 'a'",
            1,
            &[Set {
                name: "app.x".into(),
                value: "'a'".into(),
            }],
        );
    }
}
