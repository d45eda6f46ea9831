/**
 * Per-column keys derived from a tenant's data key (DEK) with HKDF-SHA256 (RFC 5869).
 * Deriving instead of storing means one wrapped DEK per tenant and version covers every
 * column, while no two columns, and no two purposes within a column, share a key: a
 * blind index never uses the key that encrypts, and a leak of one column key exposes
 * one column only.
 *
 * info labels:  ciphergate/v1/column-key/<table>/<column>
 *               ciphergate/v1/blind-index-key/<table>/<column>
 *
 * Table and column names are restricted to SQL identifiers ([A-Za-z_][A-Za-z0-9_]*), so
 * they cannot contain "/" and every label parses back to exactly one (purpose, table,
 * column). The salt is empty: RFC 5869 §3.1 allows that when the input key is already
 * uniformly random, which a DEK from the CSPRNG is.
 */

import { hkdfSync } from 'node:crypto';
import { SealInputError } from './errors.js';

export const DEK_BYTES = 32;
export const DERIVED_KEY_BYTES = 32;

export type KeyPurpose = 'column-key' | 'blind-index-key';

/** The AES-256-GCM key for one column's sealed values. */
export function deriveColumnKey(dek: Buffer, table: string, column: string): Buffer {
  return deriveKey(dek, 'column-key', table, column);
}

/** The HMAC-SHA256 key for one column's blind index. */
export function deriveBlindIndexKey(dek: Buffer, table: string, column: string): Buffer {
  return deriveKey(dek, 'blind-index-key', table, column);
}

export function derivationLabel(purpose: KeyPurpose, table: string, column: string): string {
  return `ciphergate/v1/${purpose}/${checkIdentifier('table', table)}/${checkIdentifier('column', column)}`;
}

export function deriveKey(dek: Buffer, purpose: KeyPurpose, table: string, column: string): Buffer {
  if (!Buffer.isBuffer(dek) || dek.length !== DEK_BYTES) {
    throw new SealInputError(`a data key must be ${DEK_BYTES} bytes`);
  }
  const info = derivationLabel(purpose, table, column);
  return Buffer.from(hkdfSync('sha256', dek, Buffer.alloc(0), info, DERIVED_KEY_BYTES));
}

// 63 bytes is PostgreSQL's identifier limit; anything longer is not a real column.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

function checkIdentifier(name: string, value: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new SealInputError(`${name} must be an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)`);
  }
  return value;
}
