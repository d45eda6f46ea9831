import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { openRuntime, type Runtime } from '../../src/cli/runtime.js';
import { JOB } from '../../src/domain/job-kinds.js';
import type { Relay } from '../../src/relay/relay.js';
import { queryRows } from '../../src/store/connection.js';
import { JobQueue, type JobSummary, type QueueDepth } from '../../src/store/job-queue.js';
import { assertOneLine, runCliProcess, stopChildren } from '../helpers/cli.js';
import { openCliWorkspace, type CliWorkspace } from '../helpers/cli-identity.js';
import { describeEachBackend, postgresUnavailableReason } from '../helpers/database.js';
import { openRelayHarness, type RelayHarness } from '../helpers/relay.js';
import { serviceGate } from '../helpers/services.js';
import {
  assertNoPlaintext,
  jobDead,
  jobRow,
  ObservedJobs,
  openOutageRelay,
  prepareOutageCase,
  queueSettled,
  RETRY,
  warmUpFakes,
} from '../helpers/provider-outage-scenarios.js';

/**
 * `ciphergate jobs list [--dead] [--json]` and `ciphergate jobs retry ID`, run as an operator
 * runs them (the real CLI entry in a child process) against the database the jobs are in.
 */

after(stopChildren);

interface ListedJobs {
  jobs: Array<Omit<JobSummary, 'runAt' | 'createdAt'> & { runAt: string; createdAt: string }>;
  depth: QueueDepth;
}

function parseListing(stdout: string): ListedJobs {
  return JSON.parse(stdout) as ListedJobs;
}

/** The workspace's database opened in this process; on PGlite it must be closed before the CLI runs. */
function openInProcess(space: CliWorkspace): Promise<Runtime> {
  const sink = new PassThrough();
  sink.resume();
  return openRuntime({ env: space.env, cwd: space.cwd, stdout: sink, stderr: sink, stdin: Readable.from([]) }, { logTo: 'stderr', defaultLogLevel: 'silent' });
}

await describeEachBackend('jobs list and jobs retry', (backend) => {
  let space: CliWorkspace;
  let deadId: string;
  let pendingId: string;
  const summary = 'ProviderError twilio 400 code=21211';

  before(async () => {
    space = await openCliWorkspace(backend, 'jobs');
    const runtime = await openInProcess(space);
    try {
      const queue = new JobQueue(runtime.database.db);
      await queue.enqueue([
        { kind: JOB.send, payload: { messageId: randomUUID() } },
        { kind: JOB.airtableSync, payload: { messageId: randomUUID() }, runAt: new Date(Date.now() + 3_600_000) },
      ]);
      // A send the provider refused for good: dead after its first attempt.
      const [claimed] = await queue.claim('cli-test-worker', [JOB.send], 1);
      assert.equal(await queue.fail(claimed!, 'cli-test-worker', { retryable: false, summary }), 'dead');
      deadId = claimed!.id;
      pendingId = (await queue.list()).find((job) => job.kind === JOB.airtableSync)!.id;
    } finally {
      await runtime.close();
    }
  });
  after(async () => space?.cleanup());

  test('list --dead --json shows the dead letters only, with what failed; list --json the live jobs only', async () => {
    const [dead, live, table] = await space.runAll([
      ['jobs', 'list', '--dead', '--json'],
      ['jobs', 'list', '--json'],
      ['jobs', 'list', '--dead'],
    ]);
    assert.equal(dead!.code, 0, dead!.stderr);
    const deadListing = parseListing(dead!.stdout);
    assert.deepEqual(
      deadListing.jobs.map((job) => ({ id: job.id, kind: job.kind, state: job.state, attempts: job.attempts, lastError: job.lastError })),
      [{ id: deadId, kind: JOB.send, state: 'dead', attempts: 1, lastError: summary }],
    );
    assert.ok(!Number.isNaN(Date.parse(deadListing.jobs[0]!.runAt)), 'runAt is an ISO date');
    assert.deepEqual({ pending: deadListing.depth.pending, dead: deadListing.depth.dead, running: deadListing.depth.running }, { pending: 1, dead: 1, running: 0 });

    assert.equal(live!.code, 0, live!.stderr);
    assert.deepEqual(
      parseListing(live!.stdout).jobs.map((job) => [job.id, job.state]),
      [[pendingId, 'pending']],
    );

    assert.equal(table!.code, 0, table!.stderr);
    const [header, row, ...rest] = table!.stdout.trimEnd().split('\n');
    assert.match(header!, /^ID +KIND +STATE +ATTEMPTS +RUN AT +LAST ERROR$/);
    assert.match(row!, new RegExp(`^${deadId} +send +dead +1/\\d+ +\\S+ +${summary}$`));
    assert.deepEqual(rest, []);
    assert.match(table!.stderr, /1 pending, 0 running, 1 dead/);
  });

  test('retry puts a dead job back with fresh attempts and audits it; a second retry, an unknown id and a non-id are refused', async () => {
    const [retried] = await space.runAll([['jobs', 'retry', deadId]]);
    assert.equal(retried!.code, 0, retried!.stderr);
    assert.equal(retried!.stdout, `${deadId}\n`);

    const unknownId = randomUUID();
    const [again, unknown, notAnId] = await space.runAll([
      ['jobs', 'retry', deadId],
      ['jobs', 'retry', unknownId],
      ['jobs', 'retry', 'not-a-job'],
    ]);
    assert.equal(again!.code, 1, 'the job is no longer dead');
    assertOneLine(again!.stderr);
    assert.equal(again!.stderr, `ciphergate: jobs retry: no dead job ${deadId} (see \`ciphergate jobs list --dead\`)\n`);
    assert.equal(unknown!.code, 1);
    assertOneLine(unknown!.stderr);
    assert.equal(notAnId!.code, 2);
    assertOneLine(notAnId!.stderr);
    assert.match(notAnId!.stderr, /is not a job id/);
    for (const refused of [again!, unknown!, notAnId!]) assert.equal(refused.stdout, '');

    const runtime = await openInProcess(space);
    try {
      const [job] = await queryRows<{ state: string; attempts: number; last_error: string | null }>(runtime.database.db, sql`select state, attempts, last_error from jobs where id = ${deadId}`);
      assert.deepEqual({ state: job!.state, attempts: job!.attempts }, { state: 'pending', attempts: 0 });
      const audits = await queryRows<{ target_id: string; outcome: string }>(runtime.database.db, sql`select target_id, outcome from audit_events where action = 'job.retry'`);
      assert.deepEqual(audits, [{ target_id: deadId, outcome: 'success' }], 'one audited retry; refusals change nothing');
    } finally {
      await runtime.close();
    }
  });
});

