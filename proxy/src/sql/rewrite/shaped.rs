//! Templates shared by statements that differ only in literal values (the simple protocol's
//! `… WHERE id = 41`, `… WHERE id = 42`): the text is rewritten once with each literal turned
//! into a `$n` parameter numbered past PostgreSQL's limit, and each later text of the same
//! shape gets its own literals put back where those parameters landed — a string copy instead
//! of a parse.
//!
//! Equivalence with rewriting the text itself rests on the rewriter reading literal values in
//! one place only, the tenant column of inserted rows, and a text whose literal lands there is
//! not shaped; nor is one whose parametrised form the rewriter refuses (`DATE '…'`,
//! `SET x = '…'`, `COPY … TO '…'`): the caller rewrites those as they are. Every case of the
//! rewriter's table tests checks the equivalence (shaped output == direct output).

use super::{rewrite, Catalog, Template};
use crate::sql::shape_key::{plain_literals, replace_literals, Literal};

/// Parameter numbers standing for literals start here (PostgreSQL allows at most 65535).
pub const BASE: usize = 1_000_000;

/// One piece of a shaped part: text, or the client's literal number `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Literal(usize),
}

/// A rewritten template whose literals are holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    /// The template's parts (between tenant holes), each split at literal holes.
    parts: Vec<Vec<Piece>>,
    /// Client parameters (`$n`) that supply the tenant column.
    param_checks: Vec<usize>,
    literal_count: usize,
    /// The parametrised text's summary: literal values never change it (a statement whose
    /// effect carries a value — `SET x = 1` — is refused in parametrised form, so not shaped).
    summary: crate::sql::Summary,
}

/// Whether `sql` can be shaped, and its literals.
pub fn literals_of(sql: &str) -> Option<Vec<Literal>> {
    plain_literals(sql).filter(|l| !l.is_empty())
}

/// Rewrites `sql` with its literals as parameters; `None` when the rewriter refuses that form
/// or a literal supplies the tenant column (the caller then rewrites `sql` itself, which is
/// what decides).
pub fn shape(sql: &str, literals: &[Literal], catalog: &Catalog) -> Option<Shaped> {
    let t = rewrite(&parametrize(sql, literals), catalog).ok()?;
    if t.copy_in() {
        return None; // its options are printed by Orgwall from the client's own literals
    }
    if t.param_checks().iter().any(|&n| n >= BASE) || !t.literal_checks().is_empty() {
        return None; // a literal tenant value: its check is the rewriter's to make
    }
    if t.summary().effects.iter().any(|e| {
        use crate::sql::SessionEffect::*;
        matches!(e, Set { .. } | SetParam { .. } | SetNamedParam { .. })
    }) {
        return None; // a value the pooler replays comes from this text itself
    }
    let parts = t
        .parts
        .iter()
        .map(|p| split_part(p, literals.len()))
        .collect::<Option<Vec<_>>>()?;
    Some(Shaped {
        parts,
        param_checks: t.param_checks().to_vec(),
        literal_count: literals.len(),
        summary: t.summary().clone(),
    })
}

/// `sql` with literal `k` replaced by the parameter `$(BASE + k)`.
pub fn parametrize(sql: &str, literals: &[Literal]) -> String {
    replace_literals(sql, literals, |k, _, out| {
        out.push('$');
        out.push_str(&(BASE + k).to_string());
    })
}

/// Splits printed SQL at `$n` (n ≥ BASE) outside quotes. `None` if a number is out of range.
fn split_part(p: &str, count: usize) -> Option<Vec<Piece>> {
    let b = p.as_bytes();
    let mut pieces = Vec::new();
    let (mut i, mut text_start) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'$' if i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = p[start + 1..i].parse().unwrap_or(0);
                if n >= BASE {
                    let k = n - BASE;
                    if k >= count {
                        return None;
                    }
                    pieces.push(Piece::Text(p[text_start..start].to_string()));
                    pieces.push(Piece::Literal(k));
                    text_start = i;
                }
            }
            _ => i += 1,
        }
    }
    pieces.push(Piece::Text(p[text_start..].to_string()));
    Some(pieces)
}

impl Shaped {
    /// The template for `sql`, whose `literals` (same shape) fill the holes.
    pub fn instantiate(&self, sql: &str, literals: &[Literal]) -> Template {
        debug_assert_eq!(literals.len(), self.literal_count);
        let parts = self
            .parts
            .iter()
            .map(|pieces| {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Literal(k) => out.push_str(&sql[literals[*k].span.clone()]),
                    }
                }
                out
            })
            .collect();
        Template {
            parts,
            param_checks: self.param_checks.clone(),
            literal_checks: vec![],
            summary: self.summary.clone(),
            copy_in: false,
        }
    }
}
