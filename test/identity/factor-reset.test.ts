import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { openAdminAndManager } from '../helpers/admin-and-manager.js';
import { describeEachBackend } from '../helpers/database.js';
import { type IdentityHarness, type SignedSession, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { totpCode } from '../helpers/totp-codes.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';

/**
 * `POST /api/v1/users/{id}/reset-factors`: the admin's way back in for someone who lost both
 * their authenticator and their recovery codes. It removes every factor, ends every session,
 * trusted device and open challenge, and is audited; the role rules of user management apply,
 * and nobody resets their own.
 */

await describeEachBackend('admin reset of second factors', (backend) => {
  let h: IdentityHarness;
  let admin: TestUser;
  let adminSession: SignedSession;
  let manager: TestUser;
  let managerSession: SignedSession;
  const freshIp = freshAddresses('10.63');

  before(async () => {
    ({ h, admin, adminSession, manager, managerSession } = await openAdminAndManager(backend));
  });
  after(() => h?.close());

  const reset = (session: SignedSession, userId: string) => h.request({ method: 'POST', url: `/api/v1/users/${userId}/reset-factors`, token: session.accessToken });

  async function factorRows(userId: string) {
    const [row] = await queryRows<{ factors: number; recovery: number; phones: number; live_sessions: number; devices: number; open_challenges: number }>(
      h.db,
      sql`select
            (select count(*)::int from totp_factors where user_id = ${userId}) as factors,
            (select count(*)::int from recovery_codes where user_id = ${userId}) as recovery,
            (select count(*)::int from sms_factors where user_id = ${userId}) as phones,
            (select count(*)::int from sessions where user_id = ${userId} and revoked_at is null) as live_sessions,
            (select count(*)::int from trusted_devices where user_id = ${userId} and revoked_at is null) as devices,
            (select count(*)::int from login_challenges where user_id = ${userId} and used_at is null) as open_challenges`,
    );
    return row!;
  }

  test('an admin resets an employee: factors gone, sessions and devices ended, audited; the next sign-in enrolls anew', async () => {
    const user = await h.createUser({ role: 'employee' });
    const session = await h.signIn(user);
    // Someone mid-sign-in with the password holds a challenge; it dies with the factors.
    const pending = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, remoteAddress: freshIp() });
    const oldChallenge = assertProblem(pending, 401, 'second-factor-required').challengeToken as string;
    const mark = await auditMark(h);

    const answer = await reset(adminSession, user.id);
    assert.equal(answer.statusCode, 200, answer.body);
    assert.deepEqual(answer.json(), { authenticators: 1, recoveryCodes: 10, phone: false, sessions: 1, devices: 1 });
    assert.deepEqual(await factorRows(user.id), { factors: 0, recovery: 0, phones: 0, live_sessions: 0, devices: 0, open_challenges: 0 });
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken }));
    assertProblem(
      await h.request({ method: 'POST', url: '/api/v1/auth/second-factor', body: { challengeToken: oldChallenge, method: 'totp', code: totpCode(user.totpSecret!, 1) } }),
      401,
      'invalid-challenge',
    );
    const events = await auditSince(h, mark);
    const resetEvent = events.find((event) => event.action === 'user.factors.reset');
    assert.deepEqual(
      { outcome: resetEvent?.outcome, actor: resetEvent?.actor_id, target: resetEvent?.target_id, details: resetEvent?.details },
      { outcome: 'success', actor: admin.id, target: user.id, details: { via: 'api', authenticators: 1, recoveryCodes: 10, phone: false, sessions: 1, devices: 1 } },
    );

    const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password }, remoteAddress: freshIp() });
    assertProblem(login, 401, 'second-factor-enrollment-required');
  });

  test('a manager resets an employee, but an admin or another manager reads as absent (404, audited); an employee has no such permission', async () => {
    const employee = await h.createUser({ role: 'employee' });
    assert.equal((await reset(managerSession, employee.id)).statusCode, 200);

    const otherManager = await h.createUser({ role: 'manager' });
    for (const target of [admin, otherManager]) {
      const before = await factorRows(target.id);
      const mark = await auditMark(h);
      assertProblem(await reset(managerSession, target.id), 404, 'not-found');
      assert.deepEqual(await factorRows(target.id), before);
      const denied = (await auditSince(h, mark)).find((event) => event.action === 'user.factors.reset');
      assert.deepEqual([denied?.outcome, denied?.details.reason], ['denied', 'not-manageable']);
    }

    const clerk = await h.createUser({ role: 'employee' });
    const clerkSession = await h.signIn(clerk);
    const victim = await h.createUser({ role: 'employee' });
    const before = await factorRows(victim.id);
    assertProblem(await reset(clerkSession, victim.id), 403, 'forbidden');
    assert.deepEqual(await factorRows(victim.id), before);
  });

  test('nobody resets their own factors: 403, audited, nothing changes', async () => {
    const before = await factorRows(admin.id);
    const mark = await auditMark(h);
    assertProblem(await reset(adminSession, admin.id), 403, 'forbidden');
    assert.deepEqual(await factorRows(admin.id), before);
    const denied = (await auditSince(h, mark)).find((event) => event.action === 'user.factors.reset');
    assert.deepEqual([denied?.outcome, denied?.details.reason], ['denied', 'self-reset']);
  });

  test('an unknown user is 404, a malformed id 400; no credential 401', async () => {
    assertProblem(await reset(adminSession, randomUUID()), 404, 'not-found');
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/users/not-a-uuid/reset-factors', token: adminSession.accessToken }), 400, 'validation-failed');
    assertUnauthenticated(await h.request({ method: 'POST', url: `/api/v1/users/${admin.id}/reset-factors` }));
  });
});
