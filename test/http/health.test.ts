import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { buildApp, type App } from '../../src/http/app.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';
import { captureLogs } from '../helpers/log-capture.js';

const config = { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 };

await describeEachBackend('health and readiness', (backend) => {
  let testDb: TestDatabase;
  let app: App;
  const logs = captureLogs();

  before(async () => {
    testDb = await createTestDatabase(backend);
    app = await buildApp({ config, logger: logs.logger, readinessChecks: [{ name: 'database', check: () => testDb.database.ping() }] });
  });
  after(async () => {
    await app.close();
    await testDb.cleanup().catch(() => undefined);
  });

  test('/healthz and /readyz answer 200 while the database is usable', async () => {
    const health = await app.inject({ url: '/healthz' });
    assert.equal(health.statusCode, 200);
    assert.deepEqual(health.json(), { status: 'ok' });
    const ready = await app.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: 'ready', checks: { database: 'ok' } });
  });

  test('/readyz turns 503 naming the database once it is unusable; /healthz stays 200', async () => {
    await testDb.database.close();
    const ready = await app.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    assert.match(String(ready.headers['content-type']), /^application\/problem\+json/);
    const body = ready.json();
    assert.equal(body.type, 'not-ready');
    assert.equal(body.detail, 'database is not usable');
    assert.deepEqual(body.checks, { database: 'failed' });
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    assert.ok(logs.lines().some((line) => line.check === 'database' && line.msg === 'readiness check failed'));
  });
});

test('a readiness check that hangs fails after its timeout instead of hanging the probe', async () => {
  const logs = captureLogs();
  const app = await buildApp({
    config,
    logger: logs.logger,
    readinessChecks: [
      { name: 'database', check: async () => undefined },
      { name: 'keys', check: () => new Promise(() => undefined) },
    ],
  });
  const started = Date.now();
  const ready = await app.inject({ url: '/readyz' });
  assert.ok(Date.now() - started < 4_000);
  assert.equal(ready.statusCode, 503);
  assert.deepEqual(ready.json().checks, { database: 'ok', keys: 'failed' });
  assert.equal(ready.json().detail, 'keys is not usable');
  await app.close();
});
