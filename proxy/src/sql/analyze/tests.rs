//! Table-driven tests: SQL in, a compact rendering of the analysis out.

use super::*;

/// Renders an analysis as `op; r:schema.name(cols) w:name(cols); limit`, then each nested
/// write as ` | op; tables`.
fn render(info: &StatementInfo) -> String {
    let mut out = render_one(info);
    for part in &info.nested {
        assert!(part.nested.is_empty(), "parts have no parts");
        out.push_str(" | ");
        out.push_str(&render_one(part));
    }
    out
}

fn render_one(info: &StatementInfo) -> String {
    let tables: Vec<String> = info
        .tables
        .iter()
        .map(|t| {
            let a = if t.access == Access::Read { "r" } else { "w" };
            let s = if t.schema.is_empty() {
                String::new()
            } else {
                format!("{}.", t.schema)
            };
            format!("{a}:{s}{}({})", t.name, t.columns.join(","))
        })
        .collect();
    let limit = info
        .limit
        .map(|l| format!("; limit {l}"))
        .unwrap_or_default();
    format!("{:?}; {}{limit}", info.operation, tables.join(" "))
}

fn check(sql: &str, expected: &str) {
    let got = analyze(sql).expect("parses");
    assert_eq!(got.len(), 1, "{sql}");
    assert_eq!(render(&got[0]), expected, "{sql}");
}

#[test]
fn statements_are_classified_with_their_tables() {
    let cases = [
        ("SELECT 1", "Select; "),
        ("SELECT id, email FROM users", "Select; r:users(email,id)"),
        ("SELECT * FROM public.users", "Select; r:public.users(*)"),
        // `TABLE t` reads every column of t, as plugins must see (issue 18 opened it).
        ("TABLE users", "Select; r:users(*)"),
        (
            "SELECT * FROM (TABLE public.users) u",
            "Select; r:public.users(*)",
        ),
        (
            "SELECT u.email, i.sku FROM users u JOIN items i ON i.org_id = u.org_id",
            "Select; r:users(email,org_id) r:items(org_id,sku)",
        ),
        ("SELECT users.email FROM users", "Select; r:users(email)"),
        ("SELECT u.* FROM users u", "Select; r:users(*)"),
        (
            "SELECT * FROM inventory_ledger LIMIT 10",
            "Select; r:inventory_ledger(*); limit 10",
        ),
        ("SELECT id FROM items LIMIT $1", "Select; r:items(id)"),
        (
            "WITH recent AS (SELECT * FROM audit_logs) SELECT * FROM recent",
            "Select; r:audit_logs(*)",
        ),
        (
            "SELECT id FROM items WHERE id IN (SELECT item_id FROM inventory_ledger)",
            "Select; r:items(id,item_id) r:inventory_ledger(id,item_id)",
        ),
        (
            "INSERT INTO inventory_ledger (item_id, qty) VALUES (1, 2)",
            "Insert; w:inventory_ledger(item_id,qty)",
        ),
        (
            "INSERT INTO audit_logs SELECT * FROM users",
            "Insert; w:audit_logs(*) r:users(*)",
        ),
        (
            "UPDATE inventory_ledger SET qty = 0 WHERE id = 1",
            "Update; w:inventory_ledger(id,qty) r:inventory_ledger(id,qty)",
        ),
        (
            "DELETE FROM inventory_ledger WHERE id = 1",
            "Delete; w:inventory_ledger(id) r:inventory_ledger(id)",
        ),
        (
            "TRUNCATE inventory_ledger, audit_logs",
            "Truncate; w:inventory_ledger() r:inventory_ledger() w:audit_logs() r:audit_logs()",
        ),
        ("COPY users TO STDOUT", "Copy; r:users(*)"),
        (
            "COPY users (id, email) TO STDOUT",
            "Copy; r:users(email,id)",
        ),
        ("COPY items FROM STDIN", "Copy; w:items(*) r:items(*)"),
        ("CREATE TABLE x (a int)", "Ddl; w:x() r:x()"),
        ("SET search_path = public", "Utility; "),
        ("BEGIN", "Utility; "),
        ("SELECT \"Email\" FROM \"Users\"", "Select; r:Users(Email)"),
    ];
    for (sql, expected) in cases {
        check(sql, expected);
    }
}

#[test]
fn multi_statement_text_gives_one_analysis_each() {
    let got = analyze("SELECT 1; DELETE FROM items").expect("parses");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].operation, Operation::Delete);
}

#[test]
fn unparsable_text_is_an_error() {
    assert!(matches!(analyze("SELEC oops"), Err(AnalyzeError::Parse(_))));
}

