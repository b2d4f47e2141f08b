//! `COPY t [(cols)] FROM STDIN [(options)]` for tenants. PostgreSQL refuses COPY FROM into a
//! table under row-level security, so the statement becomes one query string that stages the
//! stream and inserts it as the tenant:
//!
//! ```sql
//! CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT cols FROM schema.t WITH NO DATA;
//! -- only when the client lists the tenant column (or lists no columns):
//! ALTER TABLE pg_temp.orgwall_copy ADD CONSTRAINT "orgwall: …" CHECK (org_id IS NOT DISTINCT FROM <tenant>);
//! COPY pg_temp.orgwall_copy (cols) FROM STDIN (options);
//! INSERT INTO schema.t (cols[, org_id]) SELECT cols[, <tenant>] FROM pg_temp.orgwall_copy;
//! DROP TABLE pg_temp.orgwall_copy
//! ```
//!
//! PostgreSQL itself parses the client's stream (text, csv, binary) into columns of exactly the
//! target's types; the INSERT is an ordinary tenant write (RLS WITH CHECK, tenant-scoped foreign
//! keys, triggers), so nothing is written that an INSERT by the tenant could not write. The
//! staging table is created, filled and dropped inside the one query string (one transaction,
//! the client's own when it has one), so a failure anywhere leaves nothing behind. Options are
//! printed by Orgwall (quoted with [`quote_literal`]), never as the parser printed them.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Statement,
};

use super::build::Cx;
use super::dml::write_target;
use super::names::{self, ident};
use super::{Refusal, MARKER};
use crate::sql::quote_literal;

/// The staging table: in the server connection's own temporary schema, which no other server
/// connection sees. Tenants cannot create tables through Orgwall, and `CREATE TABLE` (not `IF
/// NOT EXISTS`) fails rather than use one that exists.
const STAGE: &str = "pg_temp.orgwall_copy";

/// Names the CHECK that keeps client-supplied tenant values to the session's tenant; PostgreSQL
/// quotes it in its error (`violates check constraint "orgwall: …"`).
const TENANT_CHECK: &str = "orgwall: tenant column is not the session's tenant";

/// Whether a constraint PostgreSQL names in an error is the staging table's tenant check: a
/// row of the stream named another tenant (reported as row-level security reports it).
pub fn is_tenant_check(constraint: &str) -> bool {
    constraint == TENANT_CHECK
}

/// The query string for a tenant's `COPY … FROM STDIN`, with the tenant as markers; `None`
/// when `stmt` is not a COPY FROM.
pub(super) fn expand(stmt: &mut Statement, cx: &mut Cx) -> Result<Option<String>, Refusal> {
    let Statement::Copy {
        source,
        to: false,
        target,
        options,
        legacy_options,
        payload,
    } = stmt
    else {
        return Ok(None);
    };
    if !matches!(target, CopyTarget::Stdin) {
        return Err(Refusal::policy(
            "COPY … FROM a file or program is not allowed",
        ));
    }
    if payload.is_some() {
        return Err(Refusal::unsupported(
            "COPY data inside the statement text is not supported; send it as COPY data",
        ));
    }
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(Refusal::syntax("COPY FROM needs a table, not a query"));
    };
    let t = write_target(table_name, None, "COPY … FROM", cx)?;
    let cols = if columns.is_empty() {
        t.table.columns.clone()
    } else {
        columns
            .iter()
            .map(names::norm)
            .collect::<Result<Vec<_>, _>>()?
    };
    let listed = cols
        .iter()
        .map(|c| ident(c).to_string())
        .collect::<Vec<_>>();
    let listed = listed.join(", ");
    let mut options = options.clone();
    for o in legacy_options.iter() {
        legacy_option(o, &mut options)?;
    }
    let options = copy_options(&options)?;
    let mut sql = format!(
        "CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {listed} FROM {table_name} WITH NO DATA; "
    );
    let supplies_tenant = cols.contains(&t.column);
    let column = ident(&t.column);
    if supplies_tenant {
        cx.holes += 1;
        sql.push_str(&format!(
            "ALTER TABLE {STAGE} ADD CONSTRAINT {} CHECK ({column} IS NOT DISTINCT FROM {MARKER}); ",
            ident(TENANT_CHECK)
        ));
    }
    sql.push_str(&format!("COPY {STAGE} ({listed}) FROM STDIN{options}; "));
    if supplies_tenant {
        sql.push_str(&format!(
            "INSERT INTO {table_name} ({listed}) SELECT {listed} FROM {STAGE}; "
        ));
    } else {
        cx.holes += 1;
        sql.push_str(&format!(
            "INSERT INTO {table_name} ({listed}, {column}) SELECT {listed}, {MARKER} FROM {STAGE}; "
        ));
    }
    sql.push_str(&format!("DROP TABLE {STAGE}"));
    Ok(Some(sql))
}

