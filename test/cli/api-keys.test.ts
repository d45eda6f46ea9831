import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { IdentityError as AuthError } from '../../src/identity/errors.js';
import { API_KEY_SCOPES } from '../../src/identity/permissions.js';
import { queryRows } from '../../src/store/connection.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';
import { openCliWorkspace, type CliServer, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend } from '../helpers/database.js';

after(stopChildren);

const KEY_LINE = /^cgk_[A-Za-z0-9_-]{43}\n$/;

/** The client-credentials grant with the secret in the form (client_secret_post). */
function clientCredentials(server: CliServer, clientId: string, clientSecret: string): Promise<LightMyRequestResponse> {
  return server.app.inject({
    method: 'POST',
    url: '/oauth/token',
    remoteAddress: '127.0.0.1',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret }).toString(),
  });
}

describe('api-keys: usage', () => {
  // None of these reaches the database, so one data dir (never created) serves them all.
  test('unknown or missing scopes, a tenant-less data key, bad expiries and bad ids are usage errors (exit 2)', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cg-apikeys-usage-'));
    const run = (args: string[]) => runCliProcess(['api-keys', ...args], { env: {}, cwd, timeoutMs: 300_000 });
    const results = await Promise.all([
      run(['create', '--tenant', 'acme', '--scope', 'tenants:read', '--scope', 'users:write', '--name', 'n']),
      run(['create', '--tenant', 'acme', '--name', 'n']),
      run(['create', '--scope', 'conversations:read', '--name', 'n']),
      run(['create', '--tenant', 'acme', '--scope', 'tenants:read', '--name', 'n', '--expires', '2001-01-01T00:00:00Z']),
      run(['create', '--tenant', 'acme', '--scope', 'tenants:read', '--name', 'n', '--expires', '2099-02-31']),
      run(['create', '--tenant', 'acme', '--scope', 'tenants:read', '--name', 'n', '--expires', 'next tuesday']),
      run(['create', '--tenant', 'acme', '--scope', 'tenants:read', '--name', '   ']),
      run(['revoke', 'not-a-uuid']),
    ]);
    const [unknownScope, noScope, noTenant, pastExpiry, impossibleDate, prose, blankName, badId] = results;
    for (const result of results) {
      assert.equal(result.code, 2, result.stderr);
      assertOneLine(result.stderr);
      assert.equal(result.stdout, '');
    }
    assert.equal(unknownScope!.stderr, `ciphergate: --scope: unknown scope "users:write"; allowed: ${API_KEY_SCOPES.join(', ')}\n`);
    assert.equal(noScope!.stderr, `ciphergate: --scope: give at least one of ${API_KEY_SCOPES.join(', ')}\n`);
    assert.match(noTenant!.stderr, /^ciphergate: --tenant: a key with data scopes is bound to one tenant/);
    assert.equal(pastExpiry!.stderr, 'ciphergate: --expires: 2001-01-01T00:00:00.000Z is in the past\n');
    assert.match(impossibleDate!.stderr, /^ciphergate: --expires: expected an ISO 8601 date/);
    assert.match(prose!.stderr, /^ciphergate: --expires: expected an ISO 8601 date/);
    assert.equal(blankName!.stderr, 'ciphergate: --name: expected 1-100 characters\n');
    assert.equal(badId!.stderr, 'ciphergate: id: expected an API key id (a UUID), got "not-a-uuid"\n');
    rmSync(cwd, { recursive: true, force: true });
  });
});

