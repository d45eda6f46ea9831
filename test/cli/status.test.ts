import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startChildServe } from '../helpers/child-serve.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { createPostgresDatabase, dropPostgresDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { freePort } from '../helpers/ports.js';
import { redisUnavailableReason, TEST_REDIS_URL } from '../helpers/redis.js';
import { serviceGate } from '../helpers/services.js';
import type { GatewayStatus } from '../../src/runtime/status.js';

/** Issue 15 item 3: `ciphergate status`, a table or `--json`, beside a running server or without one. */
after(stopChildren);

describe('ciphergate status on the embedded database', { timeout: 600_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-status-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  test('without a server: everything but the listener, exit 1; beside the server: answered by it, exit 0', async () => {
    const port = await freePort();
    const env = { CIPHERGATE_DATA_DIR: join(root, 'data'), CIPHERGATE_PORT: String(port), CIPHERGATE_PUBLIC_URL: 'https://gate.example.test', CIPHERGATE_LOG_LEVEL: 'warn' };
    const stopped = await runCliProcess(['status'], { env, cwd: root, timeoutMs: 300_000 });
    assert.equal(stopped.code, 1, stopped.stderr);
    assert.match(stopped.stdout, /^version +\d+\.\d+\.\d+$/m);
    assert.match(stopped.stdout, /^store +pglite \(/m);
    assert.match(stopped.stdout, /^migrations +(\d+) of \1 applied/m);
    assert.match(stopped.stdout, /^KEK +reachable$/m);
    assert.match(stopped.stdout, new RegExp(`^listening +http://127.0.0.1:${port}: NOT ANSWERING$`, 'm'));
    assert.match(stopped.stdout, /^public URL +https:\/\/gate.example.test$/m);

    const server = await startChildServe({ cwd: root, port, args: ['--no-workers'], env });
    try {
      const beside = await runCliProcess(['status', '--json'], { env, cwd: root, timeoutMs: 300_000 });
      assert.equal(beside.code, 0, beside.stderr);
      const status = JSON.parse(beside.stdout) as GatewayStatus;
      assert.equal(status.healthy, true);
      assert.equal(status.store.kind, 'pglite');
      assert.equal(status.keys.provider, 'local');
      assert.equal(status.keys.kekReachable, true);
      assert.ok(status.keys.signingKey?.kid, 'the server made its signing key');
      assert.ok(status.keys.dataKeys.some((key) => key.scope === 'system' && key.currentVersion === 1));
      assert.deepEqual(status.redis, { configured: false });
      assert.equal(status.queue.dead, 0);
      assert.deepEqual(status.server, { publicUrl: 'https://gate.example.test', listen: `http://127.0.0.1:${port}`, listening: true });
      const table = await runCliProcess(['status'], { env, cwd: root, timeoutMs: 300_000 });
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, new RegExp(`^listening +http://127.0.0.1:${port}: answering$`, 'm'));
    } finally {
      await server.stop();
    }
  });
});

describe('ciphergate status on PostgreSQL with Redis', { timeout: 600_000 }, async () => {
  const postgres = serviceGate('PostgreSQL', await postgresUnavailableReason());
  const redis = serviceGate('Redis', await redisUnavailableReason());
  const skip = postgres.skip || redis.skip;
  const name = `cg_status_${randomBytes(4).toString('hex')}`;
  after(() => dropPostgresDatabase(name).catch(() => undefined));

  test('Redis reachable and unreachable; neither the database nor the Redis password is printed', { skip }, async () => {
    const url = await createPostgresDatabase(name);
    const cwd = mkdtempSync(join(tmpdir(), 'cg-status-pg-'));
    const redisPassword = `pw-${randomBytes(6).toString('hex')}`;
    const unreachableRedis = `redis://:${redisPassword}@127.0.0.1:${await freePort()}/0`;
    const env = { CIPHERGATE_DATABASE_URL: url, CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'), CIPHERGATE_LOG_LEVEL: 'warn' };
    const reachable = await runCliProcess(['status', '--json'], { env: { ...env, CIPHERGATE_REDIS_URL: TEST_REDIS_URL }, cwd, timeoutMs: 120_000 });
    const status = JSON.parse(reachable.stdout) as GatewayStatus;
    assert.equal(status.store.kind, 'postgres');
    assert.match(status.store.location, new RegExp(`^PostgreSQL at .*/${name}$`));
    assert.deepEqual(status.redis, { configured: true, location: status.redis.configured ? status.redis.location : '', reachable: true });
    const unreachable = await runCliProcess(['status'], { env: { ...env, CIPHERGATE_REDIS_URL: unreachableRedis }, cwd, timeoutMs: 120_000 });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stdout, /^redis +.*: UNREACHABLE$/m);
    for (const output of [reachable.stdout, reachable.stderr, unreachable.stdout, unreachable.stderr]) {
      assert.ok(!output.includes(redisPassword), 'the Redis password was printed');
      assert.ok(!output.includes(`:${new URL(url).password}@`), 'the database URL with its password was printed');
    }
    rmSync(cwd, { recursive: true, force: true });
  });
});
