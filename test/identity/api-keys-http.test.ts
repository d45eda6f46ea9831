import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * API keys through HTTP: shown once and stored as SHA-256, used as bearer tokens within
 * their tenant and scopes, refused once expired or revoked (on the very next request).
 */

const state = (h: IdentityHarness) => tablesState(h, ['api_keys', 'sessions']);

await describeEachBackend('API keys over HTTP', (backend) => {
  let h: IdentityHarness;
  let adminToken: string;
  let adminId: string;
  const tenant = { a: { id: '', slug: '' }, b: { id: '', slug: '' } };

  before(async () => {
    h = await openIdentityHarness(backend);
    const admin = await h.createUser({ role: 'admin' });
    adminId = admin.id;
    adminToken = (await h.signIn(admin)).accessToken;
    tenant.a.slug = `a-${randomUUID().slice(0, 8)}`;
    tenant.b.slug = `b-${randomUUID().slice(0, 8)}`;
    tenant.a.id = await h.createTenant(tenant.a.slug);
    tenant.b.id = await h.createTenant(tenant.b.slug);
  });
  after(async () => h.close());

  async function createKey(body: Record<string, unknown>): Promise<{ id: string; key: string; response: LightMyRequestResponse }> {
    const response = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: adminToken, body: { name: 'nightly export', ...body } });
    assert.equal(response.statusCode, 201, response.body);
    return { id: response.json().apiKey.id, key: response.json().key, response };
  }

  test('POST /api-keys shows the cgk_ key once; only its SHA-256 is stored; GET never shows it', async () => {
    const mark = await auditMark(h);
    const { id, key, response } = await createKey({ tenantId: tenant.a.id, scopes: ['tenants:read', 'conversations:read'] });
    assert.match(key, /^cgk_[A-Za-z0-9_-]{43}$/);
    assert.equal(response.headers['cache-control'], 'no-store');
    const view = response.json().apiKey;
    assert.equal(view.tenantId, tenant.a.id);
    assert.deepEqual(view.scopes, ['conversations:read', 'tenants:read']);
    assert.equal(view.lastUsedAt, null);
    assert.equal(view.revokedAt, null);
    assert.ok(key.startsWith(view.hint) && view.hint.length < 16, `hint ${view.hint} is a short prefix`);

    const [row] = await queryRows<Record<string, unknown>>(h.db, sql`select * from api_keys where id = ${id}`);
    assert.equal(row!.key_hash, createHash('sha256').update(key).digest('hex'));
    const secretPart = key.slice(view.hint.length);
    assert.ok(!JSON.stringify(row).includes(secretPart), 'the key is not stored in clear');
    assert.ok(!JSON.stringify(await queryRows(h.db, sql`select * from audit_events`)).includes(secretPart), 'nor audited');

    const listed = await h.request({ method: 'GET', url: '/api/v1/api-keys', token: adminToken });
    assert.equal(listed.statusCode, 200);
    assert.ok(!listed.body.includes(secretPart), 'the list never carries the key');
    const entry = listed.json().apiKeys.find((candidate: { id: string }) => candidate.id === id);
    assert.deepEqual(Object.keys(entry).sort(), ['createdAt', 'expiresAt', 'hint', 'id', 'lastUsedAt', 'name', 'revokedAt', 'scopes', 'tenantId']);

    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'api-key.create');
    assert.ok(event, 'api-key.create audited');
    assert.equal(event.outcome, 'success');
    assert.equal(event.actor_id, adminId);
    assert.equal(event.target_id, id);
    assert.deepEqual(String(event.details.scopes).split(' ').sort(), ['conversations:read', 'tenants:read']);
  });

  test('a key authenticates as Bearer, sees only its tenant, and records its last use', async () => {
    const { id, key } = await createKey({ tenantId: tenant.a.id, scopes: ['tenants:read'] });
    const listed = await h.request({ method: 'GET', url: '/api/v1/tenants', token: key });
    assert.equal(listed.statusCode, 200, listed.body);
    assert.deepEqual(listed.json().tenants.map((t: { id: string }) => t.id), [tenant.a.id]);
    assert.equal((await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.a.slug}`, token: key })).statusCode, 200);
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.b.slug}`, token: key }), 404, 'not-found');

    const [row] = await queryRows<{ last_used_at: Date | string | null }>(h.db, sql`select last_used_at from api_keys where id = ${id}`);
    assert.notEqual(row!.last_used_at, null);
    assert.ok(Math.abs(new Date(row!.last_used_at!).getTime() - Date.now()) < 60_000);
    const entry = (await h.request({ method: 'GET', url: '/api/v1/api-keys', token: adminToken })).json().apiKeys.find((candidate: { id: string }) => candidate.id === id);
    assert.notEqual(entry.lastUsedAt, null);

    // Keys never manage identities or keys, whatever their scopes.
    for (const [method, url] of [
      ['GET', '/api/v1/users'],
      ['GET', '/api/v1/api-keys'],
      ['POST', '/api/v1/api-keys'],
    ] as const) {
      const body = method === 'POST' ? { name: 'child', tenantId: tenant.a.id, scopes: ['tenants:read'] } : undefined;
      assertProblem(await h.request({ method, url, token: key, ...(body ? { body } : {}) }), 403, 'forbidden');
    }
  });

  test('a key holding only metrics:read gets 403 on /tenants, audited as access.denied', async () => {
    const { id, key } = await createKey({ tenantId: null, scopes: ['metrics:read'] });
    const mark = await auditMark(h);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: key }), 403, 'forbidden');
    const events = await auditSince(h, mark);
    assert.equal(events.length, 1, JSON.stringify(events));
    assert.equal(events[0]!.action, 'access.denied');
    assert.equal(events[0]!.outcome, 'denied');
    assert.equal(events[0]!.actor_type, 'api_key');
    assert.equal(events[0]!.actor_id, id);
    assert.equal(events[0]!.details.permission, 'tenants:read');
  });

  test('an expired key is refused with 401', async () => {
    const { id, key } = await createKey({ tenantId: tenant.a.id, scopes: ['tenants:read'], expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: key })).statusCode, 200);
    await h.db.execute(sql`update api_keys set expires_at = now() - interval '1 second' where id = ${id}`);
    const refused = assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: key }), 401, 'unauthenticated');
    assert.ok(!JSON.stringify(refused).includes(key));
  });

  test('DELETE revokes a key at once; the next request is 401', async () => {
    const { id, key } = await createKey({ tenantId: tenant.a.id, scopes: ['tenants:read'] });
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: key })).statusCode, 200);
    const mark = await auditMark(h);
    const deleted = await h.request({ method: 'DELETE', url: `/api/v1/api-keys/${id}`, token: adminToken });
    assert.equal(deleted.statusCode, 204, deleted.body);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: key }), 401, 'unauthenticated');
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'api-key.revoke');
    assert.ok(event, 'api-key.revoke audited');
    assert.equal(event.actor_id, adminId);
    assert.equal(event.target_id, id);
    const entry = (await h.request({ method: 'GET', url: '/api/v1/api-keys', token: adminToken })).json().apiKeys.find((candidate: { id: string }) => candidate.id === id);
    assert.notEqual(entry.revokedAt, null, 'listed as revoked');

    const before = await state(h);
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/api-keys/${id}`, token: adminToken }), 404, 'not-found');
    assertProblem(await h.request({ method: 'DELETE', url: `/api/v1/api-keys/${randomUUID()}`, token: adminToken }), 404, 'not-found');
    assert.equal(await state(h), before);
  });

  test('bad key requests get 400 and create nothing', async () => {
    const cases: Array<Record<string, unknown>> = [
      { tenantId: tenant.a.id, scopes: ['tenants:write'] },
      { tenantId: tenant.a.id, scopes: ['users:write'] },
      { tenantId: tenant.a.id, scopes: ['everything'] },
      { tenantId: tenant.a.id, scopes: [] },
      { tenantId: null, scopes: ['tenants:read'] },
      { tenantId: tenant.a.id, scopes: ['tenants:read'], expiresAt: new Date(Date.now() - 60_000).toISOString() },
      { tenantId: randomUUID(), scopes: ['tenants:read'] },
      { tenantId: tenant.a.id, scopes: ['tenants:read'], owner: 'me' },
    ];
    for (const body of cases) {
      const before = await state(h);
      const mark = await auditMark(h);
      const refused = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: adminToken, body: { name: 'bad', ...body } });
      assertProblem(refused, 400, 'validation-failed');
      assert.equal(await state(h), before, JSON.stringify(body));
      assert.deepEqual((await auditSince(h, mark)).filter((event) => event.action === 'api-key.create'), []);
    }
  });

  test('tenant confinement: staff keys stay in the tenant they name; confined callers make no keys for any tenant', async () => {
    // Managers, like admins, are staff and belong to no one tenant: they may make a key for
    // any tenant, and the key is then confined to that tenant alone.
    const manager = await h.createUser({ role: 'manager' });
    const managerToken = (await h.signIn(manager)).accessToken;
    const made = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: managerToken, body: { name: 'a only', tenantId: tenant.a.id, scopes: ['tenants:read'] } });
    assert.equal(made.statusCode, 201, made.body);
    const key = made.json().key as string;
    assert.equal((await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.a.slug}`, token: key })).statusCode, 200);
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.b.slug}`, token: key }), 404, 'not-found');

    // A client user belongs to tenant A: no key for B, nor for A (the matrix gives clients no
    // api-keys:write). A key of tenant A makes no keys at all. An unknown tenant is 400.
    const client = await h.createUser({ role: 'client', tenantId: tenant.a.id });
    const clientToken = (await h.signIn(client)).accessToken;
    const attempts: Array<[string, string | null, number]> = [
      [clientToken, tenant.b.id, 403],
      [clientToken, tenant.a.id, 403],
      [key, tenant.b.id, 403],
      [key, tenant.a.id, 403],
      [managerToken, randomUUID(), 400],
    ];
    for (const [token, tenantId, status] of attempts) {
      const before = await state(h);
      const refused = await h.request({ method: 'POST', url: '/api/v1/api-keys', token, body: { name: 'elsewhere', tenantId, scopes: ['tenants:read'] } });
      assertProblem(refused, status, status === 403 ? 'forbidden' : 'validation-failed');
      assert.equal(await state(h), before);
    }
  });
});
