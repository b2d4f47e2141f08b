//! Top-level dispatch: which statements a tenant may run, how each is confined, and the
//! refusal list (DDL, privileges, role and search_path changes, utility statements). Anything
//! not listed here is refused.

use sqlparser::ast::{
    CopySource, CopyTarget, DeclareType, DescribeAlias, DiscardObject, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, ObjectName, Reset, ResetStatement, SelectItem, Set,
    SetExpr, Statement, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::build::Cx;
use super::dml::rewrite_dml;
use super::names;
use super::query::{rewrite_query, walk};
use super::Refusal;

type R = Result<(), Refusal>;

/// Settings a tenant may not change: they alter name resolution, identity, or how the server
/// tokenizes the SQL Orgwall produced.
const DENIED_SETTINGS: &[&str] = &[
    "search_path",
    "role",
    "session_authorization",
    "session_replication_role",
    "session_preload_libraries",
    "local_preload_libraries",
    "allow_system_table_mods",
    "default_tablespace",
    "temp_tablespaces",
];

/// Settings pinned for tenants because they change how PostgreSQL reads string literals (and
/// so the SQL Orgwall rendered): setting one to its pinned value is a no-op and allowed (Rails
/// sends `SET standard_conforming_strings = on`), any other value is refused. The second
/// wall's tripwire closes a server connection that reports another value anyway.
const PINNED_SETTINGS: &[(&str, &[&str])] = &[
    ("standard_conforming_strings", STANDARD_CONFORMING_STRINGS),
    ("backslash_quote", BACKSLASH_QUOTE),
];

/// The values `standard_conforming_strings` is pinned to (also for startup settings).
pub const STANDARD_CONFORMING_STRINGS: &[&str] = &["on", "true", "yes", "1"];
/// The value `backslash_quote` is pinned to (also for startup settings).
pub const BACKSLASH_QUOTE: &[&str] = &["safe_encoding"];

/// Rewrites one top-level statement in place, or refuses it.
pub(crate) fn rewrite_statement(stmt: &mut Statement, cx: &mut Cx) -> R {
    match stmt {
        Statement::Query(q) => rewrite_query(q, cx),
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => rewrite_dml(stmt, cx),
        Statement::Copy {
            source,
            to,
            target,
            legacy_options,
            payload,
            ..
        } => {
            if !*to {
                return Err(Refusal::unsupported(
                    "COPY … FROM is not supported for tenants; use INSERT (Orgwall confines it)",
                ));
            }
            if !matches!(target, CopyTarget::Stdout) {
                return Err(Refusal::policy(
                    "COPY … TO a file or program is not allowed",
                ));
            }
            if !legacy_options.is_empty() || payload.is_some() {
                return Err(Refusal::unsupported(
                    "legacy COPY options are not supported",
                ));
            }
            copy_source(source, cx)
        }
        Statement::Prepare { statement, .. } => {
            if !matches!(
                statement.as_ref(),
                Statement::Query(_)
                    | Statement::Insert(_)
                    | Statement::Update(_)
                    | Statement::Delete(_)
                    | Statement::Merge(_)
            ) {
                return Err(Refusal::policy(format!("PREPARE of {statement}")));
            }
            let before = cx.param_checks.len();
            rewrite_statement(statement, cx)?;
            if cx.param_checks.len() != before {
                return Err(Refusal::policy(
                    "PREPARE with a $n parameter for the tenant column cannot be checked; \
                     omit the tenant column",
                ));
            }
            Ok(())
        }
        Statement::Execute {
            name: Some(_),
            parameters,
            immediate: false,
            into,
            using,
            output: false,
            default: false,
            ..
        } if into.is_empty() && using.is_empty() => walk(parameters, cx),
        Statement::Deallocate { .. } | Statement::Fetch { into: None, .. } => Ok(()),
        Statement::Close { .. } => Ok(()),
        Statement::Declare { stmts, .. } => {
            for d in stmts {
                match (&d.declare_type, &mut d.for_query) {
                    (Some(DeclareType::Cursor), Some(q)) => rewrite_query(q, cx)?,
                    _ => return Err(Refusal::unsupported("DECLARE other than a cursor")),
                }
            }
            Ok(())
        }
        Statement::Explain {
            describe_alias: DescribeAlias::Explain,
            analyze,
            options,
            ..
        } if *analyze
            || options.iter().flatten().any(|o| o.name.value.eq_ignore_ascii_case("analyze")) =>
        {
            Err(Refusal::policy(
                "EXPLAIN ANALYZE (its row counts include other tenants' rows)",
            ))
        }
        Statement::Explain {
            describe_alias: DescribeAlias::Explain,
            ..
        } if !cx.catalog.explain_allowed() => Err(Refusal::policy(
            "EXPLAIN (its estimates count every tenant's rows; [tenancy] allow_explain = true allows it)",
        )),
        Statement::Explain {
            describe_alias: DescribeAlias::Explain,
            statement,
            ..
        } => match statement.as_ref() {
            Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_) => rewrite_statement(statement, cx),
            other => Err(Refusal::policy(format!("EXPLAIN of {other}"))),
        },
        Statement::StartTransaction { statements, .. } if statements.is_empty() => Ok(()),
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Ok(()),
        Statement::ShowVariable { variable } => show_variable(variable),

        Statement::Discard { object_type } => match object_type {
            DiscardObject::ALL => Err(Refusal::policy(
                "DISCARD ALL resets the session's role and is not allowed",
            )),
            _ => Ok(()),
        },
        Statement::Set(set) => check_set(set, &cx.catalog.search_path),
        Statement::Reset(ResetStatement { reset }) => match reset {
            // Allowed (asyncpg's pool reset ends with it): the session tracks it, and the
            // tenant context it clears on the server connection is set again before the next
            // statement. Only as the last statement of its text (`rewrite` checks), since a
            // statement after it in the same Query would run without the context.
            Reset::ALL => Ok(()),
            Reset::SessionAuthorization => Err(Refusal::policy(
                "RESET SESSION AUTHORIZATION is not allowed for tenants",
            )),
            Reset::ConfigurationParameter(name) => {
                check_setting_name(name, "RESET")?;
                match super::summary::setting_name(name) {
                    Some(n) if PINNED_SETTINGS.iter().any(|(p, _)| *p == n) => Err(
                        Refusal::policy(format!("{n} is pinned for tenants; RESET is refused")),
                    ),
                    _ => Ok(()),
                }
            }
        },
        // Tenants cannot LISTEN, so UNLISTEN (asyncpg's pool reset sends `UNLISTEN *`) only
        // ever removes nothing from the server connection.
        Statement::UNLISTEN { .. } => Ok(()),
        Statement::LISTEN { .. } | Statement::NOTIFY { .. } => Err(
            Refusal::policy("LISTEN/NOTIFY channels are shared by all tenants and not allowed"),
        ),
        Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::GrantRole(_)
        | Statement::RevokeRole(_) => {
            Err(Refusal::policy("GRANT/REVOKE is not allowed for tenants"))
        }
        Statement::Call(_) => Err(Refusal::policy("CALL is not allowed for tenants")),
        Statement::Load { .. } => Err(Refusal::policy("LOAD is not allowed for tenants")),
        other => Err(Refusal::policy(format!(
            "{} is not allowed for tenants (DDL and utility statements are refused)",
            kind(other)
        ))),
    }
}

