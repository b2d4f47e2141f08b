//! INSERT: the tenant injected into every row (VALUES, DEFAULT VALUES, INSERT … SELECT), a
//! client-supplied tenant value checked (literal at render, `$n` at Bind), ON CONFLICT targets
//! made tenant-composite and DO UPDATE guarded so a clash never updates another tenant's row.

use sqlparser::ast::{
    ConflictTarget, Expr, Ident, Insert, OnConflict, OnConflictAction, OnInsert, Parens, Query,
    SelectItem, SetExpr, TableAlias, TableFactor, TableObject, Value, Values,
};

use super::build::{and, placeholder, query_of, select_query, star, tenant_eq, Cx};
use super::dml::{refuse_tenant_assignment, write_target, WriteTarget};
use super::names::{self, ident};
use super::query::{rewrite_query, walk};
use super::Refusal;

type R = Result<(), Refusal>;

/// A client-supplied tenant value: a literal is recorded (and replaced by the tenant), a
/// `$n` parameter is recorded for the Bind check, DEFAULT becomes the tenant.
fn tenant_value(e: &mut Expr, column: &str, cx: &mut Cx) -> R {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => {
                cx.literal_checks.push(s.clone());
                *e = cx.tenant();
                Ok(())
            }
            Value::Placeholder(p) => {
                let n = p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Refusal::unsupported(format!("parameter {p} is not a $n parameter"))
                    })?;
                cx.param_checks.push(n);
                Ok(())
            }
            _ => Err(bad_tenant_value(column)),
        },
        Expr::Identifier(i)
            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
        {
            *e = cx.tenant();
            Ok(())
        }
        Expr::Cast { expr, .. } | Expr::Nested(expr) => tenant_value(expr, column, cx),
        _ => Err(bad_tenant_value(column)),
    }
}

fn bad_tenant_value(column: &str) -> Refusal {
    Refusal::policy(format!(
        "{column} may only be given as a string literal or a $n parameter (Orgwall sets it)"
    ))
}

/// Adds the tenant to rows of `VALUES`: checks the tenant column at `pos`, or appends it.
pub(crate) fn inject_rows(
    rows: &mut [Parens<Vec<Expr>>],
    width: usize,
    pos: Option<usize>,
    column: &str,
    cx: &mut Cx,
) -> R {
    for row in rows.iter_mut() {
        if row.len() != width {
            return Err(Refusal::syntax(
                "VALUES row length differs from the column list",
            ));
        }
        match pos {
            Some(k) => match row.get_mut(k) {
                Some(e) => tenant_value(e, column, cx)?,
                None => return Err(bad_tenant_value(column)),
            },
            None => row.push(cx.tenant()),
        }
    }
    Ok(())
}

