import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { openRedis, type RedisConnection } from '../../src/store/redis.js';
import { describeEachBackend } from '../helpers/database.js';
import { PASSWORD } from '../helpers/identity.js';
import { freshAddresses } from '../helpers/addresses.js';
import { openSignupHarness, type OpenSignupHarness } from '../helpers/open-signup.js';
import { captureLogs } from '../helpers/log-capture.js';
import { deleteKeys, redisGate, redisKeys, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { eventually } from '../helpers/eventually.js';

/**
 * Issue #13 item 4: 110 signups for one address in a minute sent 110 emails to it. Every email
 * identity sends now counts against its recipient (five an hour), keyed by the address's keyed
 * blind index; signup answers exactly the same whether or not its email went out, so the limit
 * tells nobody whether the address has an account.
 */

const PER_RECIPIENT_PER_HOUR = 5;
const SIGNUPS = 12;

/** Signs `email` up SIGNUPS times, each from an address of its own (the API limit is per address), and waits until every email was sent or refused. */
async function bomb({ h: harness, smtp }: OpenSignupHarness, email: string, freshIp: () => string) {
  const answers: Array<{ status: number; body: string }> = [];
  for (let attempt = 0; attempt < SIGNUPS; attempt++) {
    const response = await harness.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: attempt % 3 === 1 ? email.toUpperCase() : email, password: PASSWORD }, remoteAddress: freshIp() });
    answers.push({ status: response.statusCode, body: response.body });
  }
  const received = () => smtp.messages.filter((message) => message.to.some((recipient) => recipient.toLowerCase() === email)).length;
  const refused = () => harness.logs.lines().filter((line) => line.reason === 'recipient-throttled').length;
  // Emails go out after the answer: wait until every one was sent or refused (or give up).
  const deadline = Date.now() + 15_000;
  while (received() + refused() < SIGNUPS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
  return { answers, received: received() };
}

await describeEachBackend('signup emails to one address', (backend) => {
  let bombing: OpenSignupHarness;
  const freshIp = freshAddresses('10.77');

  before(async () => {
    bombing = await openSignupHarness(backend);
  });
  after(() => bombing.close());

  test('twelve signups for one address send it five emails, and every answer is the same as for a fresh address', async () => {
    const victim = `victim-${randomUUID()}@example.test`;
    const { answers, received } = await bomb(bombing, victim, freshIp);
    assert.equal(received, PER_RECIPIENT_PER_HOUR);

    const fresh = await bombing.h.request({ method: 'POST', url: '/api/v1/auth/signup', body: { email: `fresh-${randomUUID()}@example.test`, password: PASSWORD }, remoteAddress: freshIp() });
    for (const answer of answers) assert.deepEqual(answer, { status: fresh.statusCode, body: fresh.body });
    assert.ok(fresh.statusCode >= 200 && fresh.statusCode < 300, fresh.body);

    // The refusals are logged without the address.
    const logs = bombing.h.logs.text();
    assert.match(logs, /recipient-throttled/);
    assert.ok(!logs.toLowerCase().includes(victim), 'a log line holds the address');
  });
});

const redis = await redisGate();

describe('signup emails to one address [redis]', { skip: redis.skip }, () => {
  let bombing: OpenSignupHarness;
  let connection: RedisConnection;
  const keyPrefix = uniquePrefix('email-bomb');
  const freshIp = freshAddresses('10.78');

  before(async () => {
    connection = openRedis(TEST_REDIS_URL, captureLogs().logger, { maxReconnectDelayMs: 40 });
    assert.ok(await eventually(() => connection.isReady()));
    bombing = await openSignupHarness('pglite', { redis: connection, redisKeyPrefix: keyPrefix });
  });
  after(async () => {
    await bombing.close();
    await connection.close();
    await deleteKeys(keyPrefix);
  });

  test('the count is kept under a keyed hash of the address, never the address', async () => {
    const victim = `victim-${randomUUID()}@example.test`;
    const { received } = await bomb(bombing, victim, freshIp);
    assert.equal(received, PER_RECIPIENT_PER_HOUR);
    const keys = await redisKeys(keyPrefix);
    const recipientKeys = keys.filter((key) => key.startsWith(`${keyPrefix}:email-recipient:`));
    assert.equal(recipientKeys.length, 1, keys.join('\n'));
    assert.match(recipientKeys[0]!, /:email-recipient:e:[0-9a-f]{32}$/);
    for (const key of keys) assert.ok(!key.toLowerCase().includes('victim') && !key.includes('@'), key);
  });
});