/// The leading keywords of a statement, for messages that must not echo tenant data.
fn kind(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() {
        "this statement".to_string()
    } else {
        words.join(" ")
    }
}

/// `COPY t [(cols)] TO STDOUT` becomes `COPY (SELECT cols FROM <confined t>) TO STDOUT`.
fn copy_source(source: &mut CopySource, cx: &mut Cx) -> R {
    match source {
        CopySource::Query(q) => rewrite_query(q, cx),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {cols} FROM {table_name}");
            let mut q = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_query())
                .map_err(|e| Refusal::syntax(format!("cannot parse COPY source: {e}")))?;
            rewrite_query(&mut q, cx)?;
            *source = CopySource::Query(q);
            Ok(())
        }
    }
}

/// `SHOW a.b` parses to the words `a`, `b`, which sqlparser prints `SHOW a b` (a syntax error
/// to PostgreSQL): a dotted setting name is printed as one quoted name, `SHOW "a.b"`, which
/// PostgreSQL reads as the same setting. The multi-word forms stay as they are.
fn show_variable(variable: &mut Vec<sqlparser::ast::Ident>) -> R {
    const WORDS: &[&[&str]] = &[
        &["time", "zone"],
        &["transaction", "isolation", "level"],
        &["session", "authorization"],
    ];
    let parts = variable
        .iter()
        .map(names::norm)
        .collect::<Result<Vec<_>, _>>()?;
    let full = parts.join(".").to_ascii_lowercase();
    if full == "all" && variable[0].quote_style.is_none() {
        return Err(Refusal::policy(
            "SHOW ALL is not available to tenants; SHOW one setting, or read pg_settings \
             (built-in settings only)",
        ));
    }
    if full.starts_with("orgwall.") {
        return Err(Refusal::policy(format!(
            "{full} is not a setting tenants can read (SHOW orgwall.org_id tells the tenant)"
        )));
    }
    if variable.len() < 2 {
        return Ok(());
    }
    let words: Vec<&str> = parts.iter().map(String::as_str).collect();
    let multiword =
        variable.iter().all(|i| i.quote_style.is_none()) && WORDS.contains(&words.as_slice());
    if !multiword {
        let name = parts.join(".").to_ascii_lowercase();
        *variable = vec![sqlparser::ast::Ident::with_quote('"', name)];
    }
    Ok(())
}

