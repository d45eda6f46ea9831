import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import {
  findRecoveryCode,
  generateRecoveryCodes as generateFor,
  normaliseRecoveryCode,
  redeemRecoveryCode,
  type RecoveryCodeKey,
  type RecoveryCodeStore,
  type StoredRecoveryCode,
} from '../../src/identity/factors/recovery/recovery-codes.js';

const USER = 'u1';
/** Stands in for the system key's MAC key; the real one comes from the sealer (test/regressions/recovery-codes-keyed-hmac.test.ts). */
const KEY: RecoveryCodeKey = {
  mac: (message) => createHmac('sha256', 'test key v2').update(message).digest(),
  macAllVersions: (message) => ['test key v2', 'test key v1'].map((key) => createHmac('sha256', key).update(message).digest()),
};
const generateRecoveryCodes = (count?: number) => generateFor(USER, KEY, count);
const find = <Id>(rows: ReadonlyArray<StoredRecoveryCode<Id>>, input: string) => findRecoveryCode(rows, USER, input, KEY);

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
    for (const hash of hashes) assert.match(hash, /^hmac-sha256:[0-9a-f]{64}$/);
    assert.equal(generateRecoveryCodes(3).codes.length, 3);
  });

  test('the stored form is the keyed MAC of the user and the SHA-256 of the normalised code, and never contains the code', () => {
    const { codes, hashes } = generateRecoveryCodes();
    codes.forEach((code, index) => {
      const bare = code.replace('-', '');
      const digest = createHash('sha256').update(bare).digest('hex');
      assert.equal(hashes[index], `hmac-sha256:${KEY.mac(`${USER}\n${digest}`).toString('hex')}`);
      assert.ok(!hashes.includes(digest), 'not the unkeyed digest');
      for (const hash of hashes) {
        assert.ok(!hash.includes(bare));
        assert.ok(!hash.includes(code));
      }
    });
  });

  test('each code is found once, as its own row', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const found = codes.map((code) => find(rows, code));
    assert.deepEqual(found, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  test('a used code is refused; the others still work', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    rows[3]!.usedAt = new Date();
    assert.equal(find(rows, codes[3]!), undefined);
    assert.equal(find(rows, codes[4]!), 5);
  });

  test('input is normalised: case, dashes, spaces, look-alike letters', () => {
    const { codes, hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const code = codes[0]!;
    const bare = code.replace('-', '');
    for (const input of [code.toUpperCase(), bare, ` ${bare.slice(0, 3)} ${bare.slice(3)} `, `${bare.slice(0, 2)}-${bare.slice(2, 7)}-${bare.slice(7)}`, `\t${code}\n`]) {
      assert.equal(find(rows, input), 1, JSON.stringify(input));
    }
    assert.equal(normaliseRecoveryCode('OIL23-abcde'), '01123abcde');
  });

  test('unknown, empty and malformed input is refused', () => {
    const { hashes } = generateRecoveryCodes();
    const rows = storedRows(hashes);
    const other = generateRecoveryCodes(1).codes[0]!;
    for (const input of [other, '', '-----', 'abcde', 'abcde-fghjk-m', 'uuuuu-uuuuu', hashes[0]!]) {
      assert.equal(find(rows, input), undefined, JSON.stringify(input));
    }
    assert.equal(find([], other), undefined);
  });

  test('a corrupt stored hash neither throws nor matches', () => {
    const { codes, hashes } = generateRecoveryCodes(2);
    const rows = storedRows(hashes);
    rows[0]!.hash = 'not hex';
    assert.equal(find(rows, codes[0]!), undefined);
    assert.equal(find(rows, codes[1]!), 2);
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
    const results = await Promise.all([redeemRecoveryCode(store, USER, codes[2]!, KEY), redeemRecoveryCode(store, USER, codes[2]!, KEY)]);
    assert.deepEqual(results.sort(), [3, undefined]);
    assert.equal(await redeemRecoveryCode(store, USER, codes[2]!, KEY), undefined);
    assert.equal(await redeemRecoveryCode(store, USER, codes[7]!, KEY), 8);
  });
});
