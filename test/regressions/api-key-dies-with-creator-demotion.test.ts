import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'drizzle-orm';
import { IdentityError as AuthError } from '../../src/identity/errors.js';
import { MachineAuth } from '../../src/identity/machines/machine-auth.js';
import type { Principal } from '../../src/identity/principal.js';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince, type AuditRow } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { sessionIdOf } from '../helpers/token-claims.js';
import { describeInstancesOverRedis } from '../helpers/instances-over-redis.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Guards issue 13 item 2: an API key (and so an OAuth client, whose id and secret are the
 * key's) belongs to the user who made it and dies, at once, when that user loses the
 * permission that allowed it: a demotion that takes away `api-keys:write` or one of the key's
 * scopes, disabling, deletion. The key as a bearer token and every client-credentials token
 * issued from it are refused on the very next request, on every instance (Redis revocation
 * bus), and each revocation is an `api-key.revoke` audit event. A promotion, or a change that
 * keeps the needed permissions, revokes nothing; keys made with the CLI have no creator and
 * are never touched. Keys that outlived their creator's privileges before the fix are revoked
 * when `serve` starts. Before the fix a manager demoted to `user` kept reading the tenant's
 * messages with the keys they had made.
 */

interface MadeKey {
  id: string;
  key: string;
}

const origin = { ip: '127.0.0.1', userAgent: 'test' };

function form(h: IdentityHarness, url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return h.app.inject({ method: 'POST', url, remoteAddress: '127.0.0.1', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: new URLSearchParams(fields).toString() });
}

async function makeKey(h: IdentityHarness, token: string, body: { tenantId: string | null; scopes: string[] }): Promise<MadeKey> {
  const response = await h.request({ method: 'POST', url: '/api/v1/api-keys', token, body: { name: 'sync job', ...body } });
  assert.equal(response.statusCode, 201, response.body);
  return { id: response.json().apiKey.id, key: response.json().key };
}

/** A client-credentials access token of `key` (the OAuth client is the key). */
async function machineToken(h: IdentityHarness, key: MadeKey, scope: string): Promise<string> {
  const basic = `Basic ${Buffer.from(`${key.id}:${key.key}`).toString('base64')}`;
  const response = await form(h, '/oauth/token', { grant_type: 'client_credentials', scope }, { authorization: basic });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().access_token;
}

/** The status of a read with `credential` that `scope` allows. */
async function readWith(h: IdentityHarness, credential: string, scope: 'tenants:read' | 'metrics:read'): Promise<number> {
  const url = scope === 'metrics:read' ? '/metrics' : '/api/v1/tenants';
  return (await h.request({ method: 'GET', url, token: credential })).statusCode;
}

async function revokedAt(h: IdentityHarness, keyId: string): Promise<Date | string | null> {
  const [row] = await queryRows<{ revoked_at: Date | string | null }>(h.db, sql`select revoked_at from api_keys where id = ${keyId}`);
  return row!.revoked_at;
}

async function liveKeySessions(h: IdentityHarness, keyIds: string[]): Promise<number> {
  let live = 0;
  for (const id of keyIds) live += (await queryRows(h.db, sql`select id from sessions where api_key_id = ${id} and revoked_at is null`)).length;
  return live;
}

function keyRevocations(events: AuditRow[]): AuditRow[] {
  return events.filter((event) => event.action === 'api-key.revoke');
}

