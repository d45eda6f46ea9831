import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { assertProblem, assertUnauthenticated } from '../helpers/problems.js';

/**
 * Issue #13 item 4: the API limit was keyed by the SHA-256 of whatever bearer token or access
 * cookie came with the request, unverified, so a new made-up token per request was a new
 * bucket per request (110 signup emails to one address in a minute). Now only a verified
 * principal has a budget of its own; everything else, forged credentials included, spends its
 * address's budget.
 */

const LIMIT = 5;

/** A token that looks like an access JWT and verifies as nothing. */
function forgedJwt(): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'EdDSA', typ: 'JWT' })}.${part({ sub: randomBytes(8).toString('hex'), sid: randomBytes(8).toString('hex'), role: 'admin' })}.${randomBytes(64).toString('base64url')}`;
}

await describeEachBackend('API rate limit with made-up credentials', (backend) => {
  let harness: IdentityHarness;
  const freshIp = freshAddresses('10.13');

  before(async () => {
    harness = await openIdentityHarness(backend, { env: { CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: String(LIMIT) } });
  });
  after(() => harness.close());

  const login = (remoteAddress: string, headers: Record<string, string> = {}, cookies?: Record<string, string>) =>
    harness.request({ method: 'POST', url: '/api/v1/auth/login', body: { email: `nobody-${randomBytes(4).toString('hex')}@example.test`, password: 'not the password' }, remoteAddress, headers, ...(cookies ? { cookies } : {}) });

  test('a new random bearer token or cookie on each request to a public route spends the address budget', async () => {
    for (const credential of ['bearer', 'cookie'] as const) {
      const address = freshIp();
      const send = () =>
        credential === 'bearer' ? login(address, { authorization: `Bearer ${randomBytes(24).toString('base64url')}` }) : login(address, {}, { '__Host-cg_access': randomBytes(24).toString('base64url') });
      for (let attempt = 1; attempt <= LIMIT; attempt++) assert.equal((await send()).statusCode, 401, `${credential} attempt ${attempt}`);
      const refused = await send();
      assertProblem(refused, 429, 'rate-limited');
      assert.ok(Number(refused.headers['retry-after']) >= 1);
      // Without any credential: the same bucket.
      assertProblem(await login(address), 429, 'rate-limited');
    }
  });

  test('forged access tokens on a protected route are refused (401), spend the address budget, then get 429 unverified', async () => {
    const address = freshIp();
    for (let attempt = 1; attempt <= LIMIT; attempt++) {
      const token = forgedJwt();
      assertUnauthenticated(await harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token, remoteAddress: address }), token);
    }
    assertProblem(await harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token: forgedJwt(), remoteAddress: address }), 429, 'rate-limited');
    assertProblem(await harness.request({ method: 'GET', url: '/api/v1/auth/sessions', cookies: { '__Host-cg_access': forgedJwt() }, remoteAddress: address }), 429, 'rate-limited');
    assertProblem(await harness.request({ method: 'GET', url: '/api/v1/csrf', remoteAddress: address }), 429, 'rate-limited');
  });

  test('a verified principal has its own budget, the same from every address, and gives its address nothing to spend', async () => {
    const user = await harness.createUser({ role: 'employee' });
    const { accessToken } = await harness.signIn(user);
    const first = freshIp();
    const second = freshIp();
    const sessions = (token: string, remoteAddress: string) => harness.request({ method: 'GET', url: '/api/v1/auth/sessions', token, remoteAddress });
    for (let call = 1; call <= LIMIT; call++) assert.equal((await sessions(accessToken, call % 2 === 0 ? first : second)).statusCode, 200, `call ${call}`);
    assertProblem(await sessions(accessToken, freshIp()), 429, 'rate-limited');
    // The addresses those calls came from still have their whole budget for anyone else
    // (a caller without a session gets 401 from /csrf, which spends that budget like any answer).
    for (let call = 1; call <= LIMIT; call++) assert.equal((await harness.request({ method: 'GET', url: '/api/v1/csrf', remoteAddress: first })).statusCode, 401);
    assertProblem(await harness.request({ method: 'GET', url: '/api/v1/csrf', remoteAddress: first }), 429, 'rate-limited');
  });
});
