"""psycopg 3 through a connection string given as argv[1]: prints one line per result.

Run against PostgreSQL directly and through Orgwall by tests/python_drivers.rs, which compares
the two transcripts. Covers psycopg's own protocol habits: server-side prepare after
`prepare_threshold` runs, `DEALLOCATE ALL` after every rollback, pipeline mode (with an
error inside), binary results, COPY text and binary in and out, named (server-side) cursors,
nested transactions as savepoints, notices, session settings, RESET back to the startup
packet's settings.
"""
import decimal
import sys

import psycopg

out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


with psycopg.connect(sys.argv[1], prepare_threshold=2) as c:
    c.add_notice_handler(lambda d: say("notice", d.message_primary))
    c.execute("DROP TABLE IF EXISTS pyflow")
    c.execute("CREATE TABLE pyflow (id int PRIMARY KEY, name text, amount numeric, b bytea)")
    c.commit()
    with c.cursor() as cur:
        for i in range(8):
            cur.execute(
                "INSERT INTO pyflow VALUES (%s, %s, %s, %s)",
                (i, f"n{i}", decimal.Decimal("2.5") * i, bytes([i, 0, 255])),
            )
        for i in range(8):
            cur.execute("SELECT name, amount, b FROM pyflow WHERE id = %s", (i,))
            say("row", cur.fetchone())
        cur.execute("SELECT name FROM pyflow WHERE id = %s", (3,), binary=True)
        say("binary", cur.fetchone())
        cur.executemany("INSERT INTO pyflow (id, name) VALUES (%s, %s)", [(100 + i, "m") for i in range(20)])
        c.commit()
    # A rollback after statements were prepared: psycopg sends DEALLOCATE ALL.
    c.execute("SELECT name FROM pyflow WHERE id = %s", (1,))
    c.rollback()
    for i in range(4):
        say("after rollback", c.execute("SELECT name FROM pyflow WHERE id = %s", (i,)).fetchone())
    c.commit()
    with c.pipeline():
        curs = [c.execute("SELECT %s::int * 2", (i,)) for i in range(10)]
    say("pipeline", [cu.fetchone()[0] for cu in curs])
    try:
        with c.pipeline():
            c.execute("SELECT 1")
            c.execute("SELECT 1/0")
            c.execute("SELECT 2")
    except psycopg.errors.DivisionByZero as e:
        say("pipeline error", e.sqlstate)
    c.rollback()
    say("after pipeline error", c.execute("SELECT 3").fetchone())
    with c.cursor().copy("COPY pyflow (id, name) FROM STDIN") as cp:
        for i in range(30):
            cp.write_row((1000 + i, f"copy {i}"))
    with c.cursor().copy("COPY pyflow (id, name) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "text"])
        for i in range(30):
            cp.write_row((2000 + i, f"binary copy {i}"))
    with c.cursor().copy("COPY (SELECT id, name FROM pyflow ORDER BY id) TO STDOUT") as cp:
        rows = list(cp.rows())
    say("copy out", len(rows), rows[0], rows[-1])
    c.commit()
    with c.transaction():
        with c.cursor(name="server_side") as sc:
            sc.execute("SELECT id FROM pyflow ORDER BY id")
            say("named cursor", sc.fetchmany(5), sc.fetchmany(2))
    with c.transaction():
        c.execute("INSERT INTO pyflow (id) VALUES (5000)")
        with c.transaction():
            c.execute("INSERT INTO pyflow (id) VALUES (5001)")
            try:
                with c.transaction():
                    c.execute("INSERT INTO pyflow (id) VALUES (5000)")
            except psycopg.errors.UniqueViolation as e:
                say("savepoint", e.sqlstate)
    say("count", c.execute("SELECT count(*) FROM pyflow").fetchone())
    c.commit()
    c.autocommit = True
    c.execute("SET statement_timeout = '3s'")
    say("setting", c.execute("SHOW statement_timeout").fetchone())
    c.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
    try:
        c.execute("SELECT pg_sleep(0.2)")
        c.execute("SET statement_timeout = '50ms'")
        c.execute("SELECT pg_sleep(1)")
    except psycopg.errors.QueryCanceled as e:
        say("timeout", e.sqlstate)
    c.execute("RESET statement_timeout")
    say("reset", c.execute("SHOW statement_timeout").fetchone())
    c.execute("DROP TABLE pyflow")

# Settings from the startup packet survive RESET (PostgreSQL returns to them), and the
# reports psycopg keeps (ParameterStatus) end where the server's values are.
with psycopg.connect(
    sys.argv[1], autocommit=True, application_name="flow", options="-c statement_timeout=5s"
) as c:
    c.execute("SET application_name = 'changed'")
    c.execute("RESET ALL")
    c.execute("SELECT 1")
    say("after RESET ALL", c.info.parameter_status("application_name"),
        c.execute("SHOW statement_timeout").fetchone())
    c.execute("SET statement_timeout = '7s'")
    c.execute("RESET statement_timeout")
    say("after RESET", c.execute("SHOW statement_timeout").fetchone())

print("\n".join(out))
