//! What the rewriter knows about the database: tenant tables (and their tenant column),
//! `organizations`, global tables, the schemas an unqualified name may resolve to, and the
//! functions allowed beyond the built-in list. Name resolution against it never consults the
//! server's `search_path`: only `Catalog::search_path`, after PostgreSQL's implicit `pg_catalog`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use sqlparser::ast::ObjectName;

use super::names::qualified;
use super::Refusal;

/// How a table is confined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// Rows belong to the tenant named in `column`.
    Tenant { column: String },
    /// The tenants table itself: the tenant sees the row whose `id` is its own.
    Organizations,
    /// Shared, readable by every tenant, never written by one.
    Global,
}

/// One table in the protected schemas.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub kind: TableKind,
    /// Columns in table order (used to expand `INSERT INTO t VALUES …` without a column list).
    pub columns: Vec<String>,
    /// Tenant-composite unique indexes, as column lists without the tenant column
    /// (`["email"]` for `users_orgId_email_key`).
    pub tenant_unique: Vec<Vec<String>>,
}

impl TableInfo {
    /// The column that holds the tenant (`org_id`, or `id` for organizations).
    pub fn tenant_column(&self) -> Option<&str> {
        match &self.kind {
            TableKind::Tenant { column } => Some(column),
            TableKind::Organizations => Some("id"),
            TableKind::Global => None,
        }
    }
}

/// `pg_catalog` relations that hold other tenants' data (or secrets): always refused.
const LEAKY_CATALOGS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_stat_statements_info",
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping",
    "pg_user_mappings",
    "pg_largeobject",
    "pg_largeobject_metadata",
    "pg_locks",
    "pg_prepared_xacts",
    "pg_prepared_statements",
    "pg_cursors",
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_replication_slots",
    "pg_subscription",
];

/// Metadata-only `pg_catalog` relations drivers and ORMs read (types, names, columns,
/// constraints). They describe the schema, which every tenant shares anyway. `pg_class`
/// also carries planner row estimates (`reltuples`) for whole tables: an aggregate, judged
/// acceptable so that drivers' type loading keeps working.
const SAFE_PG_CATALOG: &[&str] = &[
    "pg_type",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_enum",
    "pg_range",
    "pg_proc",
    "pg_description",
    "pg_am",
    "pg_collation",
    "pg_inherits",
    "pg_extension",
    "pg_tables",
    "pg_views",
    "pg_indexes",
    "pg_sequence",
    "pg_trigger",
    "pg_operator",
    "pg_cast",
    "pg_language",
    "pg_opclass",
    "pg_opfamily",
    "pg_tablespace",
    "pg_depend",
    // psql's \d: definitions only (the statistics themselves stay refused above)
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
];

/// `pg_catalog` relations a tenant sees only part of: drivers read them (pgjdbc's
/// `getImportedKeys` reads `pg_settings`, psql's `\d` and drizzle-kit `pg_roles`/`pg_user`),
/// but they also describe the server and every role. The filter keeps the rows that describe
/// only what every tenant shares: built-in settings (custom `x.y` ones, where Orgwall keeps
/// the connection's tenant token, are left out) and the role the tenant runs as.
const FILTERED_PG_CATALOG: &[(&str, &str)] = &[
    ("pg_settings", "name NOT LIKE '%.%'"),
    ("pg_roles", "rolname = current_user"),
    ("pg_user", "usename = current_user"),
];

/// `information_schema` views that describe the (shared) schema only.
const SAFE_INFORMATION_SCHEMA: &[&str] = &[
    "tables",
    "columns",
    "views",
    "schemata",
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "constraint_column_usage",
    "check_constraints",
    "sequences",
    "element_types",
];