pub(crate) fn insert(ins: &mut Insert, cx: &mut Cx) -> R {
    if ins.or.is_some()
        || ins.ignore
        || ins.overwrite
        || !ins.assignments.is_empty()
        || ins.partitioned.is_some()
        || !ins.after_columns.is_empty()
        || ins.by_name
        || ins.output.is_some()
        || ins.replace_into
        || ins.priority.is_some()
        || ins.insert_alias.is_some()
        || ins.settings.is_some()
        || ins.format_clause.is_some()
        || ins.multi_table_insert_type.is_some()
        || !ins.multi_table_into_clauses.is_empty()
        || !ins.multi_table_when_clauses.is_empty()
        || ins.multi_table_else_clause.is_some()
        || !ins.optimizer_hints.is_empty()
        || ins.has_table_keyword
    {
        return Err(Refusal::unsupported("INSERT form is not PostgreSQL syntax"));
    }
    let TableObject::TableName(name) = &mut ins.table else {
        return Err(Refusal::unsupported("INSERT into a table function"));
    };
    let alias = ins.table_alias.as_ref().map(|a| a.alias.clone());
    let t = write_target(name, alias.as_ref(), "INSERT", cx)?;
    let mut cols = Vec::with_capacity(ins.columns.len() + 1);
    for c in &ins.columns {
        match names::parts(c)?.as_slice() {
            [one] => cols.push(one.clone()),
            _ => return Err(Refusal::unsupported(format!("INSERT column {c}"))),
        }
    }
    match &mut ins.source {
        None => {
            if !cols.is_empty() {
                return Err(Refusal::unsupported("INSERT with columns but no source"));
            }
            // DEFAULT VALUES: every column defaults except the tenant's.
            ins.columns = vec![ident(&t.column).into()];
            let row = vec![cx.tenant()];
            ins.source = Some(Box::new(query_of(SetExpr::Values(Values {
                explicit_row: false,
                value_keyword: false,
                rows: vec![Parens::with_empty_span(row)],
            }))));
        }
        Some(src) => {
            let plain_values = src.with.is_none()
                && src.order_by.is_none()
                && src.limit_clause.is_none()
                && src.fetch.is_none();
            match src.body.as_mut() {
                SetExpr::Values(v) if plain_values => {
                    let width = v.rows.first().map_or(0, |r| r.len());
                    if cols.is_empty() {
                        // Table order, as PostgreSQL assigns a column-less VALUES list.
                        if width > t.table.columns.len() {
                            return Err(Refusal::syntax(
                                "INSERT has more expressions than columns",
                            ));
                        }
                        cols = t.table.columns[..width].to_vec();
                        ins.columns = cols.iter().map(|c| ident(c).into()).collect();
                    }
                    if width != cols.len() {
                        return Err(Refusal::syntax("VALUES width differs from the column list"));
                    }
                    let pos = cols.iter().position(|c| *c == t.column);
                    inject_rows(&mut v.rows, width, pos, &t.column, cx)?;
                    walk(v, cx)?;
                    if pos.is_none() {
                        ins.columns.push(ident(&t.column).into());
                    }
                }
                _ => {
                    if cols.is_empty() {
                        return Err(Refusal::unsupported(
                            "INSERT … SELECT needs an explicit column list",
                        ));
                    }
                    if cols.contains(&t.column) {
                        return Err(Refusal::policy(format!(
                            "INSERT … SELECT may not supply {}: Orgwall sets it",
                            t.column
                        )));
                    }
                    rewrite_query(src, cx)?;
                    let inner = std::mem::replace(src.as_mut(), placeholder());
                    **src = wrap_with_tenant(inner, cx);
                    ins.columns.push(ident(&t.column).into());
                }
            }
        }
    }
    if let Some(on) = &mut ins.on {
        match on {
            OnInsert::OnConflict(oc) => on_conflict(oc, &t, cx)?,
            _ => return Err(Refusal::unsupported("ON DUPLICATE KEY is not PostgreSQL")),
        }
    }
    walk(&mut ins.returning, cx)
}

/// `SELECT *, <tenant> FROM (<inner>) AS orgwall_src`.
fn wrap_with_tenant(inner: Query, cx: &mut Cx) -> Query {
    let from = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(inner),
        alias: Some(TableAlias {
            explicit: true,
            name: Ident::new("orgwall_src"),
            columns: vec![],
            at: None,
        }),
        sample: None,
    };
    select_query(
        vec![star(), SelectItem::UnnamedExpr(cx.tenant())],
        from,
        None,
    )
}

fn on_conflict(oc: &mut OnConflict, t: &WriteTarget, cx: &mut Cx) -> R {
    match &mut oc.conflict_target {
        Some(ConflictTarget::Columns { columns, predicate }) => {
            let mut cols = columns
                .iter()
                .map(names::norm)
                .collect::<Result<Vec<_>, _>>()?;
            if !cols.contains(&t.column) {
                cols.sort();
                let composite = t.table.tenant_unique.iter().any(|u| {
                    let mut u = u.clone();
                    u.sort();
                    u == cols
                });
                if composite {
                    columns.insert(0, ident(&t.column));
                }
            }
            walk(predicate, cx)?;
        }
        Some(ConflictTarget::OnConstraint(_)) | None => {}
    }
    if let OnConflictAction::DoUpdate(du) = &mut oc.action {
        refuse_tenant_assignment(&du.assignments, &t.column)?;
        walk(&mut du.assignments, cx)?;
        walk(&mut du.selection, cx)?;
        // The conflicting row may belong to another tenant (e.g. a clash on a global id):
        // only ever update our own.
        let guard = tenant_eq(Some(t.reference.clone()), &t.column, cx);
        du.selection = Some(and(guard, du.selection.take()));
    }
    Ok(())
}
