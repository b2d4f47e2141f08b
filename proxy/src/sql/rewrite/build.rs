//! The rewrite context (CTE scope, tenant markers placed, checks recorded) and small
//! constructors for the AST fragments the rewriter inserts.

use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Ident, ObjectName, Query, Select, SelectFlavor, SelectItem,
    SetExpr, TableFactor, TableWithJoins, Values, WildcardAdditionalOptions,
};

use super::catalog::Catalog;
use super::names::ident;
use super::tenant_expr;

/// Rewrite state for one SQL string: the CTE names in scope and what the template must record.
pub(crate) struct Cx<'a> {
    pub catalog: &'a Catalog,
    /// Visible CTE names, innermost last; a query truncates back to its mark when it ends.
    pub(crate) ctes: Vec<String>,
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

    pub(crate) fn is_cte(&self, name: &str) -> bool {
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
    // Boxed where it is built: `SetExpr` is kilobytes wide, so moving it by value costs.
    query_of_boxed(Box::new(SetExpr::Select(Box::new(select))))
}

pub(crate) fn query_of(body: SetExpr) -> Query {
    query_of_boxed(Box::new(body))
}

fn query_of_boxed(body: Box<SetExpr>) -> Query {
    Query {
        with: None,
        body,
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