/// What a table name in a query resolved to.
pub(crate) enum Target<'a> {
    /// A protected table.
    Table(&'a TableInfo),
    /// A safe system relation, with its qualified output name and, for one a tenant sees only
    /// part of, the filter (SQL over its columns) that keeps that part.
    System(ObjectName, Option<&'static str>),
}

/// The tables and settings the rewriter confines against. Immutable once built; build a new
/// one on reload (its [`Catalog::version`] changes when its contents do).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// schema → table name → table: looked up by `&str` without building an owned key.
    tables: HashMap<String, HashMap<String, TableInfo>>,
    /// Schemas searched, in order, for an unqualified table name (after `pg_catalog`).
    /// Set it through [`Catalog::new`]: `version()` is computed there, so changing a built
    /// catalog in place would let the planner serve templates made for the old one.
    pub search_path: Vec<String>,
    /// Functions allowed in addition to the built-in list: `name` or `schema.name`, as
    /// PostgreSQL would resolve them (lower case unless created quoted).
    pub allowed_functions: HashSet<String>,
    /// Names PostgreSQL may resolve `x.name` or `(x).name` to as a call `name(x)` (functions
    /// and types of the database); set with [`Catalog::with_callable`]. `None`: not known, so
    /// every name counts as one.
    callable: Option<std::sync::Arc<HashSet<String>>>,
    /// Columns of the `pg_catalog` and `information_schema` relations, by (schema, relation);
    /// set with [`Catalog::with_system_columns`].
    system_columns: std::sync::Arc<HashMap<(String, String), Vec<String>>>,
    /// Sequences owned by columns of protected tables, as (schema, name): the ones a tenant
    /// may draw from with `nextval`/`currval`; set with [`Catalog::with_sequences`].
    sequences: std::sync::Arc<HashSet<(String, String)>>,
    /// Tables of the protected schemas that are neither tenant tables nor declared global,
    /// as (schema, name), with the tenant column they lack: named in the refusal.
    undeclared: std::sync::Arc<HashSet<(String, String)>>,
    tenant_column: String,
    /// Plain `EXPLAIN` is allowed (`[tenancy] allow_explain`); set with
    /// [`Catalog::allowing_explain`].
    allow_explain: bool,
    version: u64,
}

impl Catalog {
    /// Builds a catalog; an empty `search_path` means `["public"]`.
    pub fn new(
        tables: Vec<TableInfo>,
        search_path: Vec<String>,
        allowed_functions: Vec<String>,
    ) -> Catalog {
        let search_path = if search_path.is_empty() {
            vec!["public".to_string()]
        } else {
            search_path
        };
        let mut sorted = tables.clone();
        sorted.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        let mut funcs = allowed_functions.clone();
        funcs.sort();
        // A content hash: identical reloads keep cached templates, any change invalidates them.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&sorted, &search_path, &funcs).hash(&mut h);
        Catalog {
            tables: by_schema(tables),
            search_path,
            allowed_functions: allowed_functions.into_iter().collect(),
            allow_explain: false,
            callable: None,
            system_columns: Default::default(),
            sequences: Default::default(),
            undeclared: Default::default(),
            tenant_column: "org_id".to_string(),
            version: h.finish(),
        }
    }

    /// The same catalog, with plain `EXPLAIN` allowed or not (a different version when that
    /// changes, so cached templates follow).
    pub fn allowing_explain(mut self, allow: bool) -> Catalog {
        if allow != self.allow_explain {
            self.allow_explain = allow;
            self.version = self.version.rotate_left(1) ^ 0x9e37_79b9_7f4a_7c15;
        }
        self
    }

