import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import {
  abandonJob,
  assertNoPlaintext,
  createRequests,
  describeOutageSuite,
  jobRow,
  ObservedJobs,
  outboundRows,
  prepareOutageCase,
  queueSettled,
  SEND_PROVIDERS,
  sendAtProvider,
} from '../helpers/provider-outage-scenarios.js';

/**
 * A send whose outcome is unknown must never send twice. Twilio and Podium take no idempotency
 * key, so the send handler (src/relay/handlers/send.ts) commits `send_started_at` before calling
 * the provider, and an attempt that finds it set asks the provider whether the message is there
 * before sending again. Three ways an outcome becomes unknown:
 *
 * - the provider created the message and the connection dropped before the answer arrived;
 * - the process died after the provider call and before recording its result;
 * - the process died after marking the send started and before calling the provider (here the
 *   look-up must find nothing, and the message must still go out, once).
 */
await describeOutageSuite('uncertain sends are reconciled, never sent twice', (suite) => {
  for (const provider of SEND_PROVIDERS) {
    test(`${provider}: the connection drops after the provider created the message → the retry finds it and records it; one message`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      const createsBefore = createRequests(harness, provider);
      outage.fake.failNext({ kind: 'drop', afterHandling: true }, { times: 1 });

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the send to finish' });

      assert.equal(await jobRow(harness, outage.jobId), undefined, 'the send job finished');
      const claims = observed.of(outage.jobId);
      assert.deepEqual(
        claims.map((claim) => claim.attempt),
        [1, 2],
        'the dropped answer failed the first attempt; the second reconciled',
      );
      assert.match(claims[1]!.lastError ?? '', new RegExp(`^ProviderError ${provider} no-answer\\b`));
      const sent = outage.effects();
      assert.equal(sent.length, 1, `exactly one message at ${provider}, got ${sent.length}`);
      assert.equal(createRequests(harness, provider) - createsBefore, 1, 'the retry looked the message up instead of sending it again');
      const [row] = await outboundRows(harness, outage);
      assert.equal(row!.provider_message_id, sent[0]!.id, 'the stored provider id is the one message');
      assert.ok(row!.send_started_at, 'the send was marked started before the provider call');
      assertNoPlaintext(claims.map((claim) => claim.lastError ?? '').join('\n'), outage.secrets(), 'jobs.last_error');
      assertNoPlaintext(harness.logs.text(), outage.secrets(), 'the log');
    });

    test(`${provider}: the process died between the provider call and recording it → the next attempt records the message it finds; no second send`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      const [reply] = await outboundRows(harness, outage);
      const body = await relay.conversations.openBody({ id: reply!.id, tenantId: outage.tenant.id });
      // What the dead attempt did: marked the send started (committed), called the provider, died.
      await harness.db.execute(sql`update messages set send_started_at = now() where id = ${reply!.id}`);
      const sentEarlier = await sendAtProvider(harness, outage, provider, reply!.id, body);
      await abandonJob(harness, outage.jobId);
      const createsBefore = createRequests(harness, provider);

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the send to finish' });

      assert.deepEqual(
        observed.of(outage.jobId).map((claim) => claim.attempt),
        [2],
        'the lease ran out and another worker took the job over',
      );
      assert.equal(createRequests(harness, provider) - createsBefore, 0, 'nothing was sent again');
      assert.deepEqual(
        outage.effects().map((message) => message.id),
        [sentEarlier],
      );
      const [row] = await outboundRows(harness, outage);
      assert.equal(row!.provider_message_id, sentEarlier);
      assert.equal(await jobRow(harness, outage.jobId), undefined);
    });

    test(`${provider}: the process died after marking the send started, before calling the provider → the look-up finds nothing and it is sent once`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      const [reply] = await outboundRows(harness, outage);
      await harness.db.execute(sql`update messages set send_started_at = now() where id = ${reply!.id}`);
      await abandonJob(harness, outage.jobId);
      const createsBefore = createRequests(harness, provider);

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the send to finish' });

      assert.equal(createRequests(harness, provider) - createsBefore, 1);
      const sent = outage.effects();
      assert.equal(sent.length, 1);
      const [row] = await outboundRows(harness, outage);
      assert.equal(row!.provider_message_id, sent[0]!.id);
    });

    test(`${provider}: the look-up itself fails → retried, and the message still goes out once`, async () => {
      const { harness, relay } = suite;
      const observed = new ObservedJobs(harness, relay);
      const outage = await prepareOutageCase(harness, observed, provider);
      // The send's answer is lost, then the first look-up meets an outage too.
      outage.fake.failNext({ kind: 'drop', afterHandling: true }, { times: 1 });
      outage.fake.failNext({ kind: 'status', status: 503 }, { times: 1, match: (request) => request.method === 'GET' });
      const createsBefore = createRequests(harness, provider);

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the send to finish' });

      const claims = observed.of(outage.jobId);
      assert.deepEqual(
        claims.map((claim) => claim.attempt),
        [1, 2, 3],
      );
      assert.match(claims[2]!.lastError ?? '', new RegExp(`^ProviderError ${provider} 503\\b`));
      assert.equal(createRequests(harness, provider) - createsBefore, 1, 'a failed look-up is not taken for "not sent"');
      const sent = outage.effects();
      assert.equal(sent.length, 1);
      const [row] = await outboundRows(harness, outage);
      assert.equal(row!.provider_message_id, sent[0]!.id);
    });
  }
});
