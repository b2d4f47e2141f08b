//! Writes: INSERT (tenant injected into every row, client-supplied values checked, ON CONFLICT
//! targets made tenant-composite and DO UPDATE guarded), UPDATE and DELETE (target guarded by a
//! tenant predicate, FROM/USING confined), MERGE (join guarded, inserts injected). The tenant
//! column can never be assigned.

use sqlparser::ast::{
    Assignment, AssignmentTarget, ConflictTarget, Delete, Expr, FromTable, Ident, Insert, Merge,
    MergeAction, MergeClauseKind, MergeInsertKind, MergeUpdateKind, ObjectName, OnConflict,
    OnConflictAction, OnInsert, Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor,
    TableObject, Update, UpdateTableFromKind, Value,
};

use super::catalog::{TableInfo, TableKind, Target};
use super::names::{self, ident, last_ident, qualified};
use super::query::{
    and, placeholder, rewrite_factor, rewrite_query, rewrite_twj, select_query, star, tenant_eq,
    walk, Cx,
};
use super::Refusal;

type R = Result<(), Refusal>;

/// Rewrites a data-modifying statement (top level or inside a writable CTE).
pub(crate) fn rewrite_dml(stmt: &mut Statement, cx: &mut Cx) -> R {
    match stmt {
        Statement::Insert(i) => insert(i, cx),
        Statement::Update(u) => update(u, cx),
        Statement::Delete(d) => delete(d, cx),
        Statement::Merge(m) => merge(m, cx),
        other => Err(Refusal::unsupported(format!(
            "statement {other} is not supported here"
        ))),
    }
}

/// What a write target resolved to.
struct WriteTarget<'a> {
    table: &'a TableInfo,
    column: String,
    /// How the target row is referenced in predicates (its alias or its bare name).
    reference: Ident,
}

/// Resolves a write target, qualifying `name`; refuses system, global and (for `op` other
/// than UPDATE) organizations tables.
fn write_target<'a>(
    name: &mut ObjectName,
    alias: Option<&Ident>,
    op: &str,
    cx: &Cx<'a>,
) -> Result<WriteTarget<'a>, Refusal> {
    let parts = names::parts(name)?;
    let table = match cx.catalog.resolve(&parts)? {
        Target::Table(t) => t,
        Target::System(q) => {
            return Err(Refusal::policy(format!("{op} on system relation {q}")));
        }
    };
    let column = match &table.kind {
        TableKind::Tenant { column } => column.clone(),
        TableKind::Organizations if op == "UPDATE" => "id".to_string(),
        TableKind::Organizations => {
            return Err(Refusal::policy(format!(
                "{op} on organizations is not allowed for tenants"
            )));
        }
        TableKind::Global => {
            return Err(Refusal::policy(format!(
                "{op} on global table {}.{} is not allowed (read-only for tenants)",
                table.schema, table.name
            )));
        }
    };
    let reference = match alias {
        Some(a) => a.clone(),
        None => last_ident(name)?,
    };
    *name = qualified(&table.schema, &table.name);
    Ok(WriteTarget {
        table,
        column,
        reference,
    })
}

/// The name and alias of a plain table used as a write target.
fn target_table(
    f: &mut TableFactor,
) -> Result<(&mut ObjectName, &mut Option<TableAlias>), Refusal> {
    let plain = matches!(
        f,
        TableFactor::Table {
            args: None,
            with_hints,
            version: None,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: None,
            ..
        } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty()
    );
    if !plain {
        return Err(Refusal::unsupported(format!(
            "write target {f} is not a plain table"
        )));
    }
    match f {
        TableFactor::Table { name, alias, .. } => Ok((name, alias)),
        _ => Err(Refusal::unsupported("write target is not a plain table")),
    }
}

