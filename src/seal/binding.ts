/**
 * The binding is the additional authenticated data that ties a sealed value to the one
 * place it belongs: a tenant, a table, a column and a row. A ciphertext copied anywhere
 * else then fails to authenticate instead of opening as someone else's data.
 *
 * Encoding (all lengths are uint32 big-endian byte counts of the UTF-8 that follows):
 *
 *   len ‖ "ciphergate/seal/v1" ‖ len ‖ tenantId ‖ len ‖ table ‖ len ‖ column ‖ len ‖ rowId
 *
 * Every field is length-prefixed, so no two different contexts share an encoding
 * (tenant "a" + table "bc" differs from tenant "ab" + table "c"), and the domain label
 * keeps these bytes from ever meaning the same thing as AAD built for another purpose.
 */

import { SealInputError } from './errors.js';

export const BINDING_LABEL = 'ciphergate/seal/v1';

/** Tenant id used for data that belongs to no tenant (system settings, signing keys). */
export const SYSTEM_SCOPE = 'system';

export interface ColumnContext {
  /** Tenant id, or `system` for system-wide data. */
  tenantId: string;
  table: string;
  column: string;
}

export interface BindingContext extends ColumnContext {
  /** Primary key of the row as text; numeric keys are passed as their decimal string. */
  rowId: string;
}

/** The full binding for one value. */
export function encodeBinding(ctx: BindingContext): Buffer {
  return appendRowId(bindingPrefix(ctx), ctx.rowId);
}

/**
 * Everything but the row id. Built once per column and reused, because the prefix is the
 * same for every row and only the row id changes on the hot path.
 */
export function bindingPrefix(ctx: ColumnContext): Buffer {
  return encodeLengthPrefixed([
    BINDING_LABEL,
    checkField('tenantId', ctx.tenantId),
    checkField('table', ctx.table),
    checkField('column', ctx.column),
  ]);
}

/** Completes a prefix from bindingPrefix() with the row id. */
export function appendRowId(prefix: Buffer, rowId: string): Buffer {
  const rowIdBytes = rowIdLength(rowId);
  const binding = Buffer.allocUnsafe(prefix.length + 4 + rowIdBytes);
  prefix.copy(binding, 0);
  writeRowId(binding, prefix.length, rowId, rowIdBytes);
  return binding;
}

/**
 * Builds bindings for one column into a reused buffer, with `headroom` spare bytes in
 * front where the envelope writes its header, so header ‖ binding reaches GCM as one
 * buffer with no allocation or prefix copy per value. The returned view is only valid
 * until the next forRow() call: it is for consumers that copy it at once (setAAD does).
 */
export class BindingBuilder {
  private buffer: Buffer;

  constructor(
    private readonly prefix: Buffer,
    private readonly headroom: number,
  ) {
    this.buffer = this.allocate(64);
  }

  forRow(rowId: string): Buffer {
    const rowIdBytes = rowIdLength(rowId);
    const start = this.headroom + this.prefix.length;
    if (start + 4 + rowIdBytes > this.buffer.length) this.buffer = this.allocate(4 + rowIdBytes);
    return this.buffer.subarray(0, writeRowId(this.buffer, start, rowId, rowIdBytes));
  }

  private allocate(rowIdRoom: number): Buffer {
    const buffer = Buffer.allocUnsafeSlow(this.headroom + this.prefix.length + rowIdRoom);
    this.prefix.copy(buffer, this.headroom);
    return buffer;
  }
}

/**
 * uint32-length-prefixed UTF-8 fields, concatenated. Shared with the key wrapping AAD so
 * every canonical encoding in the sealing layer follows one rule.
 */
export function encodeLengthPrefixed(fields: readonly string[]): Buffer {
  let total = 0;
  const lengths = fields.map((field) => {
    const length = Buffer.byteLength(field, 'utf8');
    total += 4 + length;
    return length;
  });
  const encoded = Buffer.allocUnsafe(total);
  let offset = 0;
  fields.forEach((field, i) => {
    const length = lengths[i]!;
    offset = encoded.writeUInt32BE(length, offset);
    offset += encoded.write(field, offset, length, 'utf8');
  });
  return encoded;
}

// Lone surrogates are replaced by U+FFFD when encoded as UTF-8, so two different JS strings
// could produce the same bytes; refusing them keeps the encoding injective.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function rowIdLength(rowId: string): number {
  checkField('rowId', rowId);
  return Buffer.byteLength(rowId, 'utf8');
}

function writeRowId(target: Buffer, offset: number, rowId: string, rowIdBytes: number): number {
  const start = target.writeUInt32BE(rowIdBytes, offset);
  return start + target.write(rowId, start, rowIdBytes, 'utf8');
}

function checkField(name: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new SealInputError(`binding ${name} must be a non-empty string`);
  }
  if (LONE_SURROGATE.test(value)) {
    throw new SealInputError(`binding ${name} is not well-formed Unicode`);
  }
  return value;
}
