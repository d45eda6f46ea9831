import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { StoredKeyring } from '../../src/seal/keyring.js';
import { DataKeyRepository } from '../../src/store/repositories/data-keys.js';
import { LocalKeyProvider } from '../../src/seal/providers/local.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { Sealer } from '../../src/seal/sealer.js';
import type { Db } from '../../src/store/connection.js';
import { createTestDatabase, type Backend, type TestDatabase } from './database.js';

export function randomMasterKey(): string {
  return randomBytes(32).toString('base64');
}

export function localProvider(masterKey: string): LocalKeyProvider {
  return new LocalKeyProvider({ masterKey, dataDir: mkdtempSync(join(tmpdir(), 'cg-kek-')), allowGenerate: false, warn: () => undefined });
}

/** The production sealing stack over a test database: stored keyring, local KEK, Sealer. */
export async function openTestSealing(db: Db, masterKey = randomMasterKey()) {
  const provider = localProvider(masterKey);
  const keyring = await StoredKeyring.open(new DataKeyRepository(db), provider);
  await keyring.ensureScope(SYSTEM_SCOPE);
  const sealer = new Sealer(keyring);
  return { masterKey, provider, keyring, sealer, fields: new SealedFields(sealer, keyring) };
}

/** The keys a maintenance job (encrypt-existing, reencrypt, key status) finds: a stored keyring under a local KEK. */
export interface MaintenanceKeys {
  masterKey: string;
  keyring: StoredKeyring;
  fields: SealedFields;
}

/**
 * Like openTestSealing, but no scope has a key yet: the key maintenance tests count data keys
 * and versions, and make each scope's key where the test needs it. `masterKey` reopens the
 * keys of an earlier run (as a second process would).
 */
export async function openMaintenanceKeys(db: Db, masterKey = randomMasterKey()): Promise<MaintenanceKeys> {
  const keyring = await StoredKeyring.open(new DataKeyRepository(db), localProvider(masterKey));
  return { masterKey, keyring, fields: new SealedFields(new Sealer(keyring), keyring) };
}

/** A test database and maintenance keys over it for `body`, both gone after it whatever happens. */
export async function withMaintenanceKeys(backend: Backend, body: (fixture: MaintenanceKeys & { testDb: TestDatabase; db: Db }) => Promise<void>): Promise<void> {
  const testDb = await createTestDatabase(backend);
  try {
    const keys = await openMaintenanceKeys(testDb.database.db);
    try {
      await body({ testDb, db: testDb.database.db, ...keys });
    } finally {
      keys.keyring.close();
    }
  } finally {
    await testDb.cleanup();
  }
}
