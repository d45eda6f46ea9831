import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { LIVENESS_CACHE_MS } from '../../src/identity/sessions/sessions.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type SignedSession, type TestUser } from '../helpers/identity.js';
import { secretFromUri, totpCode } from '../helpers/totp-codes.js';
import { assertUnauthenticated } from '../helpers/problems.js';

/**
 * Sessions through HTTP: listing, immediate revocation (logout, one session, all, by an
 * admin), the revocations a password or factor change causes, the per-user session limit,
 * and idle and absolute expiry. "Immediate" means the very next request with a still-valid
 * access token is refused, with no wait for the token to expire.
 */

const CHROME_ON_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const NEW_PASSWORD = 'a different horse, battery 42';

const listSessions = (h: IdentityHarness, token: string) => h.request({ method: 'GET', url: '/api/v1/auth/sessions', token });

async function assertLive(h: IdentityHarness, ...signed: SignedSession[]): Promise<void> {
  for (const session of signed) {
    const response = await listSessions(h, session.accessToken);
    assert.equal(response.statusCode, 200, `session ${session.sessionId} should be live: ${response.body}`);
  }
}

async function assertRefused(h: IdentityHarness, ...signed: SignedSession[]): Promise<void> {
  for (const session of signed) {
    assertUnauthenticated(await listSessions(h, session.accessToken));
    const refresh = await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
    assert.equal(refresh.statusCode, 401, refresh.body);
    assert.equal(refresh.json().type, 'invalid-refresh-token');
  }
}

async function sessionRow(h: IdentityHarness, sessionId: string) {
  const [row] = await queryRows<{ revoked_at: Date | null; revoked_reason: string | null }>(h.db, sql`select revoked_at, revoked_reason from sessions where id = ${sessionId}`);
  return row!;
}

async function auditEvents(h: IdentityHarness, action: string) {
  return queryRows<{ outcome: string; actor_id: string | null; target_type: string | null; target_id: string | null; details: Record<string, unknown> }>(
    h.db,
    sql`select outcome, actor_id, target_type, target_id, details from audit_events where action = ${action} order by seq`,
  );
}

