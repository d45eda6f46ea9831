import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { auditMark, auditSince } from '../helpers/audit.js';
import { openAdminAndManager } from '../helpers/admin-and-manager.js';
import { describeEachBackend } from '../helpers/database.js';
import { type IdentityHarness, type SignedSession, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';

/**
 * An admin's view of a user's sessions: `GET /api/v1/users/{id}/sessions`, ending one with
 * `DELETE /api/v1/users/{id}/sessions/{sessionId}` and all with `DELETE /api/v1/users/{id}/sessions`
 * (`sessions:manage`). An ended session's access token and refresh token are refused on the very
 * next request; the abuse cases: wrong role, a manager on an admin, a session of another user,
 * one already ended, unknown and malformed ids. (Across instances: revocation-redis.test.ts.)
 */
await describeEachBackend('user administration: sessions', (backend) => {
  let h: IdentityHarness;
  let admin: TestUser;
  let adminSession: SignedSession;
  let manager: TestUser;
  let managerSession: SignedSession;
  const freshIp = freshAddresses('10.67');

  before(async () => {
    ({ h, admin, adminSession, manager, managerSession } = await openAdminAndManager(backend));
  });
  after(() => h?.close());

  const list = (session: SignedSession, userId: string) => h.request({ method: 'GET', url: `/api/v1/users/${userId}/sessions`, token: session.accessToken });
  const endOne = (session: SignedSession, userId: string, sessionId: string) => h.request({ method: 'DELETE', url: `/api/v1/users/${userId}/sessions/${sessionId}`, token: session.accessToken });
  const endAll = (session: SignedSession, userId: string) => h.request({ method: 'DELETE', url: `/api/v1/users/${userId}/sessions`, token: session.accessToken });
  const isLive = async (session: SignedSession) => (await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken })).statusCode === 200;

  async function assertEnded(session: SignedSession): Promise<void> {
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken }));
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } }), 401, 'invalid-refresh-token');
  }

  test('a manager ends one session of an employee: refused at once, audited; the other session lives; ending it again is 404', async () => {
    const user = await h.createUser({ role: 'employee' });
    const laptop = await h.signIn(user, { remoteAddress: freshIp() });
    const phone = await h.signIn(user, { remoteAddress: freshIp() });
    const listed = await list(managerSession, user.id);
    assert.deepEqual(new Set(listed.json().sessions.map((s: { id: string }) => s.id)), new Set([laptop.sessionId, phone.sessionId]));
    const mark = await auditMark(h);

    const ended = await endOne(managerSession, user.id, laptop.sessionId);
    assert.equal(ended.statusCode, 204, ended.body);
    await assertEnded(laptop);
    assert.ok(await isLive(phone));
    assert.deepEqual((await list(managerSession, user.id)).json().sessions.map((s: { id: string }) => s.id), [phone.sessionId]);

    const event = (await auditSince(h, mark)).find((row) => row.action === 'auth.session.revoke');
    assert.deepEqual(
      { outcome: event?.outcome, actor: event?.actor_id, target: [event?.target_type, event?.target_id], details: event?.details },
      { outcome: 'success', actor: manager.id, target: ['session', laptop.sessionId], details: { reason: 'revoked-by-admin', count: 1, user: user.id, via: 'api' } },
    );
    assertProblem(await endOne(managerSession, user.id, laptop.sessionId), 404, 'not-found');
  });

  test('every session at once: all refused, trusted devices forgotten (the next sign-in asks for the second factor), audited', async () => {
    const user = await h.createUser({ role: 'employee' });
    const first = await h.signIn(user, { remoteAddress: freshIp() });
    const second = await h.signInOnDevice(user, first.deviceToken, { ip: freshIp() });
    const mark = await auditMark(h);
    const ended = await endAll(adminSession, user.id);
    assert.equal(ended.statusCode, 200, ended.body);
    assert.deepEqual(ended.json(), { sessions: 2, devices: 1 });
    await assertEnded(first);
    await assertEnded(second);
    const again = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password, deviceToken: first.deviceToken }, remoteAddress: freshIp() });
    assertProblem(again, 401, 'second-factor-required');
    const event = (await auditSince(h, mark)).find((row) => row.action === 'auth.session.revoke');
    assert.deepEqual([event?.actor_id, event?.target_id, event?.details], [admin.id, user.id, { reason: 'revoked-by-admin', count: 2, devices: 1, via: 'api' }]);
    assert.deepEqual((await endAll(adminSession, user.id)).json(), { sessions: 0, devices: 0 });
  });

  test("a session is ended only under its own user: another user's session id is 404 and stays live", async () => {
    const user = await h.createUser({ role: 'employee' });
    const other = await h.createUser({ role: 'employee' });
    const otherSession = await h.signIn(other, { remoteAddress: freshIp() });
    assertProblem(await endOne(adminSession, user.id, otherSession.sessionId), 404, 'not-found');
    assertProblem(await endOne(adminSession, user.id, randomUUID()), 404, 'not-found');
    assert.ok(await isLive(otherSession));
  });

  test('role rules: a manager cannot see or end an admin’s sessions (404, audited); an employee has no permission', async () => {
    const mark = await auditMark(h);
    assertProblem(await list(managerSession, admin.id), 404, 'not-found');
    assertProblem(await endOne(managerSession, admin.id, adminSession.sessionId), 404, 'not-found');
    assertProblem(await endAll(managerSession, admin.id), 404, 'not-found');
    assert.ok(await isLive(adminSession));
    const denied = (await auditSince(h, mark)).filter((row) => row.action === 'auth.session.revoke');
    assert.deepEqual(denied.map((row) => [row.outcome, row.details.reason]), [['denied', 'not-manageable'], ['denied', 'not-manageable']]);

    const employee = await h.createUser({ role: 'employee' });
    const employeeSession = await h.signIn(employee, { remoteAddress: freshIp() });
    const victim = await h.createUser({ role: 'employee' });
    const victimSession = await h.signIn(victim, { remoteAddress: freshIp() });
    assertProblem(await list(employeeSession, victim.id), 403, 'forbidden');
    assertProblem(await endOne(employeeSession, victim.id, victimSession.sessionId), 403, 'forbidden');
    assertProblem(await endAll(employeeSession, victim.id), 403, 'forbidden');
    assert.ok(await isLive(victimSession));
  });

  test('malformed ids are 400, an unknown user 404, no credential 401', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user, { remoteAddress: freshIp() });
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/${user.id}/sessions/not-a-uuid`, token: adminSession.accessToken }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/not-a-uuid/sessions/${session.sessionId}`, token: adminSession.accessToken }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'DELETE', url: '/api/v1/users/not-a-uuid/sessions', token: adminSession.accessToken }), 400, 'validation-failed');
    assertProblem(await endAll(adminSession, randomUUID()), 404, 'not-found');
    assertUnauthenticated(await h.request({ method: 'DELETE', url: `/api/v1/users/${user.id}/sessions` }));
    assert.ok(await isLive(session));
  });
});
