//! Queries: WITH (CTE scoping as PostgreSQL does it), set operations, SELECT clauses, FROM
//! items and joins. Each tenant-table reference becomes
//! `(SELECT * FROM schema.t WHERE org_id = <tenant>) AS t`, which keeps outer-join semantics
//! and which PostgreSQL flattens back into an index scan. A SELECT whose FROM is only plain
//! tables joined by inner joins gets the cheaper flat form instead — `FROM schema.t AS t WHERE
//! t.org_id = <tenant> AND (…)` — the same rows (an inner join filters after joining exactly as
//! before) for less work in PostgreSQL's parser and planner. Expressions go through `walk`.

use sqlparser::ast::{
    Expr, JoinOperator, ObjectName, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableAlias, TableFactor,
    TableInheritance, TableWithJoins,
};

use super::build::{and, select_query, star, table_factor, tenant_eq, Cx};
use super::catalog::{TableInfo, Target};
use super::names::{self, last_ident, norm, qualified};
pub(crate) use super::walk::walk;
use super::{dml, Refusal};

type R = Result<(), Refusal>;

/// `(SELECT * FROM schema.t WHERE <tenant column> = <tenant>)` for a confined table.
/// With `only` (`FROM ONLY t`), the table's inheritance children stay out, as written.
fn confined(t: &TableInfo, column: &str, only: bool, cx: &mut Cx) -> Box<Query> {
    let mut from = table_factor(qualified(&t.schema, &t.name));
    if let TableFactor::Table { inheritance, .. } = &mut from {
        *inheritance = only_marker(only);
    }
    let filter = tenant_eq(None, column, cx);
    Box::new(select_query(vec![star()], from, Some(filter)))
}

/// Confines a query and everything nested in it.
pub(crate) fn rewrite_query(q: &mut Query, cx: &mut Cx) -> R {
    let mark = cx.ctes.len();
    let res = rewrite_query_scoped(q, cx);
    cx.ctes.truncate(mark);
    res
}

fn rewrite_query_scoped(q: &mut Query, cx: &mut Cx) -> R {
    if q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return Err(Refusal::unsupported(
            "query clause is not PostgreSQL syntax",
        ));
    }
    if let Some(with) = &mut q.with {
        let names = with
            .cte_tables
            .iter()
            .map(|c| norm(&c.alias.name))
            .collect::<Result<Vec<_>, _>>()?;
        // WITH RECURSIVE: every CTE sees every other; otherwise only the earlier ones, so a
        // CTE named like a table still reads the table inside its own body.
        if with.recursive {
            cx.ctes.extend(names.iter().cloned());
        }
        for (cte, name) in with.cte_tables.iter_mut().zip(names) {
            if cte.from.is_some() {
                return Err(Refusal::unsupported("CTE FROM clause is not PostgreSQL"));
            }
            rewrite_query(&mut cte.query, cx)?;
            if !with.recursive {
                cx.ctes.push(name);
            }
        }
    }
    rewrite_set_expr(&mut q.body, cx)?;
    if let Some(ob) = &mut q.order_by {
        walk(ob, cx)?;
    }
    if let Some(l) = &mut q.limit_clause {
        walk(l, cx)?;
    }
    if let Some(f) = &mut q.fetch {
        walk(f, cx)?;
    }
    Ok(())
}

fn rewrite_set_expr(body: &mut SetExpr, cx: &mut Cx) -> R {
    match body {
        SetExpr::Select(s) => rewrite_select(s, cx),
        SetExpr::Query(q) => rewrite_query(q, cx),
        SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } => {
            if matches!(op, SetOperator::Minus)
                || !matches!(
                    set_quantifier,
                    SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None
                )
            {
                return Err(Refusal::unsupported(format!("{op} {set_quantifier}")));
            }
            rewrite_set_expr(left, cx)?;
            rewrite_set_expr(right, cx)
        }
        SetExpr::Values(v) => walk(v, cx),
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            dml::rewrite_dml(s, cx)
        }
        SetExpr::Table(t) => {
            // `TABLE t` is `SELECT * FROM t`.
            let mut parts = vec![];
            parts.extend(t.schema_name.clone());
            parts.extend(t.table_name.clone());
            let from = table_factor(ObjectName::from(parts));
            let q = select_query(vec![star()], from, None);
            *body = *q.body;
            rewrite_set_expr(body, cx)
        }
    }
}