await describeEachBackend('sessions: listing and immediate revocation', (backend) => {
  let h: IdentityHarness;
  let admin: TestUser;
  let adminSession: SignedSession;

  before(async () => {
    h = await openIdentityHarness(backend);
    admin = await h.createUser({ role: 'admin' });
    adminSession = await h.signIn(admin);
  });
  after(() => h?.close());

  test('GET /auth/sessions lists each session with its device, IP, last use and the current flag', async () => {
    const user = await h.createUser({ role: 'employee' });
    const firefox = await h.signIn(user);
    const chrome = await h.signInOnDevice(user, firefox.deviceToken, { ip: '203.0.113.9', userAgent: CHROME_ON_MAC });
    const before = Date.now();
    const response = await listSessions(h, firefox.accessToken);
    assert.equal(response.statusCode, 200, response.body);
    const { sessions } = response.json() as { sessions: Array<Record<string, unknown>> };
    assert.equal(sessions.length, 2);
    const current = sessions.find((session) => session.id === firefox.sessionId)!;
    const other = sessions.find((session) => session.id === chrome.sessionId)!;
    assert.deepEqual(Object.keys(current).sort(), ['createdAt', 'current', 'device', 'id', 'ip', 'lastUsedAt', 'trustedDevice'], 'no token, hash or user agent string');
    assert.equal(current.device, 'Firefox on Linux');
    assert.equal(current.ip, '127.0.0.1');
    assert.equal(current.current, true);
    assert.equal(current.trustedDevice, true);
    assert.equal(other.device, 'Chrome on macOS');
    assert.equal(other.ip, '203.0.113.9');
    assert.equal(other.current, false);
    for (const session of [current, other]) {
      const lastUsed = Date.parse(session.lastUsedAt as string);
      assert.ok(lastUsed >= Date.parse(session.createdAt as string) && lastUsed <= before + 1000, `lastUsedAt ${String(session.lastUsedAt)}`);
    }
    const fromChrome = (await listSessions(h, chrome.accessToken)).json() as { sessions: Array<{ id: string; current: boolean }> };
    assert.deepEqual(fromChrome.sessions.filter((session) => session.current).map((session) => session.id), [chrome.sessionId]);
  });

  test('logout: the still-unexpired access token is refused on the very next request', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user);
    await assertLive(h, session); // the liveness cache now holds it as live
    const logout = await h.request({ method: 'POST', url: '/api/v1/auth/logout', token: session.accessToken });
    assert.equal(logout.statusCode, 204, logout.body);
    await assertRefused(h, session);
    assert.equal((await sessionRow(h, session.sessionId)).revoked_reason, 'logout');
    const [event] = (await auditEvents(h, 'auth.session.revoke')).filter((row) => row.target_id === session.sessionId);
    assert.ok(event, 'logout is audited');
    assert.equal(event.outcome, 'success');
    assert.equal(event.actor_id, user.id);
    assert.equal(event.details.reason, 'logout');
  });

  test('DELETE /auth/sessions/{id} of another own session ends only that one', async () => {
    const user = await h.createUser({ role: 'employee' });
    const laptop = await h.signIn(user);
    const phone = await h.signInOnDevice(user, laptop.deviceToken, { ip: '198.51.100.20' });
    await assertLive(h, phone);
    const response = await h.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${phone.sessionId}`, token: laptop.accessToken });
    assert.equal(response.statusCode, 204, response.body);
    await assertRefused(h, phone);
    await assertLive(h, laptop);
    assert.equal((await sessionRow(h, phone.sessionId)).revoked_reason, 'revoked-by-user');
    const event = (await auditEvents(h, 'auth.session.revoke')).find((row) => row.target_id === phone.sessionId);
    assert.equal(event?.actor_id, user.id);
    assert.equal(event?.details.reason, 'revoked-by-user');
    // Revoking it again finds nothing live to revoke.
    const again = await h.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${phone.sessionId}`, token: laptop.accessToken });
    assert.equal(again.statusCode, 404);
  });

  test('logout-all ends every session of the caller, this one included, and no one else’s', async () => {
    const user = await h.createUser({ role: 'employee' });
    const first = await h.signIn(user);
    const second = await h.signInOnDevice(user, first.deviceToken, { ip: '198.51.100.21' });
    await assertLive(h, first, second);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/logout-all', token: first.accessToken });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), { revoked: 2 });
    await assertRefused(h, first, second);
    await assertLive(h, adminSession);
    const event = (await auditEvents(h, 'auth.session.revoke')).find((row) => row.actor_id === user.id && row.details.reason === 'logout-all');
    assert.equal(event?.details.count, 2);
  });

  test('an admin revokes another user’s session with DELETE /auth/sessions/{id}', async () => {
    const employee = await h.createUser({ role: 'employee' });
    const session = await h.signIn(employee);
    await assertLive(h, session);
    const response = await h.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${session.sessionId}`, token: adminSession.accessToken });
    assert.equal(response.statusCode, 204, response.body);
    await assertRefused(h, session);
    await assertLive(h, adminSession);
    assert.equal((await sessionRow(h, session.sessionId)).revoked_reason, 'revoked-by-admin');
    const event = (await auditEvents(h, 'auth.session.revoke')).find((row) => row.target_id === session.sessionId);
    assert.equal(event?.actor_id, admin.id, 'the admin is the actor');
    assert.equal(event?.target_type, 'session');
    assert.equal(event?.details.reason, 'revoked-by-admin');
  });

  test('an employee cannot revoke someone else’s session: 404, as for no session at all, and it stays live', async () => {
    const employee = await h.createUser({ role: 'employee' });
    const colleague = await h.createUser({ role: 'employee' });
    const mine = await h.signIn(employee);
    const theirs = await h.signIn(colleague);
    const auditBefore = (await h.auditActions()).length;
    const attempts = [theirs.sessionId, adminSession.sessionId];
    const answers = [];
    for (const sessionId of attempts) {
      const response = await h.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${sessionId}`, token: mine.accessToken });
      assert.equal(response.statusCode, 404, response.body);
      assert.equal(response.json().type, 'not-found');
      answers.push(response.json());
    }
    const unknown = await h.request({ method: 'DELETE', url: '/api/v1/auth/sessions/00000000-0000-4000-8000-000000000000', token: mine.accessToken });
    assert.deepEqual(unknown.json(), answers[0], 'a foreign session reads exactly like a missing one');
    assert.deepEqual(answers[1], answers[0]);
    for (const sessionId of attempts) assert.equal((await sessionRow(h, sessionId)).revoked_at, null);
    await assertLive(h, theirs, adminSession, mine);
    const revokes = (await h.auditActions()).slice(auditBefore).filter((event) => event.action === 'auth.session.revoke');
    assert.deepEqual(revokes, [], 'nothing was revoked');
  });

  test('a manager cannot revoke an admin’s session: 404, and it stays live', async () => {
    const manager = await h.createUser({ role: 'manager' });
    const session = await h.signIn(manager);
    const response = await h.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${adminSession.sessionId}`, token: session.accessToken });
    assert.equal(response.statusCode, 404, response.body);
    assert.equal((await sessionRow(h, adminSession.sessionId)).revoked_at, null);
    await assertLive(h, adminSession);
  });

  test('a session id that is not a UUID → 400, nothing revoked', async () => {
    const response = await h.request({ method: 'DELETE', url: '/api/v1/auth/sessions/not-a-uuid', token: adminSession.accessToken });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(response.json().type, 'validation-failed');
    await assertLive(h, adminSession);
  });

  test('GET /users/{id}/sessions lists a user’s sessions for admins; an employee is refused and audited', async () => {
    const employee = await h.createUser({ role: 'employee' });
    const session = await h.signIn(employee);
    const response = await h.request({ method: 'GET', url: `/api/v1/users/${employee.id}/sessions`, token: adminSession.accessToken });
    assert.equal(response.statusCode, 200, response.body);
    const { sessions } = response.json() as { sessions: Array<Record<string, unknown>> };
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0]!.id, session.sessionId);
    assert.equal(sessions[0]!.device, 'Firefox on Linux');
    assert.equal(sessions[0]!.ip, '127.0.0.1');
    assert.ok(!Number.isNaN(Date.parse(sessions[0]!.lastUsedAt as string)));

    const denied = await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}/sessions`, token: session.accessToken });
    assert.equal(denied.statusCode, 403, denied.body);
    assert.equal(denied.json().type, 'forbidden');
    const event = (await h.auditActions()).filter((row) => row.action === 'access.denied').at(-1);
    assert.equal(event?.actor_id, employee.id);
    assert.equal(event?.details.permission, 'sessions:manage');
  });
});

