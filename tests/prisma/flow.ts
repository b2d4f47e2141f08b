// Prisma 7 (the Rust-free client over `@prisma/adapter-pg`), as one tenant: prints one line
// per result. argv[2] is a connection URL; tests/driver_matrix.rs compares the transcript
// through Orgwall with the one under row-level security. Prisma has no COPY.
import { createHash } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma, PrismaClient } from './generated/client.ts';

// JSON with BigInt (raw counts) as text; Prisma's Decimal prints itself as text.
const say = (...what: unknown[]) =>
  console.log(JSON.stringify(what, (_, v) => (typeof v === 'bigint' ? v.toString() : v)));

// What an app can see of a failure: Prisma's error code (or class) and, where the adapter
// passes it on, PostgreSQL's SQLSTATE. Messages differ between Orgwall's refusal and
// PostgreSQL's own error, so only whether the tenant boundary refused it is printed
// (Orgwall's `orgwall:` refusal, or the reference's row-level-security violation).
function failure(e: unknown): unknown[] {
  if (e instanceof Prisma.PrismaClientKnownRequestError) {
    const cause = (e.meta?.driverAdapterError as { cause?: { originalCode?: string; kind?: string } })?.cause;
    const boundary = /orgwall: |violates row-level security policy/.test(e.message);
    return [e.code, cause?.kind ?? null, cause?.originalCode ?? null, e.meta?.modelName ?? null,
      boundary ? 'tenant boundary' : 'other'];
  }
  return [(e as Error).name];
}

async function expectFailure(what: string, run: () => Promise<unknown>) {
  try {
    say(what, 'succeeded', await run());
  } catch (e) {
    say(what, 'failed', ...failure(e));
  }
}

const itemFields = { id: true, orgId: true, itemNumber: true, description: true, active: true } as const;

