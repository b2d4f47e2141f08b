// postgres.js (`postgres`), as one tenant: prints one line per result.
// argv[2] is a connection URL; tests/driver_matrix.rs compares the transcript through Orgwall
// with the one under row-level security. postgres.js prepares every query (named statements)
// and pools connections itself.
const postgres = require('postgres');

const say = (...what) => console.log(JSON.stringify(what));

// The row-level-security reference (its URL sets app.org_id): PostgreSQL refuses COPY FROM
// there, so it inserts the same rows; through Orgwall the COPY itself must succeed.
const reference = process.argv[2].includes('app.org_id');

async function main() {
  const sql = postgres(process.argv[2], { max: 2, onnotice: () => {} });
  say('introspect', await sql`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position`);
  say('insert returning', await sql`INSERT INTO items (id, item_number, description) VALUES (${'i_pjs1'}, ${'J-1'}, ${'Js'}) RETURNING id, item_number, org_id`);
  say('update returning', await sql`UPDATE items SET description = ${'Js 2'} WHERE id = ${'i_pjs1'} RETURNING id, description`);
  say('join', await sql`SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id`);
  say('aggregate', await sql`SELECT item_id, sum(quantity_delta), count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1`);
  say('checkouts', await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) =>
    (await sql`SELECT count(*)::int + ${i}::int AS n FROM users`)[0].n)));
  const out = [];
  for (const id of ['i_a1', 'i_a2', 'i_b1', 'i_pjs1', 'i_a1', 'i_b2', 'i_a3']) {
    const r = await sql`SELECT description FROM items WHERE id = ${id}`;
    out.push(r.length ? r[0].description : 'none');
  }
  say('prepared x7', out);
  try {
    await sql.begin(async (tx) => {
      await tx`DELETE FROM items WHERE id = 'i_pjs1'`;
      say('deleted inside', await tx`SELECT count(*) FROM items`);
      throw new Error('roll back');
    });
  } catch (e) {
    say('rolled back', e.message);
  }
  say('after rollback', await sql`SELECT count(*) FROM items`);
  try {
    await sql`INSERT INTO users (id, email) VALUES ('u_pjs', 'alice@shared.test')`;
  } catch (e) {
    say('unique violation', e.code, e.constraint_name);
  }
  const chunks = [];
  const stream = await sql`COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT`.readable();
  for await (const chunk of stream) chunks.push(chunk);
  say('copied', Buffer.concat(chunks).toString());
  const flags = [['ff_pjs_c1', 'pjs_copy_1'], ['ff_pjs_c2', 'pjs_copy_2']];
  if (reference) {
    for (const [id, key] of flags) await sql`INSERT INTO feature_flags (id, key) VALUES (${id}, ${key})`;
  } else {
    const writable = await sql`COPY feature_flags (id, key) FROM STDIN`.writable();
    await new Promise((resolve, reject) => {
      writable.on('finish', resolve);
      writable.on('error', reject);
      writable.end(flags.map((f) => f.join('\t') + '\n').join(''));
    });
  }
  say('copied in', await sql`SELECT id, key, org_id FROM feature_flags ORDER BY id`);
  say('delete returning', await sql`DELETE FROM items WHERE id = ${'i_pjs1'} RETURNING id`);
  await sql.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
