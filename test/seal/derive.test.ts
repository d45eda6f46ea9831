import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { derivationLabel, deriveBlindIndexKey, deriveColumnKey } from '../../src/seal/derive.js';
import { SealInputError } from '../../src/seal/errors.js';

describe('key derivation', () => {
  const dek = randomBytes(32);

  test('is HKDF-SHA256 with the documented labels', () => {
    assert.equal(derivationLabel('column-key', 'messages', 'body'), 'ciphergate/v1/column-key/messages/body');
    const expected = Buffer.from(hkdfSync('sha256', dek, Buffer.alloc(0), 'ciphergate/v1/blind-index-key/contacts/phone', 32));
    assert.ok(deriveBlindIndexKey(dek, 'contacts', 'phone').equals(expected));
  });

  test('is deterministic and 32 bytes', () => {
    const key = deriveColumnKey(dek, 'messages', 'body');
    assert.equal(key.length, 32);
    assert.ok(key.equals(deriveColumnKey(dek, 'messages', 'body')));
  });

  test('gives distinct keys per column, table, purpose and DEK', () => {
    const keys = [
      deriveColumnKey(dek, 'messages', 'body'),
      deriveColumnKey(dek, 'messages', 'subject'),
      deriveColumnKey(dek, 'contacts', 'body'),
      deriveBlindIndexKey(dek, 'messages', 'body'),
      deriveColumnKey(randomBytes(32), 'messages', 'body'),
    ].map((key) => key.toString('hex'));
    assert.equal(new Set(keys).size, keys.length);
  });

  test('refuses names that would make a label ambiguous, and DEKs of the wrong size', () => {
    for (const [table, column] of [
      ['a/b', 'c'],
      ['a', 'b/c'],
      ['', 'c'],
      ['1abc', 'c'],
      ['a', 'x'.repeat(64)],
    ] as const) {
      assert.throws(() => deriveColumnKey(dek, table, column), SealInputError);
    }
    assert.throws(() => deriveColumnKey(randomBytes(16), 'messages', 'body'), SealInputError);
  });
});
