//! What a statement does, for policy plugins: its operation, every table it touches (read or
//! written) with the columns it names, its top-level literal `LIMIT`, and every write nested in
//! it (`nested.rs`: writable CTEs, `ON CONFLICT DO UPDATE`, MERGE actions). Pure: no I/O.
//!
//! Invariant: the table list is never smaller than the truth. An unqualified column in a
//! statement over several tables is listed for each of them; `*` stands for every column and
//! is listed wherever whole rows are read (`SELECT *`, `t.*`, the row itself as a value:
//! `SELECT t`, `row_to_json(t)`, `t::text`, `COPY t TO`). A table written anywhere in the
//! statement is listed as written. Names of CTEs are not tables and are left out. Text that
//! does not parse is an error (the caller refuses it), never an empty analysis.

use std::collections::BTreeSet;

use sqlparser::ast::{
    CopySource, Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query, Select,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableObject, Value, Visit,
};

/// Why a statement could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    #[error("cannot parse SQL: {0}")]
    Parse(String),
}

/// The kind of statement (mirrors `operation` in `plugins/wit/policy.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Truncate,
    Copy,
    Ddl,
    Utility,
    Other,
}

/// How a statement uses a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// One table a statement touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAccess {
    /// As written, or "" when unqualified.
    pub schema: String,
    pub name: String,
    pub access: Access,
    /// Named columns (sorted, lower-cased unless quoted), `*` for a wildcard.
    pub columns: Vec<String>,
}

/// The analysis of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    pub operation: Operation,
    pub tables: Vec<TableAccess>,
    /// Top-level `LIMIT n` when `n` is a literal.
    pub limit: Option<u64>,
    /// Each write nested in the statement, analysed as a statement of its own (its operation
    /// is the write's: a `DELETE` in a `WITH` is a `Delete`, `ON CONFLICT DO UPDATE` an
    /// `Update`, a MERGE's `WHEN … THEN DELETE` a `Delete`). Empty in the parts themselves.
    pub nested: Vec<StatementInfo>,
}

/// Parses `sql` (PostgreSQL dialect) and analyses each statement in it.
pub fn analyze(sql: &str) -> Result<Vec<StatementInfo>, AnalyzeError> {
    super::limits::with_stack_for(sql, || {
        let stmts = super::rewrite::parse(sql).map_err(|e| AnalyzeError::Parse(e.to_string()))?;
        Ok(stmts.iter().map(analyze_statement).collect())
    })
    .unwrap_or_else(|e| Err(AnalyzeError::Parse(e.to_string())))
}

/// Analyses one parsed statement, its nested writes included.
pub fn analyze_statement(stmt: &Statement) -> StatementInfo {
    let mut c = Collector::default();
    let _ = stmt.visit(&mut c);
    let nested = nested::writes(stmt, &c.ctes);
    let also_written: Vec<(String, String)> = nested
        .iter()
        .flat_map(|p| p.tables.iter())
        .filter(|t| t.access == Access::Write)
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect();
    let mut info = analyze_as(stmt, c, operation(stmt), &also_written, &BTreeSet::new());
    info.nested = nested;
    info
}

/// The analysis of `stmt` as an `op` (its own kind, or one of its implicit writes), whose
/// walk `c` is done, listing `also_written` as written and leaving out `outer_ctes` (names
/// of the enclosing statement's CTEs). No nested parts.
fn analyze_as(
    stmt: &Statement,
    mut c: Collector,
    op: Operation,
    also_written: &[(String, String)],
    outer_ctes: &BTreeSet<String>,
) -> StatementInfo {
    // COPY's table and column list are not visited as expressions.
    if let Statement::Copy {
        source: CopySource::Table {
            table_name,
            columns,
        },
        ..
    } = stmt
    {
        let n = split_name(table_name);
        if !c.relations.contains(&n) {
            c.relations.push(n);
        }
        // Without a column list, COPY reads (or writes) whole rows.
        if columns.is_empty() {
            c.bare.insert("*".into());
        }
        c.bare.extend(columns.iter().map(norm));
    }
    let mut writes = write_targets(stmt);
    writes.extend_from_slice(also_written);
    let mut tables: Vec<TableAccess> = Vec::new();
    for (schema, name) in c.relations.iter() {
        if schema.is_empty() && (c.ctes.contains(name) || outer_ctes.contains(name)) {
            continue;
        }
        // Schema changes count as writes to every table they name.
        let written = op == Operation::Ddl || writes.iter().any(|(s, n)| s == schema && n == name);
        // A write target is also read when the statement names its columns outside SET/VALUES;
        // conservatively, UPDATE/DELETE/MERGE targets (and an upsert's) are read and written.
        let also_read = !written || op != Operation::Insert || nested::upserts(stmt);
        let columns = c.columns_of(schema, name);
        if written {
            tables.push(table(schema, name, Access::Write, columns.clone()));
        }
        if also_read {
            tables.push(table(schema, name, Access::Read, columns));
        }
    }
    StatementInfo {
        operation: op,
        tables,
        limit: match stmt {
            Statement::Query(q) => literal_limit(q),
            _ => None,
        },
        nested: Vec::new(),
    }
}