async function main() {
  const connectionString = process.argv[2];
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString, max: 2 }) });
  // The adapter's statement cache: each SQL text a named prepared statement, per connection.
  const named = new PrismaClient({ adapter: new PrismaPg({ connectionString, max: 2 }, {
    statementNameGenerator: (q) => 'prisma_' + createHash('sha256').update(q.sql).digest('hex').slice(0, 16),
  }) });
  await prisma.$connect();
  say('connect');

  // Reads: where, orderBy, select, relations (include), a compound unique key.
  say('findMany', await prisma.item.findMany({
    where: { active: true }, orderBy: { itemNumber: 'asc' }, select: itemFields }));
  say('findUnique include', await prisma.item.findUnique({
    where: { id: 'i_a1' },
    include: { ledger: { orderBy: { id: 'asc' }, select: { id: true, quantityDelta: true, reason: true } } },
    omit: { createdAt: true, updatedAt: true } }));
  say('ledger include', await prisma.ledgerEntry.findMany({
    orderBy: { id: 'asc' },
    select: { id: true, quantityDelta: true, item: { select: { itemNumber: true } },
      location: { select: { name: true } }, user: { select: { email: true } } } }));
  say('relation filter', await prisma.item.findMany({
    where: { ledger: { some: { quantityDelta: { lt: 0 } } } }, select: { id: true } }));
  say('by compound key', await prisma.user.findUnique({
    where: { orgId_email: { orgId: 'org_a', email: 'alice@shared.test' } }, select: { id: true, name: true } }));
  say('findFirst', await prisma.user.findFirst({
    where: { email: { endsWith: '@shared.test' } }, orderBy: { email: 'desc' }, select: { id: true } }));

  // Writes, each answered from RETURNING.
  say('create', await prisma.item.create({
    data: { id: 'i_prisma1', itemNumber: 'P-1', description: 'Prisma' }, select: itemFields }));
  say('create own org', await prisma.item.create({
    data: { id: 'i_prisma2', orgId: 'org_a', itemNumber: 'P-2', active: false }, select: itemFields }));
  say('create nested', await prisma.location.create({
    data: { id: 'l_prisma1', site: 'North', name: 'P-01',
      ledger: { create: [{ id: 'led_prisma1', itemId: 'i_prisma1', quantityDelta: '12.5', reason: 'receipt' }] } },
    select: { id: true, orgId: true, ledger: { select: { id: true, orgId: true, quantityDelta: true } } } }));
  say('update', await prisma.item.update({
    where: { id: 'i_prisma1' }, data: { description: 'Prisma 2' }, select: itemFields }));
  say('updateMany', await prisma.item.updateMany({
    where: { itemNumber: { startsWith: 'P-' } }, data: { active: true } }));
  say('upsert', await prisma.featureFlag.upsert({
    where: { orgId_key: { orgId: 'org_a', key: 'cycle_counts' } },
    create: { id: 'ff_prisma1', key: 'cycle_counts', enabled: true },
    update: { enabled: false }, select: { id: true, key: true, enabled: true } }));
  say('upsert new', await prisma.featureFlag.upsert({
    where: { orgId_key: { orgId: 'org_a', key: 'prisma_upsert' } },
    create: { id: 'ff_prisma0', key: 'prisma_upsert', enabled: true },
    update: { enabled: false }, select: { id: true, orgId: true, key: true, enabled: true } }));
  say('createMany', await prisma.featureFlag.createMany({
    data: [{ id: 'ff_prisma2', key: 'prisma_a' }, { id: 'ff_prisma3', key: 'prisma_b', enabled: true }] }));
  say('createManyAndReturn', await prisma.featureFlag.createManyAndReturn({
    data: [{ id: 'ff_prisma4', key: 'prisma_c' }], select: { id: true, orgId: true, key: true } }));
  say('delete', await prisma.featureFlag.delete({ where: { id: 'ff_prisma2' }, select: { id: true, key: true } }));
  say('deleteMany', await prisma.featureFlag.deleteMany({ where: { key: { startsWith: 'prisma_' } } }));

  // Aggregates.
  say('count', await prisma.item.count(), await prisma.item.count({ where: { active: false } }));
  say('aggregate', await prisma.ledgerEntry.aggregate({
    _sum: { quantityDelta: true }, _avg: { quantityDelta: true }, _min: { quantityDelta: true },
    _max: { quantityDelta: true }, _count: { _all: true } }));
  say('groupBy', await prisma.ledgerEntry.groupBy({
    by: ['itemId'], _sum: { quantityDelta: true }, _count: { _all: true },
    having: { quantityDelta: { _sum: { gt: 0 } } }, orderBy: { itemId: 'asc' } }));
  say('count relation', await prisma.item.findMany({
    orderBy: { id: 'asc' }, select: { id: true, _count: { select: { ledger: true } } } }));

  // Transactions: a batch, and an interactive one that throws (rolled back).
  say('batch transaction', await prisma.$transaction([
    prisma.item.update({ where: { id: 'i_prisma2' }, data: { description: 'in batch' }, select: { id: true, description: true } }),
    prisma.item.count(),
  ]));
  try {
    await prisma.$transaction(async (tx) => {
      await tx.item.delete({ where: { id: 'i_prisma2' } });
      say('deleted inside', await tx.item.count());
      throw new Error('roll back');
    });
  } catch (e) {
    say('rolled back', (e as Error).message);
  }
  say('after rollback', await prisma.item.count(), await prisma.item.findUnique({
    where: { id: 'i_prisma2' }, select: { id: true, description: true } }));

  say('transaction serializable', await prisma.$transaction(async (tx) => {
    const n = await tx.item.count({ where: { active: true } });
    await tx.auditLog.create({ data: { id: 'aud_prisma1', action: 'item.count', payload: { active: n } } });
    return [n, await tx.auditLog.count()];
  }, { isolationLevel: 'Serializable' }));

  // The same statement more than five times, another tenant's ids among them: unnamed
  // statements, then named ones (prepared once per connection, then reused).
  for (const [what, client] of [['same query x7', prisma], ['named statement x7', named]] as const) {
    const out = [];
    for (const id of ['i_a1', 'i_a2', 'i_b1', 'i_prisma1', 'i_a1', 'i_b2', 'i_a3']) {
      const r = await client.item.findUnique({ where: { id }, select: { description: true } });
      out.push(r ? r.description : 'none');
    }
    say(what, out);
  }
  say('named concurrent', await Promise.all(['i_a1', 'i_b1', 'i_a2', 'i_b2'].map((id) =>
    named.ledgerEntry.aggregate({ where: { itemId: id }, _sum: { quantityDelta: true } }))));

  await expectFailure('unique violation', () => prisma.user.create({
    data: { id: 'u_prisma', email: 'alice@shared.test' }, select: { id: true } }));

  // Queries in parallel, more than the pool holds.
  say('concurrent', await Promise.all([0, 1, 2, 3, 4, 5].map((i) =>
    prisma.user.count({ where: { email: { not: `nobody${i}@x.test` } } }))));

  // Raw SQL with a tagged-template parameter.
  say('queryRaw', await prisma.$queryRaw`SELECT id, item_number FROM items WHERE item_number = ${'W-100'} OR id = ${'i_b1'} ORDER BY id`);
  say('queryRaw join', await prisma.$queryRaw`SELECT id FROM users WHERE id IN (${Prisma.join(['u_a1', 'u_b1', 'u_a3'])}) ORDER BY id`);
  say('executeRaw', await prisma.$executeRaw`UPDATE items SET unit_of_measure = ${'BX'} WHERE id = ${'i_prisma1'}`);

  // Hostile: another tenant's org_id in a create, in an update and in a filter; another
  // tenant's rows by id.
  await expectFailure('create for org_b', () => prisma.item.create({
    data: { id: 'i_prisma_b', orgId: 'org_b', itemNumber: 'P-B' }, select: { id: true } }));
  await expectFailure('move to org_b', () => prisma.item.update({
    where: { id: 'i_prisma1' }, data: { orgId: 'org_b' }, select: { id: true } }));
  await expectFailure('update org_b item', () => prisma.item.update({
    where: { id: 'i_b1' }, data: { description: 'mine' }, select: { id: true } }));
  say('updateMany org_b', await prisma.item.updateMany({ where: { orgId: 'org_b' }, data: { description: 'mine' } }));
  say('deleteMany org_b', await prisma.featureFlag.deleteMany({ where: { id: { in: ['ff_b1', 'ff_b2'] } } }));
  say('read org_b', await prisma.item.findUnique({ where: { id: 'i_b1' } }),
    await prisma.user.findMany({ where: { orgId: 'org_b' } }),
    await prisma.organization.findMany({ orderBy: { id: 'asc' }, select: { id: true, name: true } }));
  await expectFailure('ledger on org_b item', () => prisma.ledgerEntry.create({
    data: { id: 'led_prisma_b', itemId: 'i_b1', locationId: 'l_a1', quantityDelta: 1 }, select: { id: true } }));

  await expectFailure('connect org_b item', () => prisma.ledgerEntry.create({
    data: { id: 'led_prisma_c', item: { connect: { id: 'i_b2' } }, location: { connect: { id: 'l_a1' } },
      quantityDelta: 1 }, select: { id: true } }));
  say('filter org_b', await prisma.item.findMany({
    where: { OR: [{ orgId: 'org_b' }, { id: { in: ['i_b1', 'i_b4'] } }, { description: { contains: 'SECRET' } }] } }),
    await prisma.ledgerEntry.count({ where: { item: { orgId: 'org_b' } } }));

  say('final', await prisma.item.findMany({ orderBy: { id: 'asc' }, select: itemFields }),
    await prisma.featureFlag.findMany({ orderBy: { id: 'asc' }, select: { id: true, key: true, enabled: true } }));
  await named.$disconnect();
  await prisma.$disconnect();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
