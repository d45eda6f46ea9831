import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { HOTP, Secret } from 'otpauth';
import { REDIS_RESTORED_MESSAGE, REDIS_UNAVAILABLE_MESSAGE } from '../../src/store/redis.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { logLines, runCliProcess, stopChildren } from '../helpers/cli.js';
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from '../helpers/database.js';
import { privateRedisUnavailableReason, startPrivateRedis, type PrivateRedis } from '../helpers/private-redis.js';
import { serviceGate } from '../helpers/services.js';
import { sleep } from './drill-setup.js';

/**
 * Fault drill (issue 7): two `ciphergate serve` instances share one PostgreSQL and one Redis,
 * and Redis is killed. Sign-in and the API keep working; a session revoked on one instance is
 * still refused on the other (through the database, the pub/sub message cannot arrive); the
 * API limit falls back to per-instance counting instead of lifting; each instance warns once.
 * Redis then starts again on the same port, and the limit is shared again.
 *
 * A made-up bearer token verifies as nothing, so its requests count against their address (they
 * answer 401, then 429 past the limit). Each phase is a caller of its own: the drill plays the
 * proxy (CIPHERGATE_TRUST_PROXY) and names a new client address in X-Forwarded-For.
 */
after(stopChildren);

const PASSWORD = 'a long enough passphrase 42';
const USER_AGENT = 'ciphergate-drill/1.0';
const PER_MINUTE = 5;

describe('fault drill: Redis stopped under two instances', async () => {
  const gate = serviceGate('PostgreSQL and a private redis-server', (await postgresUnavailableReason()) ?? privateRedisUnavailableReason());
  let database: TestDatabase | undefined;
  let redis: PrivateRedis | undefined;
  after(async () => {
    await stopChildren();
    await redis?.destroy();
    await database?.cleanup();
  });

  test('requests work, revocation holds through the database, limits go per-instance and are shared again after', { skip: gate.skip, timeout: 300_000 }, async () => {
    database = await createTestDatabase('postgres', { migrated: false });
    redis = await startPrivateRedis();
    const cwd = mkdtempSync(join(tmpdir(), 'cg-drill-redis-'));
    const env = {
      CIPHERGATE_DATABASE_URL: database.url!,
      CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
      CIPHERGATE_REDIS_URL: redis.url,
      CIPHERGATE_REDIS_KEY_PREFIX: `drill${randomBytes(3).toString('hex')}`,
      CIPHERGATE_PUBLIC_URL: 'https://gate.example.test',
      CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: String(PER_MINUTE),
      CIPHERGATE_TRUST_PROXY: '127.0.0.1',
      CIPHERGATE_LOG_LEVEL: 'info',
    };
    const email = 'drill.admin@example.test';
    const created = await runCliProcess(['users', 'create', '--email', email, '--role', 'admin', '--password-stdin'], { env, cwd, stdin: PASSWORD, timeoutMs: 180_000 });
    assert.equal(created.code, 0, created.stderr);
    const a = await startChildServe({ env, cwd, port: await freePort() });
    const b = await startChildServe({ env, cwd, port: await freePort() });
    for (const instance of [a, b]) await until(() => instance.child.output.stdout.includes('redis connected'), 20_000, `redis never connected\n${instance.tail()}`);

    // Shared: five requests across both instances spend one budget.
    assert.deepEqual(await spend([a, a, a, b, b, b], madeUpToken('shared-before'), '198.51.100.1'), [401, 401, 401, 401, 401, 429], `shared-before\n${a.tail(1500)}\n${b.tail(1500)}`);

    const { deviceToken } = await firstSignIn(a.url, email);

    await redis.kill();
    for (const instance of [a, b]) await until(() => logged(instance, REDIS_UNAVAILABLE_MESSAGE) === 1, 20_000, `no Redis warning\n${instance.tail()}`);

    // Sign-in (the trusted device skips the second factor) and the API still work.
    const login = await call(b.url, 'POST', '/api/v1/auth/login', { email, password: PASSWORD, deviceToken });
    assert.equal(login.status, 200, `${JSON.stringify(login.body)}\n${b.tail(1500)}`);
    const token = login.body.accessToken as string;
    assert.equal((await call(a.url, 'GET', '/api/v1/auth/sessions', undefined, token)).status, 200);
    assert.equal((await call(b.url, 'GET', '/api/v1/auth/sessions', undefined, token)).status, 200);

    // Revoked on B, refused on A: A cached the live session a moment ago, and no message can
    // reach it; its cache entry is short-lived and the database says revoked.
    assert.equal((await call(b.url, 'POST', '/api/v1/auth/logout', undefined, token)).status, 204);
    // A few spaced looks: the user's own API budget (PER_MINUTE) is small.
    const seenOnA: number[] = [];
    for (let look = 0; look < 4 && seenOnA.at(-1) !== 401; look++) {
      await sleep(700);
      seenOnA.push((await call(a.url, 'GET', '/api/v1/auth/sessions', undefined, token)).status);
    }
    assert.equal(seenOnA.at(-1), 401, `instance A still accepted the revoked session: ${JSON.stringify(seenOnA)}`);

    // Per instance: one caller's requests are counted by each instance on its own, and each
    // still refuses past the limit (not lifted, not shared).
    const duringOutage = madeUpToken('during-outage');
    assert.deepEqual(await spend([a, a, a, a, a, a], duringOutage, '198.51.100.3'), [401, 401, 401, 401, 401, 429], `during-outage on A\n${a.tail(1500)}`);
    assert.deepEqual(await spend([b, b, b, b, b, b], duringOutage, '198.51.100.3'), [401, 401, 401, 401, 401, 429], `during-outage on B\n${b.tail(1500)}`);

    await redis.start();
    for (const instance of [a, b]) await until(() => logged(instance, REDIS_RESTORED_MESSAGE) === 1, 30_000, `Redis never came back\n${instance.tail()}`);
    // Shared again.
    assert.deepEqual(await spend([b, b, a, a, b, a], madeUpToken('shared-after'), '198.51.100.4'), [401, 401, 401, 401, 401, 429], `shared-after\n${a.tail(1500)}\n${b.tail(1500)}`);

    for (const instance of [a, b]) {
      const lines = logLines(instance.child.output.stdout);
      assert.equal(lines.filter((line) => line.msg === REDIS_UNAVAILABLE_MESSAGE).length, 1, 'one warning per outage');
      assert.deepEqual(lines.filter((line) => Number(line.level) >= 50).map((line) => line.msg), [], `error lines\n${instance.tail()}`);
      assert.equal(await instance.stop(), 0, instance.tail());
    }
  });
});

