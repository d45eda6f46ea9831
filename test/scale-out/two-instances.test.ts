import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { verifyAuditChain } from '../../src/store/audit-trail.js';
import { MIGRATIONS_FOLDER } from '../../src/store/migrate.js';
import { queryRows, type Db } from '../../src/store/connection.js';
import { DEFAULT_OPENAI_KEY, startOpenAiFake, type ChatCompletionBody, type OpenAiFake } from '../fakes/openai.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest, startTwilioFake, type TwilioFake } from '../fakes/twilio.js';
import { startChildServe, type ChildServe, type SpawnedCli } from '../helpers/child-serve.js';
import { freePort } from '../helpers/ports.js';
import { logLines, runCliProcess, spawnCli, stopChildren, waitForOutput } from '../helpers/cli.js';
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from '../helpers/database.js';
import { callJson, signInOverHttp } from '../helpers/http-sign-in.js';
import { deleteKeys, redisKeys, redisUnavailableReason, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import { messageSid, TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';

/**
 * Issue 7, scale-out: several `ciphergate` processes behind a load balancer share one PostgreSQL
 * and one Redis. Four processes start at the same moment on one empty database: A and B
 * (`serve`), C (`serve --no-workers`) and W (`worker`), with `users create` and `tenants put`
 * racing them. The test then plays the load balancer, spreading requests over the instances,
 * and checks what must hold between them: migrations once, one signing key, each job claimed
 * once and each message answered once, revocations seen everywhere within a second, one
 * rate-limit count, one unbroken audit chain, and the HTTP/worker split.
 *
 * Which process claimed a job is read from a trigger on `jobs` that records every new
 * `locked_by` (a worker id holds its process id): completed jobs are deleted, so the table
 * alone cannot say who ran them.
 */
after(stopChildren);

/** Behind a load balancer every instance has the one public URL: signatures are checked against it. */
const PUBLIC_URL = 'https://gate.example.test';
const SLUG = 'scale-clinic';
const PASSWORD = 'a long enough passphrase for scale-out 7';
const EMAIL = 'scale.admin@example.test';
/** Inbound messages spread over A, B and C for the exactly-once check. */
const MESSAGES = 30;
/** Inbound messages sent to C alone once A and B are gone: only W can answer them. */
const SPLIT_MESSAGES = 6;
const RATE_LIMIT_PER_MINUTE = 30;
const REJECTED_WEBHOOKS_PER_INSTANCE = 25;
const REFUSED_SECOND_FACTORS_PER_INSTANCE = 25;
const START_TIMEOUT_MS = 120_000;
const DRAIN_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Letters only, so the relay's redaction (phone and card numbers, emails) leaves it alone. */
function marker(): string {
  return Array.from(randomBytes(12), (byte) => String.fromCharCode(97 + (byte % 26))).join('');
}

/** Distinct valid US numbers, so every message is its own conversation and gets its own answer. */
function phoneOf(index: number): string {
  return `+1415${300 + index}${String(4000 + index).padStart(4, '0')}`;
}

interface Inbound {
  from: string;
  marker: string;
}

async function postInbound(instanceUrl: string, inbound: Inbound, signature?: string): Promise<number> {
  const sid = messageSid();
  const params = { MessageSid: sid, SmsSid: sid, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: inbound.from, To: TENANT_FROM_NUMBER, Body: `Hello, ${inbound.marker} here: is parking free?`, NumMedia: '0' };
  const path = `/webhooks/twilio/${SLUG}/sms`;
  const response = await fetch(`${instanceUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature ?? signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `${PUBLIC_URL}${path}`, params) },
    body: new URLSearchParams(params).toString(),
  });
  await response.arrayBuffer();
  return response.status;
}

function lastUserText(completion: ChatCompletionBody): string {
  const last = completion.messages.filter((message) => message.role === 'user').at(-1);
  return typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
}

/** The pid inside a JobWorker id (`host:pid:random`). */
function pidOf(workerId: string): number {
  return Number(workerId.split(':').at(-2));
}

/** Log lines at error level or above (pino: 50 error, 60 fatal), and anything on stderr. */
function errorsIn(output: { stdout: string; stderr: string }): string[] {
  const errors = logLines(output.stdout)
    .filter((line) => typeof line.level === 'number' && line.level >= 50)
    .map((line) => JSON.stringify(line));
  return output.stderr.trim() ? [...errors, output.stderr.trim()] : errors;
}

describe('scale-out: instances on one PostgreSQL and one Redis', async () => {
  const reason = (await postgresUnavailableReason()) ?? (await redisUnavailableReason());
  const gate = serviceGate('PostgreSQL and Redis', reason);
  const redisPrefix = uniquePrefix('scaleout');
  let database: TestDatabase | undefined;
  let db: Db;
  let twilio: TwilioFake | undefined;
  let openai: OpenAiFake | undefined;
  let a: ChildServe;
  let b: ChildServe;
  let c: ChildServe;
  let worker: SpawnedCli;
  let env: Record<string, string>;
  let cwd: string;
  const claimed = async () => queryRows<{ job_id: string; kind: string; locked_by: string }>(db, sql`select job_id::text, kind, locked_by from test_job_claims order by at`);

  /** Until every message of `expected` senders is answered and no job is open. */
  async function drained(expectedSends: number): Promise<void> {
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    for (;;) {
      const [open] = await queryRows<{ count: string }>(db, sql`select count(*)::text as count from jobs where state <> 'dead'`);
      if (twilio!.messages.length >= expectedSends && open?.count === '0') return;
      assert.ok(Date.now() < deadline, `not drained: ${twilio!.messages.length}/${expectedSends} sends, ${open?.count} open jobs`);
      await sleep(100);
    }
  }

  before(async () => {
    if (gate.skip) return;
    [twilio, openai] = await Promise.all([startTwilioFake(), startOpenAiFake()]);
    database = await createTestDatabase('postgres', { migrated: false });
    db = database.database.db;
    cwd = mkdtempSync(join(tmpdir(), 'cg-scaleout-'));
    env = {
      CIPHERGATE_DATABASE_URL: database.url!,
      CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
      CIPHERGATE_REDIS_URL: TEST_REDIS_URL,
      CIPHERGATE_REDIS_KEY_PREFIX: redisPrefix,
      CIPHERGATE_PUBLIC_URL: PUBLIC_URL,
      CIPHERGATE_TWILIO_API_URL: twilio.url,
      CIPHERGATE_OPENAI_BASE_URL: `${openai.url}/v1`,
      CIPHERGATE_API_RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT_PER_MINUTE),
      // The test is the load balancer: its X-Forwarded-For names the client, so tests can be
      // callers of their own (every limit counts per client address).
      CIPHERGATE_TRUST_PROXY: '127.0.0.1',
      CIPHERGATE_LOG_LEVEL: 'info',
    };
    const tenant = {
      name: 'Scale Clinic',
      twilio: { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken, fromNumber: TENANT_FROM_NUMBER },
      openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini' },
    };
    const [portA, portB, portC] = await Promise.all([freePort(), freePort(), freePort()]);
    // All at once, on a database with no tables yet.
    const workerProcess = spawnCli(['worker'], { env, cwd });
    const started = await Promise.all([
      startChildServe({ env, cwd, port: portA, timeoutMs: START_TIMEOUT_MS }),
      startChildServe({ env, cwd, port: portB, timeoutMs: START_TIMEOUT_MS }),
      startChildServe({ env, cwd, port: portC, args: ['--no-workers'], timeoutMs: START_TIMEOUT_MS }),
      waitForOutput(workerProcess, (output) => output.stdout.includes('ciphergate worker running'), START_TIMEOUT_MS),
      runCliProcess(['users', 'create', '--email', EMAIL, '--role', 'admin', '--password-stdin'], { env, cwd, stdin: PASSWORD, timeoutMs: START_TIMEOUT_MS }),
      runCliProcess(['tenants', 'put', SLUG], { env, cwd, stdin: JSON.stringify(tenant), timeoutMs: START_TIMEOUT_MS }),
    ]);
    [a, b, c] = started;
    worker = workerProcess;
    for (const cli of [started[4], started[5]]) assert.equal(cli.code, 0, cli.stderr);
    await db.execute(sql.raw(`
      create table test_job_claims (job_id uuid not null, kind text not null, locked_by text not null, at timestamptz not null default clock_timestamp());
      create function test_record_claim() returns trigger language plpgsql as $$
        begin insert into test_job_claims (job_id, kind, locked_by) values (new.id, new.kind, new.locked_by); return new; end $$;
      create trigger test_record_claim after update of locked_by on jobs for each row
        when (new.locked_by is not null and new.locked_by is distinct from old.locked_by) execute function test_record_claim();`));
  });

  after(async () => {
    await stopChildren();
    await database?.cleanup();
    await Promise.all([twilio?.close(), openai?.close()]);
    await deleteKeys(redisPrefix).catch(() => undefined);
  });

  test('started at once on an empty database: every migration applied once, one signing key', { skip: gate.skip }, async () => {
    const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] };
    const applied = await queryRows<{ hash: string; count: string }>(db, sql`select hash, count(*)::text as count from drizzle.__drizzle_migrations group by hash`);
    assert.equal(applied.length, journal.entries.length);
    assert.ok(applied.every((row) => row.count === '1'), `migrations recorded twice: ${JSON.stringify(applied)}`);

    const active = await queryRows<{ kid: string }>(db, sql`select kid from signing_keys where retired_at is null`);
    assert.equal(active.length, 1, `active signing keys: ${active.length}`);
    for (const instance of [a, b, c]) {
      const jwks = await callJson(instance.url, 'GET', '/.well-known/jwks.json');
      assert.deepEqual(
        jwks.body.keys.map((key: { kid: string }) => key.kid),
        [active[0]!.kid],
      );
    }
    for (const process of [a.child, b.child, c.child, worker]) assert.deepEqual(errorsIn(process.output), []);
  });

  test('each job is claimed once and each message answered once, whichever instance took it', { skip: gate.skip }, async () => {
    const inbound = Array.from({ length: MESSAGES }, (_, index) => ({ from: phoneOf(index), marker: marker() }));
    const instances = [a, b, c];
    const statuses = await Promise.all(inbound.map((message, index) => postInbound(instances[index % instances.length]!.url, message)));
    assert.deepEqual(statuses, Array(MESSAGES).fill(200));
    await drained(MESSAGES);

    for (const message of inbound) {
      const calls = openai!.completions.filter((completion) => lastUserText(completion).includes(message.marker));
      assert.equal(calls.length, 1, `AI calls for one message: ${calls.length}`);
      assert.equal(twilio!.messages.filter((sent) => sent.to === message.from).length, 1, 'sends to one sender');
    }
    assert.equal(openai!.completions.length, MESSAGES);
    assert.equal(twilio!.messages.length, MESSAGES);

    const claims = await claimed();
    assert.equal(claims.length, 2 * MESSAGES, 'one ai-reply and one send job per message, each claimed once');
    assert.equal(new Set(claims.map((claim) => claim.job_id)).size, claims.length, 'a job was claimed twice');
    const claimers = new Set(claims.map((claim) => pidOf(claim.locked_by)));
    assert.ok(!claimers.has(c.pid), 'the --no-workers instance claimed a job');
    assert.deepEqual([...claimers].filter((pid) => ![a.pid, b.pid, worker.pid].includes(pid)), []);
    assert.deepEqual(twilio!.violations, []);
    assert.deepEqual(openai!.violations, []);
  });

  test('a session revoked through A is refused by B within one second', { skip: gate.skip }, async () => {
    const { accessToken } = await signInOverHttp(a.url, EMAIL, PASSWORD);
    // B has accepted (and may cache) the live session before the revocation.
    assert.equal((await callJson(b.url, 'GET', '/api/v1/auth/sessions', undefined, accessToken)).status, 200);
    assert.equal((await callJson(c.url, 'GET', '/api/v1/auth/sessions', undefined, accessToken)).status, 200);
    assert.equal((await callJson(a.url, 'POST', '/api/v1/auth/logout', undefined, accessToken)).status, 204);
    const revokedAt = Date.now();
    let refusedAfterMs: number | undefined;
    while (refusedAfterMs === undefined && Date.now() - revokedAt < 1_000) {
      const answer = await callJson(b.url, 'GET', '/api/v1/auth/sessions', undefined, accessToken);
      if (answer.status === 401) refusedAfterMs = Date.now() - revokedAt;
      else await sleep(20);
    }
    assert.ok(refusedAfterMs !== undefined, 'B still accepted the revoked session one second after A revoked it');
    assert.equal((await callJson(c.url, 'GET', '/api/v1/auth/sessions', undefined, accessToken)).status, 401);
  });

  test('rate-limit counts are shared: the limit trips at the shared count, not at twice it', { skip: gate.skip }, async () => {
    // One caller: an address of its own, whose made-up token verifies as nothing (so it counts
    // against the address, like no token at all).
    const token = `not-a-real-token-${randomBytes(8).toString('hex')}`;
    const statuses: number[] = [];
    for (let index = 0; index < RATE_LIMIT_PER_MINUTE + 10; index++) {
      const instance = index % 2 === 0 ? a : b;
      const response = await fetch(`${instance.url}/api/v1/auth/sessions`, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': '198.51.100.60' } });
      await response.arrayBuffer();
      statuses.push(response.status);
    }
    // Counted per instance, the first 429 would come at twice the limit (never, in this run).
    // A Redis command that times out lets its request through uncounted (the limit fails open),
    // so on a loaded machine the shared count may trip a request or two late; never early.
    const firstRefused = statuses.indexOf(429);
    assert.deepEqual(statuses.slice(0, RATE_LIMIT_PER_MINUTE), Array(RATE_LIMIT_PER_MINUTE).fill(401));
    assert.ok(firstRefused >= RATE_LIMIT_PER_MINUTE && firstRefused <= RATE_LIMIT_PER_MINUTE + 3, `first 429 at request ${firstRefused + 1}: ${statuses.join(' ')}`);
    assert.ok(statuses.slice(firstRefused).every((status) => status === 429), statuses.join(' '));
    // The counts live under this deployment's prefix, and only there.
    const keys = await redisKeys(redisPrefix);
    assert.ok(keys.some((key) => key.startsWith(`${redisPrefix}:api-rate:`)), `no rate-limit key under the prefix: ${JSON.stringify(keys)}`);
  });

  test('the audit chain stays unbroken under concurrent appends from both instances', { skip: gate.skip }, async () => {
    const deniedSecondFactors = sql`select count(*)::text as count from audit_events where action = 'auth.second-factor' and outcome = 'denied'`;
    const [before] = await queryRows<{ count: string }>(db, deniedSecondFactors);
    // Each second factor sent with an unknown challenge is an audit event, appended by the
    // instance that refused it; each from an address of its own, so no per-address limit turns
    // one into a 429 (counted per minute, not one row each).
    const attempts = Array.from({ length: REFUSED_SECOND_FACTORS_PER_INSTANCE }, () => [a, b]).flat();
    const attemptStatuses = await Promise.all(
      attempts.map(async (instance, index) => {
        const response = await fetch(`${instance.url}/api/v1/auth/second-factor`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': `198.51.100.${100 + index}` },
          body: JSON.stringify({ challengeToken: `cgc_${randomBytes(32).toString('base64url')}`, method: 'totp', code: '000000' }),
        });
        await response.arrayBuffer();
        return response.status;
      }),
    );
    assert.deepEqual(attemptStatuses, Array(attempts.length).fill(401));
    // Refused webhooks, meanwhile, are counted and written as aggregated entries at the stop (next test).
    const forged = Array.from({ length: REJECTED_WEBHOOKS_PER_INSTANCE }, () => [a, b]).flat();
    const statuses = await Promise.all(forged.map((instance) => postInbound(instance.url, { from: phoneOf(99), marker: marker() }, 'Zm9yZ2Vk')));
    assert.deepEqual(statuses, Array(forged.length).fill(403));

    const [afterward] = await queryRows<{ count: string }>(db, deniedSecondFactors);
    assert.equal(Number(afterward!.count) - Number(before!.count), attempts.length);
    const verification = await verifyAuditChain(db);
    assert.equal(verification.intact, true, JSON.stringify(verification));
    const starts = await queryRows<{ pid: number }>(db, sql`select (details->>'pid')::int as pid from audit_events where action = 'system.start'`);
    assert.deepEqual(new Set(starts.map((row) => row.pid)), new Set([a.pid, b.pid, c.pid]));
  });

  test('serve --no-workers never claims a job; the worker process answers what it stores', { skip: gate.skip }, async () => {
    // A and B leave (gracefully); C only serves HTTP, so W is the one process that works jobs.
    assert.deepEqual(await Promise.all([a.stop(), b.stop()]), [0, 0]);
    // Their clean stop wrote the refused webhooks of the test before, aggregated: every one counted.
    const rejected = await queryRows<{ count: number }>(db, sql`select (details->>'count')::int as count from audit_events where action = 'webhook.rejected'`);
    assert.ok(rejected.length <= 4, `${rejected.length} aggregated entries`);
    assert.equal(
      rejected.reduce((sum, row) => sum + row.count, 0),
      2 * REJECTED_WEBHOOKS_PER_INSTANCE,
    );
    assert.equal((await verifyAuditChain(db)).intact, true);
    const claimsBefore = (await claimed()).length;
    const sendsBefore = twilio!.messages.length;
    const inbound = Array.from({ length: SPLIT_MESSAGES }, (_, index) => ({ from: phoneOf(50 + index), marker: marker() }));
    assert.deepEqual(await Promise.all(inbound.map((message) => postInbound(c.url, message))), Array(SPLIT_MESSAGES).fill(200));
    await drained(sendsBefore + SPLIT_MESSAGES);

    const claims = (await claimed()).slice(claimsBefore);
    assert.equal(claims.length, 2 * SPLIT_MESSAGES);
    assert.deepEqual(new Set(claims.map((claim) => pidOf(claim.locked_by))), new Set([worker.pid]));
    for (const message of inbound) assert.equal(twilio!.messages.filter((sent) => sent.to === message.from).length, 1);

    const workerExit = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    worker.kill('SIGTERM');
    assert.deepEqual([await c.stop(), await workerExit], [0, 0]);
    for (const process of [a.child, b.child, c.child, worker]) assert.deepEqual(errorsIn(process.output), []);
  });
});
