/**
 * encrypt-existing on PostgreSQL against a plain rewrite of the same rows, in one run on one
 * freshly created database (dropped afterwards).
 *
 *   node --import tsx bench/encrypt-existing.bench.ts        ROWS=200000 to shorten
 *
 * Baseline: the same keyset walk, the same transactions and `select ... for update`, and the
 * same `update ... from unnest(...)` write-back, but the body is written back as it was read:
 * everything encrypt-existing does except sealing (and its 34 bytes of envelope overhead).
 * The table is rewritten compactly (VACUUM FULL) before each phase so neither inherits the
 * other's dead rows. Goal: ≥ 50,000 rows/s for 1,000,000 rows of 160-byte bodies, with memory
 * flat (peak RSS does not grow with ROWS).
 */

import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { encryptExisting } from '../src/seal/maintenance/encrypt-existing.js';
import { column, shapeOf, tableRef, writeBatch } from '../src/seal/maintenance/sql.js';
import { SealedFields } from '../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../src/seal/sealer.js';
import { openDatabase, queryRows, type Db } from '../src/store/connection.js';
import { migrate } from '../src/store/migrate.js';
import { messagesSealed } from '../src/store/sealed-tables.js';
import { machineLine } from './lib/harness.js';

const ADMIN_URL = process.env.CIPHERGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const BODY_BYTES = 160;
const GOAL_ROWS_PER_SECOND = 50_000;

export interface EncryptExistingBenchResult {
  rows: number;
  batchSize: number;
  baseline: Phase;
  sealing: Phase;
}

interface Phase {
  seconds: number;
  rowsPerSecond: number;
  peakRssMb: number;
}

export async function main(options: { rows?: number; batchSize?: number; print?: boolean } = {}): Promise<EncryptExistingBenchResult> {
  const rows = options.rows ?? Number(process.env.ROWS ?? 1_000_000);
  const batchSize = options.batchSize ?? Number(process.env.BATCH_SIZE ?? 5000);
  const name = `cg_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.toString(), maxConnections: 2 });
  try {
    await migrate(database);
    const db = database.db;
    const tenantId = await seed(db, rows);

    await compact(db);
    const baseline = await measure(rows, () => plainRewrite(db, batchSize));

    await compact(db);
    const keyring = new InMemoryKeyring().add(tenantId, 1, randomBytes(32));
    const fields = new SealedFields(new Sealer(keyring), keyring);
    const sealing = await measure(rows, async () => {
      const result = await encryptExisting({ db, fields, tables: [messagesSealed], batchSize });
      if (result.sealed !== rows) throw new Error(`sealed ${result.sealed} of ${rows}`);
    });

    const [check] = await queryRows<{ plain: number }>(db, sql`select count(*)::int as plain from messages where substr(body, 1, 1) <> decode('c1', 'hex')`);
    if (check!.plain !== 0) throw new Error(`${check!.plain} rows left in plaintext`);

    const result = { rows, batchSize, baseline, sealing };
    if (options.print ?? true) print(result);
    return result;
  } finally {
    await database.close();
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.end();
  }
}

/** One tenant, one contact, ROWS messages of BODY_BYTES ASCII bytes, generated inside PostgreSQL. */
async function seed(db: Db, rows: number): Promise<string> {
  const tenantId = crypto.randomUUID();
  const contactId = crypto.randomUUID();
  await db.execute(sql`insert into tenants (id, slug, name, settings, created_at, updated_at)
    values (${tenantId}, 'bench', 'Bench', '{"allowIps":{"twilio":[],"airtable":[],"podium":[]}}'::jsonb, now(), now())`);
  await db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, created_at)
    values (${contactId}, ${tenantId}, convert_to('+14155550100', 'UTF8'), decode('00', 'hex'), now())`);
  await db.execute(sql`insert into messages (id, tenant_id, contact_id, direction, body, created_at)
    select gen_random_uuid(), ${tenantId}, ${contactId}, 'inbound',
           convert_to(rpad('message ' || i || ' ', ${BODY_BYTES}, 'lorem ipsum dolor sit amet '), 'UTF8'), now()
    from generate_series(1, ${rows}) as i`);
  return tenantId;
}

async function compact(db: Db): Promise<void> {
  await db.execute(sql`vacuum full analyze messages`);
  await db.execute(sql`checkpoint`);
}

/** The baseline: encrypt-existing's walk and write-back, minus the sealing. */
async function plainRewrite(db: Db, batchSize: number): Promise<void> {
  const shape = shapeOf(messagesSealed);
  let lastId: string | undefined;
  for (;;) {
    const after = lastId === undefined ? sql`` : sql`where ${column('id')} > ${lastId}::uuid`;
    const last = await db.transaction(async (txDb) => {
      const tx = txDb as unknown as Db;
      const batch = await queryRows<{ id: string; body: Buffer }>(
        tx,
        sql`select ${column('id')}::text as id, ${column('body')} as body from ${tableRef(shape.declaration)} ${after}
            order by ${column('id')} limit ${batchSize} for update of t`,
      );
      if (batch.length === 0) return undefined;
      await writeBatch(tx, shape, batch.map((row) => row.id), [{ sqlName: 'body', values: batch.map((row) => row.body) }]);
      return batch[batch.length - 1]!.id;
    });
    if (last === undefined) return;
    lastId = last;
  }
}

async function measure(rows: number, run: () => Promise<void>): Promise<Phase> {
  global.gc?.();
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const start = process.hrtime.bigint();
  try {
    await run();
  } finally {
    clearInterval(sampler);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  peak = Math.max(peak, process.memoryUsage().rss);
  return { seconds, rowsPerSecond: rows / seconds, peakRssMb: peak / 2 ** 20 };
}

function print(result: EncryptExistingBenchResult): void {
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const ratio = result.sealing.rowsPerSecond / result.baseline.rowsPerSecond;
  const met = result.sealing.rowsPerSecond >= GOAL_ROWS_PER_SECOND ? 'met' : 'missed';
  console.log(`\n### encrypt-existing: ${fmt(result.rows)} rows of ${BODY_BYTES}-byte bodies, batches of ${fmt(result.batchSize)}, PostgreSQL\n${machineLine()}\n`);
  console.log('| phase | seconds | rows/s | peak RSS | ratio | goal |\n|---|---:|---:|---:|---:|---|');
  console.log(`| baseline: plain rewrite (select for update + update from unnest) | ${result.baseline.seconds.toFixed(1)} | ${fmt(result.baseline.rowsPerSecond)} | ${result.baseline.peakRssMb.toFixed(0)} MB | 1.00× | |`);
  console.log(
    `| encrypt-existing (seal + write back) | ${result.sealing.seconds.toFixed(1)} | ${fmt(result.sealing.rowsPerSecond)} | ${result.sealing.peakRssMb.toFixed(0)} MB | ${ratio.toFixed(2)}× | ≥ ${fmt(GOAL_ROWS_PER_SECOND)} rows/s ${met} |`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
