/**
 * The sealed-value envelope, format v1: AES-256-GCM with a random 96-bit nonce.
 *
 *   offset 0   1 byte    marker 0xC1
 *   offset 1   1 byte    format version 0x01
 *   offset 2   4 bytes   key version, uint32 big-endian (the DEK version that sealed it)
 *   offset 6   12 bytes  nonce
 *   offset 18  n bytes   ciphertext
 *   last       16 bytes  GCM tag
 *
 * AAD = the 6 header bytes ‖ binding, so the key version is authenticated as well as the
 * place the value belongs (see binding.ts).
 *
 * 0xC1 can never start UTF-8 text (it would encode a code point below U+0080 in two
 * bytes, which UTF-8 forbids), so plaintext left in the same bytea column by an older
 * version is told apart from a sealed value by its first byte, never by guessing.
 */

import { createCipheriv, createDecipheriv, randomFillSync, type KeyObject } from 'node:crypto';
import { SealInputError, SealOpenError } from './errors.js';

// The header, field by field. This is the one definition of the layout: the SQL with which the
// maintenance jobs find plaintext and key versions without opening anything
// (src/store/sealed-rows.ts) is generated from these constants.
export const ENVELOPE_MARKER = 0xc1;
export const MARKER_OFFSET = 0;
export const ENVELOPE_FORMAT_V1 = 0x01;
export const FORMAT_OFFSET = 1;
/** The key version is a uint32, big-endian. */
export const KEY_VERSION_OFFSET = 2;
export const KEY_VERSION_BYTES = 4;
export const HEADER_BYTES = KEY_VERSION_OFFSET + KEY_VERSION_BYTES;
// 96 bits is the nonce length GCM uses directly, without an extra GHASH pass (SP 800-38D
// §7.1); random 96-bit nonces are within the spec's bound up to 2^32 seals per key
// (§8.3), and keys are per column and per DEK version, which rotation renews.
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Bytes an envelope adds to its plaintext. */
export const ENVELOPE_OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;

export type ColumnKey = KeyObject | Buffer;

export interface EnvelopeHeader {
  formatVersion: number;
  keyVersion: number;
}

/** Seals `plaintext` under `columnKey`, naming `keyVersion` in the header. */
export function sealEnvelope(columnKey: ColumnKey, keyVersion: number, plaintext: Buffer, binding: Buffer): Buffer {
  return sealIntoAadSlot(columnKey, keyVersion, plaintext, withHeaderSlot(binding), undefined);
}

/**
 * Opens an envelope sealed for exactly this key and binding. Throws SealOpenError and
 * never returns partial or unauthenticated plaintext.
 */
export function openEnvelope(columnKey: ColumnKey, sealed: Buffer, binding: Buffer): Buffer {
  return openEnvelopeWithAadSlot(columnKey, sealed, withHeaderSlot(binding));
}

/**
 * @internal The Sealer's path: `aad` is HEADER_BYTES spare bytes followed by the binding
 * (see BindingBuilder), and the spare bytes are overwritten with the header. GCM then
 * takes the whole AAD in one setAAD call with no extra buffer; a second setAAD or a join
 * cost ~10% of a 160 B seal+open.
 */
export function sealEnvelopeWithAadSlot(columnKey: ColumnKey, keyVersion: number, plaintext: Buffer, aad: Buffer): Buffer {
  return sealIntoAadSlot(columnKey, keyVersion, plaintext, aad, undefined);
}

/** @internal Counterpart of sealEnvelopeWithAadSlot; `aad`'s first bytes are overwritten. */
export function openEnvelopeWithAadSlot(columnKey: ColumnKey, sealed: Buffer, aad: Buffer): Buffer {
  const header = readEnvelopeHeader(sealed);
  if (header === null) throw new SealOpenError('not-sealed');
  if (sealed.length < ENVELOPE_OVERHEAD) throw new SealOpenError('truncated');

  const tagStart = sealed.length - TAG_BYTES;
  const decipher = createDecipheriv('aes-256-gcm', columnKey, sealed.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES), {
    authTagLength: TAG_BYTES,
  });
  sealed.copy(aad, 0, 0, HEADER_BYTES);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(tagStart));
  const plaintext = decipher.update(sealed.subarray(HEADER_BYTES + NONCE_BYTES, tagStart));
  try {
    decipher.final();
  } catch {
    // update() already produced bytes; they are unauthenticated and must not linger.
    plaintext.fill(0);
    throw new SealOpenError('authentication-failed');
  }
  return plaintext;
}

/**
 * Reads the header without opening. Returns null when the value is not an envelope (the
 * first byte is not the marker: legacy plaintext). A value that starts with the marker
 * but whose header is cut short or of an unknown format throws SealOpenError, because it
 * is certainly not plaintext and must not be treated as such.
 */