/// Writes wherever they are in the statement tree are parts of their own, with the write's
/// operation, and the statement lists their targets as written.
#[test]
fn nested_writes_are_parts_with_their_own_operation() {
    let cases = [
        (
            "WITH d AS (DELETE FROM inventory_ledger WHERE id = 1 RETURNING id) SELECT * FROM d",
            "Select; w:inventory_ledger(*,id) r:inventory_ledger(*,id) \
             | Delete; w:inventory_ledger(id) r:inventory_ledger(id)",
        ),
        (
            "WITH u AS (UPDATE inventory_ledger SET reason = 'x' RETURNING id) SELECT id FROM u",
            "Select; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason) \
             | Update; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason)",
        ),
        // At depth: in a subquery's WITH, and in a write's WITH.
        (
            "SELECT * FROM items WHERE id IN \
             (WITH d AS (DELETE FROM inventory_ledger RETURNING item_id) SELECT item_id FROM d)",
            "Select; r:items(*,id,item_id) w:inventory_ledger(*,id,item_id) \
             r:inventory_ledger(*,id,item_id) | Delete; w:inventory_ledger(item_id) \
             r:inventory_ledger(item_id)",
        ),
        (
            "WITH a AS (WITH b AS (UPDATE inventory_ledger SET reason = 'x' RETURNING id) \
             INSERT INTO audit_logs (id) SELECT id FROM b RETURNING id) SELECT 1",
            "Select; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason) \
             w:audit_logs(id,reason) r:audit_logs(id,reason) \
             | Update; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason) \
             | Insert; w:audit_logs(id)",
        ),
        // ON CONFLICT DO UPDATE updates the target (DO NOTHING does not).
        (
            "INSERT INTO inventory_ledger (id, reason) VALUES (1, 'x') \
             ON CONFLICT (id) DO UPDATE SET reason = excluded.reason",
            "Insert; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason) \
             | Update; w:inventory_ledger(id,reason) r:inventory_ledger(id,reason)",
        ),
        (
            "INSERT INTO inventory_ledger (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
            "Insert; w:inventory_ledger(id)",
        ),
        // MERGE: one part per kind of action.
        (
            "MERGE INTO inventory_ledger l USING items i ON l.item_id = i.id \
             WHEN MATCHED AND i.sku = 'x' THEN DELETE \
             WHEN MATCHED THEN UPDATE SET reason = 'y' \
             WHEN NOT MATCHED THEN INSERT (id) VALUES (i.id)",
            "Merge; w:inventory_ledger(id,item_id,reason) r:inventory_ledger(id,item_id,reason) \
             r:items(id,reason,sku) | Delete; w:inventory_ledger(id,item_id,reason) \
             r:inventory_ledger(id,item_id,reason) r:items(id,reason,sku) \
             | Update; w:inventory_ledger(id,item_id,reason) \
             r:inventory_ledger(id,item_id,reason) r:items(id,reason,sku) \
             | Insert; w:inventory_ledger(id,item_id,reason) r:items(id,reason,sku)",
        ),
        // Statements that run another: EXPLAIN ANALYZE, PREPARE, COPY (… RETURNING) TO.
        (
            "EXPLAIN ANALYZE DELETE FROM inventory_ledger",
            "Other; w:inventory_ledger() r:inventory_ledger() \
             | Delete; w:inventory_ledger() r:inventory_ledger()",
        ),
        (
            "PREPARE p AS DELETE FROM inventory_ledger",
            "Other; w:inventory_ledger() r:inventory_ledger() \
             | Delete; w:inventory_ledger() r:inventory_ledger()",
        ),
        (
            "COPY (DELETE FROM inventory_ledger RETURNING id) TO STDOUT",
            "Copy; w:inventory_ledger(id) r:inventory_ledger(id) \
             | Delete; w:inventory_ledger(id) r:inventory_ledger(id)",
        ),
        // Reads only: no parts.
        (
            "WITH r AS (SELECT id FROM items) SELECT id FROM r",
            "Select; r:items(id)",
        ),
    ];
    for (sql, expected) in cases {
        check(sql, expected);
    }
}

/// Whole rows read as a value count as every column (`*`).
#[test]
fn whole_row_reads_list_every_column() {
    let cases = [
        ("SELECT u FROM users u", "Select; r:users(*,u)"),
        ("SELECT users FROM users", "Select; r:users(*,users)"),
        ("SELECT row_to_json(u) FROM users u", "Select; r:users(*,u)"),
        ("SELECT u::text FROM users u", "Select; r:users(*,u)"),
        ("SELECT row_to_json(u.*) FROM users u", "Select; r:users(*)"),
        ("SELECT (u.*)::text FROM users u", "Select; r:users(*)"),
        (
            "SELECT public.users FROM public.users",
            "Select; r:public.users(*)",
        ),
        (
            "SELECT id FROM users u WHERE u IS NOT NULL",
            "Select; r:users(*,id,u)",
        ),
        // Not whole rows: a column, count(*), another table's row.
        ("SELECT u.id FROM users u", "Select; r:users(id)"),
        ("SELECT count(*) FROM users", "Select; r:users()"),
        (
            "SELECT i FROM users u JOIN items i ON i.id = u.id",
            "Select; r:users(i,id) r:items(*,i,id)",
        ),
    ];
    for (sql, expected) in cases {
        check(sql, expected);
    }
}