    /// The same catalog, knowing which names are functions or types (`pg_proc`, `pg_type`).
    pub fn with_callable(mut self, names: impl IntoIterator<Item = String>) -> Catalog {
        let set: HashSet<String> = names.into_iter().collect();
        let mut sorted: Vec<&String> = set.iter().collect();
        sorted.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.version, &sorted).hash(&mut h);
        self.version = h.finish();
        self.callable = Some(std::sync::Arc::new(set));
        self
    }

    /// The same catalog, knowing the columns of system relations (schema, relation, column).
    pub fn with_system_columns(
        mut self,
        rows: impl IntoIterator<Item = (String, String, String)>,
    ) -> Catalog {
        let mut m: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (schema, rel, col) in rows {
            m.entry((schema, rel)).or_default().push(col);
        }
        let mut keys: Vec<_> = m.iter().collect();
        keys.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.version, &keys).hash(&mut h);
        self.version = h.finish();
        self.system_columns = std::sync::Arc::new(m);
        self
    }

    /// The same catalog, knowing the sequences owned by protected tables' columns.
    pub fn with_sequences(mut self, seqs: impl IntoIterator<Item = (String, String)>) -> Catalog {
        let set: HashSet<(String, String)> = seqs.into_iter().collect();
        let mut sorted: Vec<_> = set.iter().collect();
        sorted.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.version, "sequences", &sorted).hash(&mut h);
        self.version = h.finish();
        self.sequences = std::sync::Arc::new(set);
        self
    }

    /// The same catalog, knowing the tables that lack `column` and are not declared global
    /// (so that a tenant's reference to one is refused with the fix named).
    pub fn with_undeclared(
        mut self,
        column: &str,
        tables: impl IntoIterator<Item = (String, String)>,
    ) -> Catalog {
        let set: HashSet<(String, String)> = tables.into_iter().collect();
        let mut sorted: Vec<_> = set.iter().collect();
        sorted.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.version, column, &sorted).hash(&mut h);
        self.version = h.finish();
        self.undeclared = std::sync::Arc::new(set);
        self.tenant_column = column.to_string();
        self
    }

    /// The protected-table sequence `parts` names (resolved along the search path), as
    /// (schema, name).
    pub(crate) fn sequence(&self, parts: &[String]) -> Option<(String, String)> {
        let known = |s: &str, n: &str| {
            self.sequences
                .contains(&(s.to_string(), n.to_string()))
                .then(|| (s.to_string(), n.to_string()))
        };
        match parts {
            [s, n] => known(s, n),
            [n] => self.search_path.iter().find_map(|s| known(s, n)),
            _ => None,
        }
    }

    /// The refusal for a name that is no protected table: says what to do when the table
    /// exists but was left out for lacking the tenant column.
    fn unknown(&self, schema: Option<&str>, name: &str) -> Refusal {
        let found = match schema {
            Some(s) => self.undeclared.get(&(s.to_string(), name.to_string())),
            None => self
                .search_path
                .iter()
                .find_map(|s| self.undeclared.get(&(s.to_string(), name.to_string()))),
        };
        match found {
            Some((s, n)) => Refusal::policy(format!(
                "table {s}.{n} has no {col} column and is not declared global, so tenants \
                 cannot use it: add \"{s}.{n}\" to [tenancy] global_tables (every tenant may \
                 read it, none may write it) or add a {col} column",
                col = self.tenant_column
            )),
            None => Refusal::policy(match schema {
                Some(s) => format!("unknown table {s}.{name}"),
                None => format!("unknown table {name}"),
            }),
        }
    }

    /// The columns of the relation `parts` names as PostgreSQL resolves it (system relations
    /// in `pg_catalog` first), if Orgwall knows them.
    pub(crate) fn columns_of(&self, parts: &[String]) -> Option<&[String]> {
        let sys = |s: &str, n: &str| {
            self.system_columns
                .get(&(s.to_string(), n.to_string()))
                .map(Vec::as_slice)
        };
        match parts {
            [s, n] => sys(s, n).or_else(|| self.table(s, n).map(|t| t.columns.as_slice())),
            [n] => sys("pg_catalog", n).or_else(|| {
                self.search_path
                    .iter()
                    .find_map(|s| self.table(s, n))
                    .map(|t| t.columns.as_slice())
            }),
            _ => None,
        }
    }

    /// Whether `x.name` might be a call `name(x)` rather than a column (see `fields`).
    pub(crate) fn is_callable(&self, name: &str) -> bool {
        self.callable.as_ref().is_none_or(|s| s.contains(name))
    }

    /// Whether plain `EXPLAIN` is allowed.
    pub fn explain_allowed(&self) -> bool {
        self.allow_explain
    }

    /// Identifies this catalog's contents; plans check their rewrite against it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every table of the protected schemas.
    pub fn tables(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.values().flat_map(|t| t.values())
    }

    /// Looks a table up by its exact schema and name.
    pub fn table(&self, schema: &str, name: &str) -> Option<&TableInfo> {
        self.tables.get(schema)?.get(name)
    }

    /// Resolves the (already case-folded) parts of a table name the way PostgreSQL would with
    /// `search_path = pg_catalog, <self.search_path>`.
    pub(crate) fn resolve(&self, parts: &[String]) -> Result<Target<'_>, Refusal> {
        match parts {
            [name] => {
                if LEAKY_CATALOGS.contains(&name.as_str())
                    || SAFE_PG_CATALOG.contains(&name.as_str())
                    || FILTERED_PG_CATALOG.iter().any(|(n, _)| n == name)
                {
                    return system("pg_catalog", name);
                }
                self.search_path
                    .iter()
                    .find_map(|s| self.table(s, name))
                    .map(Target::Table)
                    .ok_or_else(|| self.unknown(None, name))
            }
            [schema, name] => match schema.as_str() {
                "pg_catalog" | "information_schema" => system(schema, name),
                _ => self
                    .table(schema, name)
                    .map(Target::Table)
                    .ok_or_else(|| self.unknown(Some(schema), name)),
            },
            _ => Err(Refusal::unsupported(format!(
                "table name {} has too many parts (cross-database references)",
                parts.join(".")
            ))),
        }
    }

    /// The seed's schema after migrations 0001–0003 (`public`, tenant column `org_id`).
    pub fn seed_for_tests() -> Catalog {
        let t = |name: &str, cols: &[&str], uniq: &[&[&str]]| TableInfo {
            schema: "public".into(),
            name: name.into(),
            kind: TableKind::Tenant {
                column: "org_id".into(),
            },
            columns: cols.iter().map(|c| c.to_string()).collect(),
            tenant_unique: uniq
                .iter()
                .map(|u| u.iter().map(|c| c.to_string()).collect())
                .collect(),
        };
        let ts = ["created_at", "updated_at"];
        let with = |cols: &[&'static str], extra: &[&'static str]| -> Vec<&'static str> {
            let mut v = cols.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let tables = vec![
            TableInfo {
                schema: "public".into(),
                name: "organizations".into(),
                kind: TableKind::Organizations,
                columns: vec!["id".into(), "name".into(), "created_at".into()],
                tenant_unique: vec![],
            },
            t(
                "users",
                &with(
                    &["id", "email", "name", "password_hash", "role"],
                    &[ts[0], ts[1], "org_id"],
                ),
                &[&["email"]],
            ),
            t(
                "items",
                &with(
                    &[
                        "id",
                        "item_number",
                        "description",
                        "unit_of_measure",
                        "active",
                    ],
                    &[ts[0], ts[1], "org_id"],
                ),
                &[&["item_number"]],
            ),
            t(
                "locations",
                &with(
                    &["id", "site", "name", "description"],
                    &[ts[0], ts[1], "org_id"],
                ),
                &[&["site", "name"]],
            ),
            t(
                "inventory_ledger",
                &[
                    "id",
                    "item_id",
                    "location_id",
                    "lot_id",
                    "quantity_delta",
                    "reason",
                    "reference",
                    "user_id",
                    "created_at",
                    "org_id",
                ],
                &[],
            ),
            t(
                "count_sheets",
                &[
                    "id",
                    "count_number",
                    "location_id",
                    "status",
                    "created_by",
                    "created_at",
                    "completed_at",
                    "org_id",
                ],
                &[&["count_number"]],
            ),
            t(
                "count_lines",
                &[
                    "id",
                    "count_sheet_id",
                    "item_id",
                    "lot_id",
                    "expected_quantity",
                    "counted_quantity",
                    "counted_by",
                    "created_at",
                    "org_id",
                ],
                &[],
            ),
            t(
                "audit_logs",
                &[
                    "id",
                    "actor",
                    "action",
                    "entity_type",
                    "entity_id",
                    "payload",
                    "created_at",
                    "org_id",
                ],
                &[],
            ),
            t(
                "feature_flags",
                &with(
                    &["id", "key", "enabled", "description"],
                    &[ts[0], ts[1], "org_id"],
                ),
                &[&["key"]],
            ),
            t(
                "inventory_balances",
                &[
                    "org_id",
                    "item_id",
                    "location_id",
                    "lot_id",
                    "quantity",
                    "updated_at",
                ],
                &[&["item_id", "location_id", "lot_id"]],
            ),
        ];
        Catalog::new(tables, vec!["public".into()], vec![]).with_callable(test_callable())
    }
}

