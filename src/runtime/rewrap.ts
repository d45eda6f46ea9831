import type { Config } from '../config/load.js';
import { rewrapDataKeys, type RewrapOutcome } from '../keys/rewrap.js';
import type { KeyProvider } from '../seal/providers/key-provider.js';
import { LocalKeyProvider } from '../seal/providers/local.js';
import { openPkcs11KeyProvider } from '../seal/providers/pkcs11.js';
import type { Runtime } from './open-runtime.js';
import { openKeyProvider } from './sealing.js';

/** The KEK the data keys were wrapped under before: a local master key, or another key in the configured token. */
export type FormerKek = { masterKey: string } | { pkcs11KeyLabel: string };

/**
 * `keys rewrap` wired: the configured key provider (the target) and the former one (the
 * source), opened in that order and closed whatever happens, around the keys use case.
 * `former` is asked only once the target is open, so its refusals come after the target's.
 */
export async function rewrapUnderConfiguredKek(runtime: Runtime, former: () => FormerKek): Promise<{ outcome: RewrapOutcome; fromKekId: string; toKekId: string }> {
  let target: KeyProvider | undefined;
  let source: KeyProvider | undefined;
  try {
    target = await openKeyProvider(runtime.config, runtime.logger);
    source = await openFormerKeyProvider(runtime.config, former());
    const outcome = await rewrapDataKeys(runtime.database.db, target, source, { type: 'system', id: 'cli' });
    return { outcome, fromKekId: source.kekId, toKekId: target.kekId };
  } finally {
    await source?.close();
    await target?.close();
  }
}

async function openFormerKeyProvider(config: Pick<Config, 'keys' | 'dataDir'>, former: FormerKek): Promise<KeyProvider> {
  if ('masterKey' in former) {
    return new LocalKeyProvider({ masterKey: former.masterKey, dataDir: config.dataDir, allowGenerate: false, warn: () => undefined });
  }
  // The former key lives in the same token as the configured one.
  if (config.keys.provider !== 'pkcs11') throw new Error('a former PKCS#11 key needs CIPHERGATE_KEY_PROVIDER=pkcs11');
  return openPkcs11KeyProvider({ modulePath: config.keys.module, tokenLabel: config.keys.tokenLabel, pin: config.keys.pin, keyLabel: former.pkcs11KeyLabel });
}
