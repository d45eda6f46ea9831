import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { tokenClaims } from '../helpers/token-claims.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Users through the HTTP API as an admin sees them: creating a pending user (the setup token
 * is shown once and stored hashed), disabling, re-enabling, deleting and changing roles, each
 * of which ends the user's sessions, trusted devices and (on disable/delete) API keys at once.
 * Redeeming setup tokens is in setup-and-signup.test.ts; role rules in rbac.test.ts.
 */

const BODY_LIMIT_BYTES = 4096;

await describeEachBackend('users over HTTP', (backend) => {
  let h: IdentityHarness;
  let adminToken: string;
  let tenantId: string;

  before(async () => {
    h = await openIdentityHarness(backend, { env: { CIPHERGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) } });
    const admin = await h.createUser({ role: 'admin' });
    adminToken = (await h.signIn(admin)).accessToken;
    tenantId = await h.createTenant();
  });
  after(async () => h.close());

  test('POST /users makes a pending user and shows its setup token once, stored only as a hash', async () => {
    const email = `new-${randomUUID()}@example.test`;
    const mark = await auditMark(h);
    const created = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email, role: 'employee' } });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.headers['cache-control'], 'no-store');
    const { user, setupToken, setupExpiresAt } = created.json();
    assert.equal(user.email, email);
    assert.equal(user.role, 'employee');
    assert.equal(user.status, 'pending');
    assert.equal(user.hasPassword, false);
    assert.equal(user.tenantId, null);
    assert.match(setupToken, /^cgs_[A-Za-z0-9_-]{43}$/);
    const lifeHours = (Date.parse(setupExpiresAt) - Date.now()) / 3_600_000;
    assert.ok(lifeHours > 23.9 && lifeHours <= 24, `setup token lives ${lifeHours} h`);

    const listed = await h.request({ method: 'GET', url: '/api/v1/users', token: adminToken });
    assert.equal(listed.statusCode, 200);
    assert.ok(!listed.body.includes(setupToken), 'the setup token is never listed');
    assert.ok(!listed.body.includes(setupToken.slice(4)));
    const row = listed.json().users.find((candidate: { id: string }) => candidate.id === user.id);
    assert.deepEqual(Object.keys(row).sort(), ['createdAt', 'email', 'hasPassword', 'id', 'role', 'status', 'tenantId', 'updatedAt']);
    assert.equal(row.status, 'pending');

    const stored = await queryRows<Record<string, unknown>>(h.db, sql`select * from user_tokens where user_id = ${user.id}`);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.token_hash, createHash('sha256').update(setupToken).digest('hex'));
    assert.equal(stored[0]!.purpose, 'setup');
    const everything = JSON.stringify(await queryRows(h.db, sql`select * from user_tokens`)) + JSON.stringify(await queryRows(h.db, sql`select * from audit_events`));
    assert.ok(!everything.includes(setupToken.slice(4)), 'the token is nowhere in clear');

    const events = await auditSince(h, mark);
    const create = events.find((event) => event.action === 'user.create');
    assert.ok(create, 'user.create audited');
    assert.equal(create.outcome, 'success');
    assert.equal(create.target_id, user.id);
    assert.equal(create.details.role, 'employee');
    assert.ok(!JSON.stringify(events).includes(email), 'no email in the audit trail');
  });

  test('an oversized body gets 413, malformed JSON 400, an unknown property 400 naming it; nothing is created', async () => {
    const before = await tablesState(h, ['users', 'user_tokens']);
    const mark = await auditMark(h);
    const email = `big-${randomUUID()}@example.test`;

    const oversized = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email, role: 'employee', note: 'x'.repeat(BODY_LIMIT_BYTES) } });
    assertProblem(oversized, 413, 'payload-too-large');

    const malformed = await h.app.inject({
      method: 'POST',
      url: '/api/v1/users',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      payload: `{"email": "${email}", "role": "employee"`,
    });
    assertProblem(malformed, 400, 'malformed-body');

    const unknown = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email, role: 'employee', isSuperuser: true } });
    const problem = assertProblem(unknown, 400, 'validation-failed');
    assert.match(problem.detail, /isSuperuser/, `the unknown property is named: ${problem.detail}`);
    assert.ok(problem.errors.some((error: { field: string }) => error.field === 'isSuperuser'), JSON.stringify(problem.errors));

    const unknownOnPatch = await h.request({ method: 'PATCH', url: `/api/v1/users/${randomUUID()}`, token: adminToken, body: { status: 'disabled', passwordHash: 'x' } });
    assert.match(assertProblem(unknownOnPatch, 400, 'validation-failed').detail, /passwordHash/);

    assert.equal(await tablesState(h, ['users', 'user_tokens']), before, 'nothing changed');
    assert.deepEqual((await auditSince(h, mark)).filter((event) => event.action.startsWith('user.')), []);
  });

  test('disabling a user ends, at once, its sessions, its trusted devices, the API keys it made and their tokens', async () => {
    const manager = await h.createUser({ role: 'manager' });
    const signedIn = await h.signIn(manager);
    const key = await createApiKey(h, signedIn.accessToken, tenantId);
    const machineToken = await clientCredentialsToken(h, key);
    for (const credential of [signedIn.accessToken, key.key, machineToken]) {
      assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: credential })).statusCode, 200, 'works before');
    }

    const mark = await auditMark(h);
    const disabled = await h.request({ method: 'PATCH', url: `/api/v1/users/${manager.id}`, token: adminToken, body: { status: 'disabled' } });
    assert.equal(disabled.statusCode, 200, disabled.body);
    assert.equal(disabled.json().status, 'disabled');

    // The very next request: no waiting for the 10-minute access token to expire.
    for (const credential of [signedIn.accessToken, key.key, machineToken]) {
      assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: credential }), 401, 'unauthenticated');
    }
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: signedIn.refreshToken } }), 401, 'invalid-refresh-token');
    const devices = await queryRows<{ revoked_at: Date | null }>(h.db, sql`select revoked_at from trusted_devices where user_id = ${manager.id}`);
    assert.ok(devices.length > 0 && devices.every((device) => device.revoked_at !== null), 'trusted devices revoked');
    const keyRow = await queryRows<{ revoked_at: Date | null }>(h.db, sql`select revoked_at from api_keys where id = ${key.id}`);
    assert.notEqual(keyRow[0]!.revoked_at, null);
    const live = await queryRows(h.db, sql`select id from sessions where (user_id = ${manager.id} or api_key_id = ${key.id}) and revoked_at is null`);
    assert.deepEqual(live, []);
    // A disabled account cannot sign in, not even from its trusted device.
    const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: manager.email, password: manager.password, deviceToken: signedIn.deviceToken } });
    assertProblem(login, 401, 'invalid-credentials');

    const disable = (await auditSince(h, mark)).find((event) => event.action === 'user.disable');
    assert.ok(disable, 'user.disable audited');
    assert.equal(disable.outcome, 'success');
    assert.equal(disable.target_id, manager.id);

    // Re-enabling lets the person sign in again, but nothing that was ended comes back.
    const enableMark = await auditMark(h);
    const enabled = await h.request({ method: 'PATCH', url: `/api/v1/users/${manager.id}`, token: adminToken, body: { status: 'active' } });
    assert.equal(enabled.statusCode, 200, enabled.body);
    assert.equal(enabled.json().status, 'active');
    assert.ok((await auditSince(h, enableMark)).some((event) => event.action === 'user.enable' && event.target_id === manager.id));
    const again = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: manager.email, password: manager.password, deviceToken: signedIn.deviceToken } });
    assertProblem(again, 401, 'second-factor-required');
    const fresh = await h.signIn(manager);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/users', token: fresh.accessToken })).statusCode, 200);
    for (const credential of [signedIn.accessToken, key.key, machineToken]) {
      assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: credential })).statusCode, 401, 'still ended');
    }
  });

  test('a pending user cannot be "re-enabled" past its setup token', async () => {
    const created = await h.request({ method: 'POST', url: '/api/v1/users', token: adminToken, body: { email: `pending-${randomUUID()}@example.test`, role: 'employee' } });
    const id = created.json().user.id as string;
    const before = await tablesState(h, ['users']);
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${id}`, token: adminToken, body: { status: 'active' } }), 409, 'invalid-state');
    assert.equal(await tablesState(h, ['users']), before);
  });

  test('deleting a user ends its sessions and API keys at once and removes it', async () => {
    const manager = await h.createUser({ role: 'manager' });
    const signedIn = await h.signIn(manager);
    const key = await createApiKey(h, signedIn.accessToken, tenantId);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: key.key })).statusCode, 200);

    const mark = await auditMark(h);
    const deleted = await h.request({ method: 'DELETE', url: `/api/v1/users/${manager.id}`, token: adminToken });
    assert.equal(deleted.statusCode, 204, deleted.body);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: signedIn.accessToken }), 401, 'unauthenticated');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: key.key }), 401, 'unauthenticated');
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: signedIn.refreshToken } }), 401, 'invalid-refresh-token');
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: manager.email, password: manager.password, deviceToken: signedIn.deviceToken } }), 401, 'invalid-credentials');

    const listed = (await h.request({ method: 'GET', url: '/api/v1/users', token: adminToken })).json().users as Array<{ id: string }>;
    assert.ok(!listed.some((user) => user.id === manager.id));
    const keyRow = await queryRows<{ revoked_at: Date | null }>(h.db, sql`select revoked_at from api_keys where id = ${key.id}`);
    assert.notEqual(keyRow[0]!.revoked_at, null, 'the key is revoked, and kept for the record');
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'user.delete');
    assert.ok(event, 'user.delete audited');
    assert.equal(event.target_id, manager.id);
    assert.equal(event.details.role, 'manager');

    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/${manager.id}`, token: adminToken }), 404, 'not-found');
    assertProblem(await h.request({ method: 'DELETE', url: '/api/v1/users/not-a-uuid', token: adminToken }), 400, 'validation-failed');
  });

  test('a role change ends the sessions, whose access tokens carry the old role', async () => {
    const employee = await h.createUser({ role: 'employee' });
    const old = await h.signIn(employee);
    assert.equal(tokenClaims(old.accessToken).role, 'employee');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/users', token: old.accessToken }), 403, 'forbidden');

    const mark = await auditMark(h);
    const changed = await h.request({ method: 'PATCH', url: `/api/v1/users/${employee.id}`, token: adminToken, body: { role: 'manager' } });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal(changed.json().role, 'manager');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: old.accessToken }), 401, 'unauthenticated');
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: old.refreshToken } }), 401, 'invalid-refresh-token');
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'user.role.change');
    assert.ok(event, 'user.role.change audited');
    assert.equal(event.target_id, employee.id);
    assert.deepEqual([event.details.from, event.details.to], ['employee', 'manager']);

    // The trusted device ended too; a fresh sign-in carries the new role.
    assertProblem(
      await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: employee.email, password: employee.password, deviceToken: old.deviceToken } }),
      401,
      'second-factor-required',
    );
    const promoted = await h.signIn(employee);
    assert.equal(tokenClaims(promoted.accessToken).role, 'manager');
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/users', token: promoted.accessToken })).statusCode, 200);
  });

  test('PATCH needs at least one field and an existing user', async () => {
    const before = await tablesState(h, ['users']);
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${randomUUID()}`, token: adminToken, body: {} }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${randomUUID()}`, token: adminToken, body: { status: 'disabled' } }), 404, 'not-found');
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${randomUUID()}`, token: adminToken, body: { status: 'deleted' } }), 400, 'validation-failed');
    assert.equal(await tablesState(h, ['users']), before);
  });
});

async function createApiKey(h: IdentityHarness, token: string, tenantId: string): Promise<{ id: string; key: string }> {
  const response = await h.request({ method: 'POST', url: '/api/v1/api-keys', token, body: { name: 'sync job', tenantId, scopes: ['tenants:read'] } });
  assert.equal(response.statusCode, 201, response.body);
  return { id: response.json().apiKey.id, key: response.json().key };
}

async function clientCredentialsToken(h: IdentityHarness, key: { id: string; key: string }): Promise<string> {
  const response = await h.app.inject({
    method: 'POST',
    url: '/oauth/token',
    remoteAddress: '127.0.0.1',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${key.id}:${key.key}`).toString('base64')}` },
    payload: 'grant_type=client_credentials',
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().access_token;
}