await describeEachBackend('api-keys', (backend) => {
  let space: CliWorkspace;
  const tenantIds: Record<string, string> = {};

  before(async () => {
    space = await openCliWorkspace(backend, 'apikeys');
    for (const slug of ['acme', 'other']) {
      const put = await space.run(['tenants', 'put', slug], { stdin: JSON.stringify({ name: slug }) });
      assert.equal(put.code, 0, put.stderr);
      tenantIds[slug] = /\(([0-9a-f-]{36})\)/.exec(put.stdout)![1]!;
    }
  });
  after(() => space?.cleanup());

  test('create prints the key once and it authenticates with its tenant and scopes; list never shows it; revoke ends the key and its tokens at once', async () => {
    const expires = new Date(Date.now() + 365 * 24 * 3_600_000);
    expires.setUTCMilliseconds(0);
    const [json, text] = await space.runAll([
      ['api-keys', 'create', '--tenant', 'acme', '--scope', 'tenants:read', '--scope', 'conversations:read', '--scope', 'tenants:read', '--name', 'crm sync', '--expires', expires.toISOString(), '--json'],
      ['api-keys', 'create', '--tenant', 'other', '--scope', 'tenants:read', '--name', 'other sync'],
    ]);
    assert.equal(json!.code, 0, json!.stderr);
    const created = JSON.parse(json!.stdout) as { id: string; key: string; tenantId: string; scopes: string[]; expiresAt: string };
    assert.deepEqual(Object.keys(created).sort(), ['expiresAt', 'id', 'key', 'scopes', 'tenantId']);
    assert.match(`${created.key}\n`, KEY_LINE);
    assert.deepEqual({ tenantId: created.tenantId, scopes: created.scopes, expiresAt: created.expiresAt }, { tenantId: tenantIds.acme, scopes: ['conversations:read', 'tenants:read'], expiresAt: expires.toISOString() });
    assert.equal(text!.code, 0, text!.stderr);
    assert.match(text!.stdout, KEY_LINE, 'the key alone on stdout');
    const otherKey = text!.stdout.trim();
    const otherId = /API key ([0-9a-f-]{36}) /.exec(text!.stderr)?.[1];
    assert.ok(otherId, text!.stderr);
    assert.match(text!.stderr, /for tenant other, scopes tenants:read; the key is shown only this once\n$/);
    assert.equal(text!.stderr.includes(otherKey), false);

    let server = await space.openServer();
    let machineToken: string;
    try {
      const principal = await server.identity.authenticate(created.key, 'bearer');
      assert.deepEqual(principal, { kind: 'machine', apiKeyId: created.id, sessionId: null, scopes: ['conversations:read', 'tenants:read'], tenantId: tenantIds.acme, via: 'api-key' });
      const tenants = await server.request('GET', '/api/v1/tenants', { token: created.key });
      assert.equal(tenants.statusCode, 200, tenants.body);
      assert.deepEqual(tenants.json().tenants.map((tenant: { slug: string }) => tenant.slug), ['acme'], 'bound to its own tenant');
      const otherTenants = await server.request('GET', '/api/v1/tenants', { token: otherKey });
      assert.deepEqual(otherTenants.json().tenants.map((tenant: { slug: string }) => tenant.slug), ['other']);
      const grant = await clientCredentials(server, created.id, created.key);
      assert.equal(grant.statusCode, 200, grant.body);
      machineToken = grant.json().access_token;
      assert.equal((await server.request('GET', '/api/v1/tenants', { token: machineToken })).statusCode, 200);

      const stored = JSON.stringify(await queryRows(server.db, sql`select * from api_keys`)) + JSON.stringify(await queryRows(server.db, sql`select * from audit_events`));
      for (const key of [created.key, otherKey]) assert.equal(stored.includes(key), false, 'only a hash of the key is stored');
    } finally {
      await server.close();
    }

    const [list, listText, listOther, listUnknown] = await space.runAll([
      ['api-keys', 'list', '--json'],
      ['api-keys', 'list'],
      ['api-keys', 'list', '--tenant', 'other', '--json'],
      ['api-keys', 'list', '--tenant', 'nope'],
    ]);
    assert.equal(list!.code, 0, list!.stderr);
    const listed = JSON.parse(list!.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(listed.map((entry) => entry.id).sort(), [created.id, otherId].sort());
    const acmeEntry = listed.find((entry) => entry.id === created.id)!;
    assert.deepEqual(
      { status: acmeEntry.status, tenant: acmeEntry.tenant, scopes: acmeEntry.scopes, name: acmeEntry.name, expiresAt: acmeEntry.expiresAt, revokedAt: acmeEntry.revokedAt },
      { status: 'active', tenant: 'acme', scopes: ['conversations:read', 'tenants:read'], name: 'crm sync', expiresAt: expires.toISOString(), revokedAt: null },
    );
    assert.ok(created.key.startsWith(acmeEntry.hint as string), 'the hint is the start of the key');
    assert.equal(typeof acmeEntry.lastUsedAt, 'string', 'the use above was recorded');
    assert.equal(listText!.code, 0, listText!.stderr);
    assert.match(listText!.stdout, new RegExp(`^ID +STATUS +TENANT +SCOPES +EXPIRES +LAST USED +NAME\n`));
    assert.match(listText!.stdout, new RegExp(`${created.id} +active +acme +conversations:read,tenants:read +${expires.toISOString().replace(/\./g, '\\.')} +\\S+ +crm sync \\(cgk_`));
    assert.deepEqual((JSON.parse(listOther!.stdout) as Array<{ id: string }>).map((entry) => entry.id), [otherId]);
    assert.equal(listUnknown!.code, 1);
    assert.equal(listUnknown!.stderr, 'ciphergate: --tenant: no tenant "nope"\n');
    for (const result of [list!, listText!, listOther!]) {
      for (const key of [created.key, otherKey]) assert.equal((result.stdout + result.stderr).includes(key), false, 'list never prints a key');
    }

    const revoke = await space.run(['api-keys', 'revoke', created.id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal(revoke.stdout, `revoked API key ${created.id} (1 session ended)\n`);
    const [again, unknown, listAfter] = await space.runAll([
      ['api-keys', 'revoke', created.id],
      ['api-keys', 'revoke', randomUUID()],
      ['api-keys', 'list', '--json'],
    ]);
    assert.equal(again!.code, 1);
    assert.equal(again!.stderr, `ciphergate: API key ${created.id} is revoked already\n`);
    assert.equal(unknown!.code, 1);
    assert.match(unknown!.stderr, /^ciphergate: no API key [0-9a-f-]{36}\n$/);
    const statuses = Object.fromEntries((JSON.parse(listAfter!.stdout) as Array<{ id: string; status: string }>).map((entry) => [entry.id, entry.status]));
    assert.deepEqual(statuses, { [created.id]: 'revoked', [otherId!]: 'active' });

    server = await space.openServer();
    try {
      await assert.rejects(server.identity.authenticate(created.key, 'bearer'), (error: unknown) => error instanceof AuthError && error.type === 'unauthenticated');
      assert.equal((await server.request('GET', '/api/v1/tenants', { token: created.key })).statusCode, 401);
      assert.equal((await server.request('GET', '/api/v1/tenants', { token: machineToken })).statusCode, 401, 'the token issued from the key ended with it');
      assert.equal((await clientCredentials(server, created.id, created.key)).statusCode, 401);
      assert.equal((await server.request('GET', '/api/v1/tenants', { token: otherKey })).statusCode, 200, 'the other key is untouched');

      const audit = await queryRows<{ action: string; actor_type: string; actor_id: string | null; target_id: string; tenant_id: string | null; details: Record<string, unknown> }>(
        server.db,
        sql`select action, actor_type, actor_id, target_id, tenant_id::text, details from audit_events where action like 'api-key.%' order by seq`,
      );
      const byTarget = (id: string) => audit.filter((event) => event.target_id === id).map(({ action, actor_type, actor_id, tenant_id, details }) => ({ action, actor_type, actor_id, tenant_id, details }));
      assert.deepEqual(byTarget(created.id), [
        { action: 'api-key.create', actor_type: 'system', actor_id: null, tenant_id: tenantIds.acme, details: { scopes: 'conversations:read tenants:read', expires: expires.toISOString() } },
        { action: 'api-key.revoke', actor_type: 'system', actor_id: 'cli', tenant_id: tenantIds.acme, details: { via: 'cli', endedSessions: 1 } },
      ]);
      assert.deepEqual(byTarget(otherId!).map((event) => event.action), ['api-key.create']);
    } finally {
      await server.close();
    }
  });

  test('an unknown tenant is refused with one line (exit 1) and no key is made', async () => {
    const result = await space.run(['api-keys', 'create', '--tenant', 'nope', '--scope', 'tenants:read', '--name', 'n']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'ciphergate: --tenant: no tenant "nope"\n');
    const metrics = await space.run(['api-keys', 'create', '--scope', 'metrics:read', '--name', 'prometheus', '--json']);
    assert.equal(metrics.code, 0, metrics.stderr);
    assert.equal(JSON.parse(metrics.stdout).tenantId, null, 'a metrics-only key needs no tenant');
    const server = await space.openServer();
    try {
      const names = await queryRows<{ name: string }>(server.db, sql`select name from api_keys where name in ('n', 'prometheus')`);
      assert.deepEqual(names, [{ name: 'prometheus' }]);
    } finally {
      await server.close();
    }
  });
});
