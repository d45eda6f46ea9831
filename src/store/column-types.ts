import { customType } from 'drizzle-orm/pg-core';
import type { BlindIndexValue, SealedValue } from '../seal/sealed-value.js';

export type { BlindIndexValue, SealedValue };

/** PGlite answers bytea as Uint8Array, node-postgres as Buffer; callers always get a Buffer. */
function toBuffer(value: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A column whose content is a sealed envelope (docs/sealing.md); declared in a SealedTable. */
export const sealedColumn = customType<{ data: SealedValue; driverData: Buffer }>({
  dataType: () => 'bytea',
  // What the database holds in this column was written by the seal layer (or restored from a
  // backup of it): reading it back is the one other place the type is asserted.
  fromDriver: (value) => toBuffer(value) as SealedValue,
  toDriver: (value) => value,
});

export const blindIndexColumn = customType<{ data: BlindIndexValue; driverData: Buffer }>({
  dataType: () => 'bytea',
  fromDriver: (value) => toBuffer(value) as BlindIndexValue,
  toDriver: (value) => value,
});

/** Plain bytea (wrapped keys): not secret at rest, but binary. */
export const byteaColumn = customType<{ data: Buffer; driverData: Buffer }>({
  dataType: () => 'bytea',
  fromDriver: (value) => toBuffer(value),
  toDriver: (value) => value,
});
