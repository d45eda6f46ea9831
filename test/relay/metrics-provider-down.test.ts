import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { JOB } from '../../src/domain/job-kinds.js';
import { queryRows } from '../../src/store/connection.js';
import { DEFAULT_OPENAI_KEY } from '../fakes/openai.js';
import { DEFAULT_TWILIO_ACCOUNT } from '../fakes/twilio.js';
import { runCliProcess } from '../helpers/cli.js';
import { describeEachBackend, postgresUnavailableReason } from '../helpers/database.js';
import { sampleSum, scrapeApp, type Scrape } from '../helpers/metrics.js';
import { randomPhone, openRelayHarness, type RelayHarness } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';

/**
 * The relay as `/metrics` shows it: what a signed webhook carries never reaches the scrape, and
 * the "provider down for minutes" drill of issue 7 (compressed to seconds by a short backoff):
 * the queue backs off, the backlog is visible, nothing is dropped, the jobs go dead after their
 * attempts, and an operator lists and replays them with the CLI once the provider is back.
 */

const deltaOf = (before: Scrape, after: Scrape) => (name: string, labels: Record<string, string>) => sampleSum(after, name, labels) - sampleSum(before, name, labels);

async function adminToken(harness: RelayHarness): Promise<string> {
  return (await harness.signIn(await harness.createUser({ role: 'admin' }))).accessToken;
}

