import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

// A manager's GET /api/v1/users listed every admin with their email, although a manager may
// not manage them and hears 404 when asking to change one: the list handed out exactly the
// accounts worth phishing. Managers now see no admins, in the list or by id (404, as for a user
// that does not exist); admins still see everyone.
await describeEachBackend('regression: managers do not see admins', (backend) => {
  let h: IdentityHarness;
  let admin: TestUser;
  let manager: TestUser;
  let otherManager: TestUser;
  let employee: TestUser;
  let client: TestUser;
  let tokens: { admin: string; manager: string; employee: string };
  before(async () => {
    h = await openIdentityHarness(backend);
    const tenantId = await h.createTenant();
    admin = await h.createUser({ role: 'admin' });
    manager = await h.createUser({ role: 'manager' });
    otherManager = await h.createUser({ role: 'manager' });
    employee = await h.createUser({ role: 'employee' });
    client = await h.createUser({ role: 'client', tenantId });
    tokens = {
      admin: (await h.signIn(admin)).accessToken,
      manager: (await h.signIn(manager)).accessToken,
      employee: (await h.signIn(employee)).accessToken,
    };
  });
  after(() => h?.close());

  const list = async (token: string, query = '') => {
    const response = await h.request({ method: 'GET', url: `/api/v1/users${query}`, token });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().users as Array<{ id: string; role: string; email: string }>;
  };

  test("a manager's list has no admin; an admin's list has everyone", async () => {
    const seenByManager = await list(tokens.manager);
    assert.deepEqual(seenByManager.filter((user) => user.role === 'admin'), []);
    assert.ok(!seenByManager.some((user) => user.email === admin.email), "the admin's email is not in the answer");
    for (const user of [manager, otherManager, employee, client]) assert.ok(seenByManager.some((seen) => seen.id === user.id), `the manager sees ${user.role} ${user.id}`);

    const seenByAdmin = await list(tokens.admin);
    for (const user of [admin, manager, otherManager, employee, client]) assert.ok(seenByAdmin.some((seen) => seen.id === user.id), `the admin sees ${user.role} ${user.id}`);

    const tenantFilter = await list(tokens.manager, `?tenant=${client.tenantId}`);
    assert.deepEqual(tenantFilter.map((user) => user.id), [client.id]);
  });

  test('GET /users/{id}: an admin reads as absent to a manager, exactly like an unknown id', async () => {
    const hidden = assertProblem(await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}`, token: tokens.manager }), 404, 'not-found');
    const unknown = assertProblem(await h.request({ method: 'GET', url: `/api/v1/users/${randomUUID()}`, token: tokens.manager }), 404, 'not-found');
    assert.deepEqual(hidden, unknown, 'nothing tells a hidden admin from a missing user');

    const visible = await h.request({ method: 'GET', url: `/api/v1/users/${employee.id}`, token: tokens.manager });
    assert.equal(visible.statusCode, 200, visible.body);
    assert.deepEqual([visible.json().id, visible.json().role, visible.json().email], [employee.id, 'employee', employee.email]);
    assert.equal((await h.request({ method: 'GET', url: `/api/v1/users/${otherManager.id}`, token: tokens.manager })).statusCode, 200);

    const byAdmin = await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}`, token: tokens.admin });
    assert.equal(byAdmin.statusCode, 200, byAdmin.body);
    assert.equal(byAdmin.json().email, admin.email);
  });

  test('changing or deleting an admin is 404 to a manager; a role without users:read is 403; a bad id is 400', async () => {
    assertProblem(await h.request({ method: 'PATCH', url: `/api/v1/users/${admin.id}`, body: { status: 'disabled' }, token: tokens.manager }), 404, 'not-found');
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/users/${admin.id}`, token: tokens.manager }), 404, 'not-found');
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}`, token: tokens.employee }), 403, 'forbidden');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/users', token: tokens.employee }), 403, 'forbidden');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/users/not-a-uuid', token: tokens.manager }), 400, 'validation-failed');
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}` }), 401, 'unauthenticated');
    const stillActive = await h.request({ method: 'GET', url: `/api/v1/users/${admin.id}`, token: tokens.admin });
    assert.equal(stillActive.json().status, 'active');
  });
});
