import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SigningKeysRepository as DatabaseSigningKeyStore } from '../../src/store/repositories/signing-keys.js';
import { generateSigningKey, SigningKeys } from '../../src/identity/tokens/signing-keys.js';
import { openDatabase, queryRows, type Database } from '../../src/store/connection.js';
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from '../helpers/database.js';
import { openTestSealing } from '../helpers/sealing.js';
import { serviceGate } from '../helpers/services.js';

/**
 * Guards the first signing key against a start-up race: instances starting at once on an
 * empty database each found no active key and each inserted one, so they signed with different
 * keys and the JWKS listed both. Each "instance" here has its own connection pool, as separate
 * processes would, and they open at the same moment.
 */
describe('regression: instances starting at once create one signing key between them', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  let database: TestDatabase | undefined;
  const pools: Database[] = [];
  after(async () => {
    await Promise.all(pools.map((pool) => pool.close()));
    await database?.cleanup();
  });

  test('six concurrent opens leave one active key, and all of them sign with it', { skip: gate.skip }, async () => {
    database = await createTestDatabase('postgres');
    const { masterKey, fields } = await openTestSealing(database.database.db);
    const instances = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const pool = await openDatabase({ url: database!.url!, connectTimeoutSeconds: 5, maxConnections: 2 });
        pools.push(pool);
        // Same KEK, own keyring cache: what a second process would have.
        const sealing = await openTestSealing(pool.db, masterKey);
        return new DatabaseSigningKeyStore(pool.db, sealing.fields);
      }),
    );
    const opened = await Promise.all(instances.map((store) => SigningKeys.open(store)));

    const rows = await queryRows<{ kid: string }>(database.database.db, sql`select kid from signing_keys where retired_at is null`);
    assert.equal(rows.length, 1, `active signing keys: ${rows.length}`);
    assert.deepEqual(new Set(opened.map((keys) => keys.current().kid)), new Set([rows[0]!.kid]));
    // A later start reuses the key instead of adding one.
    const store = new DatabaseSigningKeyStore(database.database.db, fields);
    assert.equal(await store.insertIfNoneActive(await generateSigningKey(new Date())), false);
    assert.equal((await store.list()).length, 1);
  });
});
