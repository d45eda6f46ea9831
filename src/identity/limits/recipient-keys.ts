import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { UsersRepository } from '../../store/repositories/users.js';

/**
 * Opaque keys for the places we send things to, for limits kept in Redis or memory: keyed
 * HMACs of the normalised address under the system data key, never the address itself (Redis
 * is not sealed, and an address there would be personal data outside the sealed tables).
 * Whoever holds only Redis cannot tell which address a key stands for.
 */

/**
 * `e:<hex>`: the blind index of `users.email` (lower-cased, NFC) under the current key version,
 * so the key of an address is the one its account would have, known or not. Also the sign-in
 * throttle's account key. An address that does not normalise shares `e:invalid`.
 */
export function emailRecipientKey(users: UsersRepository, email: string): string {
  const current = users.currentEmailIndex(email);
  return current ? `e:${current.toString('hex')}` : 'e:invalid';
}

/**
 * `tel:<hex>`: an HMAC of the number in E.164, with the blind-index key derived for
 * `sms_factors.phone` (which has no index of its own, so the key serves nothing else). A number
 * that does not normalise shares `tel:invalid`.
 */
export function phoneRecipientKey(fields: SealedFields, phone: string): string {
  try {
    return `tel:${fields.sealer.blindIndex(PHONE_KEY_CONTEXT, phone, { normaliser: 'e164', lengthBytes: 16 }).toString('hex')}`;
  } catch {
    return 'tel:invalid';
  }
}

const PHONE_KEY_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'sms_factors', column: 'phone' } as const;
