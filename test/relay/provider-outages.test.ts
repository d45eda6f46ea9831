import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import type { Fault } from '../fakes/fake-server.js';
import {
  AIRTABLE_RATE_LIMIT_WAIT_SECONDS,
  assertNoPlaintext,
  CLIENT_TIMEOUT_MS,
  completionsOf,
  describeOutageSuite,
  echoingErrorBody,
  jobRow,
  jobWaitingForRetry,
  ObservedJobs,
  OUTAGE_PROVIDERS,
  type OutageCase,
  type OutageProvider,
  prepareOutageCase,
  queueSettled,
  RETRY_AFTER_SECONDS,
  SLOW_DELAY_MS,
} from '../helpers/provider-outage-scenarios.js';

/**
 * A provider that fails for a while (each fault type of test/fakes/fake-server.ts) costs retries,
 * never a lost or a doubled result: the job under test fails, is retried with backoff (and not
 * before the provider's Retry-After), and finally succeeds with exactly one result at the
 * provider, which is the one the relay recorded. What a failure leaves in `jobs.last_error`
 * names the provider and the status, never the number or the text of the message, even when the
 * provider's error answer quotes them.
 *
 * Jobs under test: Twilio `send`, OpenAI `ai-reply`, Airtable `airtable-sync`, and Podium `send`
 * for a conversation that came in through the Podium webhook.
 */

interface FaultShape {
  name: string;
  kind: Fault['kind'];
  fault(outage: OutageCase): Fault;
  /** How many requests get the fault. */
  times(provider: OutageProvider): number;
  /** How many attempts of the job fail because of it. */
  failedAttempts(provider: OutageProvider): number;
  /** What `last_error` says after such a failure. */
  summary(provider: OutageProvider): RegExp;
}

const FAULT_SHAPES: FaultShape[] = [
  {
    name: 'status 500 (its error text quoting the request)',
    kind: 'status',
    // Twice: the second one hits the retry (for a send, the look-up before sending again).
    fault: (outage) => ({ kind: 'status', status: 500, body: echoingErrorBody(outage, 500) }),
    times: () => 2,
    failedAttempts: () => 2,
    summary: (provider) => new RegExp(`^ProviderError ${provider} 500\\b`),
  },
  {
    name: `429 with Retry-After: ${RETRY_AFTER_SECONDS}`,
    kind: 'rate-limit',
    fault: () => ({ kind: 'rate-limit', retryAfterSeconds: RETRY_AFTER_SECONDS }),
    // Airtable's client waits out two 429s inside the call before the job gives up
    // (src/providers/airtable/records-client.ts, RATE_LIMIT_RETRIES); the third fails the attempt.
    times: (provider) => (provider === 'airtable' ? 3 : 1),
    failedAttempts: () => 1,
    summary: (provider) => new RegExp(`^ProviderError ${provider} 429\\b`),
  },
  {
    name: `slow (${SLOW_DELAY_MS} ms, past the ${CLIENT_TIMEOUT_MS} ms client timeout)`,
    kind: 'slow',
    fault: () => ({ kind: 'slow', delayMs: SLOW_DELAY_MS }),
    times: () => 2,
    failedAttempts: () => 2,
    summary: (provider) => new RegExp(`^ProviderError ${provider} no-answer\\b`),
  },
  {
    name: 'dropped connection',
    kind: 'drop',
    fault: () => ({ kind: 'drop' }),
    times: () => 2,
    failedAttempts: () => 2,
    summary: (provider) => new RegExp(`^ProviderError ${provider} no-answer\\b`),
  },
];

/** Clock granularity between the row's updated_at (JS clock) and run_at (database clock). */
const CLOCK_TOLERANCE_MS = 100;

await describeOutageSuite('provider outages are retried until they succeed, once', (suite) => {
  for (const provider of OUTAGE_PROVIDERS) {
    for (const shape of FAULT_SHAPES) {
      test(`${provider}: ${shape.name} → the job is retried and succeeds with one result`, async () => {
        const { harness, relay } = suite;
        const observed = new ObservedJobs(harness, relay);
        const outage = await prepareOutageCase(harness, observed, provider);
        outage.fake.failNext(shape.fault(outage), { times: shape.times(provider) });

        if (shape.kind === 'rate-limit') {
          await observed.runUntil(jobWaitingForRetry(harness, outage.jobId), { what: 'the rate-limited attempt' });
          const failed = (await jobRow(harness, outage.jobId))!;
          assert.equal(failed.attempts, 1);
          assert.match(failed.last_error ?? '', shape.summary(provider));
          // Twilio, OpenAI and Podium pass on the provider's Retry-After; Airtable sends none and
          // documents a 30-second wait, which its client applies.
          const waitSeconds = provider === 'airtable' ? AIRTABLE_RATE_LIMIT_WAIT_SECONDS : RETRY_AFTER_SECONDS;
          const pushedMs = new Date(failed.run_at).getTime() - new Date(failed.updated_at).getTime();
          assert.ok(pushedMs >= waitSeconds * 1000 - CLOCK_TOLERANCE_MS, `run_at is only ${pushedMs} ms after the failure; the provider asked for ${waitSeconds} s`);
          // The claim honouring run_at is the queue's own test; here the wait is skipped.
          await harness.db.execute(sql`update jobs set run_at = now() where id = ${outage.jobId}`);
        }
        await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: `the ${outage.jobKind} job to finish` });

        assert.equal(await jobRow(harness, outage.jobId), undefined, 'the job finished (a dead one would still be in the table)');
        const claims = observed.of(outage.jobId);
        const failures = shape.failedAttempts(provider);
        assert.deepEqual(
          claims.map((claim) => claim.attempt),
          Array.from({ length: failures + 1 }, (_, index) => index + 1),
          'each failure was followed by one retry',
        );
        assert.equal(claims[0]!.lastError, null);
        for (const claim of claims.slice(1)) assert.match(claim.lastError ?? '', shape.summary(provider), 'last_error names the provider and the status');

        const effects = outage.effects();
        assert.equal(effects.length, 1, `exactly one result at the provider, got ${effects.length}`);
        assert.deepEqual(await outage.recordedIds(), [effects[0]!.id], 'the relay recorded the provider id of that one result');
        if (provider === 'openai') assert.equal(completionsOf(harness, outage), 1, 'one completion answered, one reply stored and sent');
        if (provider === 'podium') assert.equal(harness.twilio.messages.filter((message) => message.to === outage.phone).length, 0, 'a Podium conversation is answered in Podium only');

        assertNoPlaintext(claims.map((claim) => claim.lastError ?? '').join('\n'), outage.secrets(), 'jobs.last_error');
        assertNoPlaintext(harness.logs.text(), outage.secrets(), 'the log');
        assert.deepEqual(harness.twilio.violations, []);
        assert.deepEqual(harness.openai.violations, []);
        assert.deepEqual(harness.podium.violations, []);
      });
    }
  }
});
