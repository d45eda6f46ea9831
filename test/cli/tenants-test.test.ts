import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { SETUP_TEST_BODY_MARKER } from '../../src/domain/setup-test.js';
import { openDatabase, queryRows, type Database } from '../../src/store/connection.js';
import { startChildServe, type ChildServe } from '../helpers/child-serve.js';
import { assertOneLine, logLines, runCliProcess, stopChildren, type CliResult } from '../helpers/cli.js';
import { createPostgresDatabase, dropPostgresDatabase, postgresUnavailableReason } from '../helpers/database.js';
import { eventually } from '../helpers/eventually.js';
import { freePort } from '../helpers/ports.js';
import { TENANT_FROM_NUMBER } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';
import { DEFAULT_OPENAI_KEY, startOpenAiFake, type OpenAiFake } from '../fakes/openai.js';
import { DEFAULT_PODIUM_LOCATION, DEFAULT_PODIUM_TOKEN, startPodiumFake, type PodiumFake } from '../fakes/podium.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest, startTwilioFake, type TwilioFake } from '../fakes/twilio.js';

/**
 * Issue 15 item 5: `ciphergate tenants test SLUG` sends correctly signed test deliveries to the
 * tenant's public webhook URLs and reports each hop, with a hint for each failure; a test message
 * is stored but never reaches OpenAI or Twilio; a forged "test" delivery is refused like any other.
 */
after(stopChildren);

const PODIUM_SECRET = `podium-secret-${randomBytes(8).toString('hex')}`;

function tenantJson(): string {
  return JSON.stringify({
    name: 'Setup Test Clinic',
    twilio: { ...DEFAULT_TWILIO_ACCOUNT, fromNumber: TENANT_FROM_NUMBER },
    openai: { apiKey: DEFAULT_OPENAI_KEY, model: 'gpt-4o-mini', systemPrompt: 'Be brief.' },
    podium: { apiKey: DEFAULT_PODIUM_TOKEN, locationUid: DEFAULT_PODIUM_LOCATION, webhookSecret: PODIUM_SECRET },
    allowIps: { twilio: [], airtable: [], podium: [] },
  });
}

interface Report {
  tenant: string;
  passed: boolean;
  deliveries: Array<{ provider: string; url: string; hops: Array<{ hop: string; result: string; detail: string; hint?: string }> }>;
}

function reportOf(result: CliResult): Report {
  return JSON.parse(result.stdout) as Report;
}

