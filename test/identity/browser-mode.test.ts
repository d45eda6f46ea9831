import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE } from '../../src/http/guard.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { totpCode } from '../helpers/totp-codes.js';

/**
 * Browser mode: with `tokenDelivery: "cookie"` the tokens travel only in httpOnly, Secure,
 * SameSite=Strict `__Host-` cookies that script cannot read; a cookie-authenticated state
 * change needs the X-CSRF-Token from GET /api/v1/csrf, a bearer request and a cookie GET do not.
 */

interface SetCookie {
  value: string;
  /** Attribute names lower-cased, with their values (true for flags). */
  attributes: Map<string, string | true>;
}

function setCookies(response: LightMyRequestResponse): Map<string, SetCookie> {
  const header = response.headers['set-cookie'];
  const lines = header === undefined ? [] : Array.isArray(header) ? header : [header];
  const cookies = new Map<string, SetCookie>();
  for (const line of lines) {
    const [pair, ...parts] = line.split(';').map((part) => part.trim());
    const separator = pair!.indexOf('=');
    const attributes = new Map<string, string | true>();
    for (const part of parts) {
      const at = part.indexOf('=');
      if (at === -1) attributes.set(part.toLowerCase(), true);
      else attributes.set(part.slice(0, at).toLowerCase(), part.slice(at + 1));
    }
    cookies.set(pair!.slice(0, separator), { value: decodeURIComponent(pair!.slice(separator + 1)), attributes });
  }
  return cookies;
}

/** What a `__Host-` cookie must be for the browser to accept it, plus httpOnly and SameSite=Strict. */
function assertHostCookie(cookie: SetCookie | undefined, name: string): void {
  assert.ok(cookie, `${name} is set`);
  assert.ok(cookie.value.length > 0);
  assert.equal(cookie.attributes.get('httponly'), true, `${name} is HttpOnly`);
  assert.equal(cookie.attributes.get('secure'), true, `${name} is Secure`);
  assert.equal(cookie.attributes.get('samesite'), 'Strict', `${name} is SameSite=Strict`);
  assert.equal(cookie.attributes.get('path'), '/', `${name} has Path=/`);
  assert.equal(cookie.attributes.has('domain'), false, `${name} has no Domain (a __Host- rule)`);
}

