//! Writes other than INSERT (see `insert`): UPDATE and DELETE (target guarded by a tenant
//! predicate, FROM/USING confined) and MERGE (join guarded, inserts injected); resolution of
//! write targets, which refuses system and global tables. The tenant column is never assigned.

use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr, FromTable, Ident, Merge, MergeAction,
    MergeClauseKind, MergeInsertKind, MergeUpdateKind, ObjectName, Statement, TableAlias,
    TableFactor, Update, UpdateTableFromKind, Value,
};

use super::build::{and, tenant_eq, Cx};
use super::catalog::{TableInfo, TableKind, Target};
use super::insert::inject_rows;
use super::names::{self, ident, last_ident, qualified};
use super::query::{rewrite_factor, rewrite_twj, walk};
use super::Refusal;

type R = Result<(), Refusal>;

/// Rewrites a data-modifying statement (top level or inside a writable CTE).
pub(crate) fn rewrite_dml(stmt: &mut Statement, cx: &mut Cx) -> R {
    match stmt {
        Statement::Insert(i) => super::insert::insert(i, cx),
        Statement::Update(u) => update(u, cx),
        Statement::Delete(d) => delete(d, cx),
        Statement::Merge(m) => merge(m, cx),
        other => Err(Refusal::unsupported(format!(
            "statement {other} is not supported here"
        ))),
    }
}

/// What a write target resolved to.
pub(crate) struct WriteTarget<'a> {
    pub table: &'a TableInfo,
    pub column: String,
    /// How the target row is referenced in predicates (its alias or its bare name).
    pub reference: Ident,
}

/// Resolves a write target, qualifying `name`; refuses system, global and (for `op` other
/// than UPDATE) organizations tables.
pub(crate) fn write_target<'a>(
    name: &mut ObjectName,
    alias: Option<&Ident>,
    op: &str,
    cx: &Cx<'a>,
) -> Result<WriteTarget<'a>, Refusal> {
    let parts = names::parts(name)?;
    let table = match cx.catalog.resolve(&parts)? {
        Target::Table(t) => t,
        Target::System(q, _) => {
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

pub(crate) fn refuse_tenant_assignment(assignments: &[Assignment], column: &str) -> R {
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
