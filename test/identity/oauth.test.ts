import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'drizzle-orm';
import { SignJWT, createLocalJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { queryRows } from '../../src/store/connection.js';
import { auditMark, auditSince } from '../helpers/audit.js';
import { describeEachBackend, tablesState } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { assertProblem } from '../helpers/problems.js';

/**
 * OAuth 2.0 for machines through HTTP: the client-credentials grant (client id = API key id,
 * secret = the key) issuing short-lived JWTs that anyone can verify with our JWKS, and RFC 7009
 * revocation of access tokens, refresh tokens and API keys.
 */

const state = (h: IdentityHarness) => tablesState(h, ['api_keys', 'sessions', 'refresh_tokens']);

await describeEachBackend('OAuth client credentials and revocation', (backend) => {
  let h: IdentityHarness;
  let adminToken: string;
  const tenant = { a: { id: '', slug: '' }, b: { id: '', slug: '' } };

  before(async () => {
    h = await openIdentityHarness(backend);
    adminToken = (await h.signIn(await h.createUser({ role: 'admin' }))).accessToken;
    tenant.a.slug = `a-${randomUUID().slice(0, 8)}`;
    tenant.b.slug = `b-${randomUUID().slice(0, 8)}`;
    tenant.a.id = await h.createTenant(tenant.a.slug);
    tenant.b.id = await h.createTenant(tenant.b.slug);
  });
  after(async () => h.close());

  async function createKey(scopes: string[] = ['metrics:read', 'tenants:read']): Promise<{ id: string; key: string }> {
    const response = await h.request({ method: 'POST', url: '/api/v1/api-keys', token: adminToken, body: { name: 'reporting', tenantId: tenant.a.id, scopes } });
    assert.equal(response.statusCode, 201, response.body);
    return { id: response.json().apiKey.id, key: response.json().key };
  }

  function form(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return h.app.inject({
      method: 'POST',
      url,
      remoteAddress: '127.0.0.1',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      payload: new URLSearchParams(fields).toString(),
    });
  }

  function basic(clientId: string, secret: string): Record<string, string> {
    return { authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}` };
  }

  async function token(key: { id: string; key: string }, scope?: string): Promise<string> {
    const response = await form('/oauth/token', { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, basic(key.id, key.key));
    assert.equal(response.statusCode, 200, response.body);
    return response.json().access_token;
  }

  test('client credentials over HTTP Basic: a Bearer JWT of 600 s that verifies with the published JWKS', async () => {
    const key = await createKey();
    const mark = await auditMark(h);
    const response = await form('/oauth/token', { grant_type: 'client_credentials' }, basic(key.id, key.key));
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json();
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 600);
    assert.deepEqual(body.scope.split(' ').sort(), ['metrics:read', 'tenants:read']);

    const jwks = await h.request({ method: 'GET', url: '/.well-known/jwks.json' });
    assert.equal(jwks.statusCode, 200);
    assert.ok(!jwks.body.includes('"d"'), 'no private key material');
    const verified = await jwtVerify(body.access_token, createLocalJWKSet(jwks.json()), {
      issuer: 'https://gate.example.test',
      audience: 'https://gate.example.test/api',
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
    });
    assert.equal(verified.protectedHeader.alg, 'EdDSA');
    assert.ok(jwks.json().keys.some((jwk: { kid: string }) => jwk.kid === verified.protectedHeader.kid));
    const claims = verified.payload;
    assert.equal(claims.client_id, key.id);
    assert.equal(claims.sub, key.id);
    assert.deepEqual(String(claims.scope).split(' ').sort(), ['metrics:read', 'tenants:read']);
    assert.equal(claims.tenant, tenant.a.id);
    assert.equal(claims.role, undefined, 'a machine token carries scopes, not a role');
    assert.equal(claims.exp! - claims.iat!, 600);

    const listed = await h.request({ method: 'GET', url: '/api/v1/tenants', token: body.access_token });
    assert.equal(listed.statusCode, 200, listed.body);
    assert.deepEqual(listed.json().tenants.map((t: { id: string }) => t.id), [tenant.a.id]);
    assertProblem(await h.request({ method: 'GET', url: `/api/v1/tenants/${tenant.b.slug}`, token: body.access_token }), 404, 'not-found');

    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'oauth.token');
    assert.ok(event, 'oauth.token audited');
    assert.equal(event.outcome, 'success');
    assert.equal(event.actor_id, key.id);
  });

  test('client_secret_post works as well; credentials in both places are refused', async () => {
    const key = await createKey();
    const posted = await form('/oauth/token', { grant_type: 'client_credentials', client_id: key.id, client_secret: key.key });
    assert.equal(posted.statusCode, 200, posted.body);
    assert.equal(posted.headers['cache-control'], 'no-store');
    assert.equal(posted.json().token_type, 'Bearer');
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: posted.json().access_token })).statusCode, 200);

    const both = await form('/oauth/token', { grant_type: 'client_credentials', client_id: key.id, client_secret: key.key }, basic(key.id, key.key));
    assert.equal(assertProblem(both, 400, 'invalid-request').error, 'invalid_request');
  });

  test('a requested subset of scopes is honoured; a scope beyond the key is invalid_scope', async () => {
    const key = await createKey();
    const narrow = await form('/oauth/token', { grant_type: 'client_credentials', scope: 'metrics:read' }, basic(key.id, key.key));
    assert.equal(narrow.statusCode, 200, narrow.body);
    assert.equal(narrow.json().scope, 'metrics:read');
    const mark = await auditMark(h);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: narrow.json().access_token }), 403, 'forbidden');
    assert.ok((await auditSince(h, mark)).some((event) => event.action === 'access.denied' && event.actor_id === key.id));

    const before = await state(h);
    for (const scope of ['tenants:read messages:send', 'users:write', 'tenants:write', 'anything']) {
      const refused = assertProblem(await form('/oauth/token', { grant_type: 'client_credentials', scope }, basic(key.id, key.key)), 400, 'invalid-scope');
      assert.equal(refused.error, 'invalid_scope');
    }
    assert.equal(await state(h), before, 'no token session was started');
  });

  test('a wrong secret, an unknown client or the secret of another key is 401 invalid_client', async () => {
    const key = await createKey();
    const other = await createKey();
    // Use both once, so the last-use stamp is not what changes below.
    await token(key);
    await token(other);
    const before = await state(h);
    const wrong = `cgk_${randomBytes(32).toString('base64url')}`;
    const attempts: Array<Record<string, string>> = [
      basic(key.id, wrong),
      basic(key.id, `${key.key}x`),
      basic(randomUUID(), key.key),
      basic(key.id, other.key),
      basic(other.id, key.key),
      basic('', key.key),
      { authorization: 'Basic !!!' },
      { authorization: `Bearer ${key.key}` },
      {},
    ];
    for (const headers of attempts) {
      const mark = await auditMark(h);
      const refused = await form('/oauth/token', { grant_type: 'client_credentials' }, headers);
      const problem = assertProblem(refused, 401, 'invalid-client');
      assert.equal(problem.error, 'invalid_client');
      assert.match(String(refused.headers['www-authenticate']), /^Basic /);
      assert.ok(!refused.body.includes(key.key) && !refused.body.includes(other.key));
      const events = await auditSince(h, mark);
      assert.ok(events.every((event) => event.outcome !== 'success'), JSON.stringify(events));
    }
    const posted = await form('/oauth/token', { grant_type: 'client_credentials', client_id: key.id, client_secret: other.key });
    assert.equal(assertProblem(posted, 401, 'invalid-client').error, 'invalid_client');
    assert.equal(await state(h), before, 'no session, no key changed');

    const mark = await auditMark(h);
    await form('/oauth/token', { grant_type: 'client_credentials' }, basic(key.id, other.key));
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'oauth.token');
    assert.ok(event, 'a failed client authentication is audited');
    assert.equal(event.outcome, 'failure');
  });

  test('an unsupported grant type is 400 unsupported_grant_type', async () => {
    const key = await createKey();
    const before = await state(h);
    for (const grant of ['password', 'authorization_code', 'refresh_token', '']) {
      const refused = await form('/oauth/token', { grant_type: grant, username: 'x', password: 'y' }, basic(key.id, key.key));
      assert.equal(refused.statusCode, 400, refused.body);
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    }
    const refused = assertProblem(await form('/oauth/token', { grant_type: 'password' }, basic(key.id, key.key)), 400, 'unsupported-grant-type');
    assert.equal(refused.error, 'unsupported_grant_type');
    assert.equal(await state(h), before);
  });

  test('revoking an access token through /oauth/revoke refuses it on the next request', async () => {
    const key = await createKey();
    const accessToken = await token(key);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken })).statusCode, 200);
    const mark = await auditMark(h);
    const revoked = await form('/oauth/revoke', { token: accessToken });
    assert.equal(revoked.statusCode, 200, revoked.body);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken }), 401, 'unauthenticated');
    assert.ok((await auditSince(h, mark)).some((event) => event.action === 'auth.session.revoke' && event.outcome === 'success'));
    // The key itself is untouched: it can still get new tokens.
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: await token(key) })).statusCode, 200);
  });

  test("revoking a user's refresh token ends that session", async () => {
    const user = await h.createUser({ role: 'employee' });
    const signedIn = await h.signIn(user);
    const mark = await auditMark(h);
    assert.equal((await form('/oauth/revoke', { token: signedIn.refreshToken, token_type_hint: 'refresh_token' })).statusCode, 200);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: signedIn.accessToken }), 401, 'unauthenticated');
    assertProblem(await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: signedIn.refreshToken } }), 401, 'invalid-refresh-token');
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'auth.session.revoke');
    assert.ok(event, 'audited');
    assert.equal(event.target_id, signedIn.sessionId);
  });

  test('unknown or foreign tokens get the same 200 and change nothing', async () => {
    const { privateKey } = await generateKeyPair('EdDSA');
    const liveSessionId = (await queryRows<{ id: string }>(h.db, sql`select id from sessions where revoked_at is null limit 1`))[0]!.id;
    // Signed by someone else but naming a live session: must not end it.
    const forged = await new SignJWT({ sid: liveSessionId, role: 'admin' })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: decodeProtectedHeader(adminToken).kid! })
      .setIssuer('https://gate.example.test')
      .setAudience('https://gate.example.test/api')
      .setSubject(randomUUID())
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);
    const before = await state(h);
    for (const stray of ['nonsense', `cgk_${randomBytes(32).toString('base64url')}`, `cgr_${randomBytes(32).toString('base64url')}`, `cgs_${randomBytes(32).toString('base64url')}`, forged]) {
      const answer = await form('/oauth/revoke', { token: stray });
      assert.equal(answer.statusCode, 200, `${stray}: ${answer.body}`);
    }
    assert.equal(await state(h), before);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: adminToken })).statusCode, 200, 'the admin is still signed in');
    assertProblem(await form('/oauth/revoke', {}), 400, 'validation-failed');
  });

  test('revoking an API key through /oauth/revoke revokes it and its tokens', async () => {
    const key = await createKey();
    const accessToken = await token(key);
    const mark = await auditMark(h);
    assert.equal((await form('/oauth/revoke', { token: key.key })).statusCode, 200);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: key.key }), 401, 'unauthenticated');
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken }), 401, 'unauthenticated');
    assert.equal(assertProblem(await form('/oauth/token', { grant_type: 'client_credentials' }, basic(key.id, key.key)), 401, 'invalid-client').error, 'invalid_client');
    const [row] = await queryRows<{ revoked_at: Date | null }>(h.db, sql`select revoked_at from api_keys where id = ${key.id}`);
    assert.notEqual(row!.revoked_at, null);
    const event = (await auditSince(h, mark)).find((candidate) => candidate.action === 'api-key.revoke');
    assert.ok(event, 'api-key.revoke audited');
    assert.equal(event.target_id, key.id);
  });

  test('revoking the API key with DELETE ends its client-credentials tokens at once', async () => {
    const key = await createKey();
    const first = await token(key);
    const second = await token(key, 'tenants:read');
    for (const accessToken of [first, second]) assert.equal((await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken })).statusCode, 200);
    assert.equal((await h.request({ method: 'DELETE', url: `/api/v1/api-keys/${key.id}`, token: adminToken })).statusCode, 204);
    for (const accessToken of [first, second]) assertProblem(await h.request({ method: 'GET', url: '/api/v1/tenants', token: accessToken }), 401, 'unauthenticated');
    const live = await queryRows(h.db, sql`select id from sessions where api_key_id = ${key.id} and revoked_at is null`);
    assert.deepEqual(live, []);
  });
});