fn rewrite_select(s: &mut Select, cx: &mut Cx) -> R {
    if s.into.is_some() {
        return Err(Refusal::policy("SELECT INTO creates a table (DDL)"));
    }
    if !s.optimizer_hints.is_empty()
        || s.select_modifiers.is_some()
        || s.top.is_some()
        || s.exclude.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || !matches!(s.flavor, SelectFlavor::Standard)
    {
        return Err(Refusal::unsupported(
            "SELECT clause is not PostgreSQL syntax",
        ));
    }
    // The flat form's tenant filters, when every FROM item allows it.
    let mut guards = s.from.iter().all(is_plain_inner).then(Vec::new);
    for twj in &mut s.from {
        rewrite_joins(twj, cx, guards.as_mut())?;
    }
    for item in &mut s.projection {
        if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) =
            item
        {
            let ps = names::parts(n)?;
            if ps.len() == 2 && matches!(cx.catalog.resolve(&ps), Ok(Target::Table(_))) {
                *n = ObjectName::from(vec![last_ident(n)?]);
            }
        }
        walk(item, cx)?;
    }
    walk(&mut s.distinct, cx)?;
    walk(&mut s.selection, cx)?;
    walk(&mut s.group_by, cx)?;
    walk(&mut s.having, cx)?;
    walk(&mut s.named_window, cx)?;
    // After the walk: the filters are Orgwall's own, not the client's expressions.
    let all = guards
        .into_iter()
        .flatten()
        .reduce(|all, g| Expr::BinaryOp {
            left: Box::new(all),
            op: sqlparser::ast::BinaryOperator::And,
            right: Box::new(g),
        });
    if let Some(all) = all {
        s.selection = Some(and(all, s.selection.take()));
    }
    Ok(())
}

/// Plain tables (no functions, subqueries or nested joins) joined by inner or cross joins
/// only: filtering the joined rows by each table's tenant equals filtering each table first.
fn is_plain_inner(twj: &TableWithJoins) -> bool {
    let plain = |f: &TableFactor| matches!(f, TableFactor::Table { args: None, .. });
    plain(&twj.relation)
        && twj.joins.iter().all(|j| {
            plain(&j.relation)
                && matches!(
                    j.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                )
        })
}

/// Confines a FROM item and its joins.
pub(crate) fn rewrite_twj(twj: &mut TableWithJoins, cx: &mut Cx) -> R {
    rewrite_joins(twj, cx, None)
}

/// Confines a FROM item and its joins; with `guards`, tenant tables take the flat form and
/// their filters are collected there.
fn rewrite_joins(twj: &mut TableWithJoins, cx: &mut Cx, mut guards: Option<&mut Vec<Expr>>) -> R {
    confine_factor(&mut twj.relation, cx, guards.as_deref_mut())?;
    for join in &mut twj.joins {
        let ok = matches!(
            join.join_operator,
            JoinOperator::Join(_)
                | JoinOperator::Inner(_)
                | JoinOperator::Left(_)
                | JoinOperator::LeftOuter(_)
                | JoinOperator::Right(_)
                | JoinOperator::RightOuter(_)
                | JoinOperator::FullOuter(_)
                | JoinOperator::CrossJoin(_)
        );
        if join.global || !ok {
            return Err(Refusal::unsupported("join kind is not PostgreSQL syntax"));
        }
        confine_factor(&mut join.relation, cx, guards.as_deref_mut())?;
        walk(&mut join.join_operator, cx)?;
    }
    Ok(())
}

/// Confines one FROM item.
pub(crate) fn rewrite_factor(f: &mut TableFactor, cx: &mut Cx) -> R {
    confine_factor(f, cx, None)
}

