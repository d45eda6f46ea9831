import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getTableColumns, getTableName, is } from 'drizzle-orm';
import { PgTable, type PgColumn } from 'drizzle-orm/pg-core';
import type { Db } from '../../src/store/connection.js';
import * as schema from '../../src/store/schema.js';
import { sealedTables } from '../../src/store/sealed-tables.js';

test('every sealed column in the schema is declared in a SealedTable, and every declaration names real columns', () => {
  const declared = new Map(sealedTables.map((declaration) => [declaration.name, declaration]));
  const sealedColumnNames = new Set<string>();
  for (const value of Object.values(schema)) {
    if (!is(value, PgTable)) continue;
    const tableName = getTableName(value);
    for (const [property, column] of Object.entries(getTableColumns(value)) as Array<[string, PgColumn]>) {
      // Every bytea column other than data_keys.wrapped_key is sealed data or a blind index.
      if (column.getSQLType() !== 'bytea' || tableName === 'data_keys') continue;
      const declaration = declared.get(tableName);
      assert.ok(declaration, `${tableName}.${column.name} is bytea but ${tableName} has no SealedTable declaration`);
      const isField = property in declaration.fields;
      const isIndex = Object.values(declaration.fields).some((spec) => spec.blindIndex?.property === property);
      assert.ok(isField || isIndex, `${tableName}.${column.name} is neither a declared sealed field nor its blind index`);
      sealedColumnNames.add(`${tableName}.${property}`);
    }
  }
  for (const declaration of sealedTables) {
    for (const property of Object.keys(declaration.fields)) {
      assert.ok(sealedColumnNames.has(`${declaration.name}.${property}`), `declared ${declaration.name}.${property} is not a bytea column`);
    }
  }
});

// Never called: checked by `tsc` (npm test typechecks first). Writing anything but a value made
// by the Sealer into a sealed column does not compile.
export async function plainTextCannotBeWrittenToASealedColumn(db: Db): Promise<void> {
  const now = new Date();
  const plainMessage = {
    id: 'x',
    tenantId: 'x',
    contactId: 'x',
    conversationId: 'x',
    direction: 'inbound' as const,
    author: 'contact' as const,
    dedupeKey: 'x',
    status: 'received',
    statusRank: 0,
    body: Buffer.from('hello'),
    createdAt: now,
    updatedAt: now,
  };
  // @ts-expect-error a plain Buffer is not a SealedValue
  await db.insert(schema.messages).values(plainMessage);
  // @ts-expect-error a string is not a SealedValue either
  await db.update(schema.tenants).set({ twilioAuthToken: 'secret' });
  // @ts-expect-error nor is a raw Buffer a blind index
  await db.update(schema.contacts).set({ phoneIndex: Buffer.alloc(16) });
}
