//! Queries: WITH (CTE scoping as PostgreSQL does it), set operations, SELECT clauses, FROM
//! items and joins, and every subquery inside an expression. Each tenant-table reference
//! becomes `(SELECT * FROM schema.t WHERE org_id = <tenant>) AS t`, which keeps outer-join
//! semantics and which PostgreSQL flattens back into an index scan.

use std::ops::ControlFlow;

use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, JoinOperator, ObjectName, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier,
    Statement, TableAlias, TableFactor, TableWithJoins, Values, VisitMut, VisitorMut,
    WildcardAdditionalOptions,
};

use super::catalog::{Catalog, TableInfo, Target};
use super::names::{self, ident, last_ident, norm, qualified};
use super::{dml, tenant_expr, Refusal};

type R = Result<(), Refusal>;

/// Rewrite state for one SQL string: the CTE names in scope and what the template must record.
pub(crate) struct Cx<'a> {
    pub catalog: &'a Catalog,
    /// Visible CTE names, innermost last; a query truncates back to its mark when it ends.
    ctes: Vec<String>,
    /// How many tenant markers were placed.
    pub holes: usize,
    pub param_checks: Vec<usize>,
    pub literal_checks: Vec<String>,
}

impl<'a> Cx<'a> {
    pub fn new(catalog: &'a Catalog) -> Self {
        Cx {
            catalog,
            ctes: Vec::new(),
            holes: 0,
            param_checks: Vec::new(),
            literal_checks: Vec::new(),
        }
    }

    /// The tenant value (a marker the template fills in).
    pub fn tenant(&mut self) -> Expr {
        self.holes += 1;
        tenant_expr()
    }

    fn is_cte(&self, name: &str) -> bool {
        self.ctes.iter().any(|c| c == name)
    }
}

/// `a AND (b)`.
pub(crate) fn and(guard: Expr, rest: Option<Expr>) -> Expr {
    match rest {
        None => guard,
        Some(e) => Expr::BinaryOp {
            left: Box::new(guard),
            op: BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(e))),
        },
    }
}

/// `qualifier.column = <tenant>`, or `column = <tenant>` without a qualifier.
pub(crate) fn tenant_eq(qualifier: Option<Ident>, column: &str, cx: &mut Cx) -> Expr {
    let col = match qualifier {
        Some(q) => Expr::CompoundIdentifier(vec![q, ident(column)]),
        None => Expr::Identifier(ident(column)),
    };
    Expr::BinaryOp {
        left: Box::new(col),
        op: BinaryOperator::Eq,
        right: Box::new(cx.tenant()),
    }
}

/// A bare table reference `name`.
pub(crate) fn table_factor(name: ObjectName) -> TableFactor {
    TableFactor::Table {
        name,
        alias: None,
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_directives: vec![],
        inheritance: None,
    }
}

/// `SELECT <projection> FROM <from> [WHERE <selection>]` as a query.
pub(crate) fn select_query(
    projection: Vec<SelectItem>,
    from: TableFactor,
    selection: Option<Expr>,
) -> Query {
    let select = Select {
        select_token: AttachedToken::empty(),
        optimizer_hints: vec![],
        distinct: None,
        select_modifiers: None,
        top: None,
        top_before_distinct: false,
        projection,
        exclude: None,
        into: None,
        from: vec![TableWithJoins {
            relation: from,
            joins: vec![],
        }],
        lateral_views: vec![],
        prewhere: None,
        selection,
        connect_by: vec![],
        group_by: GroupByExpr::Expressions(vec![], vec![]),
        cluster_by: vec![],
        distribute_by: vec![],
        sort_by: vec![],
        having: None,
        named_window: vec![],
        qualify: None,
        window_before_qualify: false,
        value_table_mode: None,
        flavor: SelectFlavor::Standard,
    };
    query_of(SetExpr::Select(Box::new(select)))
}

pub(crate) fn query_of(body: SetExpr) -> Query {
    Query {
        with: None,
        body: Box::new(body),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

/// A query with no expressions and no tables (`VALUES` with no rows), used as a stand-in.
pub(crate) fn placeholder() -> Query {
    query_of(SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: vec![],
    }))
}

pub(crate) fn star() -> SelectItem {
    SelectItem::Wildcard(WildcardAdditionalOptions::default())
}

/// `(SELECT * FROM schema.t WHERE <tenant column> = <tenant>)` for a confined table.
fn confined(t: &TableInfo, column: &str, cx: &mut Cx) -> Query {
    let from = table_factor(qualified(&t.schema, &t.name));
    let filter = tenant_eq(None, column, cx);
    select_query(vec![star()], from, Some(filter))
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
                subquery: Box::new(sub),
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

/// Walks an expression-bearing node: every subquery in it is confined in place, and any
/// table reference outside a query is refused.
pub(crate) fn walk<T: VisitMut>(node: &mut T, cx: &mut Cx) -> R {
    let mut w = Walker {
        cx,
        stash: Vec::new(),
    };
    match node.visit(&mut w) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Walker<'c, 'a> {
    cx: &'c mut Cx<'a>,
    /// Rewritten subqueries waiting to be put back after the visitor passes their stand-in.
    stash: Vec<Query>,
}

impl VisitorMut for Walker<'_, '_> {
    type Break = Refusal;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<Refusal> {
        // Take the subquery out, confine it with our own scoping, and let the generic visitor
        // descend into an empty stand-in; `post_visit_query` puts the result back.
        let mut taken = std::mem::replace(q, placeholder());
        if let Err(e) = rewrite_query(&mut taken, self.cx) {
            return ControlFlow::Break(e);
        }
        self.stash.push(taken);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<Refusal> {
        if let Some(t) = self.stash.pop() {
            *q = t;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "table reference {f} in an unsupported position"
        )))
    }

    fn pre_visit_relation(&mut self, r: &mut ObjectName) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "table reference {r} in an unsupported position"
        )))
    }

    fn pre_visit_statement(&mut self, s: &mut Statement) -> ControlFlow<Refusal> {
        ControlFlow::Break(Refusal::unsupported(format!(
            "nested statement {s} is not supported"
        )))
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Refusal> {
        // `public.users.email` names a FROM item that is now the derived table `users`.
        if let Expr::CompoundIdentifier(ids) = e {
            if ids.len() >= 3 {
                let ps: Result<Vec<String>, _> = ids[..2].iter().map(norm).collect();
                if let Ok(ps) = ps {
                    if matches!(self.cx.catalog.resolve(&ps), Ok(Target::Table(_))) {
                        ids.remove(0);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}
