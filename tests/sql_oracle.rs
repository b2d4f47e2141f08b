//! Orgwall reads SQL as PostgreSQL does: a differential test against PostgreSQL 15's own
//! parser (libpg_query, through the `pg_query` crate). Generated and mutated SQL — quotes,
//! `E''` glued to keywords and numbers, `U&''`, dollar quotes, nested comments, `--` ended by
//! CR, backslashes, `::`, field selection, several statements — goes through
//! - Orgwall's lexer (statement split and session effects: what admin pass-through and the
//!   multiplexing pre-check use): its statement count and SET/RESET targets must be
//!   PostgreSQL's for every input PostgreSQL parses;
//! - the tenant rewriter: for every input it accepts, PostgreSQL must read the SQL Orgwall
//!   sends as the same number of statements, of the same kinds, with the same SET/RESET targets
//!   as Orgwall's own summary, and every function PostgreSQL will call must pass Orgwall's
//!   function check.
//!
//! Bounded for CI (`ORACLE_INPUTS`, default 20000; `ORACLE_SEED` picks another sequence).

use orgwall_e2e::rng::Rng;
use std::collections::BTreeSet;

use orgwall::sql::rewrite::{function_allowed, rewrite, Catalog};
use orgwall::sql::{self, SessionEffect};
use pg_query::protobuf::{self, node::Node as N};

/// Functions PostgreSQL's grammar produces for SQL-standard syntax (`EXTRACT(… FROM …)`,
/// `TRIM(…)`, `x AT TIME ZONE y`, …): syntax the rewriter allows, not calls a tenant wrote.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "pg_catalog.extract",
    "pg_catalog.btrim",
    "pg_catalog.ltrim",
    "pg_catalog.rtrim",
    "pg_catalog.position",
    "pg_catalog.substring",
    "pg_catalog.overlay",
    "pg_catalog.timezone",
    "pg_catalog.overlaps",
    "pg_catalog.like_escape",
    "pg_catalog.similar_to_escape",
    "pg_catalog.similar_escape",
    "pg_catalog.normalize",
    "pg_catalog.is_normalized",
    "pg_catalog.collation_for",
];

/// Pieces that stress every place two SQL readers can disagree.
const FRAGMENTS: &[&str] = &[
    "SELECT",
    "select ",
    " FROM items",
    " WHERE ",
    "id",
    " = ",
    "1",
    "1e",
    "1.5e",
    "2e5e",
    "x1e",
    "'",
    "''",
    "'a'",
    "E'",
    "e'",
    "ELSE'",
    "CASE WHEN false THEN 'a' ELSE'\\' END",
    "\\",
    "\\'",
    "\\\\",
    "U&'",
    "U&\"",
    "\"",
    "\"\"",
    "\"a;b\"",
    "$$",
    "$a$",
    "$é$",
    "$1",
    "a$b$",
    "/*",
    "*/",
    "/* /* */ */",
    "--",
    "\n",
    "\r",
    " ",
    "\t",
    ";",
    "; ",
    ",",
    "(",
    ")",
    "::text",
    "::int",
    "(x).",
    "pg_read_file",
    "(u).email",
    "u.text",
    "lower(",
    "set_config('app.x', 'v', false)",
    "\"set_config\"('app.y', 'w', false)",
    "SET ",
    "SET LOCAL ",
    "RESET ",
    "statement_timeout",
    "app.x",
    "standard_conforming_strings",
    " TO ",
    "off",
    "on",
    "'UTC'",
    "TIME ZONE ",
    "SAVEPOINT s",
    "ROLLBACK TO s",
    "BEGIN",
    "COMMIT",
    "DECLARE c CURSOR ",
    "WITH HOLD ",
    "WITH/**/HOLD ",
    "FOR ",
    "UNION ALL ",
    "|| ",
    "'; SET statement_timeout TO 1; SELECT '",
    "E'\\'; SET statement_timeout TO 1; SELECT '",
    "B'01'",
    "X'1f'",
    "N'x'",
    "VALUES (1)",
    r#"'\''"#,
    r#""\"""#,
    "B'0''",
    "'a''''b'",
    r"E'\\'",
    r"U&'\0041'",
    " UESCAPE '!'",
    "$q$'$q$",
    "SHOW ",
    "SHOW app.x",
    "SHOW TIME ZONE",
    "SHOW \"App\".x",
    "SHOW ALL",
    "N'a''b'",
    r#""a""b""#,
    r"'\''; DELETE FROM users; --'",
    r#""""#,
];

