import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AuditLog } from '../../src/audit/audit-log.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';

await describeEachBackend('GET /api/v1/audit', (backend) => {
  let harness: IdentityHarness;
  let adminToken: string;
  let employeeToken: string;
  let adminId: string;
  let adminEmail: string;

  before(async () => {
    harness = await openIdentityHarness(backend);
    const admin = await harness.createUser({ role: 'admin' });
    adminId = admin.id;
    adminEmail = admin.email;
    adminToken = (await harness.signIn(admin)).accessToken;
    employeeToken = (await harness.signIn(await harness.createUser({ role: 'employee' }))).accessToken;
  });
  after(async () => harness.close());

  test('an admin pages through the trail in chain order; entries carry ids and their labels, never tokens', async () => {
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
    assert.doesNotMatch(second.body, /eyJ|cg[rdck]_/);
  });

  test('entries are readable: the actor email, the tenant slug, the target by email or slug; the read itself is audited', async () => {
    const tenantId = await harness.createTenant('audit-readable');
    const client = await harness.createUser({ role: 'client', tenantId });
    await new AuditLog(harness.db).record({ actor: { type: 'user', id: adminId }, action: 'user.role.change', target: { type: 'user', id: client.id }, tenantId, sourceIp: '127.0.0.1', outcome: 'success', details: {} });
    const before = (await harness.auditActions()).filter((entry) => entry.action === 'audit.read').length;
    const response = await harness.request({ method: 'GET', url: '/api/v1/audit?tenant=audit-readable&action=user.role.change', token: adminToken });
    assert.equal(response.statusCode, 200, response.body);
    const [entry] = response.json().entries as Array<{ actorId: string; actorEmail: string; tenant: string; tenantId: string; targetId: string; target: string }>;
    assert.equal(entry!.actorEmail, adminEmail);
    assert.equal(entry!.tenant, 'audit-readable');
    assert.equal(entry!.tenantId, tenantId);
    assert.equal(entry!.target, client.email);
    assert.equal(entry!.targetId, client.id);
    const reads = (await harness.auditActions()).filter((row) => row.action === 'audit.read');
    assert.equal(reads.length, before + 1, 'one audit.read for the page');
    assert.equal(reads.at(-1)!.actor_id, adminId);
    // Tenants are named by slug: an unknown slug (a tenant id among them) is an empty page, not a slug at all a 400.
    assert.deepEqual((await harness.request({ method: 'GET', url: '/api/v1/audit?tenant=no-such-tenant', token: adminToken })).json().entries, []);
    assert.deepEqual((await harness.request({ method: 'GET', url: `/api/v1/audit?tenant=${tenantId}`, token: adminToken })).json().entries, []);
    assert.equal((await harness.request({ method: 'GET', url: '/api/v1/audit?tenant=Not_A_Slug', token: adminToken })).statusCode, 400);
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