await describeEachBackend('metrics of the relay: nothing personal in the scrape', (backend) => {
  let harness: RelayHarness;
  let token: string;
  before(async () => {
    harness = await openRelayHarness(backend);
    token = await adminToken(harness);
  });
  after(async () => harness?.close());

  test('a canary phone number and body through a signed webhook, answered and synced, never appear in /metrics', async () => {
    const slug = `canary-${randomBytes(4).toString('hex')}`;
    await harness.putTenant(slug);
    const phone = randomPhone();
    const body = `canary body ${randomBytes(8).toString('hex')} please call me`;
    const before = await scrapeApp(harness, token);

    const { response, sid } = await harness.sendSms(slug, phone, body);
    assert.equal(response.statusCode, 200, response.body);
    await harness.drain();
    assert.equal(harness.twilio.messages.filter((message) => message.to === phone).length, 1, 'the reply went out');

    const after = await scrapeApp(harness, token);
    const delta = deltaOf(before, after);
    assert.equal(delta('ciphergate_webhook_accepted_total', { provider: 'twilio', outcome: 'stored' }), 1);
    assert.equal(delta('ciphergate_http_requests_total', { method: 'POST', route: '/webhooks/twilio/:tenant/sms', status: '200' }), 1);
    assert.ok(delta('ciphergate_seal_operations_total', { operation: 'seal' }) >= 2, 'the phone number and body were sealed');
    assert.ok(delta('ciphergate_seal_operations_total', { operation: 'open' }) >= 1, 'and opened for the AI reply');
    assert.equal(delta('ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'done' }), 1);
    assert.equal(delta('ciphergate_jobs_total', { kind: JOB.send, outcome: 'done' }), 1);
    assert.equal(delta('ciphergate_job_attempts_total', { kind: JOB.aiReply }), 1);

    const reply = harness.twilio.messages.find((message) => message.to === phone)!.body;
    const secrets = [phone, phone.slice(1), body, 'canary body', reply, slug, sid, DEFAULT_TWILIO_ACCOUNT.authToken, DEFAULT_OPENAI_KEY, harness.airtableMacSecret(slug)];
    for (const secret of secrets) assert.ok(!after.text.includes(secret), `the scrape holds ${secret.slice(0, 10)}…`);
    // Every label value is a fixed word, a job kind, a route pattern, a status code or a bucket bound.
    for (const sample of after.samples) {
      for (const [label, value] of Object.entries(sample.labels)) {
        assert.match(value, /^(?:[A-Za-z0-9_.+:/-]{1,64})$/, `${sample.name}{${label}} = ${value}`);
        if (label === 'route') assert.ok(value === 'unmatched' || value.startsWith('/'), `route ${value} is a pattern`);
      }
    }
  });
});

describe('drill: a provider down for a while', async () => {
  const gate = serviceGate('PostgreSQL', await postgresUnavailableReason());
  let harness: RelayHarness | undefined;
  after(async () => harness?.close());

  test('backlog visible while OpenAI fails, nothing dropped, dead after max attempts, listed and replayed by the CLI', { skip: gate.skip, timeout: 300_000 }, async () => {
    // Backoff of about 0.1, 0.2, 0.4, 0.8 s, then 1 s: the outage runs through every attempt in seconds.
    const h = (harness = await openRelayHarness('postgres', { retry: { baseDelayMs: 200, maxDelayMs: 1_000 } }));
    const token = await adminToken(h);
    const slug = `down-${randomBytes(4).toString('hex')}`;
    const tenant = await h.putTenant(slug, (document) => {
      delete document.airtable;
      delete document.podium;
    });
    let providerDown = true;
    h.openai.failNext({ kind: 'status', status: 503, body: { error: { message: 'The server is overloaded', type: 'server_error', param: null, code: null } } }, { times: 100_000, match: () => providerDown });

    const before = await scrapeApp(h, token);
    const senders = Array.from({ length: 3 }, () => ({ phone: randomPhone(), body: `drill ${randomBytes(6).toString('hex')} is the clinic open` }));
    for (const sender of senders) assert.equal((await h.sendSms(slug, sender.phone, sender.body)).response.statusCode, 200, 'acknowledged while the provider is down');

    const worker = h.startWorker();
    const depthOf = (scrape: Scrape, state: string) => sampleSum(scrape, 'ciphergate_job_queue_depth', { kind: JOB.aiReply, state });
    const retriesOf = (scrape: Scrape) => sampleSum(scrape, 'ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'retry' }) - sampleSum(before, 'ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'retry' });
    const backlogScrapes: Scrape[] = [];
    const deadline = Date.now() + 120_000;
    let scrape: Scrape;
    for (;;) {
      scrape = await scrapeApp(h, token);
      if (depthOf(scrape, 'ready') + depthOf(scrape, 'delayed') + depthOf(scrape, 'running') > 0) backlogScrapes.push(scrape);
      if (depthOf(scrape, 'dead') === senders.length) break;
      assert.ok(Date.now() < deadline, `the jobs did not die in time: ${JSON.stringify(await h.relay.queue.depthByKind())}`);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }

    // While it was down: a backlog on the gauge, jobs backing off, and retries counted as they happened.
    assert.ok(backlogScrapes.length >= 2, 'the backlog was visible on /metrics');
    assert.ok(backlogScrapes.some((backlog) => depthOf(backlog, 'delayed') > 0), 'jobs were seen backing off (state delayed)');
    const retrySeries = backlogScrapes.map(retriesOf);
    assert.ok(retrySeries.at(-1)! > retrySeries[0]!, `retry outcomes rose during the outage: ${retrySeries.join(', ')}`);
    assert.ok(backlogScrapes.some((backlog) => sampleSum(backlog, 'ciphergate_job_queue_oldest_ready_seconds') >= 0));

    // The gauge reads the database, the counters follow once the worker hears back from it: a
    // scrape in between may see the last job dead but not yet counted.
    while (sampleSum(scrape, 'ciphergate_job_dead_letters_total', { kind: JOB.aiReply }) - sampleSum(before, 'ciphergate_job_dead_letters_total', { kind: JOB.aiReply }) < senders.length) {
      assert.ok(Date.now() < deadline, 'the dead letters were not counted in time');
      await new Promise((resolve) => setTimeout(resolve, 40));
      scrape = await scrapeApp(h, token);
    }

    // Nothing dropped: every job used every attempt, and sits in the dead letters.
    const maxAttempts = (await h.relay.queue.list({ dead: true }))[0]!.maxAttempts;
    const delta = deltaOf(before, scrape);
    assert.equal(delta('ciphergate_job_attempts_total', { kind: JOB.aiReply }), senders.length * maxAttempts);
    assert.equal(delta('ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'retry' }), senders.length * (maxAttempts - 1));
    assert.equal(delta('ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'dead' }), senders.length);
    assert.equal(delta('ciphergate_job_dead_letters_total', { kind: JOB.aiReply }), senders.length);
    assert.equal(depthOf(scrape, 'ready') + depthOf(scrape, 'delayed') + depthOf(scrape, 'running'), 0);
    assert.equal(h.openai.requests.filter((request) => request.path === '/v1/chat/completions').length, senders.length * maxAttempts, 'every attempt reached the provider');
    assert.equal(h.openai.completions.length, 0, 'and none was answered');
    assert.equal(h.twilio.messages.length, 0, 'nothing was answered');
    const stored = await queryRows<{ n: number }>(h.db, sql`select count(*)::int as n from messages where tenant_id = ${tenant.id} and direction = 'inbound'`);
    assert.equal(stored[0]!.n, senders.length, 'every acknowledged message is stored');

    // The operator's view: the CLI against the same database.
    const cli = { env: { CIPHERGATE_DATABASE_URL: h.test.url!, CIPHERGATE_PUBLIC_URL: h.config.publicUrl }, cwd: process.cwd(), timeoutMs: 180_000 };
    const listed = await runCliProcess(['jobs', 'list', '--dead', '--json'], cli);
    assert.equal(listed.code, 0, listed.stderr);
    const dead = (JSON.parse(listed.stdout) as { jobs: Array<{ id: string; kind: string; attempts: number; lastError: string }> }).jobs;
    assert.deepEqual(
      dead.map((job) => [job.kind, job.attempts, job.lastError.split(' ').slice(0, 3).join(' ')]),
      senders.map(() => [JOB.aiReply, maxAttempts, 'ProviderError openai 503']),
    );
    for (const sender of senders) assert.ok(!listed.stdout.includes(sender.phone) && !listed.stdout.includes(sender.body), 'the dead letters hold ids only');

    // The provider is back; each dead job is replayed once and answered once.
    providerDown = false;
    const retried = await Promise.all(dead.map((job) => runCliProcess(['jobs', 'retry', job.id], cli)));
    for (const [index, result] of retried.entries()) assert.deepEqual([result.code, result.stdout], [0, `${dead[index]!.id}\n`], result.stderr);
    const replayDeadline = Date.now() + 120_000;
    while (h.twilio.messages.length < senders.length || (await h.relay.queue.depth()).pending + (await h.relay.queue.depth()).running > 0) {
      assert.ok(Date.now() < replayDeadline, `the replayed jobs did not finish: ${JSON.stringify(await h.relay.queue.depthByKind())}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(h.twilio.messages.map((message) => message.to).sort(), senders.map((sender) => sender.phone).sort(), 'one answer per message');

    // As above: the last send's outcome is counted just after its row is gone.
    let recovered = await scrapeApp(h, token);
    while (deltaOf(before, recovered)('ciphergate_jobs_total', { kind: JOB.send, outcome: 'done' }) < senders.length && Date.now() < replayDeadline) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      recovered = await scrapeApp(h, token);
    }
    const recoveredDelta = deltaOf(before, recovered);
    assert.equal(recoveredDelta('ciphergate_jobs_total', { kind: JOB.aiReply, outcome: 'done' }), senders.length);
    assert.equal(recoveredDelta('ciphergate_jobs_total', { kind: JOB.send, outcome: 'done' }), senders.length);
    for (const state of ['ready', 'delayed', 'running', 'dead']) assert.equal(depthOf(recovered, state), 0, `no ${state} ai-reply job left`);
    for (const sender of senders) {
      for (const text of [recovered.text, ...backlogScrapes.map((backlog) => backlog.text), h.logs.text()]) {
        assert.ok(!text.includes(sender.phone) && !text.includes(sender.body), 'no phone number or body in the scrapes or the log');
      }
    }
    await worker.stop();
  });
});
