//! An independent checker of the rewriter's invariant, and a property test that feeds it
//! generated queries over the seed schema. The checker re-parses the rendered SQL and walks
//! it with sqlparser's visitor, sharing no code with the rewriter: every tenant-table reference
//! must be `(SELECT * FROM schema.t WHERE <col> = 'org_a')`, or a table of a SELECT whose FROM
//! has inner joins only and whose WHERE begins with `t.<col> = 'org_a' AND …` for its name;
//! every write target guarded, every unqualified relation a CTE.

use std::collections::HashSet;
use std::ops::ControlFlow;

use proptest::prelude::*;
use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, Ident, JoinOperator, ObjectName, OnConflictAction, OnInsert,
    Select, SelectItem, SetExpr, Statement, TableFactor, TableObject, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::{rewrite, Catalog, TableKind};

const ORG: &str = "org_a";

/// Problems found in rendered SQL; empty means every tenant reference is confined.
pub(crate) fn violations(sql: &str, cat: &Catalog) -> Vec<String> {
    let stmts = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) => return vec![format!("output does not parse: {e}")],
    };
    let mut v = Checker {
        cat,
        ctes: HashSet::new(),
        problems: vec![],
        relations: 0,
        accounted: 0,
    };
    for s in &stmts {
        // Collect CTE names first (conservatively: any CTE anywhere in the statement).
        let _ = s.visit(&mut CteNames(&mut v.ctes));
        let _ = s.visit(&mut v);
    }
    if v.relations != v.accounted {
        v.problems.push(format!(
            "{} relation(s) in positions the checker does not recognise",
            v.relations - v.accounted
        ));
    }
    v.problems
}

struct CteNames<'a>(&'a mut HashSet<String>);

impl Visitor for CteNames<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
        if let Some(w) = &q.with {
            for c in &w.cte_tables {
                self.0.insert(fold(&c.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

fn fold(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_ascii_lowercase(),
    }
}

fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter().filter_map(|p| p.as_ident().map(fold)).collect()
}

struct Checker<'a> {
    cat: &'a Catalog,
    ctes: HashSet<String>,
    problems: Vec<String>,
    relations: usize,
    accounted: usize,
}

enum Kind {
    Tenant(String),
    Free,
    Bad(String),
}

impl Checker<'_> {
    fn kind(&self, n: &ObjectName) -> Kind {
        match name_parts(n).as_slice() {
            [one] if self.ctes.contains(one) => Kind::Free,
            [schema, _] if schema == "pg_catalog" || schema == "information_schema" => Kind::Free,
            [schema, name] => match self.cat.table(schema, name).map(|t| &t.kind) {
                Some(TableKind::Tenant { column }) => Kind::Tenant(column.clone()),
                Some(TableKind::Organizations) => Kind::Tenant("id".into()),
                Some(TableKind::Global) => Kind::Free,
                None => Kind::Bad(format!("unknown relation {n}")),
            },
            _ => Kind::Bad(format!("unqualified or odd relation {n}")),
        }
    }

    fn tables_in<'s>(f: &'s TableFactor, out: &mut Vec<&'s TableFactor>) {
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                Self::tables_in(&table_with_joins.relation, out);
                for j in &table_with_joins.joins {
                    Self::tables_in(&j.relation, out);
                }
            }
            other => out.push(other),
        }
    }
}

fn is_tenant_eq(e: &Expr, column: &str, qualified: bool) -> bool {
    let Expr::BinaryOp { left, op, right } = e else {
        return false;
    };
    let col_ok = match left.as_ref() {
        Expr::Identifier(i) => !qualified && fold(i) == column,
        Expr::CompoundIdentifier(ids) => {
            qualified && ids.len() == 2 && ids.last().is_some_and(|i| fold(i) == column)
        }
        _ => false,
    };
    let val_ok = matches!(right.as_ref(), Expr::Value(v)
        if v.value == Value::SingleQuotedString(ORG.into()));
    col_ok && *op == BinaryOperator::Eq && val_ok
}

