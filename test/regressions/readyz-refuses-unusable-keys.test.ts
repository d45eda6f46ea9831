import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../src/http/app.js';
import { createTestDatabase } from '../helpers/database.js';
import { captureLogs } from '../helpers/log-capture.js';
import { openTestSealing } from '../helpers/sealing.js';

// /readyz must never say "ready" while the keys cannot seal or open: a load balancer would
// send traffic to an instance that fails every request touching sealed data.
test('/readyz answers 503 naming keys once the key provider is unusable', async () => {
  const testDb = await createTestDatabase('pglite');
  const sealing = await openTestSealing(testDb.database.db);
  const logs = captureLogs();
  const app = await buildApp({
    config: { publicUrl: 'http://127.0.0.1:8080', trustProxy: [], bodyLimitBytes: 1024 * 1024 },
    logger: logs.logger,
    readinessChecks: [
      { name: 'database', check: () => testDb.database.ping() },
      { name: 'keys', check: () => sealing.provider.check() },
    ],
  });
  try {
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
    await sealing.provider.close();
    const ready = await app.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    assert.deepEqual(ready.json().checks, { database: 'ok', keys: 'failed' });
    assert.equal(ready.json().detail, 'keys is not usable');
  } finally {
    await app.close();
    await testDb.cleanup();
  }
});