fn check_set(set: &Set, search_path: &[String]) -> R {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } if super::summary::setting_name(variable).as_deref() == Some("search_path")
            && same_search_path(values, search_path) =>
        {
            Ok(())
        }
        Set::SingleAssignment {
            variable, values, ..
        } => {
            check_setting_name(variable, "SET")?;
            let name = names::parts(variable)?.join(".");
            for v in values {
                check_setting_value(&name, v)?;
            }
            Ok(())
        }
        Set::SetTimeZone { value, .. } => check_setting_value("timezone", value),
        Set::SetTransaction { .. } => Ok(()),
        Set::SetRole { .. } => Err(Refusal::policy("SET ROLE is not allowed for tenants")),
        Set::SetSessionAuthorization(_) => Err(Refusal::policy(
            "SET SESSION AUTHORIZATION is not allowed for tenants",
        )),
        Set::SetNames { charset_name, .. } => utf8_only(&charset_name.value.to_ascii_lowercase()),
        Set::SetNamesDefault {} => Ok(()),
        _ => Err(Refusal::unsupported("this form of SET is not supported")),
    }
}

/// Whether `values` name exactly the schemas Orgwall resolves tenant names in, in its order
/// (Rails and others send `SET search_path TO public`): a no-op for how Orgwall reads the
/// statements, and `pg_catalog` still comes first for PostgreSQL, so built-in functions keep
/// their meaning. Any other search path is refused (`DENIED_SETTINGS`).
fn same_search_path(values: &[Expr], search_path: &[String]) -> bool {
    let names: Option<Vec<String>> = values
        .iter()
        .map(|v| match v {
            Expr::Identifier(i) => names::norm(i).ok(),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.is_some_and(|n| n == search_path)
}

/// The value argument of a `set_config` call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConfigValue {
    Literal(Value),
    /// `$n`: known at Bind.
    Param(usize),
    Other,
}

/// A `set_config('name', value, true|false)` call with a literal name (lower-cased) and flag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SetConfig {
    pub name: String,
    pub value: ConfigValue,
    pub local: bool,
}

