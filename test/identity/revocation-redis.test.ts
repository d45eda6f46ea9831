import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { LIVENESS_CACHE_MS } from '../../src/identity/sessions/sessions.js';
import { describeEachBackend } from '../helpers/database.js';
import { openIdentityHarness, type IdentityHarness } from '../helpers/identity.js';
import { describeInstancesOverRedis } from '../helpers/instances-over-redis.js';

/**
 * Revocation across instances (issue 5, point 5). Each instance caches "this session is live"
 * for up to LIVENESS_CACHE_MS; with Redis a revocation on one instance evicts the entry on
 * every other within milliseconds. To show that Redis, not the cache running out, did it,
 * instance B's cache is warmed just before the revocation and B must refuse before that entry
 * could have expired. Without Redis, one instance refuses at once and another within the cache
 * age (the control that shows the Redis test measures something).
 */

/** The issue's bound is one second; a pub/sub hop takes milliseconds, so anything near 300 ms is a fault. */
const DELIVERY_BOUND_MS = 300;
const ISSUE_BOUND_MS = 1_000;

const get = (h: IdentityHarness, accessToken: string) => h.request({ method: 'GET', url: '/api/v1/auth/sessions', token: accessToken });

/** Warms `h`'s liveness cache with the session; returns when that cache entry was at the earliest written. */
async function warm(h: IdentityHarness, accessToken: string): Promise<number> {
  const startedAt = Date.now();
  const response = await get(h, accessToken);
  assert.equal(response.statusCode, 200, response.body);
  return startedAt;
}

/** Polls `h` until it refuses the token or `deadline` passes; the time of the refusal, or undefined. */
async function refusedAt(h: IdentityHarness, accessToken: string, deadline: number): Promise<number | undefined> {
  for (;;) {
    const response = await get(h, accessToken);
    if (response.statusCode === 401) {
      assert.equal(response.json().type, 'unauthenticated');
      return Date.now();
    }
    assert.equal(response.statusCode, 200, response.body);
    if (Date.now() > deadline) return undefined;
    await sleep(5);
  }
}

