//! Discovers the rewriter's catalog from PostgreSQL: tables of the configured schemas, which
//! carry the tenant column, their tenant-composite unique indexes, and the global tables.

use std::collections::BTreeMap;

use super::{Pool, UpstreamError};
use crate::config::Tenancy;
use crate::sql::quote_literal;
use crate::sql::rewrite::{Catalog, TableInfo, TableKind};

fn schema_list(t: &Tenancy) -> String {
    let items: Vec<String> = t.schemas.iter().map(|s| quote_literal(s)).collect();
    format!("ARRAY[{}]::text[]", items.join(","))
}

/// Loads the catalog through one pooled connection.
pub async fn load(pool: &Pool, tenancy: &Tenancy) -> Result<Catalog, UpstreamError> {
    let mut lease = pool.acquire().await?;
    let schemas = schema_list(tenancy);
    let columns = lease
        .conn
        .query_text(&format!(
            "SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.relkind IN ('r','p','v','m','f') AND n.nspname = ANY({schemas}) \
             ORDER BY n.nspname, c.relname, a.attnum"
        ))
        .await;
    let indexes = match &columns {
        Ok(_) => {
            lease
                .conn
                .query_text(&format!(
                    "SELECT n.nspname, t.relname, i.indexrelid::text, a.attname \
                     FROM pg_catalog.pg_index i \
                     JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
                     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                     WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
                       AND n.nspname = ANY({schemas}) \
                     ORDER BY i.indexrelid, k.ord"
                ))
                .await
        }
        Err(_) => Ok(Vec::new()),
    };
    // Every name `x.name` could call as `name(x)`: functions and types (`fields` in the
    // rewriter refuses such field selections unless `name` is a known column).
    let callable = match (&columns, &indexes) {
        (Ok(_), Ok(_)) => {
            lease
                .conn
                .query_text(
                    "SELECT proname::text FROM pg_catalog.pg_proc \
                     UNION SELECT typname::text FROM pg_catalog.pg_type",
                )
                .await
        }
        _ => Ok(Vec::new()),
    };
    // And the columns of the system relations drivers read (`t.oid FROM pg_type t`).
    let system = match &callable {
        Ok(_) => {
            lease
                .conn
                .query_text(
                    "SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a \
                     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname IN ('pg_catalog', 'information_schema') \
                       AND a.attnum > 0 AND NOT a.attisdropped \
                       AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
                )
                .await
        }
        Err(_) => Ok(Vec::new()),
    };
    // Sequences owned by columns of the schemas' tables (serial/identity): nextval/currval.
    let sequences = match &system {
        Ok(_) => {
            lease
                .conn
                .query_text(&format!(
                    "SELECT sn.nspname, s.relname, tn.nspname, t.relname \
                     FROM pg_catalog.pg_class s \
                     JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace \
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass \
                       AND d.objid = s.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                       AND d.deptype IN ('a', 'i') \
                     JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
                     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                     WHERE s.relkind = 'S' AND tn.nspname = ANY({schemas})"
                ))
                .await
        }
        Err(_) => Ok(Vec::new()),
    };
    pool.release(lease);
    let sequences = sequences?;
    let callable = callable?.into_iter().map(|r| field(&r, 0));
    let system = system?
        .into_iter()
        .map(|r| (field(&r, 0), field(&r, 1), field(&r, 2)));
    let catalog = build(columns?, indexes?, tenancy);
    // Only the sequences of tables the catalog protects (tenant tables and organizations).
    let protected = |schema: &str, table: &str| {
        catalog
            .table(schema, table)
            .is_some_and(|t| t.tenant_column().is_some())
    };
    let sequences: Vec<(String, String)> = sequences
        .iter()
        .filter(|r| protected(&field(r, 2), &field(r, 3)))
        .map(|r| (field(r, 0), field(r, 1)))
        .collect();
    Ok(catalog
        .with_callable(callable)
        .with_system_columns(system)
        .with_sequences(sequences))
}

type Rows = Vec<Vec<Option<String>>>;

fn field(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

/// Builds the catalog from the two discovery queries' rows.
fn build(columns: Rows, indexes: Rows, tenancy: &Tenancy) -> Catalog {
    let mut tables: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in &columns {
        tables
            .entry((field(r, 0), field(r, 1)))
            .or_default()
            .push(field(r, 2));
    }
    let mut unique: BTreeMap<String, ((String, String), Vec<String>)> = BTreeMap::new();
    for r in &indexes {
        let e = unique
            .entry(field(r, 2))
            .or_insert_with(|| ((field(r, 0), field(r, 1)), Vec::new()));
        e.1.push(field(r, 3));
    }
    let mut infos = Vec::new();
    let mut undeclared = Vec::new();
    for ((schema, name), cols) in tables {
        let kind = if name == "organizations" && cols.iter().any(|c| c == "id") {
            TableKind::Organizations
        } else if cols.contains(&tenancy.column) {
            TableKind::Tenant {
                column: tenancy.column.clone(),
            }
        } else if tenancy
            .global_tables
            .iter()
            .any(|g| *g == name || *g == format!("{schema}.{name}"))
        {
            TableKind::Global
        } else {
            // neither tenant data nor declared global: refused, with the fix named
            undeclared.push((schema, name));
            continue;
        };
        let tenant_unique = unique
            .values()
            .filter(|(t, idx)| {
                *t == (schema.clone(), name.clone()) && idx.contains(&tenancy.column)
            })
            .map(|(_, idx)| {
                idx.iter()
                    .filter(|c| **c != tenancy.column)
                    .cloned()
                    .collect()
            })
            .collect();
        infos.push(TableInfo {
            schema,
            name,
            kind,
            columns: cols,
            tenant_unique,
        });
    }
    Catalog::new(
        infos,
        tenancy.schemas.clone(),
        tenancy.allowed_functions.clone(),
    )
    .allowing_explain(tenancy.allow_explain)
    .with_undeclared(&tenancy.column, undeclared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn tables_are_classified_and_composite_keys_found() {
        let cols = vec![
            row(&["public", "users", "id"]),
            row(&["public", "users", "org_id"]),
            row(&["public", "users", "email"]),
            row(&["public", "organizations", "id"]),
            row(&["public", "countries", "code"]),
            row(&["public", "secrets", "v"]),
        ];
        let idx = vec![
            row(&["public", "users", "1", "org_id"]),
            row(&["public", "users", "1", "email"]),
            row(&["public", "users", "2", "id"]),
        ];
        let t = Tenancy {
            global_tables: vec!["countries".into()],
            ..Tenancy::default()
        };
        let c = build(cols, idx, &t);
        let users = c.table("public", "users").unwrap();
        assert_eq!(
            users.kind,
            TableKind::Tenant {
                column: "org_id".into()
            }
        );
        assert_eq!(users.tenant_unique, vec![vec!["email".to_string()]]);
        assert_eq!(
            c.table("public", "organizations").unwrap().kind,
            TableKind::Organizations
        );
        assert_eq!(
            c.table("public", "countries").unwrap().kind,
            TableKind::Global
        );
        assert!(c.table("public", "secrets").is_none());
    }
}
