import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { AccountLocks } from '../../src/identity/accounts/account-locks.js';
import { IdentityError } from '../../src/identity/errors.js';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { openAdminAndManager } from '../helpers/admin-and-manager.js';
import { describeEachBackend } from '../helpers/database.js';
import { type IdentityHarness, type SignedSession, type TestUser } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';

/**
 * `POST /api/v1/users/{id}/lock` and `/unlock`: an admin's hold on an account. A lock refuses
 * every sign-in step and ends every session, trusted device and challenge at once; an unlock
 * returns the account (the second factor is asked again) and clears the sign-in throttle's
 * failed-attempt locks of every address, also for a user who was never locked. Role rules and
 * the abuse cases: wrong role, a manager on an admin, self, unknown and malformed ids, twice.
 */
await describeEachBackend('locking and unlocking users', (backend) => {
  let h: IdentityHarness;
  let admin: TestUser;
  let adminSession: SignedSession;
  let manager: TestUser;
  let managerSession: SignedSession;
  const freshIp = freshAddresses('10.66');

  before(async () => {
    ({ h, admin, adminSession, manager, managerSession } = await openAdminAndManager(backend));
  });
  after(() => h?.close());

  const post = (session: SignedSession, userId: string, verb: 'lock' | 'unlock') => h.request({ method: 'POST', url: `/api/v1/users/${userId}/${verb}`, token: session.accessToken });
  const login = (user: TestUser, ip: string, extra: Record<string, string> = {}) => h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password, ...extra }, remoteAddress: ip });
  const statusOf = async (userId: string) => (await queryRows<{ status: string }>(h.db, sql`select status from users where id = ${userId}`))[0]?.status;

  test('a lock refuses sign-in and ends sessions and devices at once, keeps API keys; an unlock brings the account back with a second factor', async () => {
    const user = await h.createUser({ role: 'manager' });
    const session = await h.signIn(user, { remoteAddress: freshIp() });
    const key = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: session.accessToken, body: { name: 'integration', tenantId: await h.createTenant(), scopes: ['tenants:read'] } });
    assert.equal(key.statusCode, 201, key.body);
    const mark = await auditMark(h);

    const locked = await post(adminSession, user.id, 'lock');
    assert.equal(locked.statusCode, 200, locked.body);
    assert.deepEqual({ status: locked.json().user.status, sessions: locked.json().sessions, devices: locked.json().devices }, { status: 'locked', sessions: 1, devices: 1 });
    assertUnauthenticated(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: session.accessToken }));
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } }), 401, 'invalid-refresh-token');
    const ip = freshIp();
    assertProblem(await login(user, ip, { deviceToken: session.deviceToken }), 401, 'invalid-credentials');
    assertProblem(await login(user, ip), 401, 'invalid-credentials');
    // The integration keeps working: a lock holds the person, not their machines.
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: key.json().key })).statusCode, 200);

    const lockEvent = (await auditSince(h, mark)).find((event) => event.action === 'user.lock');
    assert.deepEqual(
      { outcome: lockEvent?.outcome, actor: lockEvent?.actor_id, target: lockEvent?.target_id, details: lockEvent?.details },
      { outcome: 'success', actor: admin.id, target: user.id, details: { via: 'api', sessions: 1, devices: 1 } },
    );
    assertProblem(await post(adminSession, user.id, 'lock'), 409, 'invalid-state');

    const unlocked = await post(adminSession, user.id, 'unlock');
    assert.equal(unlocked.statusCode, 200, unlocked.body);
    assert.equal(unlocked.json().user.status, 'active');
    assert.equal(unlocked.json().wasLocked, true);
    // The trusted device was forgotten with the lock: the password earns a second-factor challenge.
    assertProblem(await login(user, freshIp(), { deviceToken: session.deviceToken }), 401, 'second-factor-required');
    const again = await h.signIn(user, { remoteAddress: freshIp() });
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: again.accessToken })).statusCode, 200);
    const unlockEvent = (await auditSince(h, mark)).find((event) => event.action === 'user.unlock');
    assert.deepEqual([unlockEvent?.outcome, unlockEvent?.actor_id, unlockEvent?.details.wasLocked], ['success', admin.id, true]);
  });

  test("an unlock clears the throttle's failed-attempt lock of every address at once", async () => {
    const user = await h.createUser({ role: 'employee' });
    const [first, second] = [freshIp(), freshIp()];
    for (const ip of [first, second]) {
      for (let attempt = 0; attempt < 10; attempt += 1) await login({ ...user, password: 'not the password, sorry' }, ip);
      assertProblem(await login(user, ip), 429, 'account-locked');
    }
    const unlocked = await post(managerSession, user.id, 'unlock');
    assert.equal(unlocked.statusCode, 200, unlocked.body);
    assert.deepEqual({ wasLocked: unlocked.json().wasLocked, failedAttemptLocks: unlocked.json().failedAttemptLocks, status: unlocked.json().user.status }, { wasLocked: false, failedAttemptLocks: 2, status: 'active' });
    for (const ip of [first, second]) assertProblem(await login(user, ip), 401, 'second-factor-required');
  });

  test('role rules: a manager cannot lock an admin or a manager (404, audited); an employee has no permission; nobody locks themselves', async () => {
    const otherManager = await h.createUser({ role: 'manager' });
    for (const target of [admin, otherManager]) {
      const mark = await auditMark(h);
      assertProblem(await post(managerSession, target.id, 'lock'), 404, 'not-found');
      assertProblem(await post(managerSession, target.id, 'unlock'), 404, 'not-found');
      assert.equal(await statusOf(target.id), 'active');
      const denied = (await auditSince(h, mark)).filter((event) => event.action === 'user.lock' || event.action === 'user.unlock');
      assert.deepEqual(denied.map((event) => [event.action, event.outcome, event.details.reason]), [['user.lock', 'denied', 'not-manageable'], ['user.unlock', 'denied', 'not-manageable']]);
    }
    const employee = await h.createUser({ role: 'employee' });
    const employeeSession = await h.signIn(employee, { remoteAddress: freshIp() });
    const victim = await h.createUser({ role: 'employee' });
    assertProblem(await post(employeeSession, victim.id, 'lock'), 403, 'forbidden');
    assert.equal(await statusOf(victim.id), 'active');

    const mark = await auditMark(h);
    assertProblem(await post(adminSession, admin.id, 'lock'), 403, 'forbidden');
    assert.equal(await statusOf(admin.id), 'active');
    const self = (await auditSince(h, mark)).find((event) => event.action === 'user.lock');
    assert.deepEqual([self?.outcome, self?.details.reason], ['denied', 'self-change']);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: adminSession.accessToken })).statusCode, 200, 'the refused self-lock ended nothing');
  });

  test('a client user (tenant-bound) has no permission; unknown id 404, malformed id 400, no credential 401', async () => {
    const tenantId = await h.createTenant();
    const client = await h.createUser({ role: 'client', tenantId });
    const clientSession = await h.signIn(client, { remoteAddress: freshIp() });
    const colleague = await h.createUser({ role: 'client', tenantId });
    assertProblem(await post(clientSession, colleague.id, 'lock'), 403, 'forbidden');
    assertProblem(await post(adminSession, randomUUID(), 'lock'), 404, 'not-found');
    assertProblem(await post(adminSession, randomUUID(), 'unlock'), 404, 'not-found');
    for (const verb of ['lock', 'unlock']) {
      assertProblem(await h.request({ method: 'POST', url: `/api/v1/users/not-a-uuid/${verb}`, token: adminSession.accessToken }), 400, 'validation-failed');
      assertUnauthenticated(await h.request({ method: 'POST', url: `/api/v1/users/${colleague.id}/${verb}` }));
    }
    assert.equal(await statusOf(colleague.id), 'active');
  });

  test('a disabled or pending user is neither locked nor unlocked (409), and a locked one can still be disabled', async () => {
    const user = await h.createUser({ role: 'employee' });
    assert.equal((await post(adminSession, user.id, 'lock')).statusCode, 200);
    const disabled = await h.request({ method: 'PATCH', url: `/api/v1/users/${user.id}`, token: adminSession.accessToken, body: { status: 'disabled' } });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assertProblem(await post(adminSession, user.id, 'lock'), 409, 'invalid-state');
    assertProblem(await post(adminSession, user.id, 'unlock'), 409, 'invalid-state');
    assert.equal(await statusOf(user.id), 'disabled');
  });

  test('the operator may lock an admin, but never the last active one', async () => {
    const locks = new AccountLocks(h.identity);
    const second = await h.createUser({ role: 'admin' });
    const outcome = await locks.lockAsOperator(second.id);
    assert.equal(outcome.user.status, 'locked');
    await queryRows(h.db, sql`update users set status = 'disabled' where role = 'admin' and id <> ${admin.id} and status = 'active'`);
    await assert.rejects(locks.lockAsOperator(admin.id), (error: unknown) => error instanceof IdentityError && error.code === 'invalid-state');
    assert.equal(await statusOf(admin.id), 'active');
    assert.equal((await locks.unlockAsOperator(second.id)).user.status, 'active');
  });
});