/// Whole statements the mutations start from.
const SEEDS: &[&str] = &[
    r"SELECT '\''; DELETE FROM users; --'",
    r#"SELECT "\""; DELETE FROM users; --" FROM items"#,
    "SELECT B'0''; DELETE FROM users; --'",
    "UPDATE items SET name = 'a''''b' WHERE id = 1",
    "SHOW app.x",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SELECT id, name FROM items WHERE id = 1",
    "SELECT CASE WHEN false THEN 'a' ELSE'\\' END || '; SET standard_conforming_strings TO off; SELECT '",
    "SELECT '\\', ' UNION ALL SELECT email FROM users -- '",
    "SET statement_timeout = 5",
    "SET/**/app.x = 'a'",
    "SELECT set_config('app.x', 'v', false)",
    "DECLARE c CURSOR WITH/**/HOLD FOR SELECT 1",
    "SELECT lower(name), count(*) FROM items GROUP BY 1",
    "INSERT INTO items (id, name) VALUES (1, 'a''b')",
    "UPDATE items SET name = E'x\\'y' WHERE id = 2",
    "SELECT $q$ ; $q$, 'x' -- ; c\rSET app.y = 1",
    "SELECT 1e'\\';' ; SELECT 2",
];

fn generate(rng: &mut Rng) -> String {
    if rng.below(3) == 0 {
        let n = 2 + rng.below(12);
        return (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
    }
    let mut s = rng.pick(SEEDS).to_string();
    for _ in 0..1 + rng.below(3) {
        let mut at = rng.below(s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        if rng.below(4) == 0 && at < s.len() {
            let mut end = at + 1;
            while !s.is_char_boundary(end) {
                end += 1;
            }
            s.replace_range(at..end, "");
        } else {
            s.insert_str(at, rng.pick(FRAGMENTS));
        }
    }
    s
}

/// A statement as PostgreSQL read it: its kind and, for SET/RESET, the target.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Read {
    Set(String),
    Reset(String),
    ResetAll,
    Local,
    HoldCursor,
    /// A SET or RESET Orgwall does not track (refused in transaction pooling, pins the
    /// connection in session pooling): agrees with any SET or RESET.
    Untracked,
    Show(String),
    Other(&'static str),
}

/// Orgwall's effects agree with PostgreSQL's, statement by statement.
fn agree(ours: &[Read], pg: &[Read]) -> bool {
    ours.len() == pg.len()
        && ours.iter().zip(pg).all(|(o, p)| {
            o == p || (*o == Read::Untracked && matches!(p, Read::Set(_) | Read::Reset(_)))
        })
}

fn pg_reading(sql: &str) -> Option<(Vec<Read>, BTreeSet<String>)> {
    let parsed = pg_query::parse(sql).ok()?;
    let reads = parsed
        .protobuf
        .stmts
        .iter()
        .map(|s| match s.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            Some(N::VariableSetStmt(v)) => {
                use protobuf::VariableSetKind as K;
                match K::from_i32(v.kind) {
                    _ if v.is_local => Read::Local,
                    Some(K::VarSetValue | K::VarSetDefault | K::VarSetCurrent) => {
                        Read::Set(v.name.to_ascii_lowercase())
                    }
                    Some(K::VarReset) => Read::Reset(v.name.to_ascii_lowercase()),
                    Some(K::VarResetAll) => Read::ResetAll,
                    _ => Read::Local, // SET TRANSACTION and friends
                }
            }
            Some(N::DeclareCursorStmt(d)) if d.options & 0x20 != 0 => Read::HoldCursor,
            Some(N::VariableShowStmt(v)) => Read::Show(v.name.to_ascii_lowercase()),
            Some(N::SelectStmt(_)) => Read::Other("select"),
            Some(N::InsertStmt(_)) => Read::Other("insert"),
            Some(N::UpdateStmt(_)) => Read::Other("update"),
            Some(N::DeleteStmt(_)) => Read::Other("delete"),
            Some(N::TransactionStmt(_)) => Read::Other("transaction"),
            Some(N::DeclareCursorStmt(_)) => Read::Other("declare"),
            _ => Read::Other("other"),
        })
        .collect();
    Some((reads, parsed.functions().into_iter().collect()))
}

/// Orgwall's effects in PostgreSQL's terms (what must match).
fn orgwall_reading(effects: &[SessionEffect]) -> Vec<Read> {
    effects
        .iter()
        .filter_map(|e| match e {
            SessionEffect::Set { name, .. } | SessionEffect::SetParam { name, .. } => {
                Some(Read::Set(name.clone()))
            }
            SessionEffect::Reset { name } => Some(Read::Reset(name.clone())),
            SessionEffect::ResetAll => Some(Read::ResetAll),
            SessionEffect::Pinned("WITH HOLD cursors") => Some(Read::HoldCursor),
            SessionEffect::Pinned("an unrecognised SET form" | "an unrecognised RESET form") => {
                Some(Read::Untracked)
            }
            _ => None,
        })
        .collect()
}

/// PostgreSQL's SET-like statements (`set_config` calls are function calls to it).
fn pg_effects(reads: &[Read]) -> Vec<Read> {
    reads
        .iter()
        .filter(|r| {
            matches!(
                r,
                Read::Set(_) | Read::Reset(_) | Read::ResetAll | Read::HoldCursor
            )
        })
        .cloned()
        .collect()
}

#[derive(Default, Debug)]
struct Counts {
    inputs: usize,
    pg_parsed: usize,
    tenant_accepted: usize,
    /// Accepted by the rewriter, but PostgreSQL rejects the client text and the rendered SQL.
    both_refuse: usize,
}

fn check_one(sql: &str, catalog: &Catalog, counts: &mut Counts) -> Result<(), String> {
    counts.inputs += 1;
    let pg = pg_reading(sql);
    // The lexer: statement split and session effects, for every input PostgreSQL parses.
    if let Some((reads, _)) = &pg {
        counts.pg_parsed += 1;
        let summary = sql::summarize(sql);
        if summary.statements != reads.len() {
            return Err(format!(
                "lexer split {} statements, PostgreSQL {}",
                summary.statements,
                reads.len()
            ));
        }
        let ours = without_set_config(
            orgwall_reading(&summary.effects),
            reads,
            &pg.as_ref().unwrap().1,
        );
        if !agree(&ours, &pg_effects(reads)) {
            return Err(format!(
                "lexer effects {ours:?}, PostgreSQL {:?}",
                pg_effects(reads)
            ));
        }
    }
    // The rewriter: what PostgreSQL will run is what Orgwall summarised and checked.
    let Ok(template) = rewrite(sql, catalog) else {
        return Ok(());
    };
    counts.tenant_accepted += 1;
    let rendered = template.render("org_a");
    let Some((reads, functions)) = pg_reading(&rendered) else {
        // Both refuse (sqlparser accepts some text PostgreSQL rejects: `""`, `SELECT select`):
        // PostgreSQL answers with its syntax error.
        if pg.is_none() {
            counts.both_refuse += 1;
            return Ok(());
        }
        return Err(format!(
            "PostgreSQL cannot parse the rendered SQL {rendered:?}"
        ));
    };
    if reads.len() != template.statement_count() {
        return Err(format!(
            "rendered {rendered:?}: Orgwall counts {} statements, PostgreSQL {}",
            template.statement_count(),
            reads.len()
        ));
    }
    if let Some((client, _)) = &pg {
        let kinds = |r: &[Read]| {
            r.iter()
                .map(|x| match x {
                    Read::Show(n) => format!("show {n}"),
                    other => format!("{:?}", std::mem::discriminant(other)),
                })
                .collect::<Vec<_>>()
        };
        if kinds(client) != kinds(&reads) {
            return Err(format!(
                "client text read as {client:?}, rendered SQL as {reads:?}"
            ));
        }
    }
    let ours = without_set_config(
        orgwall_reading(&template.summary().effects),
        &reads,
        &functions,
    );
    if !agree(&ours, &pg_effects(&reads)) {
        return Err(format!(
            "rendered {rendered:?}: Orgwall's effects {ours:?}, PostgreSQL's {:?}",
            pg_effects(&reads)
        ));
    }
    for f in &functions {
        let name = f.to_ascii_lowercase();
        if !SYNTAX_FUNCTIONS.contains(&name.as_str())
            && name != "set_config"
            && name != "pg_catalog.set_config"
            && !function_allowed(f, catalog)
        {
            return Err(format!("PostgreSQL would call {f} in {rendered:?}"));
        }
    }
    Ok(())
}

/// Orgwall's effects less the `Set`s that stand for `set_config` calls (PostgreSQL reads a
/// function call there, not a SET): those PostgreSQL has no SET for, when it calls set_config.
fn without_set_config(ours: Vec<Read>, pg: &[Read], functions: &BTreeSet<String>) -> Vec<Read> {
    let calls = functions.iter().any(|f| {
        f.eq_ignore_ascii_case("set_config") || f.eq_ignore_ascii_case("pg_catalog.set_config")
    });
    ours.into_iter()
        .filter(|r| !(calls && matches!(r, Read::Set(_)) && !pg.contains(r)))
        .collect()
}

#[test]
fn orgwall_reads_sql_as_postgresql_does() {
    let catalog = Catalog::seed_for_tests();
    let inputs: usize = std::env::var("ORACLE_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed0f_0a11);
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    let fixed = SEEDS.iter().map(|s| s.to_string());
    let generated = (0..inputs).map(|_| generate(&mut rng));
    for sql in fixed.chain(generated) {
        if let Err(why) = check_one(&sql, &catalog, &mut counts) {
            failures.push(format!("{sql:?}: {why}"));
        }
    }
    eprintln!("sql_oracle: {counts:?}, {} disagreements", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} inputs read differently:\n{}",
        failures.len(),
        counts.inputs,
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        counts.pg_parsed > inputs / 10 && counts.tenant_accepted > inputs / 20,
        "{counts:?}"
    );
}
