import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Fault } from '../fakes/fake-server.js';
import {
  assertNoPlaintext,
  completionsOf,
  describeOutageSuite,
  jobDead,
  jobRow,
  ObservedJobs,
  OUTAGE_PROVIDERS,
  type OutageCase,
  type OutageProvider,
  prepareOutageCase,
  queueSettled,
} from '../helpers/provider-outage-scenarios.js';
import type { RelayHarness } from '../helpers/relay.js';

/**
 * An outage longer than the job's attempts ends in the dead letters, visible to an operator
 * (`ciphergate jobs list --dead` is JobQueue.list({dead: true})), with nothing done at the
 * provider. Replaying it (`jobs retry ID`, JobQueue.retryDead) gives it a fresh set of attempts,
 * and once the provider is back it succeeds, once. A refusal that waiting cannot fix (a 4xx other
 * than 408/409/429) is dead after its first attempt instead of being tried eight times.
 */

/** A 4xx each provider gives for a request it will never accept, quoting the request as real ones do. */
function refusal(outage: OutageCase): { fault: Fault; summary: string } {
  const quoted = `The 'To' number ${outage.phone} is not a valid phone number.`;
  switch (outage.provider) {
    case 'twilio':
      // https://www.twilio.com/docs/api/errors/21211
      return {
        fault: { kind: 'status', status: 400, body: { code: 21211, message: quoted, more_info: 'https://www.twilio.com/docs/errors/21211', status: 400 } },
        summary: 'ProviderError twilio 400 code=21211',
      };
    case 'openai':
      return {
        fault: { kind: 'status', status: 400, body: { error: { message: quoted, type: 'invalid_request_error', param: 'messages', code: null } } },
        summary: 'ProviderError openai 400 code=invalid_request_error',
      };
    case 'airtable':
      return {
        fault: { kind: 'status', status: 422, body: { error: { type: 'INVALID_VALUE_FOR_COLUMN', message: quoted } } },
        summary: 'ProviderError airtable 422 code=INVALID_VALUE_FOR_COLUMN',
      };
    case 'podium':
      return { fault: { kind: 'status', status: 400, body: { code: 'invalid_request', message: quoted } }, summary: 'ProviderError podium 400 code=invalid_request' };
  }
}

/** Nothing reached the customer, the table or the model: the failed attempts left no result. */
function assertNoResult(harness: RelayHarness, outage: OutageCase): void {
  assert.deepEqual(outage.effects(), [], 'nothing was done at the provider');
  if (outage.provider === 'openai') assert.equal(completionsOf(harness, outage), 0);
}

async function assertOneResult(harness: RelayHarness, outage: OutageCase): Promise<void> {
  const effects = outage.effects();
  assert.equal(effects.length, 1, `exactly one result at the provider, got ${effects.length}`);
  assert.deepEqual(await outage.recordedIds(), [effects[0]!.id]);
  if (outage.provider === 'openai') assert.equal(completionsOf(harness, outage), 1);
}

await describeOutageSuite('provider outages: dead letters and their replay', (suite) => {
  for (const provider of OUTAGE_PROVIDERS) {
    test(`${provider}: more 503s than the job has attempts → dead, listed, no result; replayed → succeeds once`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      const maxAttempts = (await jobRow(harness, outage.jobId))!.max_attempts;
      // Two more than the attempts: the replay meets the end of the outage.
      outage.fake.failNext({ kind: 'status', status: 503 }, { times: maxAttempts + 2 });

      await observed.runUntil(jobDead(harness, outage.jobId), { what: 'the job to die' });
      assert.deepEqual(
        observed.of(outage.jobId).map((claim) => claim.attempt),
        Array.from({ length: maxAttempts }, (_, index) => index + 1),
        'every attempt was used, and no more',
      );
      const dead = (await relay.queue.list({ dead: true })).filter((job) => job.id === outage.jobId);
      assert.equal(dead.length, 1, 'the dead job is listed with the dead letters');
      assert.equal(dead[0]!.kind, outage.jobKind);
      assert.equal(dead[0]!.state, 'dead');
      assert.equal(dead[0]!.attempts, maxAttempts);
      assert.match(dead[0]!.lastError ?? '', new RegExp(`^ProviderError ${provider} 503\\b`));
      assertNoPlaintext(JSON.stringify(dead), outage.secrets(), 'the dead letter');
      assert.ok(!(await relay.queue.list()).some((job) => job.id === outage.jobId), 'a dead job is not among the live ones');
      assertNoResult(harness, outage);

      assert.equal(await relay.queue.retryDead(outage.jobId), true);
      assert.equal(await relay.queue.retryDead(outage.jobId), false, 'only a dead job can be replayed');
      const replayed = (await jobRow(harness, outage.jobId))!;
      assert.deepEqual({ state: replayed.state, attempts: replayed.attempts }, { state: 'pending', attempts: 0 });

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the replayed job to finish' });
      assert.equal(await jobRow(harness, outage.jobId), undefined, 'the replayed job finished');
      // A fresh set of attempts: the two leftover 503s cost attempts 1 and 2, the third succeeds.
      assert.deepEqual(
        observed
          .of(outage.jobId)
          .slice(maxAttempts)
          .map((claim) => claim.attempt),
        [1, 2, 3],
      );
      await assertOneResult(harness, outage);
      assertNoPlaintext(harness.logs.text(), outage.secrets(), 'the log');
    });
  }

  for (const provider of OUTAGE_PROVIDERS satisfies readonly OutageProvider[]) {
    test(`${provider}: a 4xx that retrying cannot fix → dead after one attempt; replayed → succeeds once`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      const { fault, summary } = refusal(outage);
      const requestsBefore = outage.fake.requests.length;
      outage.fake.failNext(fault, { times: 1 });

      await observed.runUntil(jobDead(harness, outage.jobId), { what: 'the job to die' });
      const dead = (await jobRow(harness, outage.jobId))!;
      assert.equal(dead.attempts, 1, 'not retried');
      assert.equal(dead.last_error, summary);
      assert.equal(outage.fake.requests.length - requestsBefore, 1, 'one request reached the provider');
      assert.deepEqual(
        observed.of(outage.jobId).map((claim) => claim.attempt),
        [1],
      );
      assertNoResult(harness, outage);
      assertNoPlaintext(JSON.stringify(await relay.queue.list({ dead: true })), outage.secrets(), 'the dead letters');
      assertNoPlaintext(harness.logs.text(), outage.secrets(), 'the log');

      // The operator fixed what was wrong (here: the fault is spent) and replays it.
      assert.equal(await relay.queue.retryDead(outage.jobId), true);
      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the replayed job to finish' });
      assert.equal(await jobRow(harness, outage.jobId), undefined);
      await assertOneResult(harness, outage);
    });
  }
});
