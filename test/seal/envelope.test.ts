import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import {
  ENVELOPE_OVERHEAD,
  isSealed,
  openEnvelope,
  readEnvelopeHeader,
  sealEnvelope,
  unsafeSealEnvelopeWithFixedNonce,
} from '../../src/seal/envelope.js';
import { SealInputError, SealOpenError, type SealOpenFailure } from '../../src/seal/errors.js';

const columnKey = randomBytes(32);
const binding = Buffer.from('binding for one row');

function assertOpenFails(sealed: Buffer, reasons: readonly SealOpenFailure[], key = columnKey, aad = binding): void {
  assert.throws(
    () => openEnvelope(key, sealed, aad),
    (error: unknown) => error instanceof SealOpenError && reasons.includes(error.reason),
  );
}

describe('envelope round trip', () => {
  for (const size of [0, 1, 160, 4096, 1024 * 1024]) {
    test(`${size} bytes`, () => {
      const plaintext = randomBytes(size);
      const sealed = sealEnvelope(columnKey, 7, plaintext, binding);
      assert.equal(sealed.length, size + ENVELOPE_OVERHEAD);
      assert.deepEqual(readEnvelopeHeader(sealed), { formatVersion: 1, keyVersion: 7 });
      assert.ok(openEnvelope(columnKey, sealed, binding).equals(plaintext));
    });
  }

  test('envelopes sharing an allocation slab never overlap', () => {
    // 4-8 KiB envelopes are carved from a shared slab; sealing many in a row and opening
    // them afterwards would expose any overlap or misaligned carve.
    const plaintexts = Array.from({ length: 40 }, (_, i) => randomBytes(4062 + i * 97));
    const sealed = plaintexts.map((plaintext) => sealEnvelope(columnKey, 1, plaintext, binding));
    sealed.forEach((envelope, i) => assert.ok(openEnvelope(columnKey, envelope, binding).equals(plaintexts[i]!)));
  });

  test('unicode text', () => {
    const text = 'Grüße, Zoë 👋 — 你好 ‮rtl‬';
    const sealed = sealEnvelope(columnKey, 1, Buffer.from(text, 'utf8'), binding);
    assert.equal(openEnvelope(columnKey, sealed, binding).toString('utf8'), text);
  });

  test('key version is written big-endian and the full uint32 range is accepted', () => {
    const sealed = sealEnvelope(columnKey, 0xfffffffe, Buffer.from('x'), binding);
    assert.equal(sealed.subarray(2, 6).toString('hex'), 'fffffffe');
    assert.throws(() => sealEnvelope(columnKey, 2 ** 32, Buffer.from('x'), binding), SealInputError);
    assert.throws(() => sealEnvelope(columnKey, -1, Buffer.from('x'), binding), SealInputError);
    assert.throws(() => sealEnvelope(columnKey, 1.5, Buffer.from('x'), binding), SealInputError);
  });

  test('AAD is the header followed by the binding (matches a one-shot reference)', () => {
    const nonce = randomBytes(12);
    const plaintext = Buffer.from('reference');
    const sealed = unsafeSealEnvelopeWithFixedNonce(columnKey, 5, plaintext, binding, nonce);
    const header = Buffer.from([0xc1, 0x01, 0, 0, 0, 5]);
    const cipher = createCipheriv('aes-256-gcm', columnKey, nonce);
    cipher.setAAD(Buffer.concat([header, binding]));
    const expected = Buffer.concat([header, nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    assert.ok(sealed.equals(expected));
  });
});

describe('telling sealed values from plaintext', () => {
  test('plaintext of any kind is not sealed', () => {
    for (const text of ['', 'hello', 'Ünïcødé', '\u0000', '👋']) {
      const bytes = Buffer.from(text, 'utf8');
      assert.equal(isSealed(bytes), false);
      assert.equal(readEnvelopeHeader(bytes), null);
      assertOpenFails(bytes, ['not-sealed']);
    }
  });

  test('a marker byte alone is a truncated envelope, not plaintext', () => {
    assert.equal(isSealed(Buffer.from([0xc1])), true);
    assert.throws(() => readEnvelopeHeader(Buffer.from([0xc1])), { name: 'SealOpenError', reason: 'truncated' });
  });

  test('another format version is refused', () => {
    const sealed = sealEnvelope(columnKey, 1, Buffer.from('x'), binding);
    sealed[1] = 0x02;
    assert.throws(() => readEnvelopeHeader(sealed), { reason: 'unsupported-format' });
    assertOpenFails(sealed, ['unsupported-format']);
  });
});

describe('fails closed', () => {
  test('one flipped bit at every bit of every byte never opens', () => {
    const plaintext = Buffer.from('sixteen byte msg');
    const sealed = sealEnvelope(columnKey, 1, plaintext, binding);
    for (let offset = 0; offset < sealed.length; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const tampered = Buffer.from(sealed);
        tampered[offset]! ^= 1 << bit;
        // Offset 0 stops being the marker and offset 1 stops being v1; everything after
        // the format byte must fail authentication (the key version included).
        const expected: SealOpenFailure =
          offset === 0 ? 'not-sealed' : offset === 1 ? 'unsupported-format' : 'authentication-failed';
        assertOpenFails(tampered, [expected]);
      }
    }
  });

  test('truncation at every length never opens', () => {
    const sealed = sealEnvelope(columnKey, 1, randomBytes(40), binding);
    for (let length = 0; length < sealed.length; length++) {
      const expected: SealOpenFailure[] =
        length === 0 ? ['not-sealed'] : length < ENVELOPE_OVERHEAD ? ['truncated'] : ['authentication-failed'];
      assertOpenFails(sealed.subarray(0, length), expected);
    }
  });

  test('appended bytes never open', () => {
    const sealed = sealEnvelope(columnKey, 1, Buffer.from('x'), binding);
    assertOpenFails(Buffer.concat([sealed, Buffer.from([0])]), ['authentication-failed']);
  });

  test('another binding or another key never opens', () => {
    const sealed = sealEnvelope(columnKey, 1, Buffer.from('secret'), binding);
    assertOpenFails(sealed, ['authentication-failed'], columnKey, Buffer.from('binding for another row'));
    assertOpenFails(sealed, ['authentication-failed'], randomBytes(32), binding);
  });

  test('a fixed nonce must be 12 bytes', () => {
    assert.throws(
      () => unsafeSealEnvelopeWithFixedNonce(columnKey, 1, Buffer.from('x'), binding, Buffer.alloc(16)),
      SealInputError,
    );
  });
});
