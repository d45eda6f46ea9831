/**
 * encrypt-existing on PostgreSQL against a plain rewrite of the same rows, in one run on one
 * freshly created database (dropped afterwards).
 *
 *   node --import tsx bench/encrypt-existing.bench.ts        ROWS=200000 to shorten
 *
 * Baseline: the same walk (walkBatches: keyset batches, one transaction each, `select ... for
 * update`, one `update ... from unnest(...)` write-back), the same batch size and concurrency,
 * but each body is written back as it was read: everything encrypt-existing does except the
 * sealing (and its 34 bytes of envelope overhead). BATCH_SIZE and CONCURRENCY override the
 * defaults below.
 * The table is rewritten compactly (VACUUM FULL) before each phase so neither inherits the
 * other's dead rows. Goal: ≥ 50,000 rows/s for 1,000,000 rows of 160-byte bodies, with memory
 * flat (peak RSS does not grow with ROWS).
 */

import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { encryptExisting } from '../src/keys/encrypt-existing.js';
import { PLAINTEXT_KIND, countValues, everyValue, rewriteUnchanged, shapeOf, walkBatches } from '../src/store/sealed-rows.js';
import { SealedFields } from '../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../src/seal/sealer.js';
import type { Db } from '../src/store/connection.js';
import { messagesSealed } from '../src/store/sealed-tables.js';
import { createBenchDatabase, machineLine } from './lib/harness.js';

const BODY_BYTES = 160;
const GOAL_ROWS_PER_SECOND = 50_000;

export interface EncryptExistingBenchResult {
  rows: number;
  batchSize: number;
  concurrency: number;
  baseline: Phase;
  sealing: Phase;
}

interface Phase {
  seconds: number;
  rowsPerSecond: number;
  /** RSS when the phase started, and the most it reached while it ran (sampled every 20 ms). */
  startRssMb: number;
  peakRssMb: number;
  /** CPU time of this process (not the database's) per row. */
  nodeCpuMicrosPerRow: number;
}

export async function main(options: { rows?: number; batchSize?: number; concurrency?: number; print?: boolean } = {}): Promise<EncryptExistingBenchResult> {
  const rows = options.rows ?? Number(process.env.ROWS ?? 1_000_000);
  const batchSize = options.batchSize ?? Number(process.env.BATCH_SIZE ?? 5000);
  const concurrency = options.concurrency ?? Number(process.env.CONCURRENCY ?? 2);
  const bench = await createBenchDatabase(concurrency + 1);
  const database = bench.database;
  try {
    const db = database.db;
    const tenantId = await seed(db, rows);

    await compact(db);
    const baseline = await measure(rows, () => plainRewrite(db, batchSize, concurrency, rows));

    await compact(db);
    const keyring = new InMemoryKeyring().add(tenantId, 1, randomBytes(32));
    const fields = new SealedFields(new Sealer(keyring), keyring);
    const sealing = await measure(rows, async () => {
      const result = await encryptExisting({ db, fields, tables: [messagesSealed], batchSize, concurrency });
      if (result.sealed !== rows) throw new Error(`sealed ${result.sealed} of ${rows}`);
    });

    const plain = (await countValues(db, shapeOf(messagesSealed))).filter((count) => count.kind === PLAINTEXT_KIND).reduce((n, count) => n + count.values, 0);
    if (plain !== 0) throw new Error(`${plain} rows left in plaintext`);

    const result = { rows, batchSize, concurrency, baseline, sealing };
    if (options.print ?? true) print(result);
    return result;
  } finally {
    await bench.drop();
  }
}

