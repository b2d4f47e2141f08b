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
            && ["insert", "update", "delete", "merge", "truncate", "copy"]
                .iter()
                .any(|w| mentions_word(sql, w)))
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

/// Whether `sql` has `word` (lowercase ASCII) standing alone (`updated_at` is not `update`).
fn mentions_word(sql: &str, word: &str) -> bool {
    let b = sql.as_bytes();
    let part = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || !c.is_ascii();
    b.len() >= word.len()
        && (0..=b.len() - word.len()).any(|i| {
            b[i..i + word.len()].eq_ignore_ascii_case(word.as_bytes())
                && (i == 0 || !part(b[i - 1]))
                && b.get(i + word.len()).is_none_or(|&c| !part(c))
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
        assert!(!mentions_word("in", "insert"));
    }
}
