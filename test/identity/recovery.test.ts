import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  findRecoveryCode,
  generateRecoveryCodes,
  normaliseRecoveryCode,
  redeemRecoveryCode,
  type RecoveryCodeStore,
  type StoredRecoveryCode,
} from '../../src/identity/factors/recovery.js';

const FORMAT = /^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$/;

function storedRows(hashes: string[]): Array<StoredRecoveryCode<number>> {
  return hashes.map((hash, index) => ({ id: index + 1, hash, usedAt: null }));
}

describe('recovery codes', () => {
  test('ten distinct codes in the xxxxx-xxxxx format, with one hash each', () => {
    const { codes, hashes } = generateRecoveryCodes();
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    assert.equal(new Set(hashes).size, 10);
    for (const code of codes) assert.match(code, FORMAT);
    for (const hash of hashes) assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(generateRecoveryCodes(3).codes.length, 3);
  });

  test('the stored form is SHA-256 of the normalised code and never contains the code', () => {
    const { codes, hashes } = generateRecoveryCodes();
    codes.forEach((code, index) => {
      const bare = code.replace('-', '');
      assert.equal(hashes[index], createHash('sha256').update(bare).digest('hex'));
      for (const hash of hashes) {
        assert.ok(!hash.includes(bare));
        assert.ok(!hash.includes(code));
      }
    });
  });

  test('each code is found once, as its own row', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const found = codes.map((code) => findRecoveryCode(rows, code));
    assert.deepEqual(found, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test('a used code is refused; the others still work', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    rows[3]!.usedAt = new Date();
    assert.equal(findRecoveryCode(rows, codes[3]!), undefined);
    assert.equal(findRecoveryCode(rows, codes[4]!), 5);
  });

  test('input is normalised: case, dashes, spaces, look-alike letters', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const code = codes[0]!;
    const bare = code.replace('-', '');
    for (const input of [code.toUpperCase(), bare, ` ${bare.slice(0, 3)} ${bare.slice(3)} `, `${bare.slice(0, 2)}-${bare.slice(2, 7)}-${bare.slice(7)}`, `\t${code}\n`]) {
      assert.equal(findRecoveryCode(rows, input), 1, JSON.stringify(input));
    }
    assert.equal(normaliseRecoveryCode('OIL23-abcde'), '01123abcde');
  });

  test('unknown, empty and malformed input is refused', () => {
    const { hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const other = generateRecoveryCodes(1).codes[0]!;
    for (const input of [other, '', '-----', 'abcde', 'abcde-fghjk-m', 'uuuuu-uuuuu', hashes[0]!]) {
      assert.equal(findRecoveryCode(rows, input), undefined, JSON.stringify(input));
    }
    assert.equal(findRecoveryCode([], other), undefined);
  });

  test('a corrupt stored hash neither throws nor matches', () => {
    const { codes, hashes } = generateRecoveryCodes(2);
    const rows = storedRows(hashes);
    rows[0]!.hash = 'not hex';
    assert.equal(findRecoveryCode(rows, codes[0]!), undefined);
    assert.equal(findRecoveryCode(rows, codes[1]!), 2);
  });

  test('redeemRecoveryCode spends a code once, even for concurrent requests', async () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    /** Behaves like the conditional UPDATE the database layer must run. */
    const store: RecoveryCodeStore<number> = {
      async listForUser() {
        return rows.map((row) => ({ ...row }));
      },
      async markUsed(id, usedAt) {
        const row = rows.find((candidate) => candidate.id === id);
        if (!row || row.usedAt !== null) return false;
        row.usedAt = usedAt;
        return true;
      },
    };
    const results = await Promise.all([redeemRecoveryCode(store, 'u1', codes[2]!), redeemRecoveryCode(store, 'u1', codes[2]!)]);
    assert.deepEqual(results.sort(), [3, undefined]);
    assert.equal(await redeemRecoveryCode(store, 'u1', codes[2]!), undefined);
    assert.equal(await redeemRecoveryCode(store, 'u1', codes[7]!), 8);
  });
});
