/**
 * Blind indexes: HMAC-SHA256 under a per-column key of the normalised value, truncated to
 * a length declared per column. They let a repository find a row by exact value (a
 * contact by phone, a user by e-mail) with `WHERE idx = $1`, without decrypting the table
 * and without storing anything an attacker holding the database alone can reverse.
 *
 * Equal values always give equal indexes, so the database shows which rows share a
 * value and how often; that is inherent to any exact-match index. Truncation only blurs
 * it once collisions become common, which needs far fewer bits than the 8-byte floor
 * here: between 8 and 32 bytes false positives are negligible (a lookup in a million
 * rows hits a stray row with probability ~10^-13 at 8 bytes) and the length mostly
 * decides storage. See docs/sealing.md for the recommended lengths.
 */

import { createHmac, type KeyObject } from 'node:crypto';
import { SealInputError } from './errors.js';

export const MIN_BLIND_INDEX_BYTES = 8;
export const MAX_BLIND_INDEX_BYTES = 32;

/** Recommended lengths per kind of value; see docs/sealing.md for the reasoning. */
export const RECOMMENDED_BLIND_INDEX_BYTES = { phone: 16, email: 16 } as const;

/** Computes the index of an already-normalised value. */
export function computeBlindIndex(indexKey: KeyObject | Buffer, normalisedValue: string, lengthBytes: number): Buffer {
  checkBlindIndexLength(lengthBytes);
  const mac = createHmac('sha256', indexKey).update(normalisedValue, 'utf8').digest();
  return lengthBytes === MAX_BLIND_INDEX_BYTES ? mac : mac.subarray(0, lengthBytes);
}

export function checkBlindIndexLength(lengthBytes: number): void {
  if (!Number.isInteger(lengthBytes) || lengthBytes < MIN_BLIND_INDEX_BYTES || lengthBytes > MAX_BLIND_INDEX_BYTES) {
    throw new SealInputError(
      `blind index length must be an integer from ${MIN_BLIND_INDEX_BYTES} to ${MAX_BLIND_INDEX_BYTES} bytes`,
    );
  }
}