await describeEachBackend('sessions: a password or factor change ends the other sessions', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const passwordHash = async (userId: string) =>
    (await queryRows<{ password_hash: string }>(h.db, sql`select password_hash from users where id = ${userId}`))[0]!.password_hash;
  const liveDevices = async (userId: string) =>
    (await queryRows<{ id: string }>(h.db, sql`select id from trusted_devices where user_id = ${userId} and revoked_at is null`)).length;

  test('a password change revokes every other session and trusted device, and keeps the caller’s session', async () => {
    const user = await h.createUser({ role: 'employee' });
    const caller = await h.signIn(user);
    const other = await h.signIn(user, { userAgent: CHROME_ON_MAC });
    await assertLive(h, caller, other);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/password', token: caller.accessToken, body: { currentPassword: user.password, newPassword: NEW_PASSWORD } });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), { revokedSessions: 1 });
    await assertRefused(h, other);
    await assertLive(h, caller);
    assert.equal((await sessionRow(h, other.sessionId)).revoked_reason, 'password-changed');
    assert.equal((await sessionRow(h, caller.sessionId)).revoked_at, null);
    // The other device's token no longer skips the second factor.
    const withOtherDevice = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: NEW_PASSWORD, deviceToken: other.deviceToken } });
    assert.equal(withOtherDevice.statusCode, 401, withOtherDevice.body);
    assert.equal(withOtherDevice.json().type, 'second-factor-required');
    const [event] = (await h.auditActions()).filter((row) => row.action === 'auth.password.change' && row.actor_id === user.id);
    assert.equal(event?.outcome, 'success');
    assert.equal(event?.details.revokedSessions, 1);
  });

  test('a wrong current password → 403 invalid-credentials; nothing changes and the failure is audited', async () => {
    const user = await h.createUser({ role: 'employee' });
    const caller = await h.signIn(user);
    const other = await h.signInOnDevice(user, caller.deviceToken, { ip: '198.51.100.30' });
    const hashBefore = await passwordHash(user.id);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/password', token: caller.accessToken, body: { currentPassword: 'not the password at all', newPassword: NEW_PASSWORD } });
    assert.equal(response.statusCode, 403, response.body);
    assert.equal(response.json().type, 'invalid-credentials');
    assert.equal(await passwordHash(user.id), hashBefore);
    assert.equal(await liveDevices(user.id), 1);
    await assertLive(h, caller, other);
    const [event] = (await h.auditActions()).filter((row) => row.action === 'auth.password.change' && row.actor_id === user.id);
    assert.equal(event?.outcome, 'failure');
    assert.equal(event?.details.reason, 'wrong-current-password');
  });

  test('re-enrolling TOTP while signed in (bearer) revokes the other sessions and trusted devices', async () => {
    const user = await h.createUser({ role: 'employee' });
    const caller = await h.signIn(user);
    const other = await h.signInOnDevice(user, caller.deviceToken, { ip: '198.51.100.31', userAgent: CHROME_ON_MAC });
    await assertLive(h, caller, other);
    const enroll = await h.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', token: caller.accessToken, body: { currentPassword: user.password, currentFactor: { method: 'totp', code: totpCode(user.totpSecret!, 1) } } });
    assert.equal(enroll.statusCode, 200, enroll.body);
    // Starting an enrollment changes nothing yet.
    await assertLive(h, other);
    const secret = secretFromUri(enroll.json().otpauthUri);
    const confirm = await h.request({ method: 'POST', url: '/api/v1/auth/totp/confirm', token: caller.accessToken, body: { code: totpCode(secret) } });
    assert.equal(confirm.statusCode, 200, confirm.body);
    assert.equal(confirm.json().recoveryCodes.length, 10);
    assert.equal(confirm.json().accessToken, undefined, 'a signed-in caller gets no new tokens');
    await assertRefused(h, other);
    await assertLive(h, caller);
    assert.equal((await sessionRow(h, other.sessionId)).revoked_reason, 'factor-changed');
    // Both sessions came through one trusted device; it was trusted on the old factor, so it goes too.
    assert.equal(await liveDevices(user.id), 0);
    const events = (await h.auditActions()).filter((row) => row.action === 'auth.totp.enroll' && row.actor_id === user.id);
    assert.deepEqual(
      events.map((row) => [row.outcome, row.details.stage]),
      [
        ['success', 'started'],
        ['success', 'confirmed'],
      ],
    );
    assert.equal(events[1]!.details.replacedFactor, true);
  });

  test('replacing the factor while signed in needs the current password (and factor): a stolen access token alone cannot', async () => {
    const user = await h.createUser({ role: 'employee' });
    const caller = await h.signIn(user);
    const countFactors = () => queryRows<{ n: number }>(h.db, sql`select count(*)::int as n from totp_factors where user_id = ${user.id}`);
    const factorsBefore = await countFactors();
    const without = await h.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', token: caller.accessToken, body: {} });
    assert.equal(without.statusCode, 400, without.body);
    assert.match(without.json().detail, /currentPassword/);
    const wrong = await h.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', token: caller.accessToken, body: { currentPassword: 'not the password at all' } });
    assert.equal(wrong.statusCode, 403, wrong.body);
    assert.equal(wrong.json().type, 'invalid-credentials');
    assert.deepEqual(await countFactors(), factorsBefore, 'no pending factor was created');
    const failure = (await h.auditActions()).find((row) => row.action === 'auth.totp.enroll' && row.actor_id === user.id && row.outcome === 'failure');
    assert.equal(failure?.details.reason, 'wrong-current-password');
  });

  test('a wrong code when re-enrolling → 400; the other sessions stay live and the failure is audited', async () => {
    const user = await h.createUser({ role: 'employee' });
    const caller = await h.signIn(user);
    const other = await h.signInOnDevice(user, caller.deviceToken, { ip: '198.51.100.32' });
    const enroll = await h.request({ method: 'POST', url: '/api/v1/auth/totp/enroll', token: caller.accessToken, body: { currentPassword: user.password, currentFactor: { method: 'totp', code: totpCode(user.totpSecret!, 1) } } });
    assert.equal(enroll.statusCode, 200, enroll.body);
    const secret = secretFromUri(enroll.json().otpauthUri);
    const wrong = String((Number(totpCode(secret)) + 1) % 1_000_000).padStart(6, '0');
    const confirm = await h.request({ method: 'POST', url: '/api/v1/auth/totp/confirm', token: caller.accessToken, body: { code: wrong } });
    assert.equal(confirm.statusCode, 400, confirm.body);
    assert.equal(confirm.json().type, 'invalid-second-factor');
    await assertLive(h, caller, other);
    assert.equal(await liveDevices(user.id), 1);
    const failure = (await h.auditActions()).find((row) => row.action === 'auth.totp.enroll' && row.actor_id === user.id && row.outcome === 'failure');
    assert.ok(failure, 'the failed confirmation is audited');
  });
});

