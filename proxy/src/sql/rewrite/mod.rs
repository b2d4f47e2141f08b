//! Tenant rewriter (DESIGN.md §4): SQL text in, a confined SQL [`Template`] or a [`Refusal`] out.
//!
//! Pure and fail-closed: every tenant-table reference in every scope is replaced by
//! `(SELECT * FROM schema.t WHERE org_id = <tenant>) AS t`, writes get the tenant injected and
//! checked, and anything not understood is refused. The template does not contain the tenant:
//! it holds a marker that [`Template::render`] replaces with an escaped literal, so one
//! template (and one cache entry) serves every tenant.

mod build;
mod calls;
pub mod catalog;
mod copy_from;
pub use copy_from::is_tenant_check;
mod dml;
mod fields;
mod functions;
mod insert;
mod literals;
mod names;
mod parse;
mod pg_functions;
mod query;
pub mod shaped;
mod statements;
pub(crate) mod summary;
mod system;
mod walk;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_prop;

use std::fmt::{self, Write as _};

use sqlparser::ast::{Expr, Ident};
use sqlparser::dialect::PostgreSqlDialect;

use super::{quote_literal, Summary};
use crate::errors::{code, UserFacing};

pub use catalog::{Catalog, TableInfo, TableKind};
pub use functions::{builtin_class, builtin_functions, function_allowed, FunctionClass};
pub(crate) use parse::parse;
pub use statements::{BACKSLASH_QUOTE, STANDARD_CONFORMING_STRINGS};

/// A statement the tenant may not run, or that Orgwall cannot confine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE: `42501` policy, `42601` unparsable, `0A000` unsupported.
    pub code: &'static str,
    /// What was refused and why (the session prefixes `orgwall: `).
    pub message: String,
}

impl Refusal {
    /// SQLSTATE for a policy refusal (insufficient_privilege).
    pub const POLICY: &'static str = code::INSUFFICIENT_PRIVILEGE;
    /// SQLSTATE for SQL the parser rejects (syntax_error).
    pub const SYNTAX: &'static str = code::SYNTAX_ERROR;
    /// SQLSTATE for SQL Orgwall cannot confine (feature_not_supported).
    pub const UNSUPPORTED: &'static str = code::FEATURE_NOT_SUPPORTED;
    /// SQLSTATE for a statement nested too deeply to parse safely (statement_too_complex).
    pub const TOO_COMPLEX: &'static str = code::STATEMENT_TOO_COMPLEX;

    pub(crate) fn policy(message: impl Into<String>) -> Refusal {
        Refusal {
            code: Self::POLICY,
            message: message.into(),
        }
    }
    pub(crate) fn syntax(message: impl Into<String>) -> Refusal {
        Refusal {
            code: Self::SYNTAX,
            message: message.into(),
        }
    }
    pub(crate) fn unsupported(message: impl Into<String>) -> Refusal {
        Refusal {
            code: Self::UNSUPPORTED,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Refusal {}

impl UserFacing for Refusal {
    fn sqlstate(&self) -> &'static str {
        self.code
    }
    fn client_message(&self) -> String {
        self.message.clone()
    }
}

/// The text the rewriter places wherever the tenant literal goes. It contains NUL, which
/// cannot occur in a query string (the protocol NUL-terminates it, and input containing it is
/// refused) and which sqlparser never prints for anything else, so splitting on it is exact.
const MARKER: &str = "\u{0}orgwall_tenant\u{0}";

/// The expression standing for the tenant value in a rewritten AST.
pub(crate) fn tenant_expr() -> Expr {
    Expr::Identifier(Ident::new(MARKER))
}

/// Rewritten SQL with holes for the tenant; tenant-independent and cacheable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The SQL around the holes: `parts.len() == holes + 1`.
    parts: Vec<String>,
    /// 1-based `$n` parameters that supply the tenant column of inserted rows.
    param_checks: Vec<usize>,
    /// Tenant values the client wrote literally; each must equal the tenant.
    literal_checks: Vec<String>,
    /// What the pooler must know, read from the same parse (`summary`).
    summary: Summary,
    /// A tenant's `COPY … FROM STDIN`, expanded to stage and insert (`copy_from.rs`): the
    /// session turns PostgreSQL's answers to the expansion into the one COPY answer.
    copy_in: bool,
}

impl Template {
    /// The SQL for `org_id`, which is substituted as a string literal that cannot break out
    /// of its quotes. Prefer [`Template::render_checked`]: this one does not enforce the
    /// literal checks (a client-written tenant value is replaced by `org_id` regardless).
    pub fn render(&self, org_id: &str) -> String {
        let lit = quote_literal(org_id);
        let mut out = String::with_capacity(
            self.parts.iter().map(String::len).sum::<usize>() + lit.len() * self.parts.len(),
        );
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push_str(&lit);
            }
            out.push_str(p);
        }
        out
    }

    /// Like [`Template::render`], but refuses when a tenant value the client wrote literally
    /// (e.g. `INSERT … (org_id) VALUES ('org_b')`) is not `org_id`.
    pub fn render_checked(&self, org_id: &str) -> Result<String, Refusal> {
        if let Some(bad) = self.literal_checks.iter().find(|l| *l != org_id) {
            return Err(Refusal::policy(format!(
                "tenant value '{}' is not the session's tenant",
                bad.replace('\'', "''")
            )));
        }
        Ok(self.render(org_id))
    }

    /// 1-based `$n` parameters that supply tenant-column values: the proxy must check at Bind
    /// that each equals the tenant.
    pub fn param_checks(&self) -> &[usize] {
        &self.param_checks
    }

    /// Tenant values written literally by the client (checked by `render_checked`).
    pub fn literal_checks(&self) -> &[String] {
        &self.literal_checks
    }

    /// Number of statements in the (possibly multi-statement) SQL.
    pub fn statement_count(&self) -> usize {
        self.summary.statements
    }

    /// Session effects and sharing of the statements, read from the parse that produced this
    /// template (never from another reading of the client's text).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Whether this is a tenant's `COPY … FROM STDIN` (see `copy_from.rs`).
    pub fn copy_in(&self) -> bool {
        self.copy_in
    }
}

