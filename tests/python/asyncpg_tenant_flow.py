"""asyncpg as one tenant of the seed's schema: prints one line per result.

argv[1] is a connection URL. tests/python_drivers.rs runs it through Orgwall as tenant org_a
and directly as a role that PostgreSQL row-level security confines to org_a, and compares the
transcripts. asyncpg introspects every type it has no codec for (ranges, here) with its own
catalog queries, after turning JIT off with `set_config` and before turning it back with a
`$1` parameter; the rest is what an app does: prepared statements, executemany, a
transaction that rolls back, a cursor.
"""
import asyncio
import decimal
import sys

import asyncpg

out = []


def say(*what):
    out.append(" ".join(repr(w) for w in what))


async def main():
    c = await asyncpg.connect(sys.argv[1])
    row = await c.fetchrow("SELECT '[1,3)'::int4range AS r, numrange(1.5, 2.5) AS n, current_setting('jit') AS jit")
    say("introspected", row["r"], row["n"], row["jit"])
    say("items", await c.fetch("SELECT id, item_number, active FROM items ORDER BY id"))
    get = await c.prepare("SELECT description FROM items WHERE id = $1")
    say("prepared", [await get.fetchval(i) for i in ("i_a1", "i_a2", "i_b1")])
    await c.executemany(
        "INSERT INTO inventory_ledger (id, item_id, location_id, quantity_delta) VALUES ($1, $2, $3, $4)",
        [(f"led_x{i}", "i_a1", "l_a1", decimal.Decimal(i)) for i in range(3)],
    )
    say("balance", await c.fetchval("SELECT sum(quantity_delta) FROM inventory_ledger WHERE item_id = $1", "i_a1"))
    try:
        async with c.transaction():
            await c.execute("DELETE FROM inventory_ledger WHERE id LIKE 'led_x%'")
            say("deleted inside", await c.fetchval("SELECT count(*) FROM inventory_ledger"))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    say("after rollback", await c.fetchval("SELECT count(*) FROM inventory_ledger"))
    async with c.transaction():
        say("cursor", [r["id"] async for r in c.cursor("SELECT id FROM users ORDER BY id")])
    say("other tenant's item", await c.fetchval("SELECT count(*) FROM items WHERE id = $1", "i_b1"))
    say("jit after", await c.fetchval("SELECT current_setting('jit')"))
    await c.close()


asyncio.run(main())
print("\n".join(out))