/** From `from` when given (the trusted proxy's X-Forwarded-For), else from 127.0.0.1 itself. */
async function call(base: string, method: string, path: string, body?: unknown, token?: string, from?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      'user-agent': USER_AGENT,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(from ? { 'x-forwarded-for': from } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** A bearer token nobody issued: it verifies as nothing, so it spends its address's API budget. */
function madeUpToken(label: string): string {
  return `made-up-${label}-${randomBytes(4).toString('hex')}`;
}

/** One request per listed instance with `token`, from client address `from`. */
async function spend(instances: ChildServe[], token: string, from: string): Promise<number[]> {
  const statuses: number[] = [];
  for (const instance of instances) statuses.push((await call(instance.url, 'GET', '/api/v1/auth/sessions', undefined, token, from)).status);
  return statuses;
}

async function firstSignIn(base: string, email: string): Promise<{ deviceToken: string }> {
  const login = await call(base, 'POST', '/api/v1/auth/login', { email, password: PASSWORD });
  assert.equal(login.body.type, 'second-factor-enrollment-required', JSON.stringify(login.body));
  const enroll = await call(base, 'POST', '/api/v1/auth/totp/enroll', { challengeToken: login.body.challengeToken });
  const secret = new URL(String(enroll.body.otpauthUri)).searchParams.get('secret')!;
  const code = HOTP.generate({ secret: Secret.fromBase32(secret), counter: Math.floor(Date.now() / 30_000), algorithm: 'SHA1', digits: 6 });
  const confirm = await call(base, 'POST', '/api/v1/auth/totp/confirm', { challengeToken: login.body.challengeToken, code });
  assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
  return { deviceToken: String(confirm.body.deviceToken) };
}

function logged(instance: ChildServe, message: string): number {
  return logLines(instance.child.output.stdout).filter((line) => line.msg === message).length;
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(message);
    await sleep(50);
  }
}