await describeEachBackend('browser mode', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  /**
   * Password + TOTP with `tokenDelivery: "cookie"`. Uses the TOTP step after the one
   * `createUser` confirmed, so only for users that never go through `h.signIn`.
   */
  async function cookieSignIn(user: TestUser): Promise<{ response: LightMyRequestResponse; access: string; refresh: string; deviceToken: string }> {
    const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password, tokenDelivery: 'cookie' } });
    assert.equal(login.json().type, 'second-factor-required', login.body);
    assert.equal(login.headers['set-cookie'], undefined, 'no cookie before the second factor');
    const response = await h.request({
      method: 'POST',
      url: '/api/v1/auth/second-factor',
      body: { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!), tokenDelivery: 'cookie' },
    });
    assert.equal(response.statusCode, 200, response.body);
    const cookies = setCookies(response);
    return { response, access: cookies.get(ACCESS_COOKIE)!.value, refresh: cookies.get(REFRESH_COOKIE)!.value, deviceToken: response.json().deviceToken };
  }

  /** A CSRF token (and its cookie) for the session of `access`: tokens are bound to the session they were issued in. */
  async function csrf(access: string): Promise<{ token: string; cookie: string }> {
    const response = await h.request({ method: 'GET', url: '/api/v1/csrf', cookies: { [ACCESS_COOKIE]: access } });
    assert.equal(response.statusCode, 200, response.body);
    const cookie = setCookies(response).get(CSRF_COOKIE);
    assertHostCookie(cookie, CSRF_COOKIE);
    return { token: response.json().token, cookie: cookie!.value };
  }

  const sessionsOf = (userId: string) =>
    queryRows<{ id: string; revoked_at: Date | null }>(h.db, sql`select id, revoked_at from sessions where user_id = ${userId} order by created_at`);
  const getWithCookie = (access: string) => h.request({ method: 'GET', url: '/api/v1/auth/sessions', cookies: { [ACCESS_COOKIE]: access } });

  test('second factor with tokenDelivery "cookie" sets the __Host- cookies, and the body carries no token', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { response, access, refresh } = await cookieSignIn(user);
    const cookies = setCookies(response);
    assertHostCookie(cookies.get(ACCESS_COOKIE), ACCESS_COOKIE);
    assertHostCookie(cookies.get(REFRESH_COOKIE), REFRESH_COOKIE);
    assert.equal(cookies.get(ACCESS_COOKIE)!.attributes.get('max-age'), '600', 'the access cookie lives as long as its token');
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['deviceToken', 'expiresIn', 'tokenType'], 'the device token only: the client keeps it across sign-ins');
    assert.ok(!response.body.includes(access) && !response.body.includes(refresh), 'no token in the body');
    assert.ok(refresh.startsWith('cgr_'));
  });

  test('a login on a trusted device with tokenDelivery "cookie" sets them too', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { deviceToken } = await cookieSignIn(user);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password, deviceToken, tokenDelivery: 'cookie' } });
    assert.equal(response.statusCode, 200, response.body);
    const cookies = setCookies(response);
    assertHostCookie(cookies.get(ACCESS_COOKIE), ACCESS_COOKIE);
    assertHostCookie(cookies.get(REFRESH_COOKIE), REFRESH_COOKIE);
    assert.deepEqual(Object.keys(response.json()).sort(), ['expiresIn', 'tokenType']);
    assert.equal((await getWithCookie(cookies.get(ACCESS_COOKIE)!.value)).statusCode, 200);
  });

  test('a cookie-authenticated GET needs no CSRF token', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { access } = await cookieSignIn(user);
    const response = await getWithCookie(access);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().sessions[0].current, true);
  });

  test('a cookie-authenticated POST without a valid X-CSRF-Token → 403 csrf-token-invalid, and nothing changes', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { access } = await cookieSignIn(user);
    const first = await csrf(access);
    const second = await csrf(access);
    const attempts: Array<{ label: string; headers?: Record<string, string>; cookies: Record<string, string> }> = [
      { label: 'no header, no CSRF cookie', cookies: { [ACCESS_COOKIE]: access } },
      { label: 'CSRF cookie but no header', cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: first.cookie } },
      { label: 'header but no CSRF cookie', headers: { 'x-csrf-token': first.token }, cookies: { [ACCESS_COOKIE]: access } },
      { label: 'header from another CSRF secret', headers: { 'x-csrf-token': second.token }, cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: first.cookie } },
      { label: 'garbage header', headers: { 'x-csrf-token': 'forged' }, cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: first.cookie } },
      { label: 'the secret itself as the header', headers: { 'x-csrf-token': first.cookie }, cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: first.cookie } },
    ];
    const sessionsBefore = await sessionsOf(user.id);
    for (const attempt of attempts) {
      const response = await h.request({ method: 'POST', url: '/api/v1/auth/logout-all', ...(attempt.headers ? { headers: attempt.headers } : {}), cookies: attempt.cookies });
      assert.equal(response.statusCode, 403, `${attempt.label}: ${response.body}`);
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
      assert.equal(response.json().type, 'csrf-token-invalid', attempt.label);
      assert.equal(response.headers['set-cookie'], undefined, `${attempt.label}: cookies are not cleared`);
    }
    assert.deepEqual(await sessionsOf(user.id), sessionsBefore, 'no session ended');
    assert.equal((await getWithCookie(access)).statusCode, 200, 'the session is still live');
    const revokes = (await h.auditActions()).filter((event) => event.action === 'auth.session.revoke' && event.actor_id === user.id);
    assert.deepEqual(revokes, []);
  });

  test('with the token from GET /csrf and its cookie, the cookie POST succeeds and clears the cookies', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { access } = await cookieSignIn(user);
    const { token, cookie } = await csrf(access);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/logout-all', headers: { 'x-csrf-token': token }, cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: cookie } });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), { revoked: 1 });
    const cleared = setCookies(response);
    for (const name of [ACCESS_COOKIE, REFRESH_COOKIE]) {
      const expiry = cleared.get(name);
      assert.ok(expiry, `${name} is cleared`);
      assert.equal(expiry.value, '');
      const expires = expiry.attributes.get('expires');
      assert.ok(expiry.attributes.get('max-age') === '0' || (typeof expires === 'string' && Date.parse(expires) <= Date.now()), `${name} expires now`);
    }
    assert.ok((await sessionsOf(user.id)).every((row) => row.revoked_at !== null));
    assert.equal((await getWithCookie(access)).statusCode, 401, 'the access cookie is refused on the next request');
  });

  test('a bearer POST needs no CSRF token, even with a browser’s cookies beside it', async () => {
    const user = await h.createUser({ role: 'employee' });
    const bearer = await h.signIn(user);
    const browser = await cookieSignIn(await h.createUser({ role: 'employee' }));
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/logout', token: bearer.accessToken, cookies: { [ACCESS_COOKIE]: browser.access } });
    assert.equal(response.statusCode, 204, response.body);
    assert.equal((await h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: bearer.accessToken })).statusCode, 401);
    // The Authorization header decided who was calling; the cookie's session is untouched.
    assert.equal((await getWithCookie(browser.access)).statusCode, 200);
  });

  test('refresh through the cookie rotates both cookies; the old refresh cookie is then a reuse', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { access, refresh } = await cookieSignIn(user);
    const response = await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: {}, cookies: { [REFRESH_COOKIE]: refresh } });
    assert.equal(response.statusCode, 200, response.body);
    const cookies = setCookies(response);
    assertHostCookie(cookies.get(ACCESS_COOKIE), ACCESS_COOKIE);
    assertHostCookie(cookies.get(REFRESH_COOKIE), REFRESH_COOKIE);
    const rotated = { access: cookies.get(ACCESS_COOKIE)!.value, refresh: cookies.get(REFRESH_COOKIE)!.value };
    assert.notEqual(rotated.refresh, refresh);
    assert.notEqual(rotated.access, access);
    assert.deepEqual(Object.keys(response.json()).sort(), ['expiresIn', 'tokenType'], 'no token in the body');
    assert.equal((await getWithCookie(rotated.access)).statusCode, 200);

    const reuse = await h.request({ method: 'POST', url: '/api/v1/auth/refresh', body: {}, cookies: { [REFRESH_COOKIE]: refresh } });
    assert.equal(reuse.statusCode, 401, reuse.body);
    assert.equal(reuse.json().type, 'refresh-token-reused');
    assert.equal((await getWithCookie(rotated.access)).statusCode, 401, 'the session ended with the reuse');
  });

  test('the access cookie is read only from its own name: a bearer-less request with other cookies → 401', async () => {
    const user = await h.createUser({ role: 'employee' });
    const { access } = await cookieSignIn(user);
    const response = await h.request({ method: 'GET', url: '/api/v1/auth/sessions', cookies: { cg_access: access, [REFRESH_COOKIE]: access } });
    assert.equal(response.statusCode, 401, response.body);
    assert.equal(response.json().type, 'unauthenticated');
  });
});
