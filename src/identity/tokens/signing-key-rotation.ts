import { appendAuditEvent } from '../../store/audit-trail.js';
import { SigningKeysRepository } from '../../store/repositories/signing-keys.js';
import type { Identity } from '../identity.js';

/**
 * `keys rotate-signing`: a new token-signing key for new access tokens, the keys active before
 * it retired (they keep verifying for RETIRED_KEY_VERIFICATION_WINDOW_MS), recorded as
 * `keys.rotate-signing` with both.
 */
export async function rotateSigningKeyAsOperator(identity: Identity): Promise<{ kid: string; retired: string[] }> {
  const { db, fields, signingKeys } = identity.parts;
  const store = new SigningKeysRepository(db, fields);
  const activeBefore = (await store.list()).filter((key) => key.retiredAt === null).map((key) => key.kid);
  const fresh = await signingKeys.rotate();
  const retiredKids = activeBefore.filter((oldKid) => oldKid !== fresh.kid);
  await appendAuditEvent(db, {
    actor: { type: 'system', id: 'cli' },
    action: 'keys.rotate-signing',
    target: { type: 'signing_key', id: fresh.kid },
    outcome: 'success',
    details: { kid: fresh.kid, retired: retiredKids.join(' ') },
  });
  return { kid: fresh.kid, retired: retiredKids };
}