fn table(schema: &str, name: &str, access: Access, columns: Vec<String>) -> TableAccess {
    TableAccess {
        schema: schema.into(),
        name: name.into(),
        access,
        columns,
    }
}

/// The kind of a statement, as PostgreSQL's command tag names it.
fn operation(stmt: &Statement) -> Operation {
    match stmt {
        Statement::Query(_) => Operation::Select,
        Statement::Insert(_) => Operation::Insert,
        Statement::Update(_) => Operation::Update,
        Statement::Delete(_) => Operation::Delete,
        Statement::Merge(_) => Operation::Merge,
        Statement::Truncate(_) => Operation::Truncate,
        Statement::Copy { .. } => Operation::Copy,
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateView(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateFunction(_)
        | Statement::AlterTable(_)
        | Statement::Drop { .. } => Operation::Ddl,
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::LISTEN { .. }
        | Statement::NOTIFY { .. }
        | Statement::UNLISTEN { .. }
        | Statement::Discard { .. } => Operation::Utility,
        _ => Operation::Other,
    }
}

/// The tables a statement writes, as (schema, name).
fn write_targets(stmt: &Statement) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |n: &ObjectName| out.push(split_name(n));
    match stmt {
        Statement::Insert(i) => {
            if let TableObject::TableName(n) = &i.table {
                push(n);
            }
        }
        Statement::Update(u) => {
            if let TableFactor::Table { name, .. } = &u.table.relation {
                push(name);
            }
        }
        Statement::Delete(d) => {
            d.tables.iter().for_each(&mut push);
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
            for t in from {
                if let TableFactor::Table { name, .. } = &t.relation {
                    push(name);
                }
            }
        }
        Statement::Merge(m) => {
            if let TableFactor::Table { name, .. } = &m.table {
                push(name);
            }
        }
        Statement::Truncate(t) => t.table_names.iter().for_each(|t| push(&t.name)),
        Statement::Copy {
            source: CopySource::Table { table_name, .. },
            to: false,
            ..
        } => push(table_name),
        _ => {}
    }
    out
}

fn literal_limit(q: &Query) -> Option<u64> {
    use sqlparser::ast::LimitClause;
    let limit = match q.limit_clause.as_ref()? {
        LimitClause::LimitOffset { limit, .. } => limit.as_ref()?,
        LimitClause::OffsetCommaLimit { limit, .. } => limit,
    };
    match limit {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Lower-cases an unquoted identifier, as PostgreSQL does.
pub fn norm(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// (schema, name) of a table name; the schema is "" when unqualified. For longer names
/// (`db.schema.table`) the last two parts are used.
pub fn split_name(n: &ObjectName) -> (String, String) {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => norm(i),
                other => other.to_string(),
            })
            .collect();
    match parts.as_slice() {
        [] => (String::new(), String::new()),
        [name] => (String::new(), name.clone()),
        [.., schema, name] => (schema.clone(), name.clone()),
    }
}

/// The table or alias of `q.*` (its last name part; "" for expression wildcards).
pub fn wildcard_qualifier(kind: &SelectItemQualifiedWildcardKind) -> String {
    match kind {
        SelectItemQualifiedWildcardKind::ObjectName(n) => split_name(n).1,
        SelectItemQualifiedWildcardKind::Expr(_) => String::new(),
    }
}

/// Whether the query is one plain SELECT (no set operation) — the only shape masks apply to.
pub fn plain_select(q: &Query) -> Option<&Select> {
    match q.body.as_ref() {
        SetExpr::Select(s) => Some(s),
        _ => None,
    }
}

mod collect;
mod nested;

use collect::Collector;

#[cfg(test)]
mod tests;