/// PostgreSQL's pre-9.0 option syntax (`COPY t FROM STDIN CSV HEADER`, which psql's `\copy`
/// users write), as the options it stands for; other dialects' options are refused.
fn legacy_option(o: &CopyLegacyOption, out: &mut Vec<CopyOption>) -> Result<(), Refusal> {
    match o {
        CopyLegacyOption::Binary => out.push(CopyOption::Format(Ident::new("binary"))),
        CopyLegacyOption::Delimiter(c) => out.push(CopyOption::Delimiter(*c)),
        CopyLegacyOption::Null(s) => out.push(CopyOption::Null(s.clone())),
        CopyLegacyOption::Header => out.push(CopyOption::Header(true)),
        CopyLegacyOption::Csv(csv) => {
            out.push(CopyOption::Format(Ident::new("csv")));
            for c in csv {
                out.push(match c {
                    CopyLegacyCsvOption::Header => CopyOption::Header(true),
                    CopyLegacyCsvOption::Quote(q) => CopyOption::Quote(*q),
                    CopyLegacyCsvOption::Escape(e) => CopyOption::Escape(*e),
                    CopyLegacyCsvOption::ForceNotNull(cs) => CopyOption::ForceNotNull(cs.clone()),
                    CopyLegacyCsvOption::ForceQuote(cs) => CopyOption::ForceQuote(cs.clone()),
                });
            }
        }
        other => {
            return Err(Refusal::unsupported(format!(
                "COPY option {other} is not PostgreSQL's"
            )))
        }
    }
    Ok(())
}

