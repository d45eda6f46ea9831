/**
 * Finding a contact by phone number through its blind index, against finding it by primary
 * key, in the same table, through node-postgres, on a freshly created PostgreSQL database
 * (dropped afterwards).
 *
 *   node --import tsx bench/blind-index-lookup.bench.ts        ROWS=200000 to shorten
 *
 * ROWS contacts of one tenant (default 1,000,000) with real sealed phone numbers and real
 * blind indexes. Seeding computes each index with the column's derived index key directly
 * from a number already in E.164 (the normaliser would return it unchanged, and skipping
 * libphonenumber saves ~18 µs a row); every timed lookup goes through the normal path
 * (SealedFields.lookupIndexes: normalise, HMAC) from a differently formatted number, and must
 * find exactly the contact it was made for, which proves the two agree.
 *
 * A timed blind-index lookup = computing the index(es) + the query; the baseline = the query
 * by primary key. Both are prepared statements on one connection, run alternately so noise
 * hits both. Also timed: lookups during a key rotation, when `= ANY` carries one index per
 * active key version. Goal: p99 < 2 ms.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { computeBlindIndex } from '../src/seal/blind-index.js';
import { deriveBlindIndexKey } from '../src/seal/derive.js';
import { SealedFields } from '../src/seal/sealed-fields.js';
import { InMemoryKeyring, Sealer } from '../src/seal/sealer.js';
import { contactsSealed } from '../src/store/sealed-tables.js';
import { createBenchDatabase, machineLine } from './lib/harness.js';

const GOAL_P99_MS = 2;
const SEED_BATCH = 10_000;
const AREA_CODES = [415, 212, 310, 646, 617, 312, 206, 303, 512, 702, 305, 404, 503, 619, 718];

export interface LookupRow {
  lookup: string;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
}

export async function main(options: { rows?: number; lookups?: number; print?: boolean } = {}): Promise<LookupRow[]> {
  const rows = options.rows ?? Number(process.env.ROWS ?? 1_000_000);
  const lookups = options.lookups ?? Number(process.env.LOOKUPS ?? 10_000);
  if (rows > AREA_CODES.length * 800 * 10_000) throw new Error('ROWS too large for the phone number generator');
  const bench = await createBenchDatabase(2);
  const database = bench.database;
  const client = new pg.Client({ connectionString: bench.url });
  try {
    await client.connect();
    const tenantId = randomUUID();
    const keyring = new InMemoryKeyring().add(tenantId, 1, randomBytes(32));
    const fields = new SealedFields(new Sealer(keyring), keyring);
    const samples = await seed(client, fields, keyring, tenantId, rows, lookups);
    await client.query('vacuum analyze contacts');

    const byIndex = {
      name: 'contact-by-blind-index',
      text: 'select id, phone from contacts where tenant_id = $1 and phone_index = any($2::bytea[])',
    };
    const byId = { name: 'contact-by-id', text: 'select id, phone from contacts where id = $1' };
    const timeIndexLookup = async (sample: Sample) => {
      const start = process.hrtime.bigint();
      const indexes = fields.lookupIndexes(contactsSealed, 'phone', tenantId, sample.typed);
      const result = await client.query<{ id: string }>({ ...byIndex, values: [tenantId, indexes] });
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (result.rows.length !== 1 || result.rows[0]!.id !== sample.id) throw new Error(`lookup of contact ${sample.id} found ${result.rows.length} rows`);
      return ms;
    };
    const timeIdLookup = async (sample: Sample) => {
      const start = process.hrtime.bigint();
      const result = await client.query<{ id: string }>({ ...byId, values: [sample.id] });
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (result.rows.length !== 1) throw new Error(`contact ${sample.id} not found by id`);
      return ms;
    };

    // Warm-up: plans prepared, index pages in cache for both sides alike.
    for (const sample of samples.slice(0, 500)) {
      await timeIndexLookup(sample);
      await timeIdLookup(sample);
    }
    const indexTimes: number[] = [];
    const idTimes: number[] = [];
    for (const sample of samples) {
      indexTimes.push(await timeIndexLookup(sample));
      idTimes.push(await timeIdLookup(sample));
    }
    // A rotation in progress: lookups carry the index under v2 and under v1 (the rows' key).
    keyring.rotate(tenantId);
    const rotationTimes: number[] = [];
    for (const sample of samples) rotationTimes.push(await timeIndexLookup(sample));

    const result = [
      summarise('by primary key (baseline)', idTimes),
      summarise('by blind index, 1 key version (index + query)', indexTimes),
      summarise('by blind index during rotation, 2 key versions', rotationTimes),
    ];
    if (options.print ?? true) print(rows, samples.length, result);
    return result;
  } finally {
    await client.end().catch(() => undefined);
    await bench.drop();
  }
}

interface Sample {
  id: string;
  /** The number as a user might type it, not in E.164: the lookup must normalise it. */
  typed: string;
}