/// Confines one FROM item; with `guards`, a tenant table becomes `schema.t AS t` and its
/// filter `t.<column> = <tenant>` is pushed there (not when the alias renames columns: the
/// filter could then name another column).
fn confine_factor(f: &mut TableFactor, cx: &mut Cx, guards: Option<&mut Vec<Expr>>) -> R {
    match f {
        TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            partitions,
            json_path,
            sample,
            index_directives,
            inheritance,
            ..
        } => {
            if !with_hints.is_empty()
                || version.is_some()
                || !partitions.is_empty()
                || json_path.is_some()
                || sample.is_some()
                || !index_directives.is_empty()
            {
                return Err(Refusal::unsupported(format!(
                    "table modifier on {name} (ONLY, TABLESAMPLE, hints) is not supported"
                )));
            }
            if args.is_some() {
                if inheritance.is_some() {
                    return Err(Refusal::unsupported("ONLY before a function call"));
                }
                // A set-returning function call; its name is checked by `functions`.
                return walk(args, cx);
            }
            // `ONLY t` is kept wherever `t` ends up; `t *` is plain `t`.
            let only = matches!(inheritance, Some(TableInheritance::Only { .. }));
            *inheritance = only_marker(only);
            let parts = names::parts(name)?;
            if let [single] = parts.as_slice() {
                if cx.is_cte(single) {
                    return Ok(());
                }
            }
            let t = match cx.catalog.resolve(&parts)? {
                Target::System(q, None) => {
                    *name = q;
                    return Ok(());
                }
                Target::System(q, Some(filter)) => {
                    let alias = alias_or_name(alias, name)?;
                    *f = filtered(&q, filter, alias)?;
                    return Ok(());
                }
                Target::Table(t) => t,
            };
            let Some(column) = t.tenant_column() else {
                *name = qualified(&t.schema, &t.name);
                return Ok(());
            };
            let taken = alias_or_name(alias, name)?;
            if let Some(guards) = guards.filter(|_| taken.columns.is_empty()) {
                guards.push(tenant_eq(Some(taken.name.clone()), column, cx));
                *name = qualified(&t.schema, &t.name);
                *alias = Some(taken);
                return Ok(());
            }
            let sub = confined(t, column, only, cx);
            *f = TableFactor::Derived {
                lateral: false,
                subquery: sub,
                alias: Some(taken),
                sample: None,
            };
            Ok(())
        }
        TableFactor::Derived {
            subquery, sample, ..
        } => {
            if sample.is_some() {
                return Err(Refusal::unsupported("TABLESAMPLE is not supported"));
            }
            rewrite_query(subquery, cx)
        }
        TableFactor::Function { args, .. } => walk(args, cx),
        TableFactor::UNNEST { array_exprs, .. } => walk(array_exprs, cx),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => rewrite_twj(table_with_joins, cx),
        other => Err(Refusal::unsupported(format!(
            "FROM item {other} is not supported"
        ))),
    }
}

/// `(SELECT * FROM <q> WHERE <filter> OFFSET 0) AS alias`: the part of a system relation a
/// tenant sees. `OFFSET 0` keeps PostgreSQL from pushing the tenant's own conditions into the
/// subquery, where they could run on the rows the filter leaves out (`setting::int` would show
/// a hidden setting in its error message).
fn filtered(q: &ObjectName, filter: &str, alias: TableAlias) -> Result<TableFactor, Refusal> {
    let sql = format!("SELECT * FROM {q} WHERE {filter} OFFSET 0");
    let subquery = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Refusal::syntax(format!("cannot build the filtered {q}: {e}")))?;
    Ok(TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias),
        sample: None,
    })
}

fn only_marker(only: bool) -> Option<TableInheritance> {
    only.then_some(TableInheritance::Only {
        parenthesized: false,
    })
}

/// The alias a FROM item is taken out with, or `AS <its name>` when it has none (the confined
/// form keeps the name a query refers to it by).
fn alias_or_name(alias: &mut Option<TableAlias>, name: &ObjectName) -> Result<TableAlias, Refusal> {
    match alias.take() {
        Some(a) => Ok(a),
        None => Ok(TableAlias {
            explicit: true,
            name: last_ident(name)?,
            columns: vec![],
            at: None,
        }),
    }
}
