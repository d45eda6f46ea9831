import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';

await describeEachBackend('GET /api/v1/audit', (backend) => {
  let harness: IdentityHarness;
  let adminToken: string;
  let employeeToken: string;
  let adminId: string;

  before(async () => {
    harness = await openIdentityHarness(backend);
    const admin = await harness.createUser({ role: 'admin' });
    adminId = admin.id;
    adminToken = (await harness.signIn(admin)).accessToken;
    employeeToken = (await harness.signIn(await harness.createUser({ role: 'employee' }))).accessToken;
  });
  after(async () => harness.close());

  test('an admin pages through the trail in chain order; entries carry ids, never emails or tokens', async () => {
    const first = await harness.request({ method: 'GET', url: '/api/v1/audit?limit=2', token: adminToken });
    assert.equal(first.statusCode, 200);
    const page = first.json();
    assert.equal(page.entries.length, 2);
    assert.equal(page.next, page.entries[1].seq);
    const second = await harness.request({ method: 'GET', url: `/api/v1/audit?limit=500&after=${page.next}`, token: adminToken });
    const rest = second.json().entries as Array<{ seq: number; action: string; actorId: string | null }>;
    assert.ok(rest.every((entry) => entry.seq > page.next));
    assert.equal(second.json().next, null);
    assert.ok(rest.some((entry) => entry.action === 'auth.second-factor' && entry.actorId === adminId));
    assert.doesNotMatch(second.body, /@example\.test|eyJ|cg[rdck]_/);
  });

  test('filters by action', async () => {
    const response = await harness.request({ method: 'GET', url: '/api/v1/audit?action=user.create', token: adminToken });
    const entries = response.json().entries as Array<{ action: string }>;
    assert.ok(entries.length >= 2);
    assert.ok(entries.every((entry) => entry.action === 'user.create'));
  });

  test('an employee is refused (403) and the refusal is itself audited', async () => {
    const response = await harness.request({ method: 'GET', url: '/api/v1/audit', token: employeeToken });
    assert.equal(response.statusCode, 403);
    assert.equal(response.json().type, 'forbidden');
    const denied = (await harness.auditActions()).filter((entry) => entry.action === 'access.denied');
    assert.equal(denied.at(-1)?.details.permission, 'audit:read');
  });

  test('bad paging parameters are a 400 naming the field', async () => {
    const response = await harness.request({ method: 'GET', url: '/api/v1/audit?limit=100000', token: adminToken });
    assert.equal(response.statusCode, 400);
    assert.match(response.json().detail, /limit/);
  });
});