describe('tenants test beside a running server on the embedded store', { timeout: 300_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'cg-setup-test-'));
  let twilio: TwilioFake;
  let openai: OpenAiFake;
  let podium: PodiumFake;
  let server: ChildServe;
  let env: Record<string, string>;
  const cli = (args: string[], stdin?: string) => runCliProcess(args, { env, cwd: root, timeoutMs: 120_000, ...(stdin === undefined ? {} : { stdin }) });

  before(async () => {
    [twilio, openai, podium] = await Promise.all([startTwilioFake(), startOpenAiFake(), startPodiumFake()]);
    const port = await freePort();
    env = {
      CIPHERGATE_DATA_DIR: join(root, 'data'),
      CIPHERGATE_PUBLIC_URL: `http://127.0.0.1:${port}`,
      CIPHERGATE_TWILIO_API_URL: twilio.url,
      CIPHERGATE_OPENAI_BASE_URL: `${openai.url}/v1`,
      CIPHERGATE_PODIUM_API_URL: podium.url,
      CIPHERGATE_LOG_LEVEL: 'info',
    };
    server = await startChildServe({ env, cwd: root, port });
  });
  after(async () => {
    await server?.stop();
    await Promise.all([twilio?.close(), openai?.close(), podium?.close()]);
    rmSync(root, { recursive: true, force: true });
  });

  test('every hop passes through the admin socket, and the test messages reach neither OpenAI nor Twilio', async () => {
    const put = await cli(['tenants', 'put', 'setup-clinic'], tenantJson());
    assert.equal(put.code, 0, put.stderr);

    const result = await cli(['tenants', 'test', 'setup-clinic', '--json']);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const report = reportOf(result);
    assert.equal(report.passed, true);
    assert.deepEqual(
      report.deliveries.map((delivery) => [delivery.provider, delivery.url, delivery.hops.map((hop) => `${hop.hop}:${hop.result}`)]),
      [
        ['twilio', `${env.CIPHERGATE_PUBLIC_URL}/webhooks/twilio/setup-clinic/sms`, ['reachable:pass', 'signature:pass', 'stored:pass', 'ai:skipped', 'reply:skipped']],
        ['podium', `${env.CIPHERGATE_PUBLIC_URL}/webhooks/podium/setup-clinic`, ['reachable:pass', 'signature:pass', 'stored:pass', 'ai:skipped', 'reply:skipped']],
      ],
    );
    const lines = await cli(['tenants', 'test', 'setup-clinic']);
    assert.equal(lines.code, 0, lines.stderr);
    assert.match(lines.stdout, /tenant setup-clinic: every hop passed\n$/);

    // The test messages enqueued nothing; a real message after them is answered, so the worker
    // runs, and what reached OpenAI and Twilio is that message's only.
    const jobs = await cli(['jobs', 'list', '--json']);
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.deepEqual((JSON.parse(jobs.stdout) as { jobs: unknown[] }).jobs, []);
    const realSid = `SM${randomBytes(16).toString('hex')}`;
    const params = { MessageSid: realSid, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: '+14155550177', To: TENANT_FROM_NUMBER, Body: 'Are you open today?' };
    const path = '/webhooks/twilio/setup-clinic/sms';
    const real = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `${env.CIPHERGATE_PUBLIC_URL}${path}`, params) },
      body: new URLSearchParams(params).toString(),
    });
    assert.equal(real.status, 200, await real.text());
    assert.ok(await eventually(() => twilio.requests.some((request) => request.method === 'POST'), 60_000), `the real message was not answered: openai ${openai.requests.length} requests\n${server.tail(4000)}`);
    for (const request of [...openai.requests, ...twilio.requests, ...podium.requests]) {
      assert.ok(!request.rawBody.toString('utf8').includes(SETUP_TEST_BODY_MARKER), `a setup test message reached ${request.path}`);
    }
    assert.equal(openai.requests.length, 1);

    // Audited, with the result; the log holds neither the test bodies nor the secrets.
    const audit = await cli(['audit', 'verify']);
    assert.equal(audit.code, 0, audit.stderr);
    const logs = server.logs();
    assert.ok(!logs.includes(SETUP_TEST_BODY_MARKER), 'a test message body is in the server log');
    assert.ok(!logs.includes(DEFAULT_TWILIO_ACCOUNT.authToken) && !logs.includes(PODIUM_SECRET), 'a secret is in the server log');
    assert.ok(logLines(server.child.output.stdout).some((line) => line.msg === 'AI skipped: setup test'));
  });

  test('an unknown tenant is one line and exit 1', async () => {
    const result = await cli(['tenants', 'test', 'no-such-clinic']);
    assert.equal(result.code, 1);
    assertOneLine(result.stderr);
    assert.match(result.stderr, /^ciphergate: tenants test: no tenant "no-such-clinic"\n$/);
  });
});

