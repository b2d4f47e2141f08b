"""asyncpg through a connection string given as argv[1]: prints one line per result.

Run against PostgreSQL directly and through Orgwall by tests/python_drivers.rs, which compares
the two transcripts. Covers asyncpg's protocol habits: binary format for every type, its
statement cache (named statements, Describe then Flush before Bind), a pool whose connections
are reset on release with one multi-statement string ending in RESET ALL, executemany, binary
COPY FROM, cursors in transactions, and errors followed by more work on the same connection.
"""
import asyncio
import datetime
import decimal
import sys
import uuid

import asyncpg

out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


async def main(dsn):
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    async with pool.acquire() as c:
        await c.execute("DROP TABLE IF EXISTS apgflow")
        await c.execute(
            "CREATE TABLE apgflow (id int PRIMARY KEY, name text, amount numeric, "
            "at timestamptz, u uuid, tags text[], j jsonb)"
        )
        await c.execute("SET statement_timeout = '42s'")

    async def worker(n):
        seen = []
        async with pool.acquire() as c:
            for i in range(15):
                k = n * 100 + i
                await c.execute(
                    "INSERT INTO apgflow VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    k, f"n{k}", decimal.Decimal("1.5") * k,
                    datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=k),
                    uuid.UUID(int=k), ["a", str(k)], '{"k": %d}' % k,
                )
                async with c.transaction():
                    await c.execute("UPDATE apgflow SET amount = amount + 1 WHERE id = $1", k)
                    seen.append(await c.fetchval("SELECT amount FROM apgflow WHERE id = $1", k))
        return seen

    results = await asyncio.gather(*(worker(n) for n in range(6)))
    say("workers", [r[-1] for r in results])
    async with pool.acquire() as c:
        # The pool's reset (RESET ALL) undid the SET made before the first release.
        say("statement_timeout after reset", await c.fetchval("SHOW statement_timeout"))
        rows = await c.fetch("SELECT id, name, amount, at, u, tags, j FROM apgflow WHERE id < 3 ORDER BY id")
        say("rows", [tuple(r) for r in rows])
        await c.executemany("INSERT INTO apgflow (id, name) VALUES ($1, $2)", [(10000 + i, "m") for i in range(40)])
        await c.copy_records_to_table(
            "apgflow", records=[(20000 + i, "c", None, None, None, None, None) for i in range(100)]
        )
        say("count", await c.fetchval("SELECT count(*) FROM apgflow"))
        async with c.transaction():
            cur = await c.cursor("SELECT id FROM apgflow ORDER BY id")
            say("cursor", [r["id"] for r in await cur.fetch(5)])
        try:
            await c.fetch("SELECT 1/0")
        except asyncpg.DivisionByZeroError as e:
            say("error", e.sqlstate)
        stmt = await c.prepare("SELECT $1::int4 * 3")
        say("prepared", [await stmt.fetchval(i) for i in range(4)])
        await c.execute("DROP TABLE apgflow")
    await pool.close()


asyncio.run(main(sys.argv[1]))
print("\n".join(out))
