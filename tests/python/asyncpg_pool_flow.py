"""asyncpg's Pool as one tenant (the driver matrix, issue 18): prints one line per result.

argv[1] is a connection URL; tests/driver_matrix.rs compares the transcript through Orgwall
with the one under row-level security. A Pool resets every connection it takes back
(`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`), which Orgwall used to
refuse for tenants.
"""
import asyncio
import sys

import asyncpg

out = []
# The row-level-security reference (its URL sets app.org_id): PostgreSQL refuses COPY FROM
# there, so it inserts the same rows; through Orgwall the COPY itself must succeed.
REFERENCE = "app.org_id" in sys.argv[1]


def say(*what):
    out.append(" ".join(repr(w) for w in what))


async def main():
    pool = await asyncpg.create_pool(sys.argv[1], min_size=1, max_size=2)
    async with pool.acquire() as c:
        cols = await c.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'items' ORDER BY ordinal_position")
        say("introspect", [tuple(r) for r in cols])
    async with pool.acquire() as c:
        row = await c.fetchrow(
            "INSERT INTO items (id, item_number, description) VALUES ($1, $2, $3) "
            "RETURNING id, item_number, org_id", "i_pool1", "P-1", "Pooled")
        say("insert returning", tuple(row))
        say("update returning", await c.fetch(
            "UPDATE items SET description = $1 WHERE id = $2 RETURNING id, description", "Pooled 2", "i_pool1"))
        say("join", [tuple(r) for r in await c.fetch(
            "SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id")])
        say("aggregate", [tuple(r) for r in await c.fetch(
            "SELECT item_id, sum(quantity_delta), count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1")])
    # Checkouts in parallel and in a row: each release resets the connection.
    async def one(i):
        async with pool.acquire() as c:
            return await c.fetchval("SELECT count(*) + $1 FROM users", i)
    say("checkouts", await asyncio.gather(*(one(i) for i in range(6))))
    async with pool.acquire() as c:
        stmt = await c.prepare("SELECT description FROM items WHERE id = $1")
        say("prepared x7", [await stmt.fetchval(i) for i in ("i_a1", "i_a2", "i_b1", "i_pool1", "i_a1", "i_b2", "i_a3")])
        try:
            async with c.transaction():
                await c.execute("DELETE FROM items WHERE id = 'i_pool1'")
                say("deleted inside", await c.fetchval("SELECT count(*) FROM items"))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        say("after rollback", await c.fetchval("SELECT count(*) FROM items"))
        try:
            await c.execute("INSERT INTO users (id, email) VALUES ('u_pool', 'alice@shared.test')")
        except asyncpg.UniqueViolationError as e:
            say("unique violation", e.sqlstate, e.constraint_name)
        copied = []

        async def sink(chunk):
            copied.append(chunk)

        say("copy out", await c.copy_from_query("SELECT id, item_number FROM items ORDER BY id", output=sink))
        say("copied", b"".join(copied))
        flags = [(f"ff_pool_c{i}", f"pool_copy_{i}", i % 2 == 0) for i in range(5)]
        if REFERENCE:
            await c.executemany("INSERT INTO feature_flags (id, key, enabled) VALUES ($1, $2, $3)", flags)
            say("copy in", f"COPY {len(flags)}")
        else:
            say("copy in", await c.copy_records_to_table(
                "feature_flags", records=flags, columns=["id", "key", "enabled"]))
        say("copied in", [tuple(r) for r in await c.fetch(
            "SELECT id, key, enabled, org_id FROM feature_flags ORDER BY id")])
        say("delete returning", await c.fetch("DELETE FROM items WHERE id = $1 RETURNING id", "i_pool1"))
        await c.execute("SET statement_timeout = '5s'")
    async with pool.acquire() as c:
        say("reset kept nothing", await c.fetchval("SELECT current_setting('statement_timeout')"))
    await pool.close()


asyncio.run(main())
print("\n".join(out))