fn is_guarded(sel: Option<&Expr>, column: &str) -> bool {
    match sel {
        Some(e) if is_tenant_eq(e, column, true) => true,
        Some(Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        }) => is_tenant_eq(left, column, true) && matches!(right.as_ref(), Expr::Nested(_)),
        _ => false,
    }
}

/// `(q, c)` of each `q.c = 'org_a'` conjunct at the top of a WHERE shaped
/// `g AND g … AND (rest)` (or `g AND … g`): rows failing any of them are never returned.
fn top_guards(sel: Option<&Expr>) -> Vec<(String, String)> {
    let guard = |e: &Expr| match e {
        Expr::BinaryOp { left, .. } => match left.as_ref() {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let col = fold(&ids[1]);
                is_tenant_eq(e, &col, true).then(|| (fold(&ids[0]), col))
            }
            _ => None,
        },
        _ => None,
    };
    let mut out = vec![];
    let mut cur = sel;
    if let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::And,
        right,
    }) = cur
    {
        if matches!(right.as_ref(), Expr::Nested(_)) {
            cur = Some(left);
        }
    }
    while let Some(e) = cur {
        if let Some(g) = guard(e) {
            out.push(g);
            break;
        }
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => match guard(right) {
                Some(g) => {
                    out.push(g);
                    cur = Some(left);
                }
                None => break,
            },
            _ => break,
        }
    }
    out
}

/// The flat form: `f` is a plain table of `s` (inner joins only, no nested joins) whose name or
/// column-less alias is guarded at the top of the WHERE.
fn is_flat_confinement(s: &Select, f: &TableFactor, column: &str) -> bool {
    let inner_only = s.from.iter().all(|t| {
        !matches!(t.relation, TableFactor::NestedJoin { .. })
            && t.joins.iter().all(|j| {
                !matches!(j.relation, TableFactor::NestedJoin { .. })
                    && matches!(
                        j.join_operator,
                        JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                    )
            })
    });
    let TableFactor::Table { name, alias, .. } = f else {
        return false;
    };
    let refname = match alias {
        Some(a) if !a.columns.is_empty() => return false,
        Some(a) => fold(&a.name),
        None => name_parts(name).last().cloned().unwrap_or_default(),
    };
    inner_only && top_guards(s.selection.as_ref()).contains(&(refname, column.to_string()))
}

fn is_confinement(s: &Select, column: &str) -> bool {
    matches!(s.projection.as_slice(), [SelectItem::Wildcard(_)])
        && s.from.len() == 1
        && s.from[0].joins.is_empty()
        && matches!(
            &s.from[0].relation,
            TableFactor::Table {
                alias: None,
                args: None,
                ..
            }
        )
        && s.selection
            .as_ref()
            .is_some_and(|e| is_tenant_eq(e, column, false))
        && s.having.is_none()
}