/** The i-th number, always a valid US number in E.164; its national spelling for lookups. */
function phone(i: number): { e164: string; typed: string } {
  const area = AREA_CODES[i % AREA_CODES.length]!;
  const rest = Math.floor(i / AREA_CODES.length);
  const exchange = 200 + (rest % 800);
  const line = String(Math.floor(rest / 800)).padStart(4, '0');
  return { e164: `+1${area}${exchange}${line}`, typed: `(${area}) ${exchange}-${line}` };
}

async function seed(client: pg.Client, fields: SealedFields, keyring: InMemoryKeyring, tenantId: string, rows: number, lookups: number): Promise<Sample[]> {
  await client.query(
    `insert into tenants (id, slug, name, settings, created_at, updated_at)
     values ($1, 'bench', 'Bench', '{"allowIps":{"twilio":[],"airtable":[],"podium":[]}}'::jsonb, now(), now())`,
    [tenantId],
  );
  const spec = contactsSealed.fields.phone.blindIndex!;
  const indexKey = deriveBlindIndexKey(keyring.current(tenantId).dek, 'contacts', 'phone');
  const every = Math.max(1, Math.floor(rows / lookups));
  const samples: Sample[] = [];
  for (let from = 0; from < rows; from += SEED_BATCH) {
    const ids: string[] = [];
    const phones: Buffer[] = [];
    const indexes: Buffer[] = [];
    for (let i = from; i < Math.min(rows, from + SEED_BATCH); i += 1) {
      const id = randomUUID();
      const number = phone(i);
      ids.push(id);
      phones.push(fields.sealer.seal({ tenantId, table: 'contacts', column: 'phone', rowId: id }, number.e164));
      indexes.push(computeBlindIndex(indexKey, number.e164, spec.lengthBytes));
      if (i % every === 0 && samples.length < lookups) samples.push({ id, typed: number.typed });
    }
    await client.query(
      `insert into contacts (id, tenant_id, phone, phone_index, created_at)
       select u.id, $1, u.phone, u.idx, now() from unnest($2::uuid[], $3::bytea[], $4::bytea[]) as u(id, phone, idx)`,
      [tenantId, ids, phones, indexes],
    );
  }
  // Shuffled, so consecutive lookups do not walk the index in insertion order.
  for (let i = samples.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [samples[i], samples[j]] = [samples[j]!, samples[i]!];
  }
  return samples;
}

function summarise(lookup: string, times: number[]): LookupRow {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { lookup, p50Ms: at(0.5), p99Ms: at(0.99), meanMs: times.reduce((a, b) => a + b, 0) / times.length };
}

function print(rows: number, lookups: number, result: LookupRow[]): void {
  console.log(`\n### contact lookup: ${rows.toLocaleString('en-US')} contacts of one tenant, ${lookups.toLocaleString('en-US')} lookups each, node-postgres, PostgreSQL\n${machineLine()}\n`);
  console.log('| lookup | p50 | p99 | mean | goal |\n|---|---:|---:|---:|---|');
  for (const row of result) {
    const goal = row.lookup.startsWith('by blind index') ? `p99 < ${GOAL_P99_MS} ms ${row.p99Ms < GOAL_P99_MS ? 'met' : 'missed'}` : '';
    console.log(`| ${row.lookup} | ${row.p50Ms.toFixed(3)} ms | ${row.p99Ms.toFixed(3)} ms | ${row.meanMs.toFixed(3)} ms | ${goal} |`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