/*
 * The whole operator loop on a real outage: Twilio refuses a send for good, the job is dead, the
 * operator finds it with `jobs list --dead --json`, replays it with `jobs retry`, and a worker
 * sends it, once. On PostgreSQL, where the CLI and the running relay share the database.
 */
const postgres = serviceGate('PostgreSQL', await postgresUnavailableReason());
describe('jobs list --dead and jobs retry on a dead send from a Twilio outage [postgres]', { skip: postgres.skip }, () => {
  let harness: RelayHarness;
  let relay: Relay;
  let cwd: string;
  before(async () => {
    harness = await openRelayHarness('postgres', { retry: RETRY });
    relay = openOutageRelay(harness);
    await warmUpFakes(harness);
    cwd = mkdtempSync(join(tmpdir(), 'cg-jobs-'));
  });
  after(async () => {
    await harness?.close();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  test('the dead send is listed without its number or text, replayed from the CLI, and sent once', async () => {
    const env = { CIPHERGATE_DATABASE_URL: harness.test.url! };
    const observed = new ObservedJobs(harness, relay);
    const outage = await prepareOutageCase(harness, observed, 'twilio');
    outage.fake.failNext(
      { kind: 'status', status: 400, body: { code: 21211, message: `The 'To' number ${outage.phone} is not a valid phone number.`, more_info: 'https://www.twilio.com/docs/errors/21211', status: 400 } },
      { times: 1 },
    );
    await observed.runUntil(jobDead(harness, outage.jobId), { what: 'the send to die' });

    const listed = await runCliProcess(['jobs', 'list', '--dead', '--json'], { env, cwd, timeoutMs: 300_000 });
    assert.equal(listed.code, 0, listed.stderr);
    const mine = parseListing(listed.stdout).jobs.filter((job) => job.id === outage.jobId);
    assert.equal(mine.length, 1);
    assert.equal(mine[0]!.kind, JOB.send);
    assert.equal(mine[0]!.tenantId, outage.tenant.id);
    assert.equal(mine[0]!.attempts, 1);
    assert.equal(mine[0]!.lastError, 'ProviderError twilio 400 code=21211');
    assertNoPlaintext(listed.stdout + listed.stderr, outage.secrets(), 'jobs list');

    const retried = await runCliProcess(['jobs', 'retry', outage.jobId], { env, cwd, timeoutMs: 300_000 });
    assert.equal(retried.code, 0, retried.stderr);
    assert.equal(retried.stdout, `${outage.jobId}\n`);
    assert.equal((await jobRow(harness, outage.jobId))!.state, 'pending');

    await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the replayed send' });
    const sent = outage.effects();
    assert.equal(sent.length, 1);
    assert.deepEqual(await outage.recordedIds(), [sent[0]!.id]);
    const relisted = await runCliProcess(['jobs', 'list', '--dead', '--json'], { env, cwd, timeoutMs: 300_000 });
    assert.equal(
      parseListing(relisted.stdout).jobs.some((job) => job.id === outage.jobId),
      false,
      'the replayed job left the dead letters',
    );
  });
});
