import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { readEnvelopeHeader, sealEnvelope } from '../../src/seal/envelope.js';
import { SealOpenError } from '../../src/seal/errors.js';
import type { Db } from '../../src/store/connection.js';
import {
  DAMAGED_KIND,
  PLAINTEXT_KIND,
  countValues,
  plaintextValues,
  shapeOf,
  valuesUnderOlderVersions,
  walkBatches,
  type RowSelection,
} from '../../src/store/sealed-rows.js';
import { tenantsSealed } from '../../src/store/sealed-tables.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';

// The maintenance SQL finds plaintext and key versions without opening anything. It is generated
// from the layout constants of src/seal/envelope.ts; this checks that it reads every kind of
// value exactly as the TypeScript reader does, edge cases of the header included.

/** The TypeScript answer: plaintext, damaged (readEnvelopeHeader throws), or the key version. */
function kindInTypeScript(value: Buffer): number {
  try {
    return readEnvelopeHeader(value)?.keyVersion ?? PLAINTEXT_KIND;
  } catch (error) {
    if (error instanceof SealOpenError) return DAMAGED_KIND;
    throw error;
  }
}

const envelope = (version: number) => sealEnvelope(randomBytes(32), version, Buffer.from('secret'), Buffer.from('binding'));

const SAMPLES: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['text', Buffer.from('plain text', 'utf8')],
  ['one byte below the marker', Buffer.from([0xc0, 0x01, 0, 0, 0, 1])],
  ['marker alone', Buffer.from([0xc1])],
  ['marker and format only', Buffer.from([0xc1, 0x01])],
  ['header one byte short', Buffer.from([0xc1, 0x01, 0, 0, 0])],
  ['unknown format', Buffer.concat([Buffer.from([0xc1, 0x02, 0, 0, 0, 1]), randomBytes(28)])],
  ['bare header', Buffer.from([0xc1, 0x01, 0, 0, 0, 7])],
  ['version 1', envelope(1)],
  ['version 256', envelope(256)],
  ['version 0x01020304', envelope(0x01020304)],
  ['version 2^32 - 1', envelope(0xffffffff)],
];

await describeEachBackend('sealed rows: the SQL reads envelopes as envelope.ts does', (backend) => {
  let testDb: TestDatabase;
  let db: Db;
  // One tenant per sample, its value in twilio_auth_token: tenants are their own scope, so
  // countValues answers per sample.
  const idOf = new Map<string, string>();

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
    for (const [name, value] of SAMPLES) {
      const id = randomUUID();
      idOf.set(name, id);
      await db.execute(sql`insert into tenants (id, slug, name, settings, twilio_auth_token, created_at, updated_at)
        values (${id}, ${`t-${id.slice(0, 8)}`}, ${name}, '{"allowIps":{"twilio":[],"airtable":[],"podium":[]}}'::jsonb, ${value}, now(), now())`);
    }
  });
  after(async () => {
    await testDb.cleanup();
  });

  const walkedIds = async (selection: RowSelection): Promise<Set<string>> => {
    const ids = new Set<string>();
    await walkBatches({
      db,
      shape: shapeOf(tenantsSealed),
      selection,
      batchSize: 5,
      concurrency: 1,
      estimatedRows: SAMPLES.length,
      work: async (_tx, rows) => rows.map((row) => row.id),
      committed: (batch) => batch.forEach((id) => ids.add(id)),
    });
    return ids;
  };

  test('countValues classifies every sample as the TypeScript reader does', async () => {
    const counts = await countValues(db, shapeOf(tenantsSealed));
    for (const [name, value] of SAMPLES) {
      const found = counts.filter((count) => count.scope === idOf.get(name));
      assert.deepEqual(
        found.map((count) => ({ column: count.column, kind: count.kind, values: count.values })),
        [{ column: 'twilio_auth_token', kind: kindInTypeScript(value), values: 1 }],
        name,
      );
    }
  });

  test('the plaintext selection takes exactly the values isSealed calls plaintext', async () => {
    const expected = new Set(SAMPLES.filter(([, value]) => kindInTypeScript(value) === PLAINTEXT_KIND).map(([name]) => idOf.get(name)!));
    assert.equal(expected.size, 3);
    assert.deepEqual(await walkedIds(plaintextValues(shapeOf(tenantsSealed))), expected);
  });

  test('the older-version selection compares the version the header names', async () => {
    const current = 0x01020304;
    const currentVersions = new Map(SAMPLES.map(([name]) => [idOf.get(name)!, current]));
    const expected = new Set(
      SAMPLES.filter(([, value]) => {
        const kind = kindInTypeScript(value);
        return kind > 0 && kind < current;
      }).map(([name]) => idOf.get(name)!),
    );
    assert.deepEqual([...expected].map((id) => SAMPLES.find(([name]) => idOf.get(name) === id)![0]).sort(), ['bare header', 'version 1', 'version 256']);
    assert.deepEqual(await walkedIds(valuesUnderOlderVersions(shapeOf(tenantsSealed), currentVersions)), expected);
  });
});
