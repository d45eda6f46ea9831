import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * The permission matrix and the rules beside it, through HTTP: who may create and change
 * whom, tenant confinement of client users, and the self-registered role `user` that reaches
 * nothing but its own account. Every refusal changes nothing; the security-relevant ones are
 * in the audit trail.
 */

/** Users, their tokens and sessions (use times left out: reads touch them). */
const state = (h: IdentityHarness) => tablesState(h, ['users', 'user_tokens', 'sessions', 'trusted_devices', 'api_keys']);

await describeEachBackend('role-based access over HTTP', (backend) => {
  let h: IdentityHarness;
  const users = {} as Record<'admin' | 'manager' | 'employee' | 'client' | 'user', TestUser>;
  const tokens = {} as Record<keyof typeof users, string>;
  const tenant = { a: { id: '', slug: '' }, b: { id: '', slug: '' } };

  before(async () => {
    h = await openIdentityHarness(backend);
    tenant.a.slug = `a-${randomUUID().slice(0, 8)}`;
    tenant.b.slug = `b-${randomUUID().slice(0, 8)}`;
    tenant.a.id = await h.createTenant(tenant.a.slug);
    tenant.b.id = await h.createTenant(tenant.b.slug);
    for (const role of ['admin', 'manager', 'employee', 'client', 'user'] as const) {
      users[role] = await h.createUser({ role, tenantId: role === 'client' ? tenant.a.id : null });
      tokens[role] = (await h.signIn(users[role])).accessToken;
    }
  });
  after(async () => h.close());

  test('a manager may not create an admin or a manager; the attempt is audited', async () => {
    for (const role of ['admin', 'manager'] as const) {
      const before = await state(h);
      const mark = await auditMark(h);
      const refused = await h.request({ method: 'POST', url: '/api/v1/users', token: tokens.manager, body: { email: `climb-${randomUUID()}@example.test`, role } });
      assertProblem(refused, 403, 'forbidden');
      assert.equal(await state(h), before, 'nothing created');
      const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'user.create');
      assert.ok(event, `a manager creating a ${role} is audited`);
      assert.equal(event.outcome, 'denied');
      assert.equal(event.actor_id, users.manager.id);
      assert.equal(event.details.role, role);
    }
    // What a manager may do, for contrast.
    const allowed = await h.request({ method: 'POST', url: '/api/v1/users', token: tokens.manager, body: { email: `hire-${randomUUID()}@example.test`, role: 'employee' } });
    assert.equal(allowed.statusCode, 201, allowed.body);
  });

  test('a manager may not promote anyone to admin', async () => {
    const employee = await h.createUser({ role: 'employee', withTotp: false });
    const before = await state(h);
    const mark = await auditMark(h);
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${employee.id}`, token: tokens.manager, body: { role: 'admin' } }), 403, 'forbidden');
    assert.equal(await state(h), before);
    const event = (await auditSince(h, mark)).find((candidate) => candidate.outcome === 'denied');
    assert.ok(event, 'audited');
    assert.equal(event.action, 'user.update');
    assert.equal(event.actor_id, users.manager.id);
    assert.equal(event.target_id, employee.id);
    assert.equal(event.details.role, 'admin');
  });

  test('a manager touching an admin hears 404, as for a user that does not exist', async () => {
    const before = await state(h);
    const mark = await auditMark(h);
    const patched = assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${users.admin.id}`, token: tokens.manager, body: { status: 'disabled' } }), 404, 'not-found');
    const missing = assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${randomUUID()}`, token: tokens.manager, body: { status: 'disabled' } }), 404, 'not-found');
    assert.deepEqual(patched, missing, 'the answers cannot be told apart');
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/${users.admin.id}`, token: tokens.manager }), 404, 'not-found');
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/users/${users.admin.id}/sessions`, token: tokens.manager }), 404, 'not-found');
    assert.equal(await state(h), before, 'the admin is untouched');
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: tokens.admin })).statusCode, 200, "the admin's session lives");
    const events = (await auditSince(h, mark)).filter((candidate) => candidate.target_id === users.admin.id);
    assert.ok(events.length >= 2 && events.every((event) => event.outcome === 'denied' && event.actor_id === users.manager.id), JSON.stringify(events));
  });

  test('nobody changes their own role, tenant or status', async () => {
    for (const [who, patch] of [
      ['admin', { role: 'employee' }],
      ['admin', { status: 'disabled' }],
      ['manager', { role: 'admin' }],
      ['manager', { status: 'disabled' }],
    ] as const) {
      const before = await state(h);
      const mark = await auditMark(h);
      assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${users[who].id}`, token: tokens[who], body: patch }), 403, 'forbidden');
      assert.equal(await state(h), before, `${who} ${JSON.stringify(patch)} changed nothing`);
      const event = (await auditSince(h, mark)).find((candidate) => candidate.outcome === 'denied');
      assert.ok(event, `${who} ${JSON.stringify(patch)} audited`);
      assert.equal(event.actor_id, users[who].id);
      assert.equal(event.target_id, users[who].id);
    }
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/${users.admin.id}`, token: tokens.admin }), 403, 'forbidden');
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: tokens.admin })).statusCode, 200, 'still signed in');
  });

  test('employee, client and user calling POST /users get 403 and an access.denied event', async () => {
    for (const role of ['employee', 'client', 'user'] as const) {
      const before = await state(h);
      const mark = await auditMark(h);
      const refused = await h.request({ method: 'POST', url: '/api/v1/users', token: tokens[role], body: { email: `x-${randomUUID()}@example.test`, role: 'admin' } });
      assertProblem(refused, 403, 'forbidden');
      assert.equal(await state(h), before);
      const events = await auditSince(h, mark);
      assert.equal(events.length, 1, JSON.stringify(events));
      assert.equal(events[0]!.action, 'access.denied');
      assert.equal(events[0]!.outcome, 'denied');
      assert.equal(events[0]!.actor_id, users[role].id);
      assert.equal(events[0]!.target_id, 'POST /api/v1/users');
      assert.equal(events[0]!.details.permission, 'users:write');
    }
  });

  test('a client user sees only its own tenant; another tenant reads as absent', async () => {
    const listed = await h.request({ method: 'GET', url: '/api/v1/tenants', token: tokens.client });
    assert.equal(listed.statusCode, 200);
    assert.deepEqual(listed.json().tenants.map((t: { id: string }) => t.id), [tenant.a.id]);
    assert.equal((await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.a.slug}`, token: tokens.client })).statusCode, 200);
    const other = assertProblem(await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.b.slug}`, token: tokens.client }), 404, 'not-found');
    const none = assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants/no-such-tenant', token: tokens.client }), 404, 'not-found');
    assert.deepEqual(other, none, 'existing and missing tenants answer alike');

    // Staff are not confined.
    const staff = (await h.request({ method: 'GET', url: '/api/v1/tenants', token: tokens.employee })).json().tenants.map((t: { id: string }) => t.id);
    assert.ok(staff.includes(tenant.a.id) && staff.includes(tenant.b.id));
  });

  test('a self-registered `user` reaches only its own account routes', async () => {
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: tokens.user })).statusCode, 200);
    for (const [method, url] of [
      ['GET', '/api/v1/tenants'],
      ['GET', `/api/v1/tenants/${tenant.a.slug}`],
      ['GET', '/api/v1/users'],
      ['GET', '/api/v1/api-keys'],
      ['POST', '/api/v1/api-keys'],
      ['DELETE', `/api/v1/users/${users.employee.id}`],
    ] as const) {
      const mark = await auditMark(h);
      const body = method === 'POST' ? { name: 'mine', tenantId: tenant.a.id, scopes: ['tenants:read'] } : undefined;
      assertProblem(await h.request({ method, url, token: tokens.user, ...(body ? { body } : {}) }), 403, 'forbidden');
      const events = await auditSince(h, mark);
      assert.ok(events.some((event) => event.action === 'access.denied' && event.actor_id === users.user.id), `${method} ${url} audited`);
    }
    assert.deepEqual(await queryRows(h.db, sql`select id from api_keys`), [], 'no key was made');
  });

  test('a client user needs a tenant and staff must not have one', async () => {
    const cases = [
      { role: 'client', tenantId: null },
      { role: 'client' },
      // A tenant that does not exist is a 400 naming it, never a foreign-key 500.
      { role: 'client', tenantId: randomUUID() },
      { role: 'employee', tenantId: tenant.a.id },
      { role: 'manager', tenantId: tenant.a.id },
      { role: 'admin', tenantId: tenant.a.id },
    ];
    for (const body of cases) {
      const before = await state(h);
      assertProblem(await h.request({ method: 'POST', url: '/api/v1/users', token: tokens.admin, body: { email: `t-${randomUUID()}@example.test`, ...body } }), 400, 'validation-failed');
      assert.equal(await state(h), before, JSON.stringify(body));
    }
    const client = await h.createUser({ role: 'client', tenantId: tenant.b.id, withTotp: false });
    const employee = await h.createUser({ role: 'employee', withTotp: false });
    const before = await state(h);
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${client.id}`, token: tokens.admin, body: { tenantId: null } }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${client.id}`, token: tokens.admin, body: { tenantId: randomUUID() } }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${client.id}`, token: tokens.admin, body: { role: 'employee' } }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${employee.id}`, token: tokens.admin, body: { role: 'client' } }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${employee.id}`, token: tokens.admin, body: { tenantId: tenant.a.id } }), 400, 'validation-failed');
    assert.equal(await state(h), before);

    const created = await h.request({ method: 'POST', url: '/api/v1/users', token: tokens.admin, body: { email: `c-${randomUUID()}@example.test`, role: 'client', tenantId: tenant.a.id } });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json().user.tenantId, tenant.a.id);
  });
});