describe('tenants test with a wrong public URL (the CLI on PostgreSQL beside the server)', { timeout: 300_000 }, async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  if (gate.skip) {
    test('skipped', { skip: gate.skip }, () => undefined);
    return;
  }
  const root = mkdtempSync(join(tmpdir(), 'cg-setup-test-pg-'));
  const databaseName = `cg_setup_${randomBytes(6).toString('hex')}`;
  let server: ChildServe;
  let env: Record<string, string>;
  let database: Database;
  const cliWithPublicUrl = (publicUrl: string, args: string[], stdin?: string) =>
    runCliProcess(args, { env: { ...env, CIPHERGATE_PUBLIC_URL: publicUrl }, cwd: root, timeoutMs: 120_000, ...(stdin === undefined ? {} : { stdin }) });

  before(async () => {
    const url = await createPostgresDatabase(databaseName);
    const port = await freePort();
    env = {
      CIPHERGATE_DATABASE_URL: url,
      CIPHERGATE_MASTER_KEY: randomBytes(32).toString('base64'),
      CIPHERGATE_DATA_DIR: join(root, 'data'),
      CIPHERGATE_PUBLIC_URL: `http://127.0.0.1:${port}`,
      // Nothing may be called for real; unreachable on purpose.
      CIPHERGATE_TWILIO_API_URL: 'http://127.0.0.1:9',
      CIPHERGATE_OPENAI_BASE_URL: 'http://127.0.0.1:9',
      CIPHERGATE_PODIUM_API_URL: 'http://127.0.0.1:9',
      CIPHERGATE_LOG_LEVEL: 'info',
    };
    server = await startChildServe({ env, cwd: root, port });
    const put = await cliWithPublicUrl(env.CIPHERGATE_PUBLIC_URL!, ['tenants', 'put', 'wrong-url'], tenantJson());
    assert.equal(put.code, 0, put.stderr);
    database = await openDatabase({ url, connectTimeoutSeconds: 5, maxConnections: 2 });
  });
  after(async () => {
    await database?.close();
    await server?.stop();
    await dropPostgresDatabase(databaseName);
    rmSync(root, { recursive: true, force: true });
  });

  const storedCount = async () => (await queryRows<{ count: number }>(database.db, sql`select count(*)::int as count from messages`))[0]!.count;

  test('a host and port nobody listens on: unreachable, with the public URL in the hint', async () => {
    const closedPort = await freePort();
    const result = await cliWithPublicUrl(`http://127.0.0.1:${closedPort}`, ['tenants', 'test', 'wrong-url', '--json']);
    assert.equal(result.code, 1);
    const report = reportOf(result);
    for (const delivery of report.deliveries.filter((candidate) => candidate.provider !== 'airtable')) {
      assert.equal(delivery.hops.length, 1);
      assert.equal(delivery.hops[0]!.hop, 'reachable');
      assert.equal(delivery.hops[0]!.result, 'fail');
      assert.match(delivery.hops[0]!.detail, /ECONNREFUSED/);
      assert.match(delivery.hops[0]!.hint!, new RegExp(`is the server reachable at http://127\\.0\\.0\\.1:${closedPort}\\?`));
    }
    assert.match(result.stderr, /^ciphergate: tenants test: wrong-url: a hop failed/);
  });

  test('a path prefix the server does not serve: 404 and the path-prefix hint', async () => {
    const result = await cliWithPublicUrl(`${env.CIPHERGATE_PUBLIC_URL}/gate`, ['tenants', 'test', 'wrong-url']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /fail +reachable +answered 404\n +hint: the proxy does not pass \/gate\/webhooks\/twilio\/wrong-url\/sms to Ciphergate as is: check the path prefix/);
  });

  test('a public URL other than the one the server checks: signature refused, the hint names the signed URL and the server logs the checked one', async () => {
    const before = await storedCount();
    const signedBase = env.CIPHERGATE_PUBLIC_URL!.replace('127.0.0.1', 'localhost');
    const result = await cliWithPublicUrl(signedBase, ['tenants', 'test', 'wrong-url', '--json']);
    assert.equal(result.code, 1);
    const twilioDelivery = reportOf(result).deliveries.find((delivery) => delivery.provider === 'twilio')!;
    const signature = twilioDelivery.hops.find((hop) => hop.hop === 'signature')!;
    assert.equal(signature.result, 'fail');
    assert.match(signature.detail, new RegExp(`signed for ${signedBase}/webhooks/twilio/wrong-url/sms`));
    assert.match(signature.hint!, /checkedUrl/);
    const checkedUrl = `${env.CIPHERGATE_PUBLIC_URL}/webhooks/twilio/wrong-url/sms`;
    assert.ok(await eventually(() => logLines(server.child.output.stdout).some((line) => line.checkedUrl === checkedUrl), 10_000), 'the server log names the URL it checked');
    // Podium signs the timestamp and body, not the URL: its delivery passes and is stored; the
    // refused Twilio delivery stored nothing.
    assert.deepEqual(
      reportOf(result).deliveries.find((delivery) => delivery.provider === 'podium')!.hops.map((hop) => `${hop.hop}:${hop.result}`),
      ['reachable:pass', 'signature:pass', 'stored:pass', 'ai:skipped', 'reply:skipped'],
    );
    assert.equal(await storedCount(), before + 1, 'only the Podium test message is stored');
  });

  test('a forged test delivery (the marker, a test sid, a bad signature) is refused and stores nothing', async () => {
    const before = await storedCount();
    const sid = `SM7e57${randomBytes(14).toString('hex')}`;
    const params = { MessageSid: sid, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: '+15005550006', To: TENANT_FROM_NUMBER, Body: `${SETUP_TEST_BODY_MARKER} forged` };
    const path = '/webhooks/twilio/wrong-url/sms';
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest('not-the-auth-token', `${env.CIPHERGATE_PUBLIC_URL}${path}`, params) },
      body: new URLSearchParams(params).toString(),
    });
    assert.equal(response.status, 403);
    assert.equal(await storedCount(), before);
  });

  test('a correctly signed test delivery is stored with no follow-up job', async () => {
    const result = await cliWithPublicUrl(env.CIPHERGATE_PUBLIC_URL!, ['tenants', 'test', 'wrong-url', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const jobs = await queryRows<{ count: number }>(database.db, sql`select count(*)::int as count from jobs`);
    assert.equal(jobs[0]!.count, 0);
  });

  test('every run is audited as tenant.setup-test with its result, ids and hop names only', async () => {
    const entries = await queryRows<{ outcome: string; details: Record<string, unknown> }>(
      database.db,
      sql`select outcome, details from audit_events where action = 'tenant.setup-test' order by seq`,
    );
    assert.deepEqual(
      entries.map((entry) => [entry.outcome, entry.details]),
      [
        ['failure', { providers: 'twilio,podium', failedHops: 'twilio:reachable,podium:reachable' }],
        ['failure', { providers: 'twilio,podium', failedHops: 'twilio:reachable,podium:reachable' }],
        ['failure', { providers: 'twilio,podium', failedHops: 'twilio:signature' }],
        ['success', { providers: 'twilio,podium', failedHops: 'none' }],
      ],
    );
  });
});
