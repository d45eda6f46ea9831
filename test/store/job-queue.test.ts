import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { createLogger } from '../../src/log/logger.js';
import { ProviderError } from '../../src/providers/provider-error.js';
import { JobWorker, PermanentJobError } from '../../src/relay/job-worker.js';
import { queryRows } from '../../src/store/connection.js';
import { enqueueJobs, JobPayloadError, JobQueue } from '../../src/store/job-queue.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';

const silent = createLogger({ level: 'silent' });

async function jobRows(database: TestDatabase) {
  return queryRows<{ id: string; state: string; attempts: number; run_at: Date; last_error: string | null; payload: unknown }>(
    database.database.db,
    sql`select id, state, attempts, run_at, last_error, payload from jobs order by created_at`,
  );
}

await describeEachBackend('job queue', (backend) => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase(backend);
  });
  after(async () => database.cleanup());

  const reset = async () => {
    await database.database.db.execute(sql`delete from jobs`);
  };

  test('a job enqueued in a transaction that rolls back does not exist', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await assert.rejects(
      database.database.db.transaction(async (tx) => {
        await enqueueJobs(tx as never, [{ kind: 'send', payload: { messageId: 'm-1' } }]);
        throw new Error('roll back');
      }),
      /roll back/,
    );
    assert.deepEqual(await queue.list(), []);
  });

  test('payloads hold ids only: a body, a phone number or an email is refused before anything is written', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    for (const value of ['Hello there, my card is 4111', '+14155552671', 'maria@example.com']) {
      await assert.rejects(queue.enqueue({ kind: 'send', payload: { messageId: value } }), (error: unknown) => {
        assert.ok(error instanceof JobPayloadError);
        // The refusal names the member, never the value.
        assert.ok(!error.message.includes(value));
        return true;
      });
    }
    assert.deepEqual(await jobRows(database), []);
  });

  test('two workers claiming at once never get the same job (SKIP LOCKED)', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue(Array.from({ length: 20 }, (_, index) => ({ kind: 'work', payload: { n: index } })));
    const [first, second] = await Promise.all([queue.claim('worker-a', ['work'], 12), queue.claim('worker-b', ['work'], 12)]);
    const ids = [...first, ...second].map((job) => job.id);
    assert.equal(new Set(ids).size, ids.length, 'a job was claimed twice');
    assert.equal(ids.length, 20);
    // Nothing is left to claim while the leases hold.
    assert.deepEqual(await queue.claim('worker-c', ['work'], 10), []);
  });

  test('a job only runs for the kinds asked for, and not before its runAt', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue([
      { kind: 'later', payload: {}, runAt: new Date(Date.now() + 60_000) },
      { kind: 'other', payload: {} },
    ]);
    assert.deepEqual(await queue.claim('w', ['later'], 5), []);
    assert.equal((await queue.claim('w', ['other'], 5)).length, 1);
  });

  test("a crashed worker's job is claimed again when its lease runs out", async () => {
    await reset();
    const queue = new JobQueue(database.database.db, { leaseMs: 50 });
    await queue.enqueue({ kind: 'work', payload: { messageId: 'a' } });
    const [claimed] = await queue.claim('dies', ['work'], 1);
    assert.ok(claimed);
    assert.deepEqual(await queue.claim('other', ['work'], 1), [], 'the lease still holds');
    await new Promise((resolve) => setTimeout(resolve, 80));
    const [again] = await queue.claim('other', ['work'], 1);
    assert.equal(again?.id, claimed.id);
    assert.equal(again?.attempts, 2);
    // The dead worker cannot complete a job it no longer holds.
    await queue.complete(claimed, 'dies');
    assert.equal((await jobRows(database)).length, 1);
    await queue.complete(again!, 'other');
    assert.equal((await jobRows(database)).length, 0);
  });

  test('a job that kills its worker on every attempt ends in the dead letters instead of looping', async () => {
    await reset();
    const queue = new JobQueue(database.database.db, { leaseMs: 20 });
    await queue.enqueue({ kind: 'poison', payload: {}, maxAttempts: 2 });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      assert.equal((await queue.claim('w', ['poison'], 1)).length, 1);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    assert.deepEqual(await queue.claim('w', ['poison'], 1), []);
    const [row] = await jobRows(database);
    assert.equal(row?.state, 'dead');
    assert.match(row?.last_error ?? '', /LeaseExpired/);
  });

  test('a retryable failure waits with backoff, at least Retry-After; the last attempt goes to the dead letters; retry brings it back', async () => {
    await reset();
    const queue = new JobQueue(database.database.db, { retry: { baseDelayMs: 1_000, maxDelayMs: 60_000 } });
    await queue.enqueue({ kind: 'send', payload: { messageId: 'm' }, maxAttempts: 2 });
    const [first] = await queue.claim('w', ['send'], 1);
    const before = Date.now();
    assert.equal(await queue.fail(first!, 'w', { retryable: true, retryAfterSeconds: 120, summary: 'ProviderError twilio 429' }), 'retry');
    let [row] = await jobRows(database);
    assert.equal(row?.state, 'pending');
    assert.ok(new Date(row!.run_at).getTime() >= before + 119_000, 'Retry-After of 120 s was not honoured');
    assert.equal(row?.last_error, 'ProviderError twilio 429');
    // Make it due now and fail it again: attempts are used up.
    await database.database.db.execute(sql`update jobs set run_at = now()`);
    const [second] = await queue.claim('w', ['send'], 1);
    assert.equal(second?.attempts, 2);
    assert.equal(await queue.fail(second!, 'w', { retryable: true, summary: 'ProviderError twilio 500' }), 'dead');
    const dead = await queue.list({ dead: true });
    assert.deepEqual(
      dead.map((job) => [job.id, job.state]),
      [[first!.id, 'dead']],
    );
    assert.deepEqual(await queue.list(), []);
    assert.equal((await queue.depth()).dead, 1);
    assert.equal(await queue.retryDead(first!.id), true);
    assert.equal(await queue.retryDead(first!.id), false, 'only a dead job can be retried');
    const [third] = await queue.claim('w', ['send'], 1);
    assert.equal(third?.id, first!.id);
    assert.equal(third?.attempts, 1, 'a replayed job gets a fresh set of attempts');
  });

  test('a failure that cannot be helped by waiting goes to the dead letters at once', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue({ kind: 'send', payload: {} });
    const [job] = await queue.claim('w', ['send'], 1);
    assert.equal(await queue.fail(job!, 'w', { retryable: false, summary: 'ProviderError twilio 400 code=21211' }), 'dead');
  });

  test('singleton jobs: at most one pending per key', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue({ kind: 'fetch', payload: {}, singletonKey: 'fetch:t1' });
    await queue.enqueue({ kind: 'fetch', payload: {}, singletonKey: 'fetch:t1' });
    assert.equal((await queue.list()).length, 1);
    // Once it runs, a new ping may queue the next fetch.
    await queue.claim('w', ['fetch'], 1);
    await queue.enqueue({ kind: 'fetch', payload: {}, singletonKey: 'fetch:t1' });
    assert.equal((await queue.list()).length, 2);
  });

  test('depth counts pending, running and dead jobs and the age of the oldest due one', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue([{ kind: 'a', payload: {}, runAt: new Date(Date.now() - 30_000) }, { kind: 'a', payload: {} }, { kind: 'b', payload: {} }]);
    await queue.claim('w', ['b'], 1);
    const depth = await queue.depth();
    assert.equal(depth.pending, 2);
    assert.equal(depth.running, 1);
    assert.equal(depth.dead, 0);
    assert.ok(depth.oldestDueSeconds >= 29, `oldest due ${depth.oldestDueSeconds}`);
  });

  test('depthByKind splits the queue by kind into ready, delayed (backing off), running and dead, for the metrics gauge', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue([
      { kind: 'a', payload: {} },
      { kind: 'a', payload: {}, runAt: new Date(Date.now() + 60_000) },
      { kind: 'b', payload: {} },
      { kind: 'b', payload: {} },
      { kind: 'c', payload: {} },
    ]);
    const [running, failing] = await queue.claim('w', ['b'], 2);
    assert.equal(await queue.fail(failing!, 'w', { retryable: false, summary: 'PermanentJobError: test' }), 'dead');
    const [retried] = await queue.claim('w', ['c'], 1);
    assert.equal(await queue.fail(retried!, 'w', { retryable: true, summary: 'ProviderError openai 503' }), 'retry');
    assert.ok(running);
    assert.deepEqual(await queue.depthByKind(), [
      { kind: 'a', ready: 1, delayed: 1, running: 0, dead: 0 },
      { kind: 'b', ready: 0, delayed: 0, running: 1, dead: 1 },
      // The queue's default first retry waits about 2 s: still backing off when counted.
      { kind: 'c', ready: 0, delayed: 1, running: 0, dead: 0 },
    ]);
  });

  test('retry delays grow exponentially with jitter and respect the cap', () => {
    const low = new JobQueue(database.database.db, { retry: { baseDelayMs: 1000, maxDelayMs: 8000 }, random: () => 0 });
    const high = new JobQueue(database.database.db, { retry: { baseDelayMs: 1000, maxDelayMs: 8000 }, random: () => 0.999 });
    assert.deepEqual([1, 2, 3, 4, 5].map((attempt) => low.retryDelayMs(attempt)), [500, 1000, 2000, 4000, 4000]);
    assert.deepEqual([1, 2, 3, 4, 5].map((attempt) => high.retryDelayMs(attempt)), [1000, 1999, 3998, 7996, 7996]);
    assert.equal(low.retryDelayMs(1, 30), 30_000);
  });

  test('the worker runs handlers, retries provider failures, dead-letters permanent ones, and stops cleanly', async () => {
    await reset();
    const queue = new JobQueue(database.database.db, { retry: { baseDelayMs: 10, maxDelayMs: 20 } });
    let flakyCalls = 0;
    const outcomes: string[] = [];
    const worker = new JobWorker({
      queue,
      logger: silent,
      pollIntervalMs: 10,
      handlers: {
        ok: async () => undefined,
        flaky: async () => {
          flakyCalls += 1;
          if (flakyCalls < 3) throw new ProviderError({ provider: 'twilio', message: 'busy', status: 503, retryable: true });
        },
        broken: async () => {
          throw new PermanentJobError('tenant has no Twilio settings');
        },
      },
      onOutcome: (kind, outcome) => outcomes.push(`${kind}:${outcome}`),
    });
    await queue.enqueue([
      { kind: 'ok', payload: {} },
      { kind: 'flaky', payload: {} },
      { kind: 'broken', payload: {} },
    ]);
    worker.start();
    const deadline = Date.now() + 10_000;
    while (!outcomes.includes('flaky:done') || !outcomes.includes('broken:dead') || !outcomes.includes('ok:done')) {
      assert.ok(Date.now() < deadline, `outcomes so far: ${outcomes.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await worker.stop();
    assert.equal(flakyCalls, 3);
    const rows = await jobRows(database);
    assert.deepEqual(
      rows.map((row) => [row.state, row.last_error]),
      [['dead', 'PermanentJobError: tenant has no Twilio settings']],
    );
  });

  test('release gives running jobs back at once, uncounted, only from the lease holder; a singleton with a pending twin keeps its lease', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    await queue.enqueue([
      { kind: 'send', payload: { messageId: 'm-1' }, runAt: new Date(Date.now() - 1_000) },
      { kind: 'sync', payload: { tenantId: 't-1' }, singletonKey: 'sync:t-1' },
    ]);
    const claimed = await queue.claim('worker-a', ['send', 'sync'], 10);
    assert.equal(claimed.length, 2);
    // The singleton's twin is enqueued while the first one runs.
    await queue.enqueue({ kind: 'sync', payload: { tenantId: 't-1' }, singletonKey: 'sync:t-1' });
    const ids = claimed.map((job) => job.id);
    assert.equal(await queue.release(ids, 'worker-b'), 0, 'another worker released leases it does not hold');
    assert.equal(await queue.release(ids, 'worker-a'), 1);
    const send = claimed.find((job) => job.kind === 'send')!;
    const [released] = await queryRows<{ state: string; attempts: number; locked_by: string | null; due: boolean }>(
      database.database.db,
      sql`select state, attempts, locked_by, run_at <= now() as due from jobs where id = ${send.id}`,
    );
    assert.deepEqual({ ...released, attempts: Number(released!.attempts) }, { state: 'pending', attempts: 0, locked_by: null, due: true });
    const [again] = await queue.claim('worker-b', ['send'], 1);
    assert.equal(again?.id, send.id, 'the released job was not claimable at once');
    assert.equal(again?.attempts, 1);
    assert.equal(await queue.release([], 'worker-a'), 0);
  });

  test('a worker stopped with a grace period releases the jobs still running after it', async () => {
    await reset();
    const queue = new JobQueue(database.database.db);
    let finishSlow!: () => void;
    let slowStarted!: () => void;
    const started = new Promise<void>((resolve) => (slowStarted = resolve));
    const workerUnderTest = new JobWorker({
      queue,
      logger: silent,
      pollIntervalMs: 10,
      handlers: {
        slow: () => {
          slowStarted();
          return new Promise<void>((resolve) => (finishSlow = resolve));
        },
      },
    });
    workerUnderTest.start();
    await queue.enqueue([{ kind: 'slow', payload: {} }]);
    await started;
    const stopped = await workerUnderTest.stop({ graceMs: 200 });
    assert.deepEqual(stopped, { released: 1 });
    // A second stop does not wait again for the released job.
    assert.deepEqual(await workerUnderTest.stop(), { released: 1 });
    const rows = await jobRows(database);
    assert.deepEqual(rows.map((row) => [row.state, Number(row.attempts)]), [['pending', 0]]);
    finishSlow();
  });
});
