//! Calls whose arguments decide whether a tenant may make them, and how they are confined:
//! `nextval`/`currval` only of sequences owned by protected tables' columns (the literal is
//! resolved here and printed schema-qualified, so PostgreSQL's `search_path` cannot redirect
//! it); `current_setting` of a literal name outside `orgwall.*` (the server connection's
//! tenant token lives there); transaction-level advisory locks in a key space of the tenant's
//! own — `pg_advisory_xact_lock(k)` becomes `pg_advisory_xact_lock(hashtext(<tenant>),
//! hashtext(k::text))` — so one tenant's job queue never blocks, or learns about, another's.

use sqlparser::ast::{
    CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, ObjectName, Value, ValueWithSpan,
};

use super::build::Cx;
use super::catalog::Catalog;
use super::names::{self, ident};
use super::Refusal;

/// Advisory lock functions whose keys are put in the tenant's key space.
const XACT_LOCKS: &[&str] = &[
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// Sequence functions a tenant may call on its tables' own sequences.
const SEQUENCE_FUNCTIONS: &[&str] = &["nextval", "currval"];

/// The built-in function `f` calls (`pg_catalog.` prefix allowed), lower-cased.
fn builtin(f: &Function) -> Option<String> {
    match names::parts(&f.name).ok()?.as_slice() {
        [n] => Some(n.clone()),
        [s, n] if s == "pg_catalog" => Some(n.clone()),
        _ => None,
    }
}

/// The plain positional arguments of `f`, if that is all it has.
fn plain_args(f: &Function) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !list.clauses.is_empty() || list.duplicate_treatment.is_some() || f.filter.is_some() {
        return None;
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// A string literal, possibly cast (`'seq'::regclass`, `'name'::text`).
fn literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        Expr::Cast { expr, .. } => literal(expr),
        Expr::Nested(e) => literal(e),
        _ => None,
    }
}

/// A call in FROM (`SELECT * FROM nextval('s')`) of a function whose arguments matter: refused
/// (its arguments are checked and rewritten only in expressions).
pub(crate) fn check_in_from(name: &ObjectName) -> Result<(), Refusal> {
    let parts = names::parts(name)?;
    let base = match parts.as_slice() {
        [n] => n.as_str(),
        [s, n] if s == "pg_catalog" => n.as_str(),
        _ => return Ok(()),
    };
    if SEQUENCE_FUNCTIONS.contains(&base) || XACT_LOCKS.contains(&base) || base == "current_setting"
    {
        return Err(Refusal::unsupported(format!(
            "{name} in FROM is not supported for tenants; call it in the select list"
        )));
    }
    Ok(())
}

/// Checks a call's arguments where they matter (run by the function check pass, after the
/// name was allowed).
pub(crate) fn check(f: &Function, catalog: &Catalog) -> Result<(), Refusal> {
    let Some(name) = builtin(f) else {
        return Ok(());
    };
    if SEQUENCE_FUNCTIONS.contains(&name.as_str()) {
        sequence_of(f, catalog).map(|_| ())
    } else if name == "current_setting" {
        let setting = plain_args(f)
            .and_then(|a| a.first().and_then(|e| literal(e)))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                Refusal::policy("current_setting is allowed for tenants with a literal name only")
            })?;
        if setting.starts_with("orgwall.") {
            return Err(Refusal::policy(format!(
                "{setting} belongs to Orgwall's connection to the server; SHOW orgwall.org_id \
                 tells the session's tenant"
            )));
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// The sequence a `nextval`/`currval` call names, which must be owned by a protected table.
fn sequence_of(f: &Function, catalog: &Catalog) -> Result<(String, String), Refusal> {
    let refuse = || {
        Refusal::policy(format!(
            "{} is allowed for tenants only on a sequence owned by a column of a tenant table, \
             named by a string literal",
            f.name
        ))
    };
    let args = plain_args(f).ok_or_else(refuse)?;
    let [arg] = args.as_slice() else {
        return Err(refuse());
    };
    let text = literal(arg).ok_or_else(refuse)?;
    let parts = regclass_parts(text).ok_or_else(refuse)?;
    catalog.sequence(&parts).ok_or_else(refuse)
}

/// The parts of a relation name written as text (`'s.t'`, `'"Mixed"'`), as PostgreSQL's
/// regclass input reads them; `None` for anything unusual.
fn regclass_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    loop {
        let (part, after) = if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"')?;
            if q[end + 1..].starts_with('"') {
                return None; // doubled quotes inside a name: not worth the risk
            }
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let p = &rest[..end];
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            (p.to_ascii_lowercase(), &rest[end..])
        };
        parts.push(part);
        match after.strip_prefix('.') {
            Some(r) => rest = r,
            None if after.is_empty() => return (parts.len() <= 2).then_some(parts),
            None => return None,
        }
    }
}

