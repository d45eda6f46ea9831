import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { Db } from '../store/connection.js';
import { DataKeyRepository } from '../store/repositories/data-keys.js';
import { SYSTEM_SCOPE } from '../seal/binding.js';
import { StoredKeyring } from '../seal/keyring.js';
import type { KeyProvider } from '../seal/providers/key-provider.js';
import { LocalKeyProvider } from '../seal/providers/local.js';
import { openPkcs11KeyProvider } from '../seal/providers/pkcs11.js';
import { SealedFields } from '../seal/sealed-fields.js';
import { Sealer } from '../seal/sealer.js';

/**
 * Opening the sealing stack once at start: the key provider the configuration names (the one
 * place that chooses between them), the keyring over the store's data keys, the Sealer and the
 * sealed-fields API that repositories take. Used by `serve`, `worker` and every CLI command.
 */
export interface Sealing {
  provider: KeyProvider;
  keyring: StoredKeyring;
  sealer: Sealer;
  fields: SealedFields;
  close(): Promise<void>;
}

/** The configured key provider, proven usable; throws KeyProviderError with one clear line otherwise. */
export async function openKeyProvider(config: Pick<Config, 'keys' | 'dataDir' | 'database'>, logger: Logger): Promise<KeyProvider> {
  const provider =
    config.keys.provider === 'pkcs11'
      ? await openPkcs11KeyProvider({
          modulePath: config.keys.module,
          tokenLabel: config.keys.tokenLabel,
          pin: config.keys.pin,
          keyLabel: config.keys.keyLabel,
        })
      : new LocalKeyProvider({
          ...(config.keys.masterKey !== undefined ? { masterKey: config.keys.masterKey } : {}),
          dataDir: config.dataDir,
          // Only the embedded default may make its own key: a server deployment must bring one,
          // or a fresh container would silently seal data under a key nobody backed up.
          allowGenerate: config.database.url === undefined,
          warn: (message) => logger.warn(message),
        });
  try {
    await provider.check();
  } catch (error) {
    await provider.close();
    throw error;
  }
  return provider;
}

/** Key provider, keyring (every DEK unwrapped) and the sealing API, ready for repositories. */
export async function openSealing(config: Pick<Config, 'keys' | 'dataDir' | 'database'>, db: Db, logger: Logger): Promise<Sealing> {
  const provider = await openKeyProvider(config, logger);
  try {
    const keyring = await StoredKeyring.open(new DataKeyRepository(db), provider);
    await keyring.ensureScope(SYSTEM_SCOPE);
    const sealer = new Sealer(keyring);
    // A scope shredded by another process: once the refresh (every 10 s in serve and worker)
    // drops its DEKs, the column keys derived from them are dropped too.
    keyring.onRetire((scope) => sealer.forget(scope));
    return {
      provider,
      keyring,
      sealer,
      fields: new SealedFields(sealer, keyring),
      async close() {
        keyring.close();
        sealer.forget();
        await provider.close();
      },
    };
  } catch (error) {
    await provider.close();
    throw error;
  }
}
