import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { buildApp, type App } from '../../src/http/app.js';
import { registerApiRateLimit, type ApiRateLimitOptions } from '../../src/http/rate-limit.js';
import { openRedis, type RedisConnection } from '../../src/store/redis.js';
import { captureLogs } from '../helpers/log-capture.js';
import { closedPortUrl, deleteKeys, redisGate, redisKeys, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { eventually } from '../helpers/eventually.js';

const config = { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 };

async function limitedApp(t: TestContext, options: ApiRateLimitOptions): Promise<App> {
  const access = { public: true as const, reason: 'test route' };
  const app = await buildApp({
    config,
    logger: captureLogs().logger,
    routes: [
      async (scope) => {
        await registerApiRateLimit(scope, options);
        scope.get('/api/items', { config: { access } }, async () => ({ items: [] }));
        scope.post('/oauth/token', { config: { access } }, async () => ({ ok: true }));
        scope.get('/elsewhere', { config: { access } }, async () => ({ ok: true }));
      },
    ],
  });
  t.after(() => app.close());
  return app;
}

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

async function statuses(app: App, count: number, request: { url?: string; method?: 'GET' | 'POST'; headers?: Record<string, string>; remoteAddress?: string } = {}) {
  const codes: number[] = [];
  for (let index = 0; index < count; index++) {
    codes.push((await app.inject({ method: request.method ?? 'GET', url: request.url ?? '/api/items', headers: request.headers ?? {}, remoteAddress: request.remoteAddress ?? '127.0.0.1' })).statusCode);
  }
  return codes;
}

describe('API rate limit [memory]', () => {
  test('past the limit a caller gets a 429 rate-limited problem with Retry-After', async (t) => {
    const app = await limitedApp(t, { perMinute: 3 });
    assert.deepEqual(await statuses(app, 3), [200, 200, 200]);
    const refused = await app.inject({ url: '/api/items' });
    assert.equal(refused.statusCode, 429);
    assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `retry-after ${refused.headers['retry-after']}`);
    const problem = refused.json();
    assert.equal(problem.type, 'rate-limited');
    assert.equal(problem.status, 429);
    assert.equal(problem.title, 'Too many requests');
    assert.equal(typeof problem.detail, 'string');
    assert.equal(problem.retryAfterSeconds, retryAfter);
    // The OAuth endpoints share the caller's budget.
    assert.equal((await app.inject({ method: 'POST', url: '/oauth/token' })).statusCode, 429);
  });

  test('only /api/ and /oauth/ are limited', async (t) => {
    const app = await limitedApp(t, { perMinute: 1 });
    assert.deepEqual(await statuses(app, 3, { url: '/elsewhere' }), [200, 200, 200]);
    assert.deepEqual(await statuses(app, 3, { url: '/healthz' }), [200, 200, 200]);
    assert.deepEqual(await statuses(app, 2), [200, 429]);
  });

  test('a credential nobody verified picks no bucket: made-up tokens and cookies spend the address budget', async (t) => {
    const app = await limitedApp(t, { perMinute: 2 });
    assert.deepEqual(await statuses(app, 1, { headers: bearer('token-a') }), [200]);
    assert.deepEqual(await statuses(app, 1, { headers: { cookie: 'theme=dark; __Host-cg_access=token-b' } }), [200]);
    assert.deepEqual(await statuses(app, 1, { headers: bearer('token-c') }), [429]);
    assert.deepEqual(await statuses(app, 1), [429], 'no token: the same address bucket');
    assert.deepEqual(await statuses(app, 2, { headers: bearer('token-d'), remoteAddress: '192.0.2.5' }), [200, 200], 'another address has its own');
  });

  test('an IPv6 /64 is one address', async (t) => {
    const app = await limitedApp(t, { perMinute: 2 });
    assert.deepEqual(await statuses(app, 1, { remoteAddress: '2001:db8:1:2::1' }), [200]);
    assert.deepEqual(await statuses(app, 1, { remoteAddress: '2001:db8:1:2:ffff::9' }), [200]);
    assert.deepEqual(await statuses(app, 1, { remoteAddress: '2001:db8:1:2::77' }), [429]);
    assert.deepEqual(await statuses(app, 1, { remoteAddress: '2001:db8:1:3::1' }), [200]);
  });

  test('as buildApp registers it (at the root), probing unknown /api/ paths spends the budget too', async (t) => {
    const access = { public: true as const, reason: 'test route' };
    const app = await buildApp({
      config: { ...config, apiRateLimitPerMinute: 2 },
      logger: captureLogs().logger,
      routes: [(scope) => void scope.get('/api/items', { config: { access } }, async () => ({ items: [] }))],
    });
    t.after(() => app.close());
    assert.deepEqual(await statuses(app, 2, { url: '/api/no-such-thing' }), [404, 404]);
    const refused = await app.inject({ url: '/api/items' });
    assert.equal(refused.statusCode, 429);
    assert.equal(refused.json().type, 'rate-limited');
    assert.deepEqual(await statuses(app, 2, { url: '/healthz' }), [200, 200]);
  });
});

describe('API rate limit with Redis unreachable', () => {
  test('requests neither fail nor wait, and the limit holds per instance', async (t) => {
    const connection = openRedis(await closedPortUrl(), captureLogs().logger, { maxReconnectDelayMs: 40 });
    t.after(() => connection.close());
    const app = await limitedApp(t, { perMinute: 2, redis: connection, keyPrefix: uniquePrefix('api-rate') });
    assert.deepEqual(await statuses(app, 3), [200, 200, 429]);
    assert.deepEqual(await statuses(app, 1, { remoteAddress: '192.0.2.6' }), [200]);
  });
});

const redis = await redisGate();

describe('API rate limit [redis]', { skip: redis.skip }, () => {
  async function connection(t: TestContext): Promise<RedisConnection> {
    const opened = openRedis(TEST_REDIS_URL, captureLogs().logger, { maxReconnectDelayMs: 40 });
    t.after(() => opened.close());
    assert.ok(await eventually(() => opened.isReady()));
    return opened;
  }

  test('two apps on one Redis share a caller’s count', async (t) => {
    const keyPrefix = uniquePrefix('api-rate');
    t.after(() => deleteKeys(keyPrefix));
    const first = await limitedApp(t, { perMinute: 3, redis: await connection(t), keyPrefix });
    const second = await limitedApp(t, { perMinute: 3, redis: await connection(t), keyPrefix });
    assert.deepEqual(await statuses(first, 2), [200, 200]);
    assert.deepEqual(await statuses(second, 1), [200]);
    const refused = await second.inject({ url: '/api/items' });
    assert.equal(refused.statusCode, 429);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal(refused.json().type, 'rate-limited');
    assert.deepEqual(await statuses(first, 1), [429]);
    assert.deepEqual(await statuses(first, 1, { remoteAddress: '192.0.2.7' }), [200]);
  });

  test('Redis keys name the address, never a token', async (t) => {
    const keyPrefix = uniquePrefix('api-rate');
    t.after(() => deleteKeys(keyPrefix));
    const app = await limitedApp(t, { perMinute: 10, redis: await connection(t), keyPrefix });
    const token = 'eyJhbGciOiJFZERTQSJ9.secret-canary-token.sig';
    await app.inject({ url: '/api/items', headers: bearer(token) });
    await app.inject({ url: '/api/items', headers: { cookie: `__Host-cg_access=${token}-cookie` } });
    await app.inject({ url: '/api/items' });

    const keys = await redisKeys(keyPrefix);
    assert.deepEqual(keys, [`${keyPrefix}:api-rate:ip:127.0.0.1`]);
  });
});