await describeEachBackend('regression: API keys die with their creator\'s privileges', (backend) => {
  let h: IdentityHarness;
  let adminToken: string;
  let adminId: string;
  let tenantId: string;
  let cliKey: MadeKey;

  before(async () => {
    h = await openIdentityHarness(backend);
    const admin = await h.createUser({ role: 'admin' });
    adminId = admin.id;
    adminToken = (await h.signIn(admin)).accessToken;
    tenantId = await h.createTenant();
    // The operator's key: no creator, so no change to any user may touch it.
    const made = await new MachineAuth(h.identity).createKey(null, { name: 'operator export', tenantId, scopes: ['tenants:read'] });
    cliKey = { id: made.record.id, key: made.key };
  });
  after(() => h?.close());

  const patchUser = async (userId: string, body: Record<string, unknown>) => {
    const response = await h.request({ method: 'PATCH', url: `/api/v1/users/${userId}`, token: adminToken, body });
    assert.equal(response.statusCode, 200, response.body);
  };

  test('a manager demoted to user: every key they made and its client-credentials tokens stop at once, each revocation audited', async () => {
    const manager = await h.createUser({ role: 'manager' });
    const managerToken = (await h.signIn(manager)).accessToken;
    const reader = await makeKey(h, managerToken, { tenantId, scopes: ['tenants:read', 'conversations:read'] });
    const sender = await makeKey(h, managerToken, { tenantId, scopes: ['tenants:read', 'messages:send'] });
    const credentials = [reader.key, sender.key, await machineToken(h, reader, 'tenants:read conversations:read'), await machineToken(h, sender, 'tenants:read')];
    for (const credential of credentials) assert.equal(await readWith(h, credential, 'tenants:read'), 200, 'works before');

    const mark = await auditMark(h);
    await patchUser(manager.id, { role: 'user' });

    // The very next request, not when a token expires.
    for (const credential of credentials) assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: credential }), 401, 'unauthenticated');
    for (const key of [reader, sender]) assert.notEqual(await revokedAt(h, key.id), null, 'the key is revoked, and kept for the record');
    assert.equal(await liveKeySessions(h, [reader.id, sender.id]), 0, 'no client-credentials session survives');

    const revocations = keyRevocations(await auditSince(h, mark));
    assert.deepEqual(revocations.map((event) => event.target_id).sort(), [reader.id, sender.id].sort());
    for (const event of revocations) {
      assert.equal(event.outcome, 'success');
      assert.equal(event.actor_id, adminId, 'the revocation is the admin\'s act');
      assert.equal(event.details.reason, 'creator-role-changed');
      assert.equal(event.details.creator, manager.id);
      assert.equal(event.details.endedSessions, 1);
    }
    const audit = JSON.stringify(await queryRows(h.db, sql`select * from audit_events`));
    for (const credential of credentials) assert.ok(!audit.includes(credential.slice(8)), 'no key or token in the audit trail');

    // Giving the role back brings nothing back; the operator's key never noticed.
    await patchUser(manager.id, { role: 'manager' });
    for (const key of [reader, sender]) assert.equal(await readWith(h, key.key, 'tenants:read'), 401);
    assert.equal(await readWith(h, cliKey.key, 'tenants:read'), 200);
  });

  test('an admin demoted to manager loses exactly the keys holding a scope managers lack; the promotion back revokes nothing', async () => {
    const admin = await h.createUser({ role: 'admin' });
    const token = (await h.signIn(admin)).accessToken;
    const scraper = await makeKey(h, token, { tenantId: null, scopes: ['metrics:read'] });
    const mixed = await makeKey(h, token, { tenantId, scopes: ['tenants:read', 'metrics:read'] });
    const reader = await makeKey(h, token, { tenantId, scopes: ['tenants:read', 'conversations:read'] });
    const readerToken = await machineToken(h, reader, 'tenants:read');
    const scraperToken = await machineToken(h, scraper, 'metrics:read');
    assert.equal(await readWith(h, scraper.key, 'metrics:read'), 200, 'works before');

    const mark = await auditMark(h);
    await patchUser(admin.id, { role: 'manager' });
    assert.equal(await readWith(h, scraper.key, 'metrics:read'), 401);
    assert.equal(await readWith(h, scraperToken, 'metrics:read'), 401);
    assert.equal(await readWith(h, mixed.key, 'tenants:read'), 401, 'one scope beyond the role is enough');
    assert.equal(await readWith(h, reader.key, 'tenants:read'), 200, 'a manager may hold this key: it stays');
    assert.equal(await readWith(h, readerToken, 'tenants:read'), 200, 'and so do its tokens');
    const revocations = keyRevocations(await auditSince(h, mark));
    assert.deepEqual(revocations.map((event) => event.target_id).sort(), [scraper.id, mixed.id].sort());
    assert.ok(revocations.every((event) => event.details.reason === 'creator-role-changed' && event.actor_id === adminId));

    const promotion = await auditMark(h);
    await patchUser(admin.id, { role: 'admin' });
    await patchUser(admin.id, { role: 'admin' });
    assert.equal(await readWith(h, reader.key, 'tenants:read'), 200, 'a promotion keeps every key');
    assert.equal(await readWith(h, readerToken, 'tenants:read'), 200);
    assert.deepEqual(keyRevocations(await auditSince(h, promotion)), []);
    assert.equal(await readWith(h, cliKey.key, 'tenants:read'), 200);
  });

  test('disabling or deleting the creator revokes their keys with one api-key.revoke event each', async () => {
    for (const [change, reason] of [
      ['disable', 'creator-disabled'],
      ['delete', 'creator-deleted'],
    ] as const) {
      const manager = await h.createUser({ role: 'manager' });
      const key = await makeKey(h, (await h.signIn(manager)).accessToken, { tenantId, scopes: ['tenants:read'] });
      const token = await machineToken(h, key, 'tenants:read');
      const mark = await auditMark(h);
      if (change === 'disable') await patchUser(manager.id, { status: 'disabled' });
      else assert.equal((await h.request({ method: 'DELETE', url: `/api/v1/users/${manager.id}`, token: adminToken })).statusCode, 204);
      for (const credential of [key.key, token]) assert.equal(await readWith(h, credential, 'tenants:read'), 401, change);
      const revocations = keyRevocations(await auditSince(h, mark));
      assert.equal(revocations.length, 1, `${change}: ${JSON.stringify(revocations)}`);
      assert.equal(revocations[0]!.target_id, key.id);
      assert.equal(revocations[0]!.actor_id, adminId);
      assert.equal(revocations[0]!.details.reason, reason);
      assert.equal(revocations[0]!.details.creator, manager.id);
    }
    assert.equal(await readWith(h, cliKey.key, 'tenants:read'), 200, 'the operator\'s key has no creator to lose');
  });

  test('a key asked for with a token from before the demotion is refused and nothing is written', async () => {
    const manager = await h.createUser({ role: 'manager', withTotp: false });
    // The caller as the guard saw it, a moment before an admin's demotion committed.
    const stale: Principal = { kind: 'user', userId: manager.id, sessionId: randomUUID(), role: 'manager', tenantId: null, via: 'bearer' };
    await patchUser(manager.id, { role: 'employee' });
    const before = await tablesState(h, ['api_keys', 'sessions']);
    await assert.rejects(
      new MachineAuth(h.identity).createKey(stale, { name: 'late', tenantId, scopes: ['conversations:read'] }, origin),
      (error: unknown) => error instanceof AuthError && error.status === 403 && error.type === 'forbidden',
    );
    assert.equal(await tablesState(h, ['api_keys', 'sessions']), before);
  });

  test('at start, serve revokes the keys that outlived their creator\'s privileges before this fix', async () => {
    const { apiKeys } = h.identity.parts;
    // Rows as the code before the fix left them: written past every check by the repository.
    const manager = await h.createUser({ role: 'manager', withTotp: false });
    const demoted = await h.createUser({ role: 'employee', withTotp: false });
    const legacy = {
      managerMetrics: (await apiKeys.create({ name: 'minted by a manager', tenantId: null, scopes: ['metrics:read'], createdBy: manager.id })).record.id,
      ofDemoted: await apiKeys.create({ name: 'made before a demotion', tenantId, scopes: ['tenants:read'], createdBy: demoted.id }),
      ofDeleted: (await apiKeys.create({ name: 'creator gone', tenantId, scopes: ['tenants:read'], createdBy: randomUUID() })).record.id,
    };
    const allowed = await apiKeys.create({ name: 'a manager may hold this', tenantId, scopes: ['tenants:read'], createdBy: manager.id });
    const token = await machineToken(h, { id: legacy.ofDemoted.record.id, key: legacy.ofDemoted.key }, 'tenants:read');

    const mark = await auditMark(h);
    const machines = new MachineAuth(h.identity);
    // Two instances starting at once revoke (and audit) each key once between them.
    const counts = await Promise.all([machines.revokeKeysBeyondTheirCreators(), machines.revokeKeysBeyondTheirCreators()]);
    assert.equal(counts[0]! + counts[1]!, 3);
    assert.equal(await machines.revokeKeysBeyondTheirCreators(), 0, 'idempotent');

    for (const credential of [legacy.ofDemoted.key, token]) assert.equal(await readWith(h, credential, 'tenants:read'), 401);
    assert.equal(await readWith(h, allowed.key, 'tenants:read'), 200, 'a key its creator may hold stays');
    assert.equal(await readWith(h, cliKey.key, 'tenants:read'), 200);
    const revocations = keyRevocations(await auditSince(h, mark));
    assert.deepEqual(
      revocations.map((event) => [event.target_id, event.actor_type, event.details.reason, event.details.via]).sort(),
      [
        [legacy.managerMetrics, 'system', 'creator-role-changed', 'start-up-check'],
        [legacy.ofDemoted.record.id, 'system', 'creator-role-changed', 'start-up-check'],
        [legacy.ofDeleted, 'system', 'creator-deleted', 'start-up-check'],
      ].sort(),
    );
    assert.equal(revocations.find((event) => event.target_id === legacy.ofDemoted.record.id)!.details.endedSessions, 1);
  });

  test('a key made while its creator is being demoted never outlives the demotion', async () => {
    const machines = new MachineAuth(h.identity);
    const adminPrincipal: Principal = { kind: 'user', userId: adminId, sessionId: randomUUID(), role: 'admin', tenantId: null, via: 'bearer' };
    for (let round = 0; round < 8; round++) {
      const manager = await h.createUser({ role: 'manager', withTotp: false });
      const stale: Principal = { kind: 'user', userId: manager.id, sessionId: randomUUID(), role: 'manager', tenantId: null, via: 'bearer' };
      const [made] = await Promise.allSettled([
        machines.createKey(stale, { name: `race ${round}`, tenantId, scopes: ['conversations:read'] }, origin),
        h.accounts.updateUser(adminPrincipal, manager.id, { role: 'employee' }, origin),
      ]);
      if (made.status === 'rejected') assert.ok(made.reason instanceof AuthError && made.reason.status === 403, String(made.reason));
      const live = await queryRows(h.db, sql`select id from api_keys where created_by = ${manager.id} and revoked_at is null`);
      assert.deepEqual(live, [], `round ${round}: a key of the demoted manager is live`);
    }
  });
});