await describeEachBackend('sessions: CIPHERGATE_MAX_SESSIONS_PER_USER=1', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend, { env: { CIPHERGATE_MAX_SESSIONS_PER_USER: '1' } });
  });
  after(() => h?.close());

  test('a second sign-in ends the first session; its token is refused at once; audited', async () => {
    const bystander = await h.createUser({ role: 'employee' });
    const bystanderSession = await h.signIn(bystander);
    const user = await h.createUser({ role: 'employee' });
    const first = await h.signIn(user);
    await assertLive(h, first);
    const second = await h.signInOnDevice(user, first.deviceToken, { ip: '198.51.100.40', userAgent: CHROME_ON_MAC });
    await assertRefused(h, first);
    await assertLive(h, second, bystanderSession);
    assert.equal((await sessionRow(h, first.sessionId)).revoked_reason, 'session-limit');
    const listed = (await listSessions(h, second.accessToken)).json() as { sessions: Array<{ id: string }> };
    assert.deepEqual(
      listed.sessions.map((session) => session.id),
      [second.sessionId],
    );
    const event = (await h.auditActions()).find((row) => row.action === 'auth.session.revoke' && row.actor_id === user.id);
    assert.equal(event?.outcome, 'success');
    assert.equal(event?.details.reason, 'session-limit');
    assert.equal(event?.details.count, 1);
  });
});

