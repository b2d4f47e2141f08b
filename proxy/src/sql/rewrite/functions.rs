//! Which functions a tenant may call: a built-in allow-list of side-effect-free scalars,
//! aggregates and window functions, plus the catalog's `allowed_functions`. Functions that run
//! SQL or reach the server get a specific refusal; everything else unknown is refused too.
//! The check walks the whole parsed statement, independently of the rewrite.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, Statement, TableFactor, Visit, Visitor};

use super::catalog::Catalog;
use super::Refusal;
use super::{calls, names, system};

/// Built-in functions every tenant may call (resolved in `pg_catalog`).
const ALLOWED: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    // window
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // conditional
    "coalesce",
    "nullif",
    "greatest",
    "least",
    // strings
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "substring",
    "substr",
    "concat",
    "concat_ws",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "left",
    "right",
    "lpad",
    "rpad",
    "position",
    "strpos",
    "starts_with",
    "reverse",
    "repeat",
    "translate",
    "format",
    "md5",
    "encode",
    "decode",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_like",
    "regexp_count",
    "to_hex",
    "ascii",
    "chr",
    // numbers
    "abs",
    "round",
    "ceil",
    "ceiling",
    "floor",
    "trunc",
    "mod",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "sign",
    "exp",
    "ln",
    "log",
    "log10",
    "div",
    "random",
    "width_bucket",
    // dates and times
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "localtime",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "date_trunc",
    "date_part",
    "extract",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "timezone",
    "date_bin",
    "isfinite",
    "justify_days",
    "justify_hours",
    "justify_interval",
    // arrays and sets
    "array_length",
    "array_to_string",
    "string_to_array",
    "unnest",
    "array_position",
    "array_positions",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_remove",
    "array_replace",
    "cardinality",
    "array_lower",
    "array_upper",
    "array_ndims",
    "generate_series",
    "generate_subscripts",
    // ranges
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "isempty",
    "lower_inc",
    "upper_inc",
    "lower_inf",
    "upper_inf",
    "range_merge",
    // json
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "jsonb_set",
    "jsonb_insert",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_array_elements",
    "json_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements_text",
    "jsonb_array_length",
    "json_array_length",
    "jsonb_typeof",
    "json_typeof",
    "jsonb_strip_nulls",
    "json_strip_nulls",
    "jsonb_pretty",
    "jsonb_each",
    "json_each",
    "jsonb_each_text",
    "json_each_text",
    "jsonb_object_keys",
    "json_object_keys",
    "jsonb_path_query",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    // misc
    "gen_random_uuid",
    "current_setting",
    "pg_sleep",
    "version",
    "pg_typeof",
    "format_type",
    "num_nonnulls",
    "num_nulls",
    "current_schema",
    "current_user",
    "session_user",
    "current_database",
    "uuid_generate_v4",
    "array",
    // catalog lookups drivers and ORMs make while connecting or reflecting (they read the
    // schema, which every tenant shares, as the catalog relations in `catalog.rs` do)
    "to_regtype",
    "to_regclass",
    "to_regproc",
    "to_regprocedure",
    "to_regnamespace",
    "to_regcollation",
    "to_regoper",
    "to_regoperator",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_collation_is_visible",
    "pg_operator_is_visible",
    "pg_opclass_is_visible",
    "pg_opfamily_is_visible",
    "pg_conversion_is_visible",
    "pg_get_constraintdef",
    "pg_get_indexdef",
    "pg_get_expr",
    "pg_get_viewdef",
    "pg_get_triggerdef",
    "pg_get_partkeydef",
    "pg_get_serial_sequence",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_index_column_has_property",
    "obj_description",
    "col_description",
    "pg_encoding_to_char",
    "pg_get_userbyid",
    "pg_get_statisticsobjdef_columns",
    "pg_relation_is_publishable",
    "current_schemas",
    "pg_partition_ancestors",
    "pg_partition_root",
    "pg_partition_tree",
    "pg_get_ruledef",
    "pg_get_statisticsobjdef",
    "pg_get_statisticsobjdef_expressions",
    "pg_size_pretty",
    // only on the tenant tables' own sequences (`calls.rs`)
    "nextval",
    "currval",
    // full-text search (not `ts_stat`/`ts_rewrite`, whose text arguments are queries they run)
    "to_tsvector",
    "to_tsquery",
    "plainto_tsquery",
    "phraseto_tsquery",
    "websearch_to_tsquery",
    "json_to_tsvector",
    "jsonb_to_tsvector",
    "ts_rank",
    "ts_rank_cd",
    "ts_headline",
    "setweight",
    "strip",
    "numnode",
    "querytree",
    "ts_delete",
    "ts_filter",
    "tsvector_to_array",
    "array_to_tsvector",
    "tsquery_phrase",
    "get_current_ts_config",
    // hashing and encodings
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "hashtext",
    "hashtextextended",
    "convert_from",
    "convert_to",
    "convert",
    "array_to_json",
    "json_object",
    "jsonb_object",
    // this transaction's own id (assigns one if needed; the counter is server-wide, as it is
    // for any role under row-level security)
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    // transaction-level advisory locks, in a key space of the tenant's own (`locks.rs`), and
    // the release of session-level ones, which tenants cannot take (asyncpg's pool reset)
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock_all",
];

