import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { StoredKeyring } from '../../src/seal/keyring.js';
import { LocalKeyProvider } from '../../src/seal/providers/local.js';
import { SealedFields } from '../../src/seal/sealed-fields.js';
import { Sealer } from '../../src/seal/sealer.js';
import type { Db } from '../../src/store/connection.js';

export function randomMasterKey(): string {
  return randomBytes(32).toString('base64');
}

export function localProvider(masterKey: string): LocalKeyProvider {
  return new LocalKeyProvider({ masterKey, dataDir: mkdtempSync(join(tmpdir(), 'cg-kek-')), allowGenerate: false, warn: () => undefined });
}

/** The production sealing stack over a test database: stored keyring, local KEK, Sealer. */
export async function openTestSealing(db: Db, masterKey = randomMasterKey()) {
  const provider = localProvider(masterKey);
  const keyring = await StoredKeyring.open(db, provider);
  await keyring.ensureScope(SYSTEM_SCOPE);
  const sealer = new Sealer(keyring);
  return { masterKey, provider, keyring, sealer, fields: new SealedFields(sealer, keyring) };
}
