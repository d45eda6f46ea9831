import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeRedisUrl, openRedis, REDIS_RESTORED_MESSAGE, REDIS_UNAVAILABLE_MESSAGE } from '../../src/store/redis.js';
import { captureLogs } from '../helpers/log-capture.js';
import { closedPortUrl, redisGate, RedisOutageProxy, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { eventually } from '../helpers/eventually.js';

/** Fast reconnects, so an outage spans many attempts within a short test. */
const FAST = { maxReconnectDelayMs: 40 };

function messages(logs: ReturnType<typeof captureLogs>, level: number): string[] {
  return logs
    .lines()
    .filter((line) => line.level === level)
    .map((line) => String(line.msg));
}
const WARN = 40;
const INFO = 30;

describe('describeRedisUrl', () => {
  test('drops the userinfo and redacts query values', () => {
    assert.equal(describeRedisUrl('redis://admin:s3cret@cache.internal:6380/2'), 'redis://cache.internal:6380/2');
    assert.equal(describeRedisUrl('rediss://:s3cret@cache.internal/0?password=other&family=6'), 'rediss://cache.internal/0?password=[redacted]&family=[redacted]');
    assert.equal(describeRedisUrl('not a url :s3cret@'), '(unparseable redis url)');
  });
});

describe('openRedis while Redis is unreachable', () => {
  test('commands fail at once, one warning covers every retry, and no password is logged', async () => {
    const logs = captureLogs();
    const url = (await closedPortUrl()).replace('redis://', 'redis://ops:s3cret-pass@');
    const connection = openRedis(url, logs.logger, FAST);
    try {
      const started = Date.now();
      await assert.rejects(connection.client.incr('anything'));
      assert.ok(Date.now() - started < 200, 'a command does not wait for a connection');
      assert.equal(connection.isReady(), false);

      // Long enough for several reconnect attempts.
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE]);
      const warning = logs.lines().find((line) => line.level === WARN)!;
      assert.equal(warning.reason, 'ECONNREFUSED');
      assert.equal(String(warning.redis).includes('s3cret'), false);
      assert.equal(logs.text().includes('s3cret-pass'), false);
      assert.equal(connection.description.includes('s3cret'), false);
    } finally {
      await connection.close();
    }
  });
});

const redis = await redisGate();

describe('openRedis [redis]', { skip: redis.skip }, () => {
  test('connects, answers commands, logs one info line and closes cleanly', async () => {
    const logs = captureLogs();
    const connection = openRedis(TEST_REDIS_URL, logs.logger, FAST);
    const key = `${uniquePrefix('store')}:counter`;
    try {
      assert.ok(await eventually(() => connection.isReady()));
      assert.equal(await connection.client.incr(key), 1);
      await connection.client.del(key);
      assert.deepEqual(messages(logs, INFO), ['redis connected']);
      assert.deepEqual(messages(logs, WARN), []);
    } finally {
      await connection.close();
    }
    assert.equal(connection.isReady(), false);
    assert.deepEqual(messages(logs, WARN), [], 'closing on purpose is not an outage');
  });

  test('an outage is one warning and one info however many reconnects it takes; commands fail fast meanwhile', async () => {
    const proxy = await RedisOutageProxy.start();
    const logs = captureLogs();
    const connection = openRedis(proxy.url, logs.logger, FAST);
    try {
      assert.ok(await eventually(() => connection.isReady()));
      proxy.cut();
      assert.ok(await eventually(() => !connection.isReady()));
      const started = Date.now();
      await assert.rejects(connection.client.ping());
      assert.ok(Date.now() - started < 200, 'no offline queue: the command fails now');
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE]);

      proxy.restore();
      assert.ok(await eventually(() => connection.isReady(), 3_000), 'reconnects on its own');
      assert.equal(await connection.client.ping(), 'PONG');
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE]);
      assert.deepEqual(messages(logs, INFO), ['redis connected', REDIS_RESTORED_MESSAGE]);

      // A second outage is reported again.
      proxy.cut();
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE, REDIS_UNAVAILABLE_MESSAGE]);
    } finally {
      await connection.close();
      await proxy.stop();
    }
  });

  test('a duplicate behaves the same, and its outage is reported with its parent’s', async () => {
    const proxy = await RedisOutageProxy.start();
    const logs = captureLogs();
    const connection = openRedis(proxy.url, logs.logger, FAST);
    const subscriber = connection.duplicate();
    try {
      assert.ok(await eventually(() => connection.isReady() && subscriber.isReady()));
      assert.notEqual(subscriber.client, connection.client);
      proxy.cut();
      assert.ok(await eventually(() => !subscriber.isReady()));
      await assert.rejects(subscriber.client.ping());
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE]);
      proxy.restore();
      assert.ok(await eventually(() => connection.isReady() && subscriber.isReady(), 3_000));
      assert.deepEqual(messages(logs, INFO), ['redis connected', REDIS_RESTORED_MESSAGE]);
    } finally {
      await subscriber.close();
      await connection.close();
      await proxy.stop();
    }
  });

  test('disconnecting the client directly is seen as an outage', async () => {
    const logs = captureLogs();
    const connection = openRedis(TEST_REDIS_URL, logs.logger, FAST);
    try {
      assert.ok(await eventually(() => connection.isReady()));
      connection.client.disconnect();
      assert.ok(await eventually(() => messages(logs, WARN).length === 1));
      assert.deepEqual(messages(logs, WARN), [REDIS_UNAVAILABLE_MESSAGE]);
    } finally {
      await connection.close();
    }
  });
});
