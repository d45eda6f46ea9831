import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { computeBlindIndex } from '../../src/seal/blind-index.js';
import { deriveBlindIndexKey } from '../../src/seal/derive.js';
import { NormaliseError } from '../../src/domain/normalise.js';
import { SealInputError } from '../../src/seal/errors.js';
import { InMemoryKeyring, Sealer } from '../../src/seal/sealer.js';

function setup() {
  const dek = randomBytes(32);
  const keyring = new InMemoryKeyring().add('t1', 1, dek).add('t2', 1, randomBytes(32));
  return { dek, keyring, sealer: new Sealer(keyring) };
}

const phone = { tenantId: 't1', table: 'contacts', column: 'phone' };
const phoneIndex = { normaliser: 'e164', lengthBytes: 16 } as const;

describe('blind index', () => {
  test('is HMAC-SHA256 under the column index key, truncated', () => {
    const { dek, sealer } = setup();
    const key = deriveBlindIndexKey(dek, 'contacts', 'phone');
    const full = createHmac('sha256', key).update('+14155550100').digest();
    assert.ok(sealer.blindIndex(phone, '+14155550100', phoneIndex).equals(full.subarray(0, 16)));
    assert.ok(computeBlindIndex(key, '+14155550100', 32).equals(full));
  });

  test('is deterministic for a column', () => {
    const { sealer, keyring } = setup();
    const first = sealer.blindIndex(phone, '+14155550100', phoneIndex);
    assert.ok(first.equals(sealer.blindIndex(phone, '+14155550100', phoneIndex)));
    // A fresh Sealer (empty cache) over the same keyring agrees: nothing depends on state.
    assert.ok(first.equals(new Sealer(keyring).blindIndex(phone, '+14155550100', phoneIndex)));
  });

  test('differs across columns, tables and tenants', () => {
    const { sealer } = setup();
    const indexes = [
      phone,
      { ...phone, column: 'alt_phone' },
      { ...phone, table: 'users' },
      { ...phone, tenantId: 't2' },
    ].map((ctx) => sealer.blindIndex(ctx, '+14155550100', phoneIndex).toString('hex'));
    assert.equal(new Set(indexes).size, indexes.length);
  });

  test('phone formats normalise to one index', () => {
    const { sealer } = setup();
    const indexes = ['+1 (415) 555-0100', '4155550100', '+14155550100'].map((value) =>
      sealer.blindIndex(phone, value, phoneIndex).toString('hex'),
    );
    assert.equal(new Set(indexes).size, 1);
  });

  test('e-mail is case-folded', () => {
    const { sealer } = setup();
    const ctx = { tenantId: 't1', table: 'users', column: 'email' };
    const opts = { normaliser: 'email', lengthBytes: 16 } as const;
    assert.ok(sealer.blindIndex(ctx, ' Alice@Example.COM', opts).equals(sealer.blindIndex(ctx, 'alice@example.com', opts)));
    const exact = { normaliser: 'exact', lengthBytes: 16 } as const;
    assert.ok(!sealer.blindIndex(ctx, 'Alice@Example.COM', exact).equals(sealer.blindIndex(ctx, 'alice@example.com', exact)));
  });

  test('honours the declared length, 8 to 32 bytes', () => {
    const { sealer } = setup();
    const full = sealer.blindIndex(phone, '+14155550100', { normaliser: 'e164', lengthBytes: 32 });
    for (const lengthBytes of [8, 12, 16, 31, 32]) {
      const index = sealer.blindIndex(phone, '+14155550100', { normaliser: 'e164', lengthBytes });
      assert.equal(index.length, lengthBytes);
      assert.ok(index.equals(full.subarray(0, lengthBytes)));
    }
    for (const lengthBytes of [0, 7, 33, 16.5]) {
      assert.throws(() => sealer.blindIndex(phone, '+14155550100', { normaliser: 'e164', lengthBytes }), SealInputError);
    }
  });

  test('an invalid phone number is an error, not an index', () => {
    const { sealer } = setup();
    assert.throws(() => sealer.blindIndex(phone, '555', phoneIndex), NormaliseError);
  });

  test('during rotation a lookup yields one index per active version, newest first', () => {
    const { sealer, keyring } = setup();
    const before = sealer.blindIndex(phone, '4155550100', phoneIndex);
    keyring.rotate('t1');
    const after = sealer.blindIndex(phone, '4155550100', phoneIndex);
    assert.ok(!before.equals(after));
    const all = sealer.blindIndexAllVersions(phone, '+1 (415) 555-0100', phoneIndex);
    assert.deepEqual(
      all.map((index) => index.toString('hex')),
      [after, before].map((index) => index.toString('hex')),
    );
    keyring.retire('t1', 1);
    assert.equal(sealer.blindIndexAllVersions(phone, '4155550100', phoneIndex).length, 1);
  });
});