impl Visitor for Checker<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, _r: &ObjectName) -> ControlFlow<()> {
        self.relations += 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        let mut factors = vec![];
        for twj in &s.from {
            Checker::tables_in(&twj.relation, &mut factors);
            for j in &twj.joins {
                Checker::tables_in(&j.relation, &mut factors);
            }
        }
        for f in factors {
            let TableFactor::Table { name, args, .. } = f else {
                continue;
            };
            self.accounted += 1;
            if args.is_some() {
                continue; // a function call, checked by the function allow-list
            }
            match self.kind(name) {
                Kind::Free => {}
                Kind::Bad(p) => self.problems.push(p),
                Kind::Tenant(col) => {
                    if !is_confinement(s, &col) && !is_flat_confinement(s, f, &col) {
                        self.problems
                            .push(format!("{name} read without confinement"));
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        let mut target = |name: &ObjectName, guarded: &dyn Fn(&str) -> bool| {
            self.accounted += 1;
            match self.kind(name) {
                Kind::Tenant(col) if guarded(&col) => {}
                Kind::Tenant(_) => self.problems.push(format!("write to {name} unguarded")),
                _ => self.problems.push(format!("write to non-tenant {name}")),
            }
        };
        match st {
            Statement::Update(u) => {
                if let TableFactor::Table { name, .. } = &u.table.relation {
                    target(name, &|c| is_guarded(u.selection.as_ref(), c));
                }
            }
            Statement::Delete(d) => {
                if let FromTable::WithFromKeyword(f) = &d.from {
                    if let Some(TableFactor::Table { name, .. }) = f.first().map(|t| &t.relation) {
                        target(name, &|c| is_guarded(d.selection.as_ref(), c));
                    }
                }
            }
            Statement::Insert(i) => {
                if let TableObject::TableName(name) = &i.table {
                    target(name, &|c| insert_ok(i, c));
                }
            }
            Statement::Merge(m) => {
                if let TableFactor::Table { name, .. } = &m.table {
                    target(name, &|c| is_guarded(Some(&m.on), c));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn insert_ok(i: &sqlparser::ast::Insert, col: &str) -> bool {
    let Some(pos) = i
        .columns
        .iter()
        .position(|c| name_parts(c).last().is_some_and(|n| n == col))
    else {
        return false;
    };
    let rows_ok = match i.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(v)) => v.rows.iter().all(|r| match r.get(pos) {
            Some(Expr::Value(v)) => {
                matches!(&v.value,
                Value::SingleQuotedString(s) if s == ORG)
                    || matches!(v.value, Value::Placeholder(_))
            }
            Some(Expr::Cast { expr, .. }) => matches!(expr.as_ref(), Expr::Value(v)
                if v.value == Value::SingleQuotedString(ORG.into())),
            _ => false,
        }),
        Some(SetExpr::Select(s)) => {
            pos + 1 == i.columns.len()
                && matches!(s.projection.as_slice(), [SelectItem::Wildcard(_), SelectItem::UnnamedExpr(Expr::Value(v))]
                    if v.value == Value::SingleQuotedString(ORG.into()))
        }
        _ => false,
    };
    let conflict_ok = match &i.on {
        Some(OnInsert::OnConflict(oc)) => match &oc.action {
            OnConflictAction::DoUpdate(du) => is_guarded(du.selection.as_ref(), col),
            OnConflictAction::DoNothing => true,
        },
        _ => true,
    };
    rows_ok && conflict_ok
}

// ---- generated queries -------------------------------------------------------------------

const TABLES: &[&str] = &[
    "items",
    "users",
    "locations",
    "inventory_ledger",
    "count_sheets",
    "count_lines",
    "audit_logs",
    "feature_flags",
    "inventory_balances",
    "organizations",
    "public.items",
    "\"public\".\"users\"",
    "Items",
];

fn table() -> impl Strategy<Value = String> {
    (prop::sample::select(TABLES), prop::option::of("[a-c]"))
        .prop_map(|(t, a)| a.map_or(t.to_string(), |a| format!("{t} AS {a}")))
}

fn cond(q: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id = 'x'".to_string()),
        Just("org_id IS NULL OR true".to_string()),
        Just("org_id = 'org_b'".to_string()),
        q.clone().prop_map(|q| format!("EXISTS ({q})")),
        q.clone().prop_map(|q| format!("id IN ({q})")),
        q.prop_map(|q| format!("id = ANY ({q})")),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let leaf = table().prop_map(|t| format!("SELECT * FROM {t}"));
    leaf.prop_recursive(4, 24, 3, |inner| {
        let from = prop_oneof![
            table(),
            inner.clone().prop_map(|q| format!("({q}) AS s")),
            inner.clone().prop_map(|q| format!("LATERAL ({q}) AS l")),
        ];
        let join = prop_oneof![
            Just("JOIN"),
            Just("LEFT JOIN"),
            Just("RIGHT JOIN"),
            Just("FULL JOIN")
        ];
        prop_oneof![
            (table(), join, from.clone(), cond(inner.clone().boxed()))
                .prop_map(|(a, j, b, c)| format!("SELECT * FROM {a} {j} {b} ON {c}")),
            (from.clone(), cond(inner.clone().boxed()))
                .prop_map(|(f, c)| format!("SELECT count(*) FROM {f} WHERE {c} GROUP BY 1")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!(
                "SELECT id FROM ({a}) x UNION ALL SELECT id FROM ({b}) y"
            )),
            (inner.clone(), table())
                .prop_map(|(a, t)| format!("WITH c AS ({a}) SELECT * FROM c JOIN {t} ON true")),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| format!("WITH items AS ({a}) SELECT * FROM items, ({b}) z")),
            (table(), inner.clone()).prop_map(|(t, q)| format!(
                "SELECT (SELECT count(*) FROM ({q}) s) FROM {t} ORDER BY 1 LIMIT 3"
            )),
            (table(), cond(inner.clone().boxed()))
                .prop_map(|(t, c)| format!("UPDATE {t} SET active = true WHERE {c}")),
            (table(), cond(inner.boxed())).prop_map(|(t, c)| format!("DELETE FROM {t} WHERE {c}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn generated_queries_are_confined_or_refused(sql in query()) {
        let cat = Catalog::seed_for_tests();
        let direct = rewrite(&sql, &cat);
        // The literal-shaped template (what the planner serves for plain text with
        // literals) renders the same SQL as the direct rewrite.
        if let Some(lits) = super::shaped::literals_of(&sql) {
            if let Some(shape) = super::shaped::shape(&sql, &lits, &cat) {
                let via = shape.instantiate(&sql, &lits).render("org_a");
                prop_assert_eq!(direct.as_ref().map(|t| t.render("org_a")).ok(), Some(via));
            }
        }
        match direct {
            Ok(t) => {
                let out = t.render("org_a");
                let problems = violations(&out, &cat);
                prop_assert!(problems.is_empty(), "{sql}\n=> {out}\n{problems:?}");
            }
            Err(e) => prop_assert!(["42501", "0A000", "42601"].contains(&e.code), "{e:?}"),
        }
    }
}

#[test]
fn checker_catches_unconfined_sql() {
    let cat = Catalog::seed_for_tests();
    let bad = [
        "SELECT * FROM public.items",
        "SELECT * FROM items",
        "SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_b') AS items",
        "SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a' OR true) AS items",
        "SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS i JOIN public.users ON true",
        "UPDATE public.items SET a = 1 WHERE id = 'x'",
        "DELETE FROM public.items WHERE items.id = 'x' AND (true)",
        "INSERT INTO public.items (id) VALUES ('x')",
        "INSERT INTO public.items (id, org_id) VALUES ('x', 'org_b')",
        // The flat form: only top-level conjuncts for each table's own name, inner joins only,
        // and never through an alias that renames columns.
        "SELECT * FROM public.items AS items WHERE items.org_id = 'org_b'",
        "SELECT * FROM public.items AS items WHERE items.org_id = 'org_a' OR (true)",
        "SELECT * FROM public.items AS items WHERE (items.org_id = 'org_a' OR true) AND (true)",
        "SELECT * FROM public.items AS i WHERE items.org_id = 'org_a'",
        "SELECT * FROM public.items AS i(org_id) WHERE i.org_id = 'org_a'",
        "SELECT * FROM public.items AS i JOIN public.users AS u ON true WHERE i.org_id = 'org_a'",
        "SELECT * FROM public.items AS i LEFT JOIN public.users AS u ON true \
         WHERE i.org_id = 'org_a' AND u.org_id = 'org_a'",
        "SELECT * FROM (public.items AS i JOIN public.users AS u ON true) \
         WHERE i.org_id = 'org_a' AND u.org_id = 'org_a'",
        "SELECT * FROM public.organizations AS o WHERE o.org_id = 'org_a'",
    ];
    for sql in bad {
        assert!(!violations(sql, &cat).is_empty(), "checker missed {sql}");
    }
    for good in [
        "SELECT * FROM (SELECT * FROM public.items WHERE org_id = 'org_a') AS items",
        "SELECT * FROM public.items AS items WHERE items.org_id = 'org_a'",
        "SELECT * FROM public.items WHERE items.org_id = 'org_a' AND (id = 1)",
        "SELECT * FROM public.items AS i JOIN public.organizations AS o ON true \
         WHERE i.org_id = 'org_a' AND o.id = 'org_a' AND (i.id = 1)",
    ] {
        assert!(
            violations(good, &cat).is_empty(),
            "{good}: {:?}",
            violations(good, &cat)
        );
    }
}
