//! How deep a statement may nest before Orgwall parses it. sqlparser builds left-deep trees
//! for chains (`1+1+…`, `a OR b OR …`, `… UNION ALL …`) without bounding their depth, and
//! walking such a tree (the rewriter, the visitors, dropping it) recurses once per level: a
//! long chain overflowed a worker's stack and aborted the whole process. So a statement is
//! first scanned (one pass, no recursion) for an upper bound of its nesting, refused past
//! [`MAX_NESTING`], and anything longer than a short statement is parsed and rewritten on a
//! stack sized for that bound.

use super::lex::{self, Token};

/// Most operators, set operations and parentheses a statement may hold (each can add a level
/// to the parse tree). PostgreSQL itself stops at `max_stack_depth` a little beyond this.
pub const MAX_NESTING: usize = 10_000;

/// Statements up to this many bytes cannot nest deeply enough to need more stack than a
/// worker thread has: they run where they are.
const SHORT: usize = 1024;

/// Stack for longer statements: enough for [`MAX_NESTING`] levels with room to spare. Only the
/// pages a statement touches become memory.
const STACK: usize = 256 << 20;

/// Too deeply nested: more than [`MAX_NESTING`] operators, set operations and parentheses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "statement is too complex: more than {MAX_NESTING} operators, set operations and parentheses"
)]
pub struct TooComplex;

/// An upper bound of how deep `sql` can nest: its operator characters, `(`, and words that
/// join two operands (`AND`, `OR`, `UNION`, …).
pub fn nesting_bound(sql: &str) -> usize {
    lex::tokens(sql)
        .filter(|t| match t {
            Token::Punct(c) => !matches!(c, b',' | b';' | b')' | b'.' | b'[' | b']'),
            Token::Word(w) => JOINING.iter().any(|j| j.eq_ignore_ascii_case(w)),
            _ => false,
        })
        .count()
}

const JOINING: &[&str] = &[
    "and",
    "or",
    "not",
    "union",
    "intersect",
    "except",
    "is",
    "like",
    "ilike",
    "similar",
    "between",
    "in",
    "case",
    "when",
    "join",
    "collate",
    "at",
];

/// Runs `f` (a parse of `sql` and whatever walks the tree) with stack enough for it, or
/// refuses `sql` as too deeply nested.
pub fn with_stack_for<R>(sql: &str, f: impl FnOnce() -> R) -> Result<R, TooComplex> {
    if sql.len() <= SHORT {
        return Ok(f());
    }
    if nesting_bound(sql) > MAX_NESTING {
        return Err(TooComplex);
    }
    Ok(stacker::grow(STACK, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_operators_not_list_items() {
        assert_eq!(
            nesting_bound("SELECT a, b, c FROM t WHERE x IN (1, 2, 3)"),
            2
        );
        assert_eq!(nesting_bound("SELECT 1+2*3 UNION ALL SELECT '(+)'"), 3);
        assert_eq!(nesting_bound("SELECT ((1)) OR NOT x"), 4);
    }

    #[test]
    fn long_chains_run_on_a_large_stack_or_are_refused() {
        let deep = |n: usize| {
            let sql = format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n));
            // A thread with a worker's stack: the chain must not overflow it.
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    with_stack_for(&sql, || {
                        let cat = crate::sql::rewrite::Catalog::seed_for_tests();
                        crate::sql::rewrite::rewrite(&sql, &cat).map(|t| t.statement_count())
                    })
                })
                .expect("spawn")
                .join()
                .expect("no overflow")
        };
        assert_eq!(deep(2_000), Ok(Ok(1)));
        assert_eq!(deep(MAX_NESTING + 1), Err(TooComplex));
    }
}