/// Function and type names of a stock PostgreSQL that tests' catalogs know as callable.
pub fn test_callable() -> impl Iterator<Item = String> {
    [
        "pg_read_file",
        "pg_stat_get_activity",
        "pg_terminate_backend",
        "ts_stat",
        "row_to_json",
        "to_json",
        "to_jsonb",
        "json_agg",
        "text",
        "name",
        "date",
        "lower",
        "upper",
        "count",
        "length",
        "int4",
        "numeric",
        "timestamp",
        "format",
    ]
    .into_iter()
    .map(String::from)
}

/// Groups tables by schema (a later duplicate replaces an earlier one).
fn by_schema(tables: Vec<TableInfo>) -> HashMap<String, HashMap<String, TableInfo>> {
    let mut m: HashMap<String, HashMap<String, TableInfo>> = HashMap::new();
    for t in tables {
        m.entry(t.schema.clone())
            .or_default()
            .insert(t.name.clone(), t);
    }
    m
}

fn system(schema: &str, name: &str) -> Result<Target<'static>, Refusal> {
    if schema == "pg_catalog" && LEAKY_CATALOGS.contains(&name) {
        return Err(Refusal::policy(format!(
            "pg_catalog.{name} exposes other tenants' data or server secrets"
        )));
    }
    let safe = match schema {
        "pg_catalog" => SAFE_PG_CATALOG.contains(&name),
        _ => SAFE_INFORMATION_SCHEMA.contains(&name),
    };
    if let Some((_, filter)) = FILTERED_PG_CATALOG
        .iter()
        .find(|(n, _)| schema == "pg_catalog" && *n == name)
    {
        return Ok(Target::System(qualified(schema, name), Some(filter)));
    }
    if safe {
        Ok(Target::System(qualified(schema, name), None))
    } else {
        Err(Refusal::policy(format!(
            "system relation {schema}.{name} is not on the tenant allow-list"
        )))
    }
}
