//! Table-driven tests: SQL in, a compact rendering of the analysis out.

use super::*;

/// Renders an analysis as `op; r:schema.name(cols) w:name(cols); limit`.
fn render(info: &StatementInfo) -> String {
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
        ("COPY users TO STDOUT", "Copy; r:users()"),
        ("COPY items FROM STDIN", "Copy; w:items() r:items()"),
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
