import { customType } from 'drizzle-orm/pg-core';

declare const sealedBrand: unique symbol;
declare const blindIndexBrand: unique symbol;

/**
 * A sealed envelope. Only the Sealer makes one (through src/seal/sealed-fields.ts), so a
 * plain string or Buffer written to a sealed column is a type error, not a leak.
 */
export type SealedValue = Buffer & { readonly [sealedBrand]: true };
/** A keyed blind index, made only by the Sealer. */
export type BlindIndexValue = Buffer & { readonly [blindIndexBrand]: true };

/** PGlite answers bytea as Uint8Array, node-postgres as Buffer; callers always get a Buffer. */
function toBuffer(value: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A column whose content is a sealed envelope (docs/sealing.md); declared in a SealedTable. */
export const sealedColumn = customType<{ data: SealedValue; driverData: Buffer }>({
  dataType: () => 'bytea',
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
