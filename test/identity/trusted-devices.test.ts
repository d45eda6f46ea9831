import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { totpCode } from '../helpers/totp-codes.js';

/**
 * Trusted devices over HTTP: the `deviceToken` a passed second factor hands out skips the
 * second factor on later logins of that user only, never replaces the password, ends with a
 * password change or a revocation, and slides its 30-day life on use.
 */

const LOGIN = '/api/v1/auth/login';
const SECOND_FACTOR = '/api/v1/auth/second-factor';
const DAY_MS = 24 * 60 * 60 * 1000;

await describeEachBackend('sign-in: trusted devices', (backend) => {
  let harness: IdentityHarness;
  // Addresses of their own per test: the per-address budget is shared by the suite otherwise.
  const freshIp = freshAddresses('10.40');
  const login = (body: Record<string, unknown>, ip: string) => harness.request({ method: 'POST', url: LOGIN, body, remoteAddress: ip });
  /** Password plus TOTP (step `step`), as a new device would; returns the tokens including the deviceToken. */
  const signInWithTotp = async (user: TestUser, ip: string, step = 0) => {
    const challenge = await login({ email: user.email, password: user.password }, ip);
    assert.equal(challenge.json().type, 'second-factor-required', challenge.body);
    const answer = await harness.request({ method: 'POST', url: SECOND_FACTOR, body: { challengeToken: challenge.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!, step) }, remoteAddress: ip });
    assert.equal(answer.statusCode, 200, answer.body);
    return answer.json() as { accessToken: string; refreshToken: string; deviceToken: string };
  };
  const counts = async (userId: string) => {
    const [row] = await queryRows<{ sessions: number; challenges: number }>(
      harness.db,
      sql`select (select count(*)::int from sessions where user_id = ${userId}) as sessions,
                 (select count(*)::int from login_challenges where user_id = ${userId}) as challenges`,
    );
    return row!;
  };
  /** The user's devices, times in epoch milliseconds (raw rows carry them as text or Date by backend). */
  const devicesOf = async (userId: string) => {
    const rows = await queryRows<{ id: string; expires_at: string | Date; last_used_at: string | Date; revoked_at: string | Date | null }>(
      harness.db,
      sql`select id, expires_at, last_used_at, revoked_at from trusted_devices where user_id = ${userId} order by created_at`,
    );
    return rows.map((row) => ({
      id: row.id,
      expiresAt: new Date(row.expires_at).getTime(),
      lastUsedAt: new Date(row.last_used_at).getTime(),
      revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at).getTime(),
    }));
  };

  before(async () => {
    harness = await openIdentityHarness(backend);
  });
  after(async () => {
    await harness.close();
  });

  test("the deviceToken skips the second factor for its user: tokens at once, no challenge, the session marked as a trusted device's", async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const { deviceToken } = await signInWithTotp(user, ip);
    const before = await counts(user.id);
    const mark = await auditMark(harness);
    const answer = await login({ email: user.email, password: user.password, deviceToken }, ip);
    assert.equal(answer.statusCode, 200, answer.body);
    const tokens = answer.json();
    assert.equal(typeof tokens.accessToken, 'string');
    assert.match(tokens.refreshToken, /^cgr_/);
    assert.deepEqual(await counts(user.id), { sessions: before.sessions + 1, challenges: before.challenges });
    assert.deepEqual(
      (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.actor_id, event.details.secondFactor]),
      [['auth.login', 'success', user.id, 'trusted-device']],
    );
    const sessions = await harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token: tokens.accessToken, remoteAddress: ip });
    assert.equal(sessions.statusCode, 200);
    const current = sessions.json().sessions.find((session: { current: boolean }) => session.current);
    assert.equal(current.trustedDevice, true);
  });

  test("another user's deviceToken does not skip: 401 second-factor-required, and that device is untouched", async () => {
    const owner = await harness.createUser({ role: 'employee' });
    const other = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const { deviceToken } = await signInWithTotp(owner, ip);
    const [ownerDevice] = await devicesOf(owner.id);
    const before = await counts(other.id);
    const mark = await auditMark(harness);
    const answer = await login({ email: other.email, password: other.password, deviceToken }, ip);
    assert.equal(answer.statusCode, 401);
    assert.equal(answer.json().type, 'second-factor-required');
    assert.equal(answer.json().accessToken, undefined);
    assert.equal((await counts(other.id)).sessions, before.sessions);
    assert.deepEqual(await devicesOf(owner.id), [ownerDevice], "the owner's device did not slide");
    assert.deepEqual(
      (await auditSince(harness, mark)).map((event) => [event.action, event.outcome, event.actor_id, event.details.deviceToken]),
      [['auth.login', 'success', other.id, 'not-recognised']],
    );
  });

  test('a deviceToken alone signs nobody in: a wrong password is invalid-credentials, a missing one a 400', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const { deviceToken } = await signInWithTotp(user, ip);
    const [device] = await devicesOf(user.id);
    const before = await counts(user.id);
    const mark = await auditMark(harness);
    const wrong = await login({ email: user.email, password: 'a stolen device but no password', deviceToken }, ip);
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().type, 'invalid-credentials');
    const missing = await login({ email: user.email, deviceToken }, ip);
    assert.equal(missing.statusCode, 400);
    assert.equal(missing.json().type, 'validation-failed');
    assert.deepEqual(await counts(user.id), before);
    assert.deepEqual(await devicesOf(user.id), [device], 'the device did not slide');
    assert.deepEqual(
      (await auditSince(harness, mark)).map((event) => [event.action, event.outcome]),
      [['auth.login', 'failure']],
    );
  });

  test('a password change revokes every trusted device: the old deviceToken no longer skips', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const { accessToken, deviceToken } = await signInWithTotp(user, ip);
    const newPassword = 'a freshly chosen passphrase 42';
    const changed = await harness.request({ method: 'POST', url: '/api/v1/auth/password', token: accessToken, body: { currentPassword: user.password, newPassword }, remoteAddress: ip });
    assert.equal(changed.statusCode, 200, changed.body);
    const [device] = await devicesOf(user.id);
    assert.ok(device!.revokedAt, 'the device is marked revoked');
    const answer = await login({ email: user.email, password: newPassword, deviceToken }, ip);
    assert.equal(answer.statusCode, 401);
    assert.equal(answer.json().type, 'second-factor-required');
  });

  test('a device revoked (revoked_at) or expired no longer skips', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const revoked = (await signInWithTotp(user, ip, 0)).deviceToken;
    const expired = (await signInWithTotp(user, ip, 1)).deviceToken;
    const [revokedDevice, expiredDevice] = await devicesOf(user.id);
    await harness.db.execute(sql`update trusted_devices set revoked_at = now() where id = ${revokedDevice!.id}`);
    await harness.db.execute(sql`update trusted_devices set expires_at = now() - interval '1 second' where id = ${expiredDevice!.id}`);
    for (const [name, deviceToken] of [
      ['revoked', revoked],
      ['expired', expired],
    ] as const) {
      const answer = await login({ email: user.email, password: user.password, deviceToken }, ip);
      assert.equal(answer.statusCode, 401, name);
      assert.equal(answer.json().type, 'second-factor-required', name);
    }
    const [stillExpired] = (await devicesOf(user.id)).filter((device) => device.id === expiredDevice!.id);
    assert.ok(stillExpired!.expiresAt < Date.now(), 'an expired device is not revived by trying it');
  });

  test('each use slides the 30-day expiry forward', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const ip = freshIp();
    const { deviceToken } = await signInWithTotp(user, ip);
    const [device] = await devicesOf(user.id);
    // As if last used 29 days ago: one day of trust left.
    await harness.db.execute(sql`update trusted_devices set last_used_at = now() - interval '29 days', expires_at = now() + interval '1 day' where id = ${device!.id}`);
    const [aged] = await devicesOf(user.id);
    const usedAt = Date.now();
    const answer = await login({ email: user.email, password: user.password, deviceToken }, ip);
    assert.equal(answer.statusCode, 200, answer.body);
    const [slid] = await devicesOf(user.id);
    assert.ok(slid!.expiresAt > aged!.expiresAt + 28 * DAY_MS, `expiry moved from ${new Date(aged!.expiresAt).toISOString()} to ${new Date(slid!.expiresAt).toISOString()}`);
    assert.ok(Math.abs(slid!.expiresAt - (usedAt + 30 * DAY_MS)) < 60_000, 'thirty days from the use');
    assert.ok(slid!.lastUsedAt > aged!.lastUsedAt + 28 * DAY_MS);
  });
});
