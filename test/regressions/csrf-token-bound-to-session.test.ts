import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { ACCESS_COOKIE, CSRF_COOKIE } from '../../src/http/guard.js';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness, type TestUser } from '../helpers/identity.js';
import { totpCode } from '../helpers/totp-codes.js';
import { assertProblem } from '../helpers/problems.js';

// A CSRF token from GET /api/v1/csrf was tied only to the CSRF cookie's secret, which outlives
// sessions: a token obtained in one session (another user of the same browser, or before a
// logout) passed in any later session of that browser. A token is now bound to the session
// it was issued in, and GET /api/v1/csrf needs that session.
await describeEachBackend('regression: a CSRF token is bound to its session', (backend) => {
  let h: IdentityHarness;
  before(async () => {
    h = await openIdentityHarness(backend);
  });
  after(() => h?.close());

  const cookieOf = (response: LightMyRequestResponse, name: string) => response.cookies.find((cookie) => cookie.name === name)?.value;

  /** A browser-mode sign-in: password + TOTP the first time, then password + device token. */
  async function cookieSession(user: TestUser, deviceToken?: string): Promise<{ access: string; deviceToken: string }> {
    const login = await h.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: user.email, password: user.password, tokenDelivery: 'cookie', ...(deviceToken ? { deviceToken } : {}) } });
    if (deviceToken) {
      assert.equal(login.statusCode, 200, login.body);
      return { access: cookieOf(login, ACCESS_COOKIE)!, deviceToken };
    }
    const second = await h.request({
      method: 'POST',
      url: '/api/v1/auth/second-factor',
      body: { challengeToken: login.json().challengeToken, method: 'totp', code: totpCode(user.totpSecret!), tokenDelivery: 'cookie' },
    });
    assert.equal(second.statusCode, 200, second.body);
    return { access: cookieOf(second, ACCESS_COOKIE)!, deviceToken: second.json().deviceToken };
  }

  /** GET /api/v1/csrf in a session, sending the browser's CSRF cookie when it has one. */
  async function csrfToken(access: string, csrfCookie?: string): Promise<{ token: string; cookie: string }> {
    const response = await h.request({ method: 'GET', url: '/api/v1/csrf', cookies: { [ACCESS_COOKIE]: access, ...(csrfCookie ? { [CSRF_COOKIE]: csrfCookie } : {}) } });
    assert.equal(response.statusCode, 200, response.body);
    return { token: response.json().token, cookie: cookieOf(response, CSRF_COOKIE) ?? csrfCookie! };
  }

  /** A state change that ends every session of the caller when the CSRF check lets it through. */
  const logoutAll = (access: string, csrf: { token: string; cookie: string }) =>
    h.request({ method: 'POST', url: '/api/v1/auth/logout-all', headers: { 'x-csrf-token': csrf.token }, cookies: { [ACCESS_COOKIE]: access, [CSRF_COOKIE]: csrf.cookie } });
  const liveSessions = async (userId: string) => (await queryRows<{ n: number }>(h.db, sql`select count(*)::int as n from sessions where user_id = ${userId} and revoked_at is null`))[0]!.n;

  test("a token is refused in another session of the same user, in another user's session, and after a logout", async () => {
    const alice = await h.createUser({ role: 'employee' });
    const bob = await h.createUser({ role: 'employee' });
    const first = await cookieSession(alice);
    const issued = await csrfToken(first.access);

    // Another session of the same user, in the same browser (same CSRF cookie).
    const second = await cookieSession(alice, first.deviceToken);
    assertProblem(await logoutAll(second.access, issued), 403, 'csrf-token-invalid');
    // Another user's session in the same browser.
    const bobs = await cookieSession(bob);
    assertProblem(await logoutAll(bobs.access, issued), 403, 'csrf-token-invalid');
    assert.equal(await liveSessions(alice.id), 2, "no session of alice's ended");
    assert.equal(await liveSessions(bob.id), 1, "bob's session did not end");

    // After a logout of the first session, the next sign-in in this browser cannot use its token.
    const logout = await h.request({ method: 'POST', url: '/api/v1/auth/logout', headers: { 'x-csrf-token': issued.token }, cookies: { [ACCESS_COOKIE]: first.access, [CSRF_COOKIE]: issued.cookie } });
    assert.equal(logout.statusCode, 204, logout.body);
    const afterLogout = await cookieSession(alice, first.deviceToken);
    assertProblem(await logoutAll(afterLogout.access, issued), 403, 'csrf-token-invalid');
    assert.equal((await logoutAll(first.access, issued)).statusCode, 401, 'the ended session itself is refused');
    assert.equal(await liveSessions(alice.id), 2);

    // A token issued in the new session, with the same CSRF cookie, works in it.
    const own = await csrfToken(afterLogout.access, issued.cookie);
    const done = await logoutAll(afterLogout.access, own);
    assert.equal(done.statusCode, 200, done.body);
    assert.equal(await liveSessions(alice.id), 0);
  });

  test('GET /api/v1/csrf needs a live session: without one, or with an ended one, → 401', async () => {
    const anonymous = await h.request({ method: 'GET', url: '/api/v1/csrf' });
    assertProblem(anonymous, 401, 'unauthenticated');
    assert.equal(cookieOf(anonymous, CSRF_COOKIE), undefined, 'no CSRF cookie for nobody');

    const carol = await h.createUser({ role: 'employee' });
    const session = await cookieSession(carol);
    const csrf = await csrfToken(session.access);
    assert.equal((await logoutAll(session.access, csrf)).statusCode, 200);
    assertProblem(await h.request({ method: 'GET', url: '/api/v1/csrf', cookies: { [ACCESS_COOKIE]: session.access } }), 401, 'unauthenticated');
  });

  test('a tampered token, or one spliced from two sessions, is refused', async () => {
    const dave = await h.createUser({ role: 'employee' });
    const one = await cookieSession(dave);
    const mine = await csrfToken(one.access);
    const other = await cookieSession(dave, one.deviceToken);
    const theirs = await csrfToken(other.access, mine.cookie);
    // The token's first part is the MAC of the session; swapping it in does not move a token.
    const [, ...rest] = mine.token.split('-');
    const spliced = [theirs.token.split('-')[0], ...rest].join('-');
    for (const token of [spliced, `${mine.token}x`, mine.token.slice(0, -1)]) {
      assertProblem(await logoutAll(other.access, { token, cookie: mine.cookie }), 403, 'csrf-token-invalid');
    }
    assert.equal(await liveSessions(dave.id), 2);
  });
});