await describeInstancesOverRedis('regression: a demotion on one instance ends the creator\'s keys on another, through Redis [postgres]', 'key-creator-demotion', (instances) => {

  test('instance B hears of the demotion through Redis and refuses the key and its token', async () => {
    const { a, b } = instances;
    const tenantId = await a.createTenant();
    const adminToken = (await a.signIn(await a.createUser({ role: 'admin' }))).accessToken;
    const manager = await a.createUser({ role: 'manager' });
    const key = await makeKey(a, (await a.signIn(manager)).accessToken, { tenantId, scopes: ['tenants:read'] });
    const token = await machineToken(a, key, 'tenants:read');
    // What reaches B's bus: B revokes nothing itself, so whatever arrives came from A through Redis.
    const heardOnB: string[] = [];
    b.identity.parts.bus.subscribe((sessionIds) => heardOnB.push(...sessionIds));

    // B holds the token's session as live in its cache; only a message can evict it early.
    assert.equal(await readWith(b, token, 'tenants:read'), 200);
    const demoted = await a.request({ method: 'PATCH', url: `/api/v1/users/${manager.id}`, token: adminToken, body: { role: 'employee' } });
    assert.equal(demoted.statusCode, 200, demoted.body);
    assert.equal(await readWith(b, key.key, 'tenants:read'), 401, 'the key itself is read from the database on every request');

    // A hang bound, not a speed check: pub/sub takes milliseconds, the wait ends when it arrives.
    const deadline = Date.now() + 10_000;
    while (!heardOnB.includes(sessionIdOf(token)) && Date.now() < deadline) await sleep(5);
    assert.ok(heardOnB.includes(sessionIdOf(token)), 'the key\'s client-credentials session was announced to instance B');
    assert.equal(await readWith(b, token, 'tenants:read'), 401);
  });
});
