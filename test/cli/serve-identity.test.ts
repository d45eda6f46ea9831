import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createPostgresDatabase, dropPostgresDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { startChildServe } from '../helpers/child-serve.js';
import { runCliProcess, stopChildren } from '../helpers/cli.js';
import { callJson as call, signInOverHttp } from '../helpers/http-sign-in.js';
import { redisUnavailableReason, TEST_REDIS_URL } from '../helpers/redis.js';
import { serviceGate } from '../helpers/services.js';

/**
 * Issue 5 end to end through the real binary: the first admin from the CLI, sign-in with
 * enrollment over HTTP, and a revocation on one instance refused by another (PostgreSQL +
 * Redis), exactly as an operator would run it.
 */
after(stopChildren);

const PASSWORD = 'a long enough passphrase 42';

async function startServe(env: Record<string, string>, cwd: string) {
  const server = await startChildServe({ env, cwd });
  return { child: server.child, base: server.url };
}

/** Admin from the CLI, then first sign-in: enrollment, confirmation (with its recovery codes). */
async function firstSignIn(base: string, email: string) {
  const signedIn = await signInOverHttp(base, email, PASSWORD);
  assert.equal(signedIn.recoveryCodes.length, 10);
  return signedIn;
}

describe('serve on the embedded database: first admin from the CLI, sign-in over HTTP', () => {
  test('users create → login → enroll → confirm → authenticated calls → logout refuses the token', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cg-e2e-'));
    const email = 'first.admin@example.test';
    const created = await runCliProcess(['users', 'create', '--email', email, '--role', 'admin', '--password-stdin'], { env: {}, cwd, stdin: `${PASSWORD}\n`, timeoutMs: 180_000 });
    assert.equal(created.code, 0, created.stderr);
    const { child, base } = await startServe({}, cwd);

    const { accessToken, deviceToken } = await firstSignIn(base, email);
    const sessions = await call(base, 'GET', '/api/v1/auth/sessions', undefined, accessToken);
    assert.equal(sessions.status, 200);
    assert.equal(sessions.body.sessions.length, 1);
    assert.equal(sessions.body.sessions[0].current, true);

    // The trusted device skips the second factor on the next sign-in.
    const again = await call(base, 'POST', '/api/v1/auth/login', { email, password: PASSWORD, deviceToken });
    assert.equal(again.status, 200);

    const jwks = await call(base, 'GET', '/.well-known/jwks.json');
    assert.equal(jwks.status, 200);
    assert.equal(jwks.body.keys.length, 1);
    assert.equal(jwks.body.keys[0].d, undefined);

    assert.equal((await call(base, 'POST', '/api/v1/auth/logout', undefined, accessToken)).status, 204);
    const refused = await call(base, 'GET', '/api/v1/auth/sessions', undefined, accessToken);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.type, 'unauthenticated');

    // No log line carries the email, the password or a token.
    for (const secretText of [email, PASSWORD, accessToken, deviceToken]) assert.ok(!child.output.stdout.includes(secretText), 'log leaks a secret');
    child.kill('SIGTERM');
  });
});

describe('two instances on one PostgreSQL and one Redis', async () => {
  const reason = (await postgresUnavailableReason()) ?? (await redisUnavailableReason());
  const gate = serviceGate('postgresql and redis', reason);

  test('a session revoked on instance A is refused on instance B within one second', { skip: gate.skip }, async () => {
    const name = `cg_test_${randomBytes(6).toString('hex')}`;
    const url = await createPostgresDatabase(name);
    try {
      const cwd = mkdtempSync(join(tmpdir(), 'cg-e2e-'));
      const env = {
        CIPHERGATE_DATABASE_URL: url,
        CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
        CIPHERGATE_REDIS_URL: TEST_REDIS_URL,
        CIPHERGATE_REDIS_KEY_PREFIX: `e2e${randomBytes(4).toString('hex')}`,
        // Instances behind one load balancer share the public URL: it is the tokens' issuer.
        CIPHERGATE_PUBLIC_URL: 'https://gate.example.test',
      };
      const email = 'ops.admin@example.test';
      const created = await runCliProcess(['users', 'create', '--email', email, '--role', 'admin', '--password-stdin'], { env, cwd, stdin: PASSWORD, timeoutMs: 180_000 });
      assert.equal(created.code, 0, created.stderr);
      const a = await startServe(env, cwd);
      const b = await startServe(env, cwd);

      const { accessToken } = await firstSignIn(a.base, email);
      // B accepts the token (and caches the live session) before the revocation.
      const beforeRevocation = await call(b.base, 'GET', '/api/v1/auth/sessions', undefined, accessToken);
      assert.equal(beforeRevocation.status, 200, JSON.stringify(beforeRevocation.body) + b.child.output.stdout.slice(-3000));
      assert.equal((await call(a.base, 'POST', '/api/v1/auth/logout', undefined, accessToken)).status, 204);
      const revokedAt = Date.now();
      let refusedAfterMs: number | undefined;
      while (Date.now() - revokedAt < 1_000) {
        if ((await call(b.base, 'GET', '/api/v1/auth/sessions', undefined, accessToken)).status === 401) {
          refusedAfterMs = Date.now() - revokedAt;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(refusedAfterMs !== undefined, 'instance B still accepted the revoked session after one second');
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
    } finally {
      await stopChildren();
      await dropPostgresDatabase(name);
    }
  });
});
