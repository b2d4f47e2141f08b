"""psycopg 3's COPY FROM as one tenant (the driver matrix, issue 18): prints one line per result.

argv[1] is a connection URL; tests/driver_matrix.rs compares the transcript through Orgwall with
the one under row-level security. PostgreSQL refuses COPY FROM there (the reference's URL sets
app.org_id), so the reference inserts the same rows; through Orgwall each COPY must succeed.
"""
import sys

import psycopg

REFERENCE = "app.org_id" in sys.argv[1]
out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


def copy_rows(c, sql, columns, rows, binary_types=None):
    """COPY `rows` with `write_row` (or INSERT them, for the reference); the row count."""
    cur = c.cursor()
    if REFERENCE:
        marks = ", ".join(["%s"] * len(columns))
        cur.executemany(f"INSERT INTO {sql} ({', '.join(columns)}) VALUES ({marks})", rows)
        return len(rows)
    with cur.copy(f"COPY {sql} ({', '.join(columns)}) FROM STDIN"
                  + (" (FORMAT BINARY)" if binary_types else "")) as cp:
        if binary_types:
            cp.set_types(binary_types)
        for r in rows:
            cp.write_row(r)
    return cur.rowcount


with psycopg.connect(sys.argv[1], autocommit=True) as c:
    say("text", copy_rows(c, "feature_flags", ["id", "key", "enabled", "description"],
                          [(f"ff_py_t{i}", f"py_text_{i}", i % 2 == 0, None if i % 3 else "tab\there")
                           for i in range(20)]))
    say("binary", copy_rows(c, "items", ["id", "item_number", "description", "active"],
                            [(f"i_py_b{i}", f"PY-{i}", "ünïcode", i % 2 == 1) for i in range(10)],
                            binary_types=["text", "text", "text", "bool"]))
    say("ledger", copy_rows(c, "inventory_ledger", ["id", "item_id", "location_id", "quantity_delta"],
                            [(f"led_py{i}", "i_a1", "l_a1", i) for i in range(1, 5)]))
    cur = c.cursor()
    cur.execute("SELECT item_id, location_id, quantity::text FROM inventory_balances ORDER BY 1, 2")
    say("balances after the ledger COPY", cur.fetchall())
    # csv written as a block, in the client's own transaction.
    with c.transaction():
        cur = c.cursor()
        if REFERENCE:
            cur.execute("INSERT INTO locations (id, site, name) VALUES ('l_py1', 'North', 'N, 1'), ('l_py2', 'North', 'N-2')")
        else:
            with cur.copy("COPY locations (id, site, name) FROM STDIN (FORMAT csv)") as cp:
                cp.write('l_py1,North,"N, 1"\nl_py2,North,N-2\n')
        say("csv in a transaction", cur.rowcount)
    # Rolled back with the transaction.
    try:
        with c.transaction():
            say("rolled back", copy_rows(c, "feature_flags", ["id", "key"], [("ff_py_gone", "gone")]))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    cur = c.cursor()
    for table, cols in (("feature_flags", "id, key, enabled, description, org_id"),
                        ("items", "id, item_number, description, active, org_id"),
                        ("locations", "id, site, name, org_id")):
        cur.execute(f"SELECT {cols} FROM {table} ORDER BY id")
        say(table, cur.fetchall())

print("\n".join(out))