await describeEachBackend('sessions: idle timeout and absolute expiry', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend, { env: { CIPHERGATE_SESSION_IDLE_MINUTES: '1' } });
  });
  after(() => h?.close());

  /** Past the liveness cache, so the next check reads the row the test just changed. */
  const waitOutCache = () => sleep(LIVENESS_CACHE_MS + 100);
  const setColumn = async (sessionId: string, column: 'last_used_at' | 'absolute_expires_at', secondsAgo: number) => {
    const at = new Date(Date.now() - secondsAgo * 1000);
    await h.db.execute(sql`update sessions set ${sql.raw(column)} = ${at.toISOString()}::timestamptz where id = ${sessionId}`);
  };

  test('a session idle past CIPHERGATE_SESSION_IDLE_MINUTES is refused, and so is its refresh token', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user);
    await assertLive(h, session);
    await setColumn(session.sessionId, 'last_used_at', 120);
    await waitOutCache();
    await assertRefused(h, session);
  });

  test('a session in use is not idle: used a second ago, it stays live under a one-minute timeout', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user);
    // Last recorded use 57 s ago; this request uses it now, so the idle clock restarts.
    await setColumn(session.sessionId, 'last_used_at', 57);
    const usedAt = Date.now();
    await assertLive(h, session);
    // Past the minute since the recorded use, but only ~3.5 s since the real one.
    await sleep(Math.max(LIVENESS_CACHE_MS + 100, 60_500 - 57_000 - (Date.now() - usedAt)));
    await assertLive(h, session);
  });

  test('a session past its absolute expiry is refused, however recently used', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user);
    await assertLive(h, session);
    await setColumn(session.sessionId, 'absolute_expires_at', 1);
    await waitOutCache();
    await assertRefused(h, session);
  });
});