/// Rewrites a call in place (run by the expression walker on every function call).
pub(crate) fn rewrite(f: &mut Function, cx: &mut Cx) -> Result<(), Refusal> {
    let Some(name) = builtin(f) else {
        return Ok(());
    };
    if SEQUENCE_FUNCTIONS.contains(&name.as_str()) {
        let (schema, seq) = sequence_of(f, cx.catalog)?;
        let text = format!("{}.{}", quoted(&schema), quoted(&seq));
        set_args(f, vec![cast(string(text), DataType::Regclass)]);
    } else if XACT_LOCKS.contains(&name.as_str()) {
        let args = plain_args(f).ok_or_else(|| {
            Refusal::unsupported(format!("{} with named or modified arguments", f.name))
        })?;
        let key = match args.as_slice() {
            [k] => cast((*k).clone(), DataType::Text),
            [a, b] => Expr::BinaryOp {
                left: Box::new(Expr::BinaryOp {
                    left: Box::new(cast((*a).clone(), DataType::Text)),
                    op: sqlparser::ast::BinaryOperator::StringConcat,
                    right: Box::new(string(",".into())),
                }),
                op: sqlparser::ast::BinaryOperator::StringConcat,
                right: Box::new(cast((*b).clone(), DataType::Text)),
            },
            _ => return Err(Refusal::unsupported(format!("{} arguments", f.name))),
        };
        let tenant = cx.tenant();
        set_args(
            f,
            vec![hashtext(tenant), hashtext(Expr::Nested(Box::new(key)))],
        );
    }
    Ok(())
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn string(s: String) -> Expr {
    Expr::value(Value::SingleQuotedString(s))
}

fn cast(e: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(e),
        data_type,
        format: None,
    }
}

fn hashtext(e: Expr) -> Expr {
    let mut f = Function {
        name: ObjectName::from(vec![ident("pg_catalog"), ident("hashtext")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::None,
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    };
    set_args(&mut f, vec![e]);
    Expr::Function(f)
}

fn set_args(f: &mut Function, args: Vec<Expr>) {
    f.args = FunctionArguments::List(FunctionArgumentList {
        duplicate_treatment: None,
        args: args
            .into_iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
            .collect(),
        clauses: vec![],
    });
}

#[cfg(test)]
mod tests {
    use super::regclass_parts;

    #[test]
    fn regclass_text_is_read_as_postgresql_reads_it() {
        let v = |p: &[&str]| Some(p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(regclass_parts("items_id_seq"), v(&["items_id_seq"]));
        assert_eq!(
            regclass_parts("Public.Items_ID_seq"),
            v(&["public", "items_id_seq"])
        );
        assert_eq!(regclass_parts("\"Mixed\".x"), v(&["Mixed", "x"]));
        for bad in ["", "a.b.c", "a;b", "\"a\"\"b\"", "a .b", "a..b", "\"a"] {
            assert_eq!(regclass_parts(bad), None, "{bad:?}");
        }
    }
}