/// The client's options as Orgwall prints them: ` (opt, …)`, or nothing.
fn copy_options(options: &[CopyOption]) -> Result<String, Refusal> {
    if options.is_empty() {
        return Ok(String::new());
    }
    let columns = |cs: &[sqlparser::ast::Ident]| -> Result<String, Refusal> {
        let names = cs
            .iter()
            .map(|c| names::norm(c).map(|n| ident(&n).to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names.join(", "))
    };
    let char_lit = |c: &char| quote_literal(&c.to_string());
    let mut out = Vec::with_capacity(options.len());
    for o in options {
        out.push(match o {
            CopyOption::Format(f) => {
                let f = names::norm(f)?;
                if !matches!(f.as_str(), "text" | "csv" | "binary") {
                    return Err(Refusal::syntax(format!(
                        "COPY format \"{f}\" not recognized"
                    )));
                }
                format!("FORMAT {f}")
            }
            CopyOption::Freeze(b) => format!("FREEZE {b}"),
            CopyOption::Header(b) => format!("HEADER {b}"),
            CopyOption::Delimiter(c) => format!("DELIMITER {}", char_lit(c)),
            CopyOption::Quote(c) => format!("QUOTE {}", char_lit(c)),
            CopyOption::Escape(c) => format!("ESCAPE {}", char_lit(c)),
            CopyOption::Null(s) => format!("NULL {}", quote_literal(s)),
            CopyOption::Encoding(s) => format!("ENCODING {}", quote_literal(s)),
            CopyOption::ForceNotNull(cs) => format!("FORCE_NOT_NULL ({})", columns(cs)?),
            CopyOption::ForceNull(cs) => format!("FORCE_NULL ({})", columns(cs)?),
            CopyOption::ForceQuote(_) => {
                return Err(Refusal::syntax("COPY FORCE_QUOTE is only for COPY TO"))
            }
        });
    }
    Ok(format!(" ({})", out.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::super::{rewrite, Catalog};

    /// The expansion rendered for `org_a`, or the refusal's SQLSTATE and message.
    fn expand(sql: &str) -> Result<String, (String, String)> {
        let t = rewrite(sql, &Catalog::seed_for_tests())
            .map_err(|e| (e.code.to_string(), e.message.clone()))?;
        assert!(t.copy_in(), "{sql} is not marked as COPY FROM");
        assert_eq!(
            t.statement_count(),
            1,
            "{sql}: the client's statement count"
        );
        t.render_checked("org_a")
            .map_err(|e| (e.code.to_string(), e.message))
    }

    #[test]
    fn copy_from_stdin_stages_and_inserts_as_the_tenant() {
        let cases: &[(&str, &str)] = &[
            (
                "COPY items (id, item_number) FROM STDIN",
                "CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT id, item_number FROM public.items WITH NO DATA; \
                 COPY pg_temp.orgwall_copy (id, item_number) FROM STDIN; \
                 INSERT INTO public.items (id, item_number, org_id) SELECT id, item_number, 'org_a' FROM pg_temp.orgwall_copy; \
                 DROP TABLE pg_temp.orgwall_copy",
            ),
            (
                "copy Items (ID, \"Description\") from stdin with (format csv, header, delimiter ';', null '', quote '''', escape '\\', force_not_null (id), force_null (\"Description\"), encoding 'utf8', freeze)",
                "CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT id, \"Description\" FROM public.items WITH NO DATA; \
                 COPY pg_temp.orgwall_copy (id, \"Description\") FROM STDIN (FORMAT csv, HEADER true, DELIMITER ';', NULL '', QUOTE '''', ESCAPE E'\\\\', FORCE_NOT_NULL (id), FORCE_NULL (\"Description\"), ENCODING 'utf8', FREEZE true); \
                 INSERT INTO public.items (id, \"Description\", org_id) SELECT id, \"Description\", 'org_a' FROM pg_temp.orgwall_copy; \
                 DROP TABLE pg_temp.orgwall_copy",
            ),
            (
                "COPY locations (id, org_id, name) FROM STDIN (FORMAT binary)",
                "CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT id, org_id, name FROM public.locations WITH NO DATA; \
                 ALTER TABLE pg_temp.orgwall_copy ADD CONSTRAINT \"orgwall: tenant column is not the session's tenant\" CHECK (org_id IS NOT DISTINCT FROM 'org_a'); \
                 COPY pg_temp.orgwall_copy (id, org_id, name) FROM STDIN (FORMAT binary); \
                 INSERT INTO public.locations (id, org_id, name) SELECT id, org_id, name FROM pg_temp.orgwall_copy; \
                 DROP TABLE pg_temp.orgwall_copy",
            ),
            (
                "COPY items (id) FROM STDIN CSV HEADER QUOTE AS '\"' DELIMITER AS '|' NULL AS 'x'",
                "CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT id FROM public.items WITH NO DATA; \
                 COPY pg_temp.orgwall_copy (id) FROM STDIN (FORMAT csv, HEADER true, QUOTE '\"', DELIMITER '|', NULL 'x'); \
                 INSERT INTO public.items (id, org_id) SELECT id, 'org_a' FROM pg_temp.orgwall_copy; \
                 DROP TABLE pg_temp.orgwall_copy",
            ),
        ];
        for (sql, want) in cases {
            let want = want
                .split("; ")
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ");
            assert_eq!(expand(sql), Ok(want), "{sql}");
        }
    }

    #[test]
    fn without_a_column_list_every_column_is_staged_and_the_tenant_checked() {
        let got = expand("COPY users FROM STDIN").expect("expands");
        assert!(got.contains("ADD CONSTRAINT \"orgwall: tenant column is not the session's tenant\" CHECK (org_id IS NOT DISTINCT FROM 'org_a')"), "{got}");
        assert!(got.contains(" org_id"), "{got}");
        assert!(
            got.starts_with("CREATE TEMP TABLE pg_temp.orgwall_copy ON COMMIT DROP AS SELECT "),
            "{got}"
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "COPY items FROM '/etc/passwd'",
                "42501",
                "COPY … FROM a file or program is not allowed",
            ),
            (
                "COPY items FROM PROGRAM 'id'",
                "42501",
                "COPY … FROM a file or program is not allowed",
            ),
            (
                "COPY organizations FROM STDIN",
                "42501",
                "COPY … FROM on organizations is not allowed",
            ),
            ("COPY pg_class FROM STDIN", "42501", "system relation"),
            (
                "COPY items FROM STDIN; SELECT 1",
                "0A000",
                "must be the only statement",
            ),
            (
                "SELECT 1; COPY items FROM STDIN",
                "0A000",
                "must be the only statement",
            ),
            (
                "COPY items FROM STDIN (FORMAT sql)",
                "42601",
                "not recognized",
            ),
            (
                "COPY items FROM STDIN (FORCE_QUOTE (id))",
                "42601",
                "only for COPY TO",
            ),
            (
                "COPY items FROM STDIN CSV FORCE QUOTE id",
                "42601",
                "only for COPY TO",
            ),
            (
                "COPY items FROM STDIN WHERE id = 'x'",
                "0A000",
                "COPY … FROM … WHERE is not supported",
            ),
        ];
        for (sql, code, part) in cases {
            match rewrite(sql, &Catalog::seed_for_tests()) {
                Ok(t) => panic!("{sql}: expected refusal, got {}", t.render("org_a")),
                Err(e) => {
                    assert_eq!(e.code, *code, "{sql}: {}", e.message);
                    assert!(e.message.contains(part), "{sql}: {}", e.message);
                }
            }
        }
    }
}