/// Statements sqlparser cannot parse but which are refused by policy anyway: say so, rather
/// than reporting a syntax error.
const REFUSED_KEYWORDS: &[&str] = &[
    "DO",
    "ALTER",
    "CREATE",
    "DROP",
    "GRANT",
    "REVOKE",
    "LOAD",
    "CALL",
    "TRUNCATE",
    "VACUUM",
    "CLUSTER",
    "REINDEX",
    "SECURITY",
    "COMMENT",
    "IMPORT",
    "REFRESH",
    "REASSIGN",
    "CHECKPOINT",
];

fn parse_refusal(sql: &str, e: sqlparser::parser::ParserError) -> Refusal {
    let first: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if REFUSED_KEYWORDS.contains(&first.as_str()) {
        Refusal::policy(format!("{first} is not allowed for tenants"))
    } else if let Some(why) = parse::known_gap(sql) {
        Refusal::unsupported(why)
    } else {
        Refusal::syntax(format!("cannot parse statement: {e}"))
    }
}

/// sqlparser reads `U&"x"` as the operator `U & "x"`, PostgreSQL as one identifier: refuse
/// rather than let the two disagree about a name.
fn refuse_unicode_identifiers(sql: &str) -> Result<(), Refusal> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Refusal::syntax(format!("cannot tokenize statement: {e}")))?;
    let unicode_ident = tokens.windows(3).any(|w| match w {
        [Token::Word(u), Token::Ampersand, Token::Word(q)] => {
            u.quote_style.is_none()
                && u.value.eq_ignore_ascii_case("u")
                && q.quote_style == Some('"')
        }
        _ => false,
    });
    if unicode_ident {
        return Err(Refusal::unsupported(
            "U&\"…\" identifiers are not supported; use a plain quoted identifier",
        ));
    }
    Ok(())
}

/// Confines `sql` (one or more statements) for a tenant session.
pub fn rewrite(sql: &str, catalog: &Catalog) -> Result<Template, Refusal> {
    crate::sql::limits::with_stack_for(sql, || rewrite_unbounded(sql, catalog)).unwrap_or_else(
        |e| {
            Err(Refusal {
                code: Refusal::TOO_COMPLEX,
                message: e.to_string(),
            })
        },
    )
}

/// [`rewrite`], on whatever stack the caller has.
fn rewrite_unbounded(sql: &str, catalog: &Catalog) -> Result<Template, Refusal> {
    if sql.contains('\0') {
        return Err(Refusal::syntax("query contains a NUL character"));
    }
    if sql.contains("&\"") {
        refuse_unicode_identifiers(sql)?;
    }
    literals::check_quoted_identifiers(sql)?;
    let stmts = parse::parse(sql).map_err(|e| parse_refusal(sql, e))?;
    if let Some(i) = stmts
        .iter()
        .position(|s| matches!(s, sqlparser::ast::Statement::Reset(r) if r.reset == sqlparser::ast::Reset::ALL))
    {
        if i + 1 < stmts.len() {
            return Err(Refusal::unsupported(
                "RESET ALL must be the last statement of its query string for tenants \
                 (it clears the server connection's tenant context, which Orgwall sets again \
                 before the next query)",
            ));
        }
    }
    let mut cx = build::Cx::new(catalog);
    let summary = summary::summarize(&stmts);
    // Each statement is printed straight into one buffer as soon as it is confined.
    let mut text = String::with_capacity(sql.len() * 2 + 128);
    let mut copy_in = false;
    let count = stmts.len();
    for (i, mut stmt) in stmts.into_iter().enumerate() {
        match statements::check_set_config(&stmt) {
            Some(rest) => functions::check_statement(&rest?, catalog)?,
            None => functions::check_statement(&stmt, catalog)?,
        }
        fields::check(&stmt, catalog)?;
        if let Some(expanded) = copy_from::expand(&mut stmt, &mut cx)? {
            if count > 1 {
                return Err(Refusal::unsupported(
                    "COPY … FROM STDIN must be the only statement of its query string for tenants",
                ));
            }
            copy_in = true;
            text.push_str(&expanded);
            continue;
        }
        statements::rewrite_statement(&mut stmt, &mut cx)?;
        literals::requote(&mut stmt)?;
        if i > 0 {
            text.push_str("; ");
        }
        write!(text, "{stmt}").expect("writing to a String cannot fail");
    }
    let parts: Vec<String> = text.split(MARKER).map(str::to_string).collect();
    if parts.len() != cx.holes + 1 {
        // Someone else printed the marker: never guess where the tenant goes.
        return Err(Refusal::syntax(
            "statement text collides with orgwall's marker",
        ));
    }
    Ok(Template {
        parts,
        param_checks: cx.param_checks,
        literal_checks: cx.literal_checks,
        summary,
        copy_in,
    })
}
