import { StoredKeyring } from '../seal/keyring.js';
import type { KeyProvider } from '../seal/providers/key-provider.js';
import { appendAuditEvent, type AuditEventInput } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';
import { DataKeyRepository } from '../store/repositories/data-keys.js';
import type { KeysErrorCode } from './error-codes.js';

export type RewrapOutcome =
  | { ok: true; rewrapped: number; alreadyCurrent: number }
  | { ok: false; code: Extract<KeysErrorCode, 'same-kek'> };

/**
 * Rotating the KEK: re-wraps every active data key still wrapped under `source` with `target`
 * (the configured KEK) and records `keys.rewrap`. Data rows are not touched, only the wrapping
 * of their keys; afterwards `source` is no longer needed. A key wrapped under a third KEK stops
 * the run (KekMismatchError) before anything of it moves.
 */
export async function rewrapDataKeys(db: Db, target: KeyProvider, source: KeyProvider, actor: AuditEventInput['actor']): Promise<RewrapOutcome> {
  if (source.kekId === target.kekId) return { ok: false, code: 'same-kek' };
  // Unloaded: the keys are still under the old KEK, which the target cannot unwrap.
  const keyring = StoredKeyring.unloaded(new DataKeyRepository(db), target);
  let result: { rewrapped: number; alreadyCurrent: number };
  try {
    result = await keyring.rewrapFrom(source);
  } finally {
    keyring.close();
  }
  await appendAuditEvent(db, {
    actor,
    action: 'keys.rewrap',
    target: { type: 'kek', id: target.kekId },
    outcome: 'success',
    details: { from: source.kekId, to: target.kekId, rewrapped: result.rewrapped, alreadyCurrent: result.alreadyCurrent },
  });
  return { ok: true, ...result };
}