fn refuse_tenant_assignment(assignments: &[Assignment], column: &str) -> R {
    for a in assignments {
        let targets: Vec<&ObjectName> = match &a.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
        };
        for t in targets {
            if names::parts(t)?.iter().any(|p| p == column) {
                return Err(Refusal::policy(format!(
                    "changing the tenant column {column} is not allowed"
                )));
            }
        }
    }
    Ok(())
}

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
fn inject_rows(
    rows: &mut [sqlparser::ast::Parens<Vec<Expr>>],
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

fn insert(ins: &mut Insert, cx: &mut Cx) -> R {
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
            ins.source = Some(Box::new(super::query::query_of(SetExpr::Values(
                sqlparser::ast::Values {
                    explicit_row: false,
                    value_keyword: false,
                    rows: vec![sqlparser::ast::Parens::with_empty_span(row)],
                },
            ))));
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

fn update(u: &mut Update, cx: &mut Cx) -> R {
    if !u.optimizer_hints.is_empty()
        || u.on_cluster.is_some()
        || u.output.is_some()
        || u.or.is_some()
        || !u.order_by.is_empty()
        || u.limit.is_some()
        || u.settings.is_some()
        || !u.table.joins.is_empty()
    {
        return Err(Refusal::unsupported("UPDATE form is not PostgreSQL syntax"));
    }
    let (name, alias) = target_table(&mut u.table.relation)?;
    let alias = alias.as_ref().map(|a| a.name.clone());
    let t = write_target(name, alias.as_ref(), "UPDATE", cx)?;
    refuse_tenant_assignment(&u.assignments, &t.column)?;
    match &mut u.from {
        None => {}
        Some(UpdateTableFromKind::AfterSet(from)) => {
            for twj in from {
                rewrite_twj(twj, cx)?;
            }
        }
        Some(UpdateTableFromKind::BeforeSet(_)) => {
            return Err(Refusal::unsupported(
                "UPDATE FROM before SET is not PostgreSQL",
            ));
        }
    }
    walk(&mut u.assignments, cx)?;
    walk(&mut u.selection, cx)?;
    let guard = tenant_eq(Some(t.reference.clone()), &t.column, cx);
    u.selection = Some(and(guard, u.selection.take()));
    walk(&mut u.returning, cx)
}

fn delete(d: &mut Delete, cx: &mut Cx) -> R {
    if !d.optimizer_hints.is_empty()
        || !d.tables.is_empty()
        || d.on_cluster.is_some()
        || d.output.is_some()
        || !d.order_by.is_empty()
        || d.limit.is_some()
        || d.settings.is_some()
    {
        return Err(Refusal::unsupported("DELETE form is not PostgreSQL syntax"));
    }
    let FromTable::WithFromKeyword(from) = &mut d.from else {
        return Err(Refusal::unsupported(
            "DELETE without FROM is not PostgreSQL",
        ));
    };
    let [target] = from.as_mut_slice() else {
        return Err(Refusal::unsupported("DELETE from several tables"));
    };
    if !target.joins.is_empty() {
        return Err(Refusal::unsupported("DELETE with JOIN is not PostgreSQL"));
    }
    let (name, alias) = target_table(&mut target.relation)?;
    let alias = alias.as_ref().map(|a| a.name.clone());
    let t = write_target(name, alias.as_ref(), "DELETE", cx)?;
    if let Some(using) = &mut d.using {
        for twj in using {
            rewrite_twj(twj, cx)?;
        }
    }
    walk(&mut d.selection, cx)?;
    let guard = tenant_eq(Some(t.reference.clone()), &t.column, cx);
    d.selection = Some(and(guard, d.selection.take()));
    walk(&mut d.returning, cx)
}

fn merge(m: &mut Merge, cx: &mut Cx) -> R {
    if !m.optimizer_hints.is_empty() || m.output.is_some() {
        return Err(Refusal::unsupported("MERGE form is not PostgreSQL syntax"));
    }
    let (name, alias) = target_table(&mut m.table)?;
    let alias = alias.as_ref().map(|a| a.name.clone());
    let t = write_target(name, alias.as_ref(), "MERGE", cx)?;
    rewrite_factor(&mut m.source, cx)?;
    walk(m.on.as_mut(), cx)?;
    // Other tenants' rows never match, so they are neither updated nor deleted.
    let on = std::mem::replace(m.on.as_mut(), Expr::Value(Value::Null.into()));
    *m.on = and(
        tenant_eq(Some(t.reference.clone()), &t.column, cx),
        Some(on),
    );
    for clause in &mut m.clauses {
        if matches!(clause.clause_kind, MergeClauseKind::NotMatchedBySource) {
            // Those rows include every other tenant's.
            return Err(Refusal::unsupported(
                "MERGE … WHEN NOT MATCHED BY SOURCE is not supported for tenants",
            ));
        }
        walk(&mut clause.predicate, cx)?;
        match &mut clause.action {
            MergeAction::Update(up) => {
                let MergeUpdateKind::Set(assignments) = &mut up.kind else {
                    return Err(Refusal::unsupported("MERGE UPDATE SET *"));
                };
                refuse_tenant_assignment(assignments, &t.column)?;
                walk(assignments, cx)?;
                walk(&mut up.update_predicate, cx)?;
                walk(&mut up.delete_predicate, cx)?;
            }
            MergeAction::Insert(ins) => {
                let MergeInsertKind::Values(v) = &mut ins.kind else {
                    return Err(Refusal::unsupported("MERGE INSERT without VALUES"));
                };
                let mut cols = Vec::new();
                for c in &ins.columns {
                    match names::parts(c)?.as_slice() {
                        [one] => cols.push(one.clone()),
                        _ => return Err(Refusal::unsupported(format!("INSERT column {c}"))),
                    }
                }
                if cols.is_empty() {
                    return Err(Refusal::unsupported("MERGE INSERT needs a column list"));
                }
                let pos = cols.iter().position(|c| *c == t.column);
                inject_rows(&mut v.rows, cols.len(), pos, &t.column, cx)?;
                walk(v, cx)?;
                walk(&mut ins.insert_predicate, cx)?;
                if pos.is_none() {
                    ins.columns.push(ident(&t.column).into());
                }
            }
            MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
        }
    }
    Ok(())
}
