// node-postgres (`pg`) with its Pool, as one tenant: prints one line per result.
// argv[2] is a connection URL; tests/driver_matrix.rs compares the transcript through Orgwall
// with the one under row-level security.
const { Pool } = require('pg');
const { to: copyTo, from: copyFrom } = require('pg-copy-streams');

// The row-level-security reference (its URL sets app.org_id): PostgreSQL refuses COPY FROM
// there, so it inserts the same rows; through Orgwall the COPY itself must succeed.
const reference = process.argv[2].includes('app.org_id');

const say = (...what) => console.log(JSON.stringify(what));

async function main() {
  const pool = new Pool({ connectionString: process.argv[2], max: 2 });
  const cols = await pool.query(
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position");
  say('introspect', cols.rows, cols.fields.map((f) => f.name));
  say('insert returning', (await pool.query(
    'INSERT INTO items (id, item_number, description) VALUES ($1, $2, $3) RETURNING id, item_number, org_id',
    ['i_node1', 'N-1', 'Node'])).rows);
  say('update returning', (await pool.query(
    'UPDATE items SET description = $1 WHERE id = $2 RETURNING id, description', ['Node 2', 'i_node1'])).rows);
  say('join', (await pool.query(
    'SELECT l.id, i.item_number FROM inventory_ledger l JOIN items i ON i.id = l.item_id ORDER BY l.id')).rows);
  say('aggregate', (await pool.query(
    'SELECT item_id, sum(quantity_delta), count(*) FROM inventory_ledger GROUP BY item_id ORDER BY 1')).rows);
  // Checkouts in parallel, more than the pool holds.
  say('checkouts', await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => {
    const c = await pool.connect();
    try {
      return (await c.query('SELECT count(*)::int + $1::int AS n FROM users', [i])).rows[0].n;
    } finally {
      c.release();
    }
  })));
  const c = await pool.connect();
  try {
    const out = [];
    for (const id of ['i_a1', 'i_a2', 'i_b1', 'i_node1', 'i_a1', 'i_b2', 'i_a3']) {
      const r = await c.query({ name: 'item_desc', text: 'SELECT description FROM items WHERE id = $1', values: [id] });
      out.push(r.rows.length ? r.rows[0].description : 'none');
    }
    say('prepared x7', out);
    await c.query('BEGIN');
    await c.query("DELETE FROM items WHERE id = 'i_node1'");
    say('deleted inside', (await c.query('SELECT count(*) FROM items')).rows);
    await c.query('ROLLBACK');
    say('after rollback', (await c.query('SELECT count(*) FROM items')).rows);
    try {
      await c.query("INSERT INTO users (id, email) VALUES ('u_node', 'alice@shared.test')");
    } catch (e) {
      say('unique violation', e.code, e.constraint);
    }
    const chunks = [];
    await new Promise((resolve, reject) => {
      const s = c.query(copyTo('COPY (SELECT id, item_number FROM items ORDER BY id) TO STDOUT'));
      s.on('data', (d) => chunks.push(d));
      s.on('end', resolve);
      s.on('error', reject);
    });
    say('copied', Buffer.concat(chunks).toString());
    const flags = [['ff_node_c1', 'node_copy_1', 't'], ['ff_node_c2', 'node_copy_2', 'f']];
    if (reference) {
      for (const f of flags) {
        await c.query('INSERT INTO feature_flags (id, key, enabled) VALUES ($1, $2, $3)', f);
      }
      say('copy in', flags.length);
    } else {
      const n = await new Promise((resolve, reject) => {
        const s = c.query(copyFrom('COPY feature_flags (id, key, enabled) FROM STDIN'));
        s.on('finish', () => resolve(s.rowCount));
        s.on('error', reject);
        s.end(flags.map((f) => f.join('\t') + '\n').join(''));
      });
      say('copy in', n);
    }
    say('copied in', (await c.query('SELECT id, key, enabled, org_id FROM feature_flags ORDER BY id')).rows);
    say('delete returning', (await c.query('DELETE FROM items WHERE id = $1 RETURNING id', ['i_node1'])).rows);
  } finally {
    c.release();
  }
  await pool.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