/** One tenant, one contact and its conversation, ROWS messages of BODY_BYTES ASCII bytes, generated inside PostgreSQL. */
async function seed(db: Db, rows: number): Promise<string> {
  const tenantId = crypto.randomUUID();
  const contactId = crypto.randomUUID();
  await db.execute(sql`insert into tenants (id, slug, name, settings, created_at, updated_at)
    values (${tenantId}, 'bench', 'Bench', '{"allowIps":{"twilio":[],"airtable":[],"podium":[]}}'::jsonb, now(), now())`);
  await db.execute(sql`insert into contacts (id, tenant_id, phone, phone_index, created_at)
    values (${contactId}, ${tenantId}, convert_to('+14155550100', 'UTF8'), decode('00', 'hex'), now())`);
  const conversationId = crypto.randomUUID();
  await db.execute(sql`insert into conversations (id, tenant_id, contact_id, channel, created_at, last_message_at)
    values (${conversationId}, ${tenantId}, ${contactId}, 'sms', now(), now())`);
  await db.execute(sql`insert into messages (id, tenant_id, contact_id, conversation_id, direction, author, body, dedupe_key, status, status_rank, created_at, updated_at)
    select gen_random_uuid(), ${tenantId}, ${contactId}, ${conversationId}, 'inbound', 'contact',
           convert_to(rpad('message ' || i || ' ', ${BODY_BYTES}, 'lorem ipsum dolor sit amet '), 'UTF8'),
           'bench:' || i, 'received', 0, now(), now()
    from generate_series(1, ${rows}) as i`);
  return tenantId;
}

async function compact(db: Db): Promise<void> {
  await db.execute(sql`vacuum full analyze messages`);
  await db.execute(sql`checkpoint`);
}

/**
 * The baseline: encrypt-existing's own walk (walkBatches: keyset batches, one transaction each,
 * `select ... for update`, write-back from unnest) with the same batch size and concurrency,
 * writing each body back as it was read. What remains between the two is the sealing.
 */
async function plainRewrite(db: Db, batchSize: number, concurrency: number, rows: number): Promise<void> {
  const shape = shapeOf(messagesSealed);
  await walkBatches({
    db,
    shape,
    selection: everyValue(shape),
    batchSize,
    concurrency,
    estimatedRows: rows,
    work: async (tx, batch) => {
      await rewriteUnchanged(tx, shape, batch);
    },
    committed: () => undefined,
  });
}

async function measure(rows: number, run: () => Promise<void>): Promise<Phase> {
  const startRss = process.memoryUsage().rss;
  const startCpu = process.cpuUsage();
  let peak = startRss;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const start = process.hrtime.bigint();
  try {
    await run();
  } finally {
    clearInterval(sampler);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  peak = Math.max(peak, process.memoryUsage().rss);
  const cpu = process.cpuUsage(startCpu);
  return {
    seconds,
    rowsPerSecond: rows / seconds,
    startRssMb: startRss / 2 ** 20,
    peakRssMb: peak / 2 ** 20,
    nodeCpuMicrosPerRow: (cpu.user + cpu.system) / rows,
  };
}

function print(result: EncryptExistingBenchResult): void {
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const ratio = result.sealing.rowsPerSecond / result.baseline.rowsPerSecond;
  const met = result.sealing.rowsPerSecond >= GOAL_ROWS_PER_SECOND ? 'met' : 'missed';
  console.log(`\n### encrypt-existing: ${fmt(result.rows)} rows of ${BODY_BYTES}-byte bodies, batches of ${fmt(result.batchSize)}, ${result.concurrency} key range(s) at once, PostgreSQL\n${machineLine()}\n`);
  const rss = (phase: Phase) => `${phase.startRssMb.toFixed(0)} → ${phase.peakRssMb.toFixed(0)} MB`;
  const cpu = (phase: Phase) => `${phase.nodeCpuMicrosPerRow.toFixed(1)} µs`;
  console.log('| phase | seconds | rows/s | Node CPU per row | RSS start → peak | ratio | goal |\n|---|---:|---:|---:|---:|---:|---|');
  console.log(
    `| baseline: same walk, body written back unsealed | ${result.baseline.seconds.toFixed(1)} | ${fmt(result.baseline.rowsPerSecond)} | ${cpu(result.baseline)} | ${rss(result.baseline)} | 1.00× | |`,
  );
  console.log(
    `| encrypt-existing (seal + write back) | ${result.sealing.seconds.toFixed(1)} | ${fmt(result.sealing.rowsPerSecond)} | ${cpu(result.sealing)} | ${rss(result.sealing)} | ${ratio.toFixed(2)}× | ≥ ${fmt(GOAL_ROWS_PER_SECOND)} rows/s ${met} |`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
