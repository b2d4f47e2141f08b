//! Queries: WITH (CTE scoping as PostgreSQL does it), set operations, SELECT clauses, FROM
//! items and joins. Each tenant-table reference becomes
//! `(SELECT * FROM schema.t WHERE org_id = <tenant>) AS t`, which keeps outer-join semantics
//! and which PostgreSQL flattens back into an index scan; expressions go through `walk`.

use sqlparser::ast::{
    JoinOperator, ObjectName, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, TableAlias, TableFactor,
    TableWithJoins,
};

use super::build::{select_query, star, table_factor, tenant_eq, Cx};
use super::catalog::{TableInfo, Target};
use super::names::{self, last_ident, norm, qualified};
pub(crate) use super::walk::walk;
use super::{dml, Refusal};

type R = Result<(), Refusal>;

/// `(SELECT * FROM schema.t WHERE <tenant column> = <tenant>)` for a confined table.
fn confined(t: &TableInfo, column: &str, cx: &mut Cx) -> Box<Query> {
    let from = table_factor(qualified(&t.schema, &t.name));
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
    for twj in &mut s.from {
        rewrite_twj(twj, cx)?;
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
    walk(&mut s.named_window, cx)
}

/// Confines a FROM item and its joins.
pub(crate) fn rewrite_twj(twj: &mut TableWithJoins, cx: &mut Cx) -> R {
    rewrite_factor(&mut twj.relation, cx)?;
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
        rewrite_factor(&mut join.relation, cx)?;
        walk(&mut join.join_operator, cx)?;
    }
    Ok(())
}

/// Confines one FROM item.
pub(crate) fn rewrite_factor(f: &mut TableFactor, cx: &mut Cx) -> R {
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
                || inheritance.is_some()
            {
                return Err(Refusal::unsupported(format!(
                    "table modifier on {name} (ONLY, TABLESAMPLE, hints) is not supported"
                )));
            }
            if args.is_some() {
                // A set-returning function call; its name is checked by `functions`.
                return walk(args, cx);
            }
            let parts = names::parts(name)?;
            if let [single] = parts.as_slice() {
                if cx.is_cte(single) {
                    return Ok(());
                }
            }
            let t = match cx.catalog.resolve(&parts)? {
                Target::System(q) => {
                    *name = q;
                    return Ok(());
                }
                Target::Table(t) => t,
            };
            let Some(column) = t.tenant_column() else {
                *name = qualified(&t.schema, &t.name);
                return Ok(());
            };
            let alias = match alias.take() {
                Some(a) => a,
                None => TableAlias {
                    explicit: true,
                    name: last_ident(name)?,
                    columns: vec![],
                    at: None,
                },
            };
            let sub = confined(t, column, cx);
            *f = TableFactor::Derived {
                lateral: false,
                subquery: sub,
                alias: Some(alias),
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