/// Functions outside `pg_catalog` that drivers call while reflecting (pgjdbc's
/// `getPrimaryKeys`/`getIndexInfo`), as `schema.name`.
const ALLOWED_QUALIFIED: &[&str] = &["information_schema._pg_expandarray"];

/// Prefixes and names that run SQL, touch files, large objects or other backends.
const DANGEROUS: &[&str] = &[
    "query_to_xml",
    "table_to_xml",
    "cursor_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "dblink",
    "pg_read_",
    "pg_ls_",
    "pg_stat_file",
    "lo_",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_file_",
    "pg_logdir_ls",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_",
    "pg_drop_replication_slot",
    "pg_advisory",
    "pg_try_advisory",
    "pg_notify",
    "pg_stat_get_",
    "pg_stat_reset",
    "pg_stat_statements",
    "txid_",
    "pg_current_xact",
    "pg_export_snapshot",
    "pg_import_system",
    "pg_replication",
    "pg_logical",
    "pg_backend",
    "pg_blocking",
    "pg_signal",
];

/// The one check pass over a parsed statement, before it is rewritten: refuses it if it calls
/// a function a tenant may not call, or else if it names a system column (`system`) anywhere.
pub(crate) fn check_statement(stmt: &Statement, catalog: &Catalog) -> Result<(), Refusal> {
    let mut check = FunctionCheck {
        catalog,
        system_column: None,
    };
    if let ControlFlow::Break(e) = stmt.visit(&mut check) {
        return Err(e);
    }
    match check.system_column {
        Some(name) => Err(system::refusal(&name)),
        None => Ok(()),
    }
}

struct FunctionCheck<'a> {
    catalog: &'a Catalog,
    /// The first system column seen; reported only if no function is refused.
    system_column: Option<String>,
}

impl Visitor for FunctionCheck<'_> {
    type Break = Refusal;

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<Refusal> {
        match e {
            Expr::Function(f) => to_flow(
                check_name(&f.name, self.catalog).and_then(|()| calls::check(f, self.catalog)),
            ),
            _ => {
                if self.system_column.is_none() {
                    self.system_column = system::system_column(e).map(str::to_string);
                }
                ControlFlow::Continue(())
            }
        }
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<Refusal> {
        match f {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                to_flow(check_name(name, self.catalog).and_then(|()| calls::check_in_from(name)))
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn to_flow(r: Result<(), Refusal>) -> ControlFlow<Refusal> {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }
}

/// Whether a tenant may call the function PostgreSQL names `name` (dot-separated, already
/// case-folded): the same check as for a call in a statement.
pub fn function_allowed(name: &str, catalog: &Catalog) -> bool {
    let parts = name.split('.').map(names::ident).collect::<Vec<_>>();
    check_name(&ObjectName::from(parts), catalog).is_ok()
}

/// Resolves a function name (`pg_catalog.x` is `x`) and checks it against the lists.
pub(crate) fn check_name(name: &ObjectName, catalog: &Catalog) -> Result<(), Refusal> {
    let parts = names::parts(name)?;
    let (key, base) = match parts.as_slice() {
        [f] => (f.clone(), f.as_str()),
        [s, f] if s == "pg_catalog" => (f.clone(), f.as_str()),
        [s, f] => (format!("{s}.{f}"), f.as_str()),
        _ => {
            return Err(Refusal::unsupported(format!(
                "function name {name} has too many parts"
            )))
        }
    };
    let builtin =
        (key == base && ALLOWED.contains(&base)) || ALLOWED_QUALIFIED.contains(&key.as_str());
    if builtin {
        return Ok(());
    }
    if DANGEROUS.iter().any(|d| base.starts_with(d)) {
        return Err(Refusal::policy(format!(
            "function {name} runs SQL or reaches the server and is not allowed for tenants"
        )));
    }
    if catalog.allowed_functions.contains(&key) {
        Ok(())
    } else {
        Err(Refusal::policy(format!(
            "function {name} is not on the allow-list"
        )))
    }
}
