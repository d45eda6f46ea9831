import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { PgTable } from 'drizzle-orm/pg-core';
import { getTableName, is, sql } from 'drizzle-orm';
import * as schema from '../../src/store/schema.js';
import { queryRows } from '../../src/store/connection.js';
import { appendAuditEvent, verifyAuditChain } from '../../src/store/audit-trail.js';
import {
  applySequenceStates,
  countRows,
  insertBatch,
  readBatch,
  sequenceStates,
  tablesInDependencyOrder,
  tablesWithRows,
  type CopiedTable,
} from '../../src/store/table-copy.js';
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from '../helpers/database.js';
import { serviceGate } from '../helpers/services.js';

/**
 * The table-copy primitive of `ciphergate store copy`: the table list and order come from the
 * catalog (so a new table is never forgotten), and values cross from PGlite to PostgreSQL in
 * their text form, exactly.
 */

describe('copy order from the catalog', () => {
  let source: TestDatabase;
  before(async () => {
    source = await createTestDatabase('pglite');
  });
  after(() => source.cleanup());

  test('every table of the schema is in the list, once', async () => {
    const declared: string[] = [];
    for (const value of Object.values(schema)) if (is(value, PgTable)) declared.push(getTableName(value));
    const listed = (await tablesInDependencyOrder(source.database.db)).map((table) => table.name);
    assert.deepEqual([...listed].sort(), [...new Set(declared)].sort());
    assert.equal(new Set(listed).size, listed.length);
  });

  test('every table comes after the tables its foreign keys point at', async () => {
    const order = (await tablesInDependencyOrder(source.database.db)).map((table) => table.name);
    const references = await queryRows<{ child: string; parent: string }>(
      source.database.db,
      sql`select c.relname as child, p.relname as parent from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_class p on p.oid = k.confrelid where k.contype = 'f'`,
    );
    assert.ok(references.length > 10, 'the schema has foreign keys to order by');
    for (const { child, parent } of references) {
      if (child !== parent) assert.ok(order.indexOf(parent) < order.indexOf(child), `${parent} must come before ${child}`);
    }
  });

  test('a table without a primary key, or a cycle of foreign keys, is refused by name', async () => {
    const scratch = await createTestDatabase('pglite', { migrated: false });
    try {
      await scratch.database.db.execute(sql`create table loose (value text)`);
      await assert.rejects(tablesInDependencyOrder(scratch.database.db), /table loose has no primary key/);
      await scratch.database.db.execute(sql`drop table loose`);
      await scratch.database.db.execute(sql`create table a (id int primary key, b_id int)`);
      await scratch.database.db.execute(sql`create table b (id int primary key, a_id int references a(id))`);
      await scratch.database.db.execute(sql`alter table a add foreign key (b_id) references b(id)`);
      await assert.rejects(tablesInDependencyOrder(scratch.database.db), /foreign keys of a, b form a cycle/);
    } finally {
      await scratch.cleanup();
    }
  });
});

const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());

describe('values from PGlite to PostgreSQL, page by page', { skip: gate.skip }, () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const tenantId = randomUUID();
  const everyByte = Buffer.from(Array.from({ length: 256 }, (_, index) => index));

  before(async () => {
    source = await createTestDatabase('pglite');
    target = await createTestDatabase('postgres');
    const db = source.database.db;
    // Values a JavaScript round trip would change: microseconds, every byte, jsonb key order and
    // unicode, array elements that need quoting.
    await db.execute(sql`insert into tenants (id, slug, name, settings, twilio_auth_token, created_at, updated_at)
      values (${tenantId}, 'fidelity', 'Fidelity ☃ "quoted"', ${JSON.stringify({ z: 1, a: ['é', null, { n: 1.5e-7 }] })}::jsonb,
              decode(${everyByte.toString('hex')}, 'hex'), '2026-01-02 03:04:05.123456+00', '2026-01-02 03:04:05.000001+00')`);
    await db.execute(sql`insert into api_keys (id, name, key_hash, hint, tenant_id, scopes, created_at)
      values (${randomUUID()}, 'k', 'hash-1', 'cg_1', ${tenantId}, array['messages:send', 'a,b', 'with "quote"', 'with space', ''], now())`);
    for (let version = 1; version <= 5; version += 1) {
      for (const scope of ['tenant:b', 'tenant:a', 'system']) {
        await db.execute(sql`insert into data_keys (scope, version, wrapped_key, kek_kind, kek_id, state, created_at) values (${scope}, ${version}, ${everyByte}, 'local', 'local:x', 'active', now())`);
      }
    }
    for (let index = 0; index < 7; index += 1) await appendAuditEvent(db, { actor: { type: 'system' }, action: 'keys.rotate', outcome: 'success', details: { index } });
  });
  after(async () => {
    await source?.cleanup();
    await target?.cleanup();
  });

  async function copyAll(tables: CopiedTable[], pageSize: number): Promise<void> {
    for (const table of tables) {
      let after: string[] | undefined;
      for (;;) {
        const page = await readBatch(source.database.db, table, after, pageSize);
        await target.database.db.transaction((tx) => insertBatch(tx, table, page.rows));
        if (page.rows.length < pageSize) break;
        after = page.lastKey;
      }
    }
  }

  async function textOf(which: TestDatabase, table: string, key: string): Promise<string[]> {
    const rows = await queryRows<{ row: string }>(which.database.db, sql.raw(`select t::text as row from ${table} t order by ${key}`));
    return rows.map((row) => row.row);
  }

  test('pages of two rows (a composite key included) copy every row once, byte for byte in text form', async () => {
    const tables = await tablesInDependencyOrder(source.database.db);
    assert.deepEqual(await tablesWithRows(target.database.db), []);
    await copyAll(tables, 2);
    for (const table of tables) assert.equal(await countRows(target.database.db, table.name), await countRows(source.database.db, table.name), table.name);
    assert.deepEqual(await textOf(target, 'tenants', 'id'), await textOf(source, 'tenants', 'id'));
    assert.deepEqual(await textOf(target, 'api_keys', 'id'), await textOf(source, 'api_keys', 'id'));
    assert.deepEqual(await textOf(target, 'data_keys', 'scope, version'), await textOf(source, 'data_keys', 'scope, version'));
    assert.deepEqual(await textOf(target, 'audit_events', 'seq'), await textOf(source, 'audit_events', 'seq'));
    const [tenant] = await queryRows<{ token: Buffer; at: string }>(target.database.db, sql`select twilio_auth_token as token, created_at::text as at from tenants`);
    assert.ok(Buffer.from(tenant!.token).equals(everyByte));
    assert.equal(tenant!.at, '2026-01-02 03:04:05.123456+00');
    assert.equal((await verifyAuditChain(target.database.db)).intact, true);
    assert.deepEqual(await tablesWithRows(target.database.db), ['api_keys', 'audit_events', 'data_keys', 'tenants']);
  });

  test('sequences continue where the source stood: the next audit entry gets the next seq', async () => {
    await applySequenceStates(target.database.db, await sequenceStates(source.database.db));
    const appended = await appendAuditEvent(target.database.db, { actor: { type: 'system' }, action: 'keys.rotate', outcome: 'success' });
    assert.equal(appended.seq, 8);
    assert.equal((await verifyAuditChain(target.database.db)).intact, true);
  });
});
