import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { LocalRevocationBus, openRevocationBus, RedisRevocationBus } from '../../src/store/revocation-bus.js';
import { openRedis, type RedisConnection } from '../../src/store/redis.js';
import { captureLogs } from '../helpers/log-capture.js';
import { closedPortUrl, redisGate, RedisOutageProxy, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { eventually } from '../helpers/eventually.js';

function recorder() {
  const received: string[][] = [];
  return { received, listener: (sessionIds: string[]) => void received.push(sessionIds) };
}

describe('LocalRevocationBus', () => {
  test('delivers to every listener before publish returns', async () => {
    const bus = openRevocationBus();
    assert.ok(bus instanceof LocalRevocationBus);
    const first = recorder();
    const second = recorder();
    bus.subscribe(first.listener);
    bus.subscribe(second.listener);
    const ids = [randomUUID(), randomUUID()];
    const published = bus.publish(ids);
    assert.deepEqual(first.received, [ids], 'synchronous: delivered before the promise settles');
    assert.deepEqual(second.received, [ids]);
    await published;
    await bus.close();
  });

  test('a throwing listener is logged and does not stop the others', async () => {
    const logs = captureLogs();
    const bus = new LocalRevocationBus({ logger: logs.logger });
    const after = recorder();
    bus.subscribe(() => {
      throw new Error('cache exploded');
    });
    bus.subscribe(after.listener);
    const id = randomUUID();
    await bus.publish([id]);
    assert.deepEqual(after.received, [[id]]);
    assert.match(logs.text(), /revocation listener failed/);
    await bus.close();
  });

  test('ids must be UUIDs; duplicates are sent once and an empty list sends nothing', async () => {
    const bus = new LocalRevocationBus();
    const seen = recorder();
    bus.subscribe(seen.listener);
    await assert.rejects(bus.publish(['not-a-uuid']), TypeError);
    const id = randomUUID();
    await bus.publish([id, id]);
    await bus.publish([]);
    assert.deepEqual(seen.received, [[id]]);
    await bus.close();
    await assert.rejects(bus.publish([id]), /closed/);
  });
});

describe('RedisRevocationBus with Redis unreachable', () => {
  test('publish still reaches local listeners and does not fail', async () => {
    const connection = openRedis(await closedPortUrl(), captureLogs().logger, { maxReconnectDelayMs: 40 });
    const bus = openRevocationBus(connection, { keyPrefix: uniquePrefix('revocations') });
    assert.ok(bus instanceof RedisRevocationBus);
    const local = recorder();
    bus.subscribe(local.listener);
    const id = randomUUID();
    await bus.publish([id]);
    assert.deepEqual(local.received, [[id]]);
    await bus.close();
    await connection.close();
  });
});

const redis = await redisGate();

describe('RedisRevocationBus [redis]', { skip: redis.skip }, () => {
  async function connection(t: TestContext, url = TEST_REDIS_URL): Promise<RedisConnection> {
    const opened = openRedis(url, captureLogs().logger, { maxReconnectDelayMs: 40 });
    t.after(() => opened.close());
    return opened;
  }

  async function bus(t: TestContext, keyPrefix: string, url = TEST_REDIS_URL, logger = captureLogs().logger): Promise<RedisRevocationBus> {
    const opened = new RedisRevocationBus(await connection(t, url), { keyPrefix, logger });
    t.after(() => opened.close());
    return opened;
  }

  test('a revocation on one instance reaches another within a second, and its own listeners once', async (t) => {
    const keyPrefix = uniquePrefix('revocations');
    const [publisher, other] = [await bus(t, keyPrefix), await bus(t, keyPrefix)];
    await Promise.all([publisher.whenSubscribed(), other.whenSubscribed()]);
    const here = recorder();
    const there = recorder();
    publisher.subscribe(here.listener);
    other.subscribe(there.listener);

    const ids = [randomUUID(), randomUUID()];
    const started = Date.now();
    const published = publisher.publish(ids);
    assert.deepEqual(here.received, [ids], 'local listeners hear it at once');
    await published;
    assert.ok(await eventually(() => there.received.length > 0, 1_000), 'the other instance heard it within 1 s');
    assert.ok(Date.now() - started < 1_000);
    assert.deepEqual(there.received, [ids]);

    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.deepEqual(here.received, [ids], 'the echo of our own message is not delivered again');
    assert.equal(publisher.channel, `${keyPrefix}:revocations`);
  });

  test('anything on the channel that is not a JSON array of UUIDs is ignored', async (t) => {
    const keyPrefix = uniquePrefix('revocations');
    const logs = captureLogs();
    const listening = await bus(t, keyPrefix, TEST_REDIS_URL, logs.logger);
    await listening.whenSubscribed();
    const seen = recorder();
    listening.subscribe(seen.listener);

    const raw = new Redis(TEST_REDIS_URL);
    t.after(() => raw.quit());
    const garbage = [
      'not json',
      '{"sessionIds":["00000000-0000-4000-8000-000000000000"]}',
      '[]',
      '[1,2]',
      '["not-a-uuid"]',
      `["${randomUUID()}", 7]`,
      'null',
      JSON.stringify(Array.from({ length: 1001 }, () => randomUUID())),
    ];
    for (const message of garbage) await raw.publish(listening.channel, message);
    const valid = [randomUUID()];
    await raw.publish(listening.channel, JSON.stringify(valid));

    assert.ok(await eventually(() => seen.received.length > 0, 1_000));
    assert.deepEqual(seen.received, [valid]);
    const warnings = logs.lines().filter((line) => line.msg === 'ignored a malformed revocation message');
    assert.equal(warnings.length, garbage.length);
  });

  test('buses with different prefixes do not hear each other', async (t) => {
    const [first, second] = [await bus(t, uniquePrefix('revocations')), await bus(t, uniquePrefix('revocations'))];
    await Promise.all([first.whenSubscribed(), second.whenSubscribed()]);
    const seen = recorder();
    second.subscribe(seen.listener);
    await first.publish([randomUUID()]);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.deepEqual(seen.received, []);
  });

  test('a subscriber that lost Redis resubscribes when it returns', async (t) => {
    const keyPrefix = uniquePrefix('revocations');
    const proxy = await RedisOutageProxy.start();
    t.after(() => proxy.stop());
    const publisher = await bus(t, keyPrefix);
    const behindProxy = await bus(t, keyPrefix, proxy.url);
    await Promise.all([publisher.whenSubscribed(), behindProxy.whenSubscribed()]);
    const seen = recorder();
    behindProxy.subscribe(seen.listener);

    proxy.cut();
    const duringOutage = [randomUUID()];
    await behindProxy.publish(duringOutage);
    assert.deepEqual(seen.received, [duringOutage], 'local delivery while Redis is away');

    proxy.restore();
    const afterwards = [randomUUID()];
    const heard = () => seen.received.some((ids) => ids[0] === afterwards[0]);
    // Publish until the resubscription is in place (a message before it is simply missed).
    const deadline = Date.now() + 3_000;
    while (!heard() && Date.now() < deadline) {
      await publisher.publish(afterwards);
      await eventually(heard, 50);
    }
    assert.ok(heard(), 'heard again after the outage');
  });
});
