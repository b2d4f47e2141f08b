//! Which statements may change what the cache answers, for the fence's write notes: those
//! naming `inventory_ledger`, and those naming `inventory_balances` with a writing keyword
//! (the mirror follows direct writes to the table too). Pure, and only a freshness hint: a
//! false positive costs the tenant's next reads a wait for the fence, never a wrong answer,
//! so reading words (not a parse) is enough here. A write that names neither table (a
//! function that writes it) is seen within `max_staleness_ms`, as bypassing writes are.

/// Whether running `sql` may change a balance the cache answers.
pub fn may_write_balances(sql: &str) -> bool {
    mentions(sql, "inventory_ledger")
        || (mentions(sql, "inventory_balances")
            && words(sql).any(|w| {
                ["insert", "update", "delete", "merge", "truncate", "copy"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
            }))
}

/// The words of `sql` (runs of letters, digits, `_`, `$` and non-ASCII), in one pass.
fn words(sql: &str) -> impl Iterator<Item = &[u8]> {
    let part = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$' || !c.is_ascii();
    sql.as_bytes()
        .split(move |c| !part(c))
        .filter(|w| !w.is_empty())
}

/// Whether `sql` contains `what` (lowercase ASCII), ignoring ASCII case.
pub fn mentions(sql: &str, what: &str) -> bool {
    let (hay, needle) = (sql.as_bytes(), what.as_bytes());
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|i| {
            hay[i].to_ascii_lowercase() == first
                && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_either_table_are_noted_and_lookups_are_not() {
        for (sql, writes) in [
            ("INSERT INTO inventory_ledger VALUES (1)", true),
            ("select * from INVENTORY_LEDGER", true),
            ("UPDATE inventory_balances SET quantity = 0", true),
            (
                "with x as (delete from public.inventory_balances returning 1) select 1",
                true,
            ),
            (
                "Merge INTO inventory_balances b USING t ON true WHEN MATCHED THEN DELETE",
                true,
            ),
            (
                "SELECT quantity, updated_at FROM inventory_balances WHERE item_id = $1",
                false,
            ),
            (
                "SELECT * FROM inventory_balances WHERE item_id = 'i_1'",
                false,
            ),
            (
                "SELECT * FROM inventory_balances WHERE item_id = 'update_me'",
                false,
            ),
            (
                "SELECT * FROM inventory_balances WHERE item_id = 'delete'",
                true,
            ),
            ("UPDATE items SET name = 'x'", false),
            ("", false),
        ] {
            assert_eq!(may_write_balances(sql), writes, "{sql}");
        }
        assert!(mentions("abc", ""));
        let w: Vec<&[u8]> = words("a.b_c, Insert(x)").collect();
        assert_eq!(w, [&b"a"[..], b"b_c", b"Insert", b"x"]);
    }
}
