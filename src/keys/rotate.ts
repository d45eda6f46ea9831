import { SYSTEM_SCOPE } from '../seal/binding.js';
import { ScopeDestroyedError } from '../seal/errors.js';
import type { StoredKeyring } from '../seal/keyring.js';
import { appendAuditEvent, type AuditEventInput } from '../store/audit-trail.js';
import type { Db } from '../store/connection.js';
import type { KeysErrorCode } from './error-codes.js';

export type RotateOutcome = { ok: true; version: number } | { ok: false; code: Extract<KeysErrorCode, 'scope-destroyed'> };

/**
 * Makes a new data-key version for one scope (a tenant id, or `system`) and records
 * `keys.rotate`. New writes use the new version at once; values under older versions stay
 * readable until re-encryption (./reencrypt.ts) moves them forward. A shredded tenant is never
 * re-keyed: it is answered `scope-destroyed` and nothing is recorded. (The system scope is
 * never shredded; if it were, that is thrown, not answered.)
 */
export async function rotateDataKey(db: Db, keyring: StoredKeyring, scope: string, actor: AuditEventInput['actor']): Promise<RotateOutcome> {
  let version: number;
  try {
    version = await keyring.rotate(scope);
  } catch (error) {
    if (!(error instanceof ScopeDestroyedError) || scope === SYSTEM_SCOPE) throw error;
    return { ok: false, code: 'scope-destroyed' };
  }
  await appendAuditEvent(db, {
    actor,
    action: 'keys.rotate',
    target: { type: 'data_key', id: `${scope}:v${version}` },
    tenantId: scope === SYSTEM_SCOPE ? null : scope,
    outcome: 'success',
    details: { version },
  });
  return { ok: true, version };
}
