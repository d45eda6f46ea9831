import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { RateLimitedError } from '../../src/identity/errors.js';
import { LoginThrottle, type LoginThrottleOptions } from '../../src/identity/limits/throttle.js';
import { openRedis, type RedisConnection } from '../../src/store/redis.js';
import { captureLogs } from '../helpers/log-capture.js';
import { closedPortUrl, deleteKeys, redisGate, redisKeys, RedisOutageProxy, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { eventually } from '../helpers/eventually.js';

const ALICE = accountKey('alice@example.com');
const BOB = accountKey('bob@example.com');
const IP = '203.0.113.7';
const OTHER_IP = '198.51.100.20';

/** What a caller would pass: a hash of the normalised email, never the email itself. */
function accountKey(email: string): string {
  return createHash('sha256').update(email).digest('hex');
}

async function fail(throttle: LoginThrottle, times: number, account = ALICE, ip = IP) {
  let last;
  for (let attempt = 0; attempt < times; attempt++) last = await throttle.recordFailure(account, ip);
  return last!;
}

async function openConnection(t: TestContext, url = TEST_REDIS_URL): Promise<RedisConnection> {
  const connection = openRedis(url, captureLogs().logger, { maxReconnectDelayMs: 40 });
  t.after(() => connection.close());
  return connection;
}

/** The same behaviour on both backends; only construction differs. */
function throttleBehaviour(makeThrottle: (t: TestContext, options?: LoginThrottleOptions) => Promise<LoginThrottle>) {
  test('the tenth consecutive failure locks the account from that address for 15 minutes', async (t) => {
    const throttle = await makeThrottle(t);
    assert.deepEqual(await throttle.check(ALICE, IP), { locked: false });
    assert.deepEqual(await fail(throttle, 9), { lockedNow: false });
    assert.deepEqual(await throttle.check(ALICE, IP), { locked: false });

    const tenth = await throttle.recordFailure(ALICE, IP);
    assert.equal(tenth.lockedNow, true);
    assert.equal(tenth.lockedNow && tenth.retryAfterSeconds, 900);
    const status = await throttle.check(ALICE, IP);
    assert.equal(status.locked, true);
    assert.ok(status.locked && status.retryAfterSeconds > 890 && status.retryAfterSeconds <= 900, JSON.stringify(status));

    // A failure recorded while locked (a request that passed check just before) does not
    // start a second lock, and the lock stands.
    assert.deepEqual(await throttle.recordFailure(ALICE, IP), { lockedNow: false });
    assert.equal((await throttle.check(ALICE, IP)).locked, true);
  });

  test('of failures racing past the limit, exactly one reports the lock', async (t) => {
    const throttle = await makeThrottle(t);
    const outcomes = await Promise.all(Array.from({ length: 15 }, () => throttle.recordFailure(ALICE, IP)));
    assert.equal(outcomes.filter((outcome) => outcome.lockedNow).length, 1);
    assert.equal((await throttle.check(ALICE, IP)).locked, true);
  });

  test('a success ends the run of failures', async (t) => {
    const throttle = await makeThrottle(t);
    await fail(throttle, 9);
    await throttle.recordSuccess(ALICE, IP);
    assert.deepEqual(await fail(throttle, 9), { lockedNow: false });
    assert.deepEqual(await throttle.check(ALICE, IP), { locked: false });
    assert.equal((await throttle.recordFailure(ALICE, IP)).lockedNow, true);
  });

  test('the lock is per account and address: another address, or another account, is not locked', async (t) => {
    const throttle = await makeThrottle(t);
    await fail(throttle, 10);
    assert.equal((await throttle.check(ALICE, IP)).locked, true);
    assert.deepEqual(await throttle.check(ALICE, OTHER_IP), { locked: false });
    assert.deepEqual(await throttle.check(BOB, IP), { locked: false });
    await throttle.recordSuccess(ALICE, OTHER_IP);
    assert.equal((await throttle.check(ALICE, IP)).locked, true, 'a success elsewhere does not unlock this pair');
  });

  test('addresses in one IPv6 /64 count as one', async (t) => {
    const throttle = await makeThrottle(t);
    for (let attempt = 0; attempt < 10; attempt++) await throttle.recordFailure(ALICE, `2001:db8:1:2::${attempt + 1}`);
    assert.equal((await throttle.check(ALICE, '2001:db8:1:2:ffff::1')).locked, true);
    assert.deepEqual(await throttle.check(ALICE, '2001:db8:1:3::1'), { locked: false });
  });

  test('each address has a per-minute budget of attempts across accounts', async (t) => {
    const throttle = await makeThrottle(t, { ipAttemptsPerMinute: 3 });
    for (let attempt = 0; attempt < 3; attempt++) assert.deepEqual(await throttle.consumeIp(IP), { allowed: true });
    const refused = await throttle.consumeIp(IP);
    assert.equal(refused.allowed, false);
    assert.ok(!refused.allowed && refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 60, JSON.stringify(refused));
    assert.deepEqual(await throttle.consumeIp(OTHER_IP), { allowed: true });
    assert.equal((await throttle.consumeIp('::ffff:203.0.113.7')).allowed, false, 'an IPv4-mapped address is the same address');
  });

  test('an email or a non-address is refused as a key; namespaced ids are fine', async (t) => {
    const throttle = await makeThrottle(t);
    await assert.rejects(throttle.check('alice@example.com', IP), TypeError);
    await assert.rejects(throttle.check('e:alice@example.com', IP), TypeError);
    await assert.rejects(throttle.check('', IP), TypeError);
    assert.deepEqual(await throttle.check('u:3f2c1a9e-5b7d-4c1e-8a2b-9d0e1f2a3b4c', IP), { locked: false });
    assert.deepEqual(await throttle.check(`e:${ALICE}`, IP), { locked: false });
    await assert.rejects(throttle.recordFailure(ALICE, 'not-an-ip'), TypeError);
    await assert.rejects(throttle.consumeIp(''), TypeError);
  });
}

describe('LoginThrottle [memory]', () => {
  throttleBehaviour(async (_t, options) => new LoginThrottle(options));

  test('instances without Redis count separately (each process on its own)', async () => {
    const first = new LoginThrottle();
    const second = new LoginThrottle();
    await fail(first, 9);
    assert.deepEqual(await second.recordFailure(ALICE, IP), { lockedNow: false });
  });
});

describe('RateLimitedError', () => {
  test('carries the reason and the wait, and says nothing of the account', () => {
    const error = new RateLimitedError('account-locked', 900);
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'RateLimitedError');
    assert.equal(error.reason, 'account-locked');
    assert.equal(error.retryAfterSeconds, 900);
    assert.equal(new RateLimitedError('ip-limit', 12).reason, 'ip-limit');
  });
});