/// The `set_config(…)` calls that are whole select-list items of a statement that is a plain
/// `SELECT` of expressions (no FROM, WHERE, …); `None` in the list for a call whose name or
/// flag is not a literal (or with other arguments), `None` overall for any other statement or
/// when there is no such call. asyncpg sends `SELECT current_setting('jit') AS cur,
/// set_config('jit', 'off', false) AS new` before introspecting types, Django
/// `SELECT set_config('TimeZone', 'UTC', false)`.
pub(crate) fn set_config_calls(stmt: &Statement) -> Option<Vec<Option<SetConfig>>> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let plain = q.with.is_none()
        && q.order_by.is_none()
        && q.limit_clause.is_none()
        && sel.from.is_empty()
        && sel.selection.is_none()
        && sel.distinct.is_none()
        && sel.having.is_none();
    if !plain {
        return None;
    }
    let calls: Vec<Option<SetConfig>> = sel.projection.iter().filter_map(set_config_item).collect();
    (!calls.is_empty()).then_some(calls)
}

/// A select-list item that is a `[pg_catalog.]set_config(…)` call, read as [`SetConfig`].
fn set_config_item(item: &SelectItem) -> Option<Option<SetConfig>> {
    let call = match set_config_args(item)?.as_slice() {
        [ConfigValue::Literal(Value::SingleQuotedString(name)), value, ConfigValue::Literal(Value::Boolean(local))] => {
            Some(SetConfig {
                name: name.to_ascii_lowercase(),
                value: value.clone(),
                local: *local,
            })
        }
        _ => None,
    };
    Some(call)
}

/// The arguments of a select-list item that is a plain `[pg_catalog.]set_config(…)` call.
fn set_config_args(item: &SelectItem) -> Option<Vec<ConfigValue>> {
    let (SelectItem::UnnamedExpr(Expr::Function(f))
    | SelectItem::ExprWithAlias {
        expr: Expr::Function(f),
        ..
    }) = item
    else {
        return None;
    };
    let named = names::parts(&f.name).is_ok_and(|p| match p.as_slice() {
        [n] => n == "set_config",
        [s, n] => s == "pg_catalog" && n == "set_config",
        _ => false,
    });
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !named || !list.clauses.is_empty() || f.filter.is_some() || f.over.is_some() {
        return None;
    }
    let value = |a: &FunctionArg| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .map_or(ConfigValue::Other, ConfigValue::Param),
            Value::Null => ConfigValue::Other,
            other => ConfigValue::Literal(other.clone()),
        },
        _ => ConfigValue::Other,
    };
    Some(list.args.iter().map(value).collect())
}

/// `SELECT set_config($n, $m, false)` as the only call of a plain `SELECT`, the setting's name
/// bound too (psycopg's tests): the numbers of the name's and the value's parameters. Only
/// the admin path tracks it (a tenant's set_config needs a literal name).
pub(crate) fn set_config_by_params(stmt: &Statement) -> Option<(usize, usize)> {
    let [None] = set_config_calls(stmt)?.as_slice() else {
        return None;
    };
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let args = sel.projection.iter().find_map(set_config_args)?;
    match args.as_slice() {
        [ConfigValue::Param(name), ConfigValue::Param(value), ConfigValue::Literal(Value::Boolean(false))] => {
            Some((*name, *value))
        }
        _ => None,
    }
}