await describeInstancesOverRedis('revocation across two instances through Redis [postgres]', 'revocation-http', (instances) => {

  /** Revokes through `revoke` on one instance and expects `other` to refuse before its warm cache entry expires. */
  async function assertReachesOtherInstance(other: IdentityHarness, accessTokens: string[], revoke: () => Promise<void>): Promise<void> {
    const warmedAt = Math.min(...(await Promise.all(accessTokens.map((token) => warm(other, token)))));
    await revoke();
    const revokedAt = Date.now();
    for (const token of accessTokens) {
      const at = await refusedAt(other, token, revokedAt + ISSUE_BOUND_MS);
      assert.ok(at !== undefined, `the other instance still accepted the token ${ISSUE_BOUND_MS} ms after the revocation`);
      assert.ok(at - revokedAt < DELIVERY_BOUND_MS, `refused ${at - revokedAt} ms after the revocation; Redis should take milliseconds`);
      assert.ok(at < warmedAt + LIVENESS_CACHE_MS, 'refused while its cache entry was still fresh: the eviction came through Redis');
    }
  }

  test('a logout on instance A is refused on instance B well within one second', async () => {
    const { a, b } = instances;
    const user = await a.createUser({ role: 'employee' });
    const session = await a.signIn(user);
    await assertReachesOtherInstance(b, [session.accessToken], async () => {
      const logout = await a.request({ method: 'POST', url: '/api/v1/auth/logout', token: session.accessToken });
      assert.equal(logout.statusCode, 204, logout.body);
    });
    assert.equal((await get(a, session.accessToken)).statusCode, 401);
  });

  test('an admin on instance B revokes a session instance A holds as live; logout-all reaches B for every session', async () => {
    const { a, b } = instances;
    const admin = await b.createUser({ role: 'admin' });
    const adminSession = await b.signIn(admin);
    const employee = await a.createUser({ role: 'employee' });
    const onA = await a.signIn(employee);
    await assertReachesOtherInstance(a, [onA.accessToken], async () => {
      const response = await b.request({ method: 'DELETE', url: `/api/v1/auth/sessions/${onA.sessionId}`, token: adminSession.accessToken });
      assert.equal(response.statusCode, 204, response.body);
    });

    const first = await a.signIn(employee);
    const second = await b.signInOnDevice(employee, first.deviceToken, { ip: '198.51.100.50' });
    await assertReachesOtherInstance(b, [first.accessToken, second.accessToken], async () => {
      const response = await a.request({ method: 'POST', url: '/api/v1/auth/logout-all', token: first.accessToken });
      assert.deepEqual(response.json(), { revoked: 2 });
    });
  });

  test("the user-administration routes on instance B end sessions instance A holds as live: one session, all of them, a lock", async () => {
    const { a, b } = instances;
    const admin = await b.createUser({ role: 'admin' });
    const adminSession = await b.signIn(admin);
    const employee = await a.createUser({ role: 'employee' });
    const one = await a.signIn(employee);
    await assertReachesOtherInstance(a, [one.accessToken], async () => {
      const response = await b.request({ method: 'DELETE', url: `/api/v1/users/${employee.id}/sessions/${one.sessionId}`, token: adminSession.accessToken });
      assert.equal(response.statusCode, 204, response.body);
    });

    const first = await a.signIn(employee);
    const second = await a.signInOnDevice(employee, first.deviceToken, { ip: '198.51.100.51' });
    await assertReachesOtherInstance(a, [first.accessToken, second.accessToken], async () => {
      const response = await b.request({ method: 'DELETE', url: `/api/v1/users/${employee.id}/sessions`, token: adminSession.accessToken });
      // Two devices: the earlier sign-in's, whose session alone was ended, and this one's.
      assert.deepEqual(response.json(), { sessions: 2, devices: 2 });
    });

    // Another user: the helper passes TOTP at most twice per 30 s window for one.
    const colleague = await a.createUser({ role: 'employee' });
    const last = await a.signIn(colleague);
    await assertReachesOtherInstance(a, [last.accessToken], async () => {
      const response = await b.request({ method: 'POST', url: `/api/v1/users/${colleague.id}/lock`, token: adminSession.accessToken });
      assert.equal(response.statusCode, 200, response.body);
    });
  });

  test('a refresh-token reuse detected on instance A ends the session on instance B', async () => {
    const { a, b } = instances;
    const user = await a.createUser({ role: 'employee' });
    const session = await a.signIn(user);
    const rotated = await a.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
    assert.equal(rotated.statusCode, 200, rotated.body);
    const newest = rotated.json() as { accessToken: string };
    await assertReachesOtherInstance(b, [newest.accessToken, session.accessToken], async () => {
      const reuse = await a.request({ method: 'POST', url: '/api/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
      assert.equal(reuse.json().type, 'refresh-token-reused');
    });
  });
});

await describeEachBackend('revocation without Redis', (backend) => {
  let a: IdentityHarness;
  let b: IdentityHarness;
  before(async () => {
    a = await openIdentityHarness(backend);
    b = await openIdentityHarness(backend, { shareWith: a });
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  test('a single instance refuses a revoked session on the very next request', async () => {
    const user = await a.createUser({ role: 'employee' });
    const session = await a.signIn(user);
    await warm(a, session.accessToken);
    const logout = await a.request({ method: 'POST', url: '/api/v1/auth/logout', token: session.accessToken });
    assert.equal(logout.statusCode, 204);
    const next = await get(a, session.accessToken);
    assert.equal(next.statusCode, 401, next.body);
    assert.equal(next.json().type, 'unauthenticated');
  });

  test('another instance without Redis refuses once its cache entry expires (the bound Redis improves on)', async () => {
    const user = await a.createUser({ role: 'employee' });
    const session = await a.signIn(user);
    const warmedAt = await warm(b, session.accessToken);
    const logout = await a.request({ method: 'POST', url: '/api/v1/auth/logout', token: session.accessToken });
    assert.equal(logout.statusCode, 204);
    const stale = await get(b, session.accessToken);
    // Only meaningful while the entry is surely fresh; a very slow machine skips this check.
    if (Date.now() - warmedAt < LIVENESS_CACHE_MS / 2) assert.equal(stale.statusCode, 200, 'B answers from its cache: nothing told it');
    const at = await refusedAt(b, session.accessToken, warmedAt + LIVENESS_CACHE_MS + 1_000);
    assert.ok(at !== undefined, 'B refuses once its cache entry expires');
  });
});
