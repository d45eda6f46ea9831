import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { API_KEY_SCOPES, ROLES, ROLE_PERMISSIONS, type Role } from '../../src/identity/permissions.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * Guards issue 13 item 5: nobody makes an API key (and so an OAuth client, whose id and
 * secret are the key's) with a scope their own role lacks. Before the fix a manager minted a
 * `metrics:read` key although the matrix denies managers metrics. Every role × scope pair of
 * the permission matrix goes through the real route; exactly the pairs the matrix allows
 * (the role holds `api-keys:write` and the scope) succeed. A refusal is 403 problem+json
 * naming the scope and writes nothing but its audit record.
 */

const state = (h: IdentityHarness) => tablesState(h, ['api_keys', 'sessions']);

/** What the matrix allows, read from the table itself rather than from the code under test. */
function matrixAllows(role: Role, scope: string): boolean {
  const held: readonly string[] = ROLE_PERMISSIONS[role];
  return held.includes('api-keys:write') && held.includes(scope);
}

await describeEachBackend('regression: an API key holds only scopes its creator\'s role holds', (backend) => {
  let h: IdentityHarness;
  let tenantId: string;
  const tokens = new Map<Role, string>();

  before(async () => {
    h = await openIdentityHarness(backend);
    tenantId = await h.createTenant();
    for (const role of ROLES) {
      const user = await h.createUser({ role, tenantId: role === 'client' ? tenantId : null });
      tokens.set(role, (await h.signIn(user)).accessToken);
    }
  });
  after(() => h?.close());

  test('every role × scope pair: exactly those the matrix allows succeed, through POST /api-keys and /oauth/token', async () => {
    assert.ok(ROLES.length >= 5 && API_KEY_SCOPES.length >= 4, 'the walk covers the whole matrix');
    const succeeded: string[] = [];
    for (const role of ROLES) {
      for (const scope of API_KEY_SCOPES) {
        const pair = `${role} × ${scope}`;
        const before = await state(h);
        const mark = await auditMark(h);
        const response = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: tokens.get(role)!, body: { name: pair, tenantId, scopes: [scope] } });
        if (response.statusCode === 201) {
          succeeded.push(pair);
          assert.deepEqual(response.json().apiKey.scopes, [scope], pair);
          // The OAuth client of that key gets that scope and no other.
          const { apiKey, key } = response.json() as { apiKey: { id: string }; key: string };
          const grant = await h.app.inject({
            method: 'POST',
            url: '/oauth/token',
            remoteAddress: '127.0.0.1',
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${apiKey.id}:${key}`).toString('base64')}` },
            payload: 'grant_type=client_credentials',
          });
          assert.equal(grant.statusCode, 200, `${pair}: ${grant.body}`);
          assert.equal(grant.json().scope, scope, pair);
          continue;
        }
        const problem = assertProblem(response, 403, 'forbidden');
        assert.equal(await state(h), before, `${pair}: a refusal writes no key and no session`);
        const events = await auditSince(h, mark);
        assert.deepEqual(events.filter((event) => event.outcome === 'success'), [], pair);
        if (ROLE_PERMISSIONS[role].includes('api-keys:write')) {
          // The route was open to this role; the scope was not.
          assert.ok(problem.detail.includes(`"${scope}"`), `${pair}: the detail names the scope: ${problem.detail}`);
          assert.deepEqual(problem.scopes, [scope], pair);
          assert.deepEqual(
            events.map((event) => [event.action, event.outcome, event.details.reason, event.details.scopes]),
            [['api-key.create', 'denied', 'scope-not-held', scope]],
            pair,
          );
        }
      }
    }
    const expected = ROLES.flatMap((role) => API_KEY_SCOPES.filter((scope) => matrixAllows(role, scope)).map((scope) => `${role} × ${scope}`));
    assert.deepEqual(succeeded, expected);
    assert.ok(!succeeded.includes('manager × metrics:read'), 'the reviewer\'s finding');
  });

  test('a scope beyond the role refuses the whole key, naming only that scope', async () => {
    const before = await state(h);
    const refused = await h.request({
      method: 'POST',
      url: '/api/v1/api-keys',
      token: tokens.get('manager')!,
      body: { name: 'dashboard', tenantId, scopes: ['conversations:read', 'metrics:read', 'tenants:read'] },
    });
    const problem = assertProblem(refused, 403, 'forbidden');
    assert.deepEqual(problem.scopes, ['metrics:read']);
    assert.match(problem.detail, /"metrics:read"/);
    assert.doesNotMatch(problem.detail, /conversations:read|tenants:read/);
    assert.equal(await state(h), before);
    // A metrics-only key needs no tenant, which does not make it the manager's to give either.
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/api-keys', token: tokens.get('manager')!, body: { name: 'scraper', tenantId: null, scopes: ['metrics:read'] } }), 403, 'forbidden');
    assert.equal(await state(h), before);
  });
});