/// `set_config('name', value, is_local)` as a whole select-list item of a plain `SELECT` is
/// what drivers and ORMs send to change a setting: for a tenant it is the `SET [LOCAL]` it
/// stands for, under the same rules (and Orgwall's pooling tracks it as one). On success,
/// the statement with those calls replaced by NULL, for the function check of the rest;
/// `None` when the statement has no such call (any other use of `set_config` is refused by
/// the function check).
pub(crate) fn check_set_config(stmt: &Statement) -> Option<Result<Statement, Refusal>> {
    let calls = set_config_calls(stmt)?;
    let checked = calls.iter().try_for_each(|call| {
        let Some(SetConfig { name, value, .. }) = call else {
            return Err(only_plain_set_config());
        };
        check_setting(name, "set_config of")?;
        match value {
            ConfigValue::Literal(v) => check_setting_value(name, &Expr::value(v.clone())),
            // Bound later: only where any value is acceptable.
            ConfigValue::Param(_)
                if name != "client_encoding" && !PINNED_SETTINGS.iter().any(|(n, _)| n == name) =>
            {
                Ok(())
            }
            _ => Err(only_plain_set_config()),
        }
    });
    Some(checked.map(|()| {
        let mut rest = stmt.clone();
        if let Statement::Query(q) = &mut rest {
            if let SetExpr::Select(sel) = q.body.as_mut() {
                for item in &mut sel.projection {
                    if set_config_item(item).is_some() {
                        *item = SelectItem::UnnamedExpr(Expr::value(Value::Null));
                    }
                }
            }
        }
        rest
    }))
}

fn only_plain_set_config() -> Refusal {
    Refusal::policy(
        "set_config is allowed for tenants only as set_config('name', value, true|false) with a literal or $n value, as a select-list item",
    )
}

fn check_setting_name(name: &ObjectName, verb: &str) -> R {
    let full = super::summary::setting_name(name).ok_or_else(|| {
        Refusal::unsupported(format!(
            "{verb} of setting {name}: only plain (unquoted-style) setting names are supported"
        ))
    })?;
    check_setting(&full, verb)
}

fn check_setting(full: &str, verb: &str) -> R {
    if full.starts_with("orgwall.") {
        return Err(Refusal::policy(format!(
            "{verb} {full} is handled by the Orgwall session, not passed to the server"
        )));
    }
    if DENIED_SETTINGS.contains(&full) {
        return Err(Refusal::policy(format!(
            "{verb} {full} is not allowed for tenants"
        )));
    }
    Ok(())
}

/// Values must be plain literals or words (no subqueries or function calls reach the server
/// through SET), and the client encoding must stay UTF-8.
fn check_setting_value(name: &str, v: &Expr) -> R {
    if let Some((_, allowed)) = PINNED_SETTINGS.iter().find(|(n, _)| *n == name) {
        let value = match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.to_ascii_lowercase()),
                Value::Boolean(b) => Some(b.to_string()),
                Value::Number(n, _) => Some(n.clone()),
                _ => None,
            },
            Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
            _ => None,
        };
        return match value {
            Some(v) if allowed.contains(&v.as_str()) => Ok(()),
            _ => Err(Refusal::policy(format!(
                "{name} is pinned to {} for tenants",
                allowed[0]
            ))),
        };
    }
    let text = match v {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
            Value::Number(..) | Value::Boolean(_) => return Ok(()),
            other => {
                return Err(Refusal::unsupported(format!("SET {name} to {other}")));
            }
        },
        Expr::Identifier(i) => i.value.to_ascii_lowercase(),
        Expr::UnaryOp { expr, .. } if matches!(expr.as_ref(), Expr::Value(_)) => return Ok(()),
        // `SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE` (Sequelize, on every connection).
        Expr::Interval(i) if name == "timezone" && matches!(i.value.as_ref(), Expr::Value(_)) => {
            return Ok(())
        }
        other => return Err(Refusal::unsupported(format!("SET {name} to {other}"))),
    };
    if name == "client_encoding" {
        return utf8_only(&text);
    }
    Ok(())
}

fn utf8_only(enc: &str) -> R {
    match enc {
        "utf8" | "utf-8" | "unicode" | "default" => Ok(()),
        _ => Err(Refusal::policy(
            "client encodings other than UTF8 are not allowed for tenants",
        )),
    }
}
