import type { Config } from '../config/load.js';
import { createPkcs11Kek } from '../seal/providers/pkcs11.js';
import { appendAuditEvent } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';

/**
 * Creates the KEK inside the configured PKCS#11 token (non-extractable AES-256), or finds it
 * there, and records `keys.init-hsm` either way.
 */
export async function initHsmKek(
  db: Db,
  keys: Extract<Config['keys'], { provider: 'pkcs11' }>,
): Promise<{ kekId: string; tokenLabel: string; created: boolean }> {
  const result = await createPkcs11Kek({ modulePath: keys.module, tokenLabel: keys.tokenLabel, pin: keys.pin, keyLabel: keys.keyLabel });
  await appendAuditEvent(db, {
    actor: { type: 'system', id: 'cli' },
    action: 'keys.init-hsm',
    target: { type: 'kek', id: result.kekId },
    outcome: 'success',
    details: { created: result.created },
  });
  return result;
}
