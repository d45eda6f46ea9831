import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { normaliseRecoveryCode } from '../../src/identity/factors/recovery/recovery-codes.js';
import { SYSTEM_SCOPE } from '../../src/seal/binding.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

// Recovery codes were stored as bare SHA-256 of the code: with a copy of the database (a
// backup, a replica) anyone could search the 2^50 codes per row offline. They are now an
// HMAC under a key derived from the sealed system key, bound to the user; codes stored by an
// earlier release are re-keyed at start (and on use, for rows an older instance writes during
// a rolling upgrade), so nobody is locked out.
await describeEachBackend('regression: recovery codes are stored as a keyed HMAC', (backend) => {
  let h: IdentityHarness;
  const address = freshAddresses('10.71');
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const sha256 = (code: string) => createHash('sha256').update(normaliseRecoveryCode(code)!, 'ascii').digest('hex');
  const storedHashes = async (userId: string) =>
    (await queryRows<{ code_hash: string }>(h.db, sql`select code_hash from recovery_codes where user_id = ${userId} order by id`)).map((row) => row.code_hash);

  /** A user with TOTP confirmed through SecondFactors, as at enrollment; returns the codes shown once. */
  async function enrolled(): Promise<{ user: TestUser; codes: string[] }> {
    const user = await h.createUser({ role: 'employee', withTotp: false });
    const enrollment = await h.identity.parts.factors.startTotpEnrollment(user.id, user.email);
    const confirmed = await h.identity.parts.factors.confirmTotp(user.id, totpCode(enrollment.secretBase32, -1), h.db);
    assert.ok(confirmed.ok);
    return { user: { ...user, totpSecret: enrollment.secretBase32 }, codes: confirmed.recoveryCodes };
  }

  /** Password, then a recovery code, through the API, from an address of its own. */
  async function signInWithCode(target: IdentityHarness, user: TestUser, code: string) {
    const remoteAddress = address();
    const login = await target.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, remoteAddress });
    assert.equal(login.json().type, 'second-factor-required', login.body);
    return target.request({ method: 'POST', url: '/api/v1/auth/second-factor', body: { challengeToken: login.json().challengeToken, method: 'recovery', code }, remoteAddress });
  }

  /** Rewrites a user's rows the way a release before this one stored them: SHA-256 hex, no key. */
  async function storeAsLegacy(userId: string, codes: string[]): Promise<void> {
    await h.db.execute(sql`delete from recovery_codes where user_id = ${userId}`);
    for (const code of codes) await h.db.execute(sql`insert into recovery_codes (id, user_id, code_hash, created_at) values (${randomUUID()}, ${userId}, ${sha256(code)}, now())`);
  }

  test('stored codes are keyed MACs: not the SHA-256 of any code, and a code still signs in once', async () => {
    const { user, codes } = await enrolled();
    const hashes = await storedHashes(user.id);
    assert.equal(hashes.length, 10);
    for (const hash of hashes) assert.match(hash, /^hmac-sha256:[0-9a-f]{64}$/);
    const unkeyed = new Set(codes.map(sha256));
    assert.ok(hashes.every((hash) => !unkeyed.has(hash) && !unkeyed.has(hash.replace('hmac-sha256:', ''))), 'a database copy plus SHA-256 finds no code');
    for (const hash of hashes) for (const code of codes) assert.ok(!hash.includes(normaliseRecoveryCode(code)!));

    assert.equal((await signInWithCode(h, user, codes[0]!)).statusCode, 200);
    assertProblem(await signInWithCode(h, user, codes[0]!), 401, 'invalid-second-factor');
    assertProblem(await signInWithCode(h, user, 'zzzzz-zzzzz'), 401, 'invalid-second-factor');
  });

  test("stored codes copied into another user's codes match nothing there", async () => {
    const alice = await enrolled();
    const mallory = await enrolled();
    // Someone with write access to the table copies Alice's rows into Mallory's account, hoping
    // to sign in as Mallory with a code of Alice's (or the reverse): the rows are bound to Alice.
    for (const hash of await storedHashes(alice.user.id)) {
      await h.db.execute(sql`insert into recovery_codes (id, user_id, code_hash, created_at) values (${randomUUID()}, ${mallory.user.id}, ${hash}, now())`);
    }
    assertProblem(await signInWithCode(h, mallory.user, alice.codes[0]!), 401, 'invalid-second-factor');
    assert.equal((await signInWithCode(h, alice.user, alice.codes[0]!)).statusCode, 200);
    assert.equal((await signInWithCode(h, mallory.user, mallory.codes[0]!)).statusCode, 200);
  });

  test('codes stored unkeyed by an earlier release are re-keyed when an instance starts, and keep working', async () => {
    const { user, codes } = await enrolled();
    await storeAsLegacy(user.id, codes);
    assert.deepEqual(new Set(await storedHashes(user.id)), new Set(codes.map(sha256)), 'the rows are as an earlier release stored them');
    // A new instance over the same database and keys, as after an upgrade.
    const upgraded = await openIdentityHarness(backend, { shareWith: h });
    try {
      const hashes = await storedHashes(user.id);
      assert.equal(hashes.length, 10);
      for (const hash of hashes) assert.match(hash, /^hmac-sha256:[0-9a-f]{64}$/, 'no unkeyed hash is left');
      assert.equal((await signInWithCode(upgraded, user, codes[3]!)).statusCode, 200);
      assert.equal((await signInWithCode(h, user, codes[4]!)).statusCode, 200);
      assertProblem(await signInWithCode(upgraded, user, codes[3]!), 401, 'invalid-second-factor');
      assert.equal(await h.identity.parts.factors.upgradeLegacyRecoveryCodes(), 0, 'a second run changes nothing');
    } finally {
      await upgraded.close();
    }
  });

  test('an unkeyed row written after start (an older instance during a rolling upgrade) verifies once and the user’s rows are re-keyed', async () => {
    const { user, codes } = await enrolled();
    await storeAsLegacy(user.id, codes);
    assert.equal((await signInWithCode(h, user, codes[5]!)).statusCode, 200);
    const hashes = await storedHashes(user.id);
    for (const hash of hashes) assert.match(hash, /^hmac-sha256:[0-9a-f]{64}$/, 'the whole set was re-keyed on use');
    assertProblem(await signInWithCode(h, user, codes[5]!), 401, 'invalid-second-factor');
    assert.equal((await signInWithCode(h, user, codes[6]!)).statusCode, 200);
  });

  test('codes made before a rotation of the system key still work after it', async () => {
    const { user, codes } = await enrolled();
    const before = await storedHashes(user.id);
    await h.sealing.keyring.rotate(SYSTEM_SCOPE);
    await h.sealing.keyring.refresh();
    assert.equal((await signInWithCode(h, user, codes[7]!)).statusCode, 200);
    assert.deepEqual((await storedHashes(user.id)).sort(), before.sort(), 'rows are not rewritten by a rotation');
    // New codes use the new key version; the old codes verify under the old one.
    const fresh = await enrolled();
    assert.equal((await signInWithCode(h, fresh.user, fresh.codes[0]!)).statusCode, 200);
  });
});