export function readEnvelopeHeader(buf: Buffer): EnvelopeHeader | null {
  if (!isSealed(buf)) return null;
  if (buf.length <= FORMAT_OFFSET) throw new SealOpenError('truncated');
  const formatVersion = buf[FORMAT_OFFSET]!;
  if (formatVersion !== ENVELOPE_FORMAT_V1) throw new SealOpenError('unsupported-format');
  if (buf.length < HEADER_BYTES) throw new SealOpenError('truncated');
  return { formatVersion, keyVersion: buf.readUInt32BE(KEY_VERSION_OFFSET) };
}

/**
 * True when the value claims to be an envelope (starts with the marker). It says nothing
 * about validity: a damaged envelope is still "sealed", so encrypt-existing never re-seals
 * it as if it were plaintext; opening it fails loudly instead.
 */
export function isSealed(buf: Buffer): boolean {
  return buf.length > MARKER_OFFSET && buf[MARKER_OFFSET] === ENVELOPE_MARKER;
}

/**
 * @internal For the documented test vector only; the Sealer never calls it. Reusing a
 * nonce under one key breaks both the confidentiality and the integrity of GCM.
 */
export function unsafeSealEnvelopeWithFixedNonce(
  columnKey: ColumnKey,
  keyVersion: number,
  plaintext: Buffer,
  binding: Buffer,
  nonce: Buffer,
): Buffer {
  if (nonce.length !== NONCE_BYTES) throw new SealInputError(`nonce must be ${NONCE_BYTES} bytes`);
  return sealIntoAadSlot(columnKey, keyVersion, plaintext, withHeaderSlot(binding), nonce);
}

function sealIntoAadSlot(
  columnKey: ColumnKey,
  keyVersion: number,
  plaintext: Buffer,
  aad: Buffer,
  fixedNonce: Buffer | undefined,
): Buffer {
  if (!Number.isInteger(keyVersion) || keyVersion < 0 || keyVersion > 0xffffffff) {
    throw new SealInputError('key version must be a uint32');
  }
  const sealed = allocateEnvelope(ENVELOPE_OVERHEAD + plaintext.length);
  sealed[MARKER_OFFSET] = ENVELOPE_MARKER;
  sealed[FORMAT_OFFSET] = ENVELOPE_FORMAT_V1;
  sealed.writeUInt32BE(keyVersion, KEY_VERSION_OFFSET);
  const nonce = sealed.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  if (fixedNonce === undefined) randomFillSync(nonce);
  else fixedNonce.copy(nonce);

  const cipher = createCipheriv('aes-256-gcm', columnKey, nonce, { authTagLength: TAG_BYTES });
  sealed.copy(aad, 0, 0, HEADER_BYTES);
  cipher.setAAD(aad);
  // node:crypto has no update-into-buffer API, so one copy of the ciphertext is the floor.
  const ciphertextEnd = HEADER_BYTES + NONCE_BYTES + cipher.update(plaintext).copy(sealed, HEADER_BYTES + NONCE_BYTES);
  cipher.final(); // GCM is a stream mode: final() emits nothing, it only computes the tag.
  cipher.getAuthTag().copy(sealed, ciphertextEnd);
  return sealed;
}

function withHeaderSlot(binding: Buffer): Buffer {
  const aad = Buffer.allocUnsafe(HEADER_BYTES + binding.length);
  binding.copy(aad, HEADER_BYTES);
  return aad;
}

// Buffer.allocUnsafe pools only below 4 KiB; above that every envelope got an ArrayBuffer
// of its own, which cost about 15% of a 4 KiB seal+open (measured in bench/seal.bench.ts).
// Envelopes up to 8 KiB are therefore carved from a shared 64 KiB slab, as Node does for
// small buffers. Only ciphertext lives there, and a retained envelope pins at most one
// slab; larger envelopes are dominated by the cipher itself and get their own buffer.
const SLAB_BYTES = 64 * 1024;
const MAX_SLAB_ENVELOPE_BYTES = 8 * 1024;
let slab = Buffer.allocUnsafeSlow(0);
let slabOffset = 0;

function allocateEnvelope(length: number): Buffer {
  if (length < Buffer.poolSize >>> 1 || length > MAX_SLAB_ENVELOPE_BYTES) return Buffer.allocUnsafe(length);
  if (slabOffset + length > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabOffset = 0;
  }
  const envelope = slab.subarray(slabOffset, slabOffset + length);
  slabOffset = (slabOffset + length + 7) & ~7; // keep the next envelope 8-byte aligned
  return envelope;
}