describe('LoginThrottle with Redis unreachable', () => {
  test('falls back to counting in memory instead of failing', async (t) => {
    const connection = await openConnection(t, await closedPortUrl());
    const throttle = new LoginThrottle({ redis: connection, keyPrefix: uniquePrefix('throttle'), ipAttemptsPerMinute: 2 });
    assert.deepEqual(await fail(throttle, 9), { lockedNow: false });
    assert.equal((await throttle.recordFailure(ALICE, IP)).lockedNow, true);
    assert.equal((await throttle.check(ALICE, IP)).locked, true);
    await throttle.recordSuccess(ALICE, IP);
    assert.deepEqual(await throttle.check(ALICE, IP), { locked: false });
    assert.equal((await throttle.consumeIp(IP)).allowed, true);
    assert.equal((await throttle.consumeIp(IP)).allowed, true);
    assert.equal((await throttle.consumeIp(IP)).allowed, false);
  });
});

const redis = await redisGate();

describe('LoginThrottle [redis]', { skip: redis.skip }, () => {
  throttleBehaviour(async (t, options) => {
    const keyPrefix = uniquePrefix('throttle');
    t.after(() => deleteKeys(keyPrefix));
    const connection = await openConnection(t);
    assert.ok(await eventually(() => connection.isReady()));
    return new LoginThrottle({ ...options, redis: connection, keyPrefix });
  });

  test('two instances on one Redis share their counts (two processes)', async (t) => {
    const keyPrefix = uniquePrefix('throttle');
    t.after(() => deleteKeys(keyPrefix));
    const [connectionA, connectionB] = [await openConnection(t), await openConnection(t)];
    assert.ok(await eventually(() => connectionA.isReady() && connectionB.isReady()));
    const first = new LoginThrottle({ redis: connectionA, keyPrefix, ipAttemptsPerMinute: 4 });
    const second = new LoginThrottle({ redis: connectionB, keyPrefix, ipAttemptsPerMinute: 4 });

    await fail(first, 5);
    assert.deepEqual(await fail(second, 4), { lockedNow: false });
    assert.equal((await first.recordFailure(ALICE, IP)).lockedNow, true);
    assert.equal((await second.check(ALICE, IP)).locked, true);
    await second.recordSuccess(ALICE, IP);
    assert.deepEqual(await first.check(ALICE, IP), { locked: false });

    await first.consumeIp(IP);
    await second.consumeIp(IP);
    await first.consumeIp(IP);
    assert.equal((await second.consumeIp(IP)).allowed, true);
    assert.equal((await first.consumeIp(IP)).allowed, false);
  });

  test('Redis holds hashed account keys and addresses under the prefix, never an email', async (t) => {
    const keyPrefix = uniquePrefix('throttle');
    t.after(() => deleteKeys(keyPrefix));
    const connection = await openConnection(t);
    assert.ok(await eventually(() => connection.isReady()));
    const throttle = new LoginThrottle({ redis: connection, keyPrefix });
    await throttle.recordFailure(ALICE, IP);
    await throttle.consumeIp(IP);
    assert.deepEqual(await redisKeys(keyPrefix), [`${keyPrefix}:login-failures:${ALICE}:${IP}`, `${keyPrefix}:login-ip:${IP}`]);
    assert.equal(await connection.client.ttl(`${keyPrefix}:login-ip:${IP}`) <= 60, true);
  });

  test('a Redis outage mid-run degrades to memory without an error, and shared counting resumes after', async (t) => {
    const keyPrefix = uniquePrefix('throttle');
    t.after(() => deleteKeys(keyPrefix));
    const proxy = await RedisOutageProxy.start();
    t.after(() => proxy.stop());
    const connection = await openConnection(t, proxy.url);
    assert.ok(await eventually(() => connection.isReady()));
    const throttle = new LoginThrottle({ redis: connection, keyPrefix });

    await fail(throttle, 4);
    proxy.cut();
    assert.ok(await eventually(() => !connection.isReady()));
    // In memory from zero: nine more failures are not a lock, the tenth is.
    assert.deepEqual(await fail(throttle, 9), { lockedNow: false });
    assert.equal((await throttle.recordFailure(ALICE, IP)).lockedNow, true);
    assert.equal((await throttle.check(ALICE, IP)).locked, true);

    proxy.restore();
    assert.ok(await eventually(() => connection.isReady(), 3_000));
    // Redis still has the four failures from before the outage.
    assert.deepEqual(await throttle.check(ALICE, IP), { locked: false });
    assert.deepEqual(await fail(throttle, 5), { lockedNow: false });
    assert.equal((await throttle.recordFailure(ALICE, IP)).lockedNow, true);
  });

  test('a client disconnected underneath falls back too', async (t) => {
    const keyPrefix = uniquePrefix('throttle');
    t.after(() => deleteKeys(keyPrefix));
    const connection = await openConnection(t);
    assert.ok(await eventually(() => connection.isReady()));
    const throttle = new LoginThrottle({ redis: connection, keyPrefix, ipAttemptsPerMinute: 1 });
    connection.client.disconnect();
    assert.equal((await throttle.consumeIp(IP)).allowed, true);
    assert.equal((await throttle.consumeIp(IP)).allowed, false);
    assert.deepEqual(await redisKeys(keyPrefix), []);
  });
});
