import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import {
  describeOutageSuite,
  ObservedJobs,
  outboundRows,
  prepareOutageCase,
  queueSettled,
  SEND_PROVIDERS,
  type SendProvider,
  storeStaffMessage,
} from '../helpers/provider-outage-scenarios.js';

/**
 * Two messages with the same text to the same person within minutes are ordinary: "Thanks!",
 * "See you then", or the AI's stock answer to two questions. Reconciling an uncertain send looks
 * the message up by sender, recipient, text and time (from 2 minutes before the send started), so
 * it must not take the earlier message for the uncertain one: that would record the earlier
 * message's id on the second (two rows, one provider id, and status callbacks updating both) and,
 * when the second never reached the provider, never send it at all.
 */
await describeOutageSuite('an uncertain send is not confused with an earlier message of the same text', (suite) => {
  /**
   * Moves a message's creation time at the provider a minute back: the earlier message went out a
   * minute before the second, inside the look-up's window.
   */
  function sentAMinuteAgo(provider: SendProvider, providerId: string): void {
    const { harness } = suite;
    if (provider === 'twilio') {
      const message = harness.twilio.messages.find((candidate) => candidate.sid === providerId)!;
      message.dateCreated = new Date(message.dateCreated.getTime() - 60_000);
      message.dateUpdated = message.dateCreated;
    } else {
      const message = harness.podium.messages.find((candidate) => candidate.uid === providerId)!;
      message.createdAt = new Date(message.createdAt.getTime() - 60_000);
    }
  }

  /** A case whose first answer went out a minute ago, and the text of that answer. */
  async function afterFirstAnswer(provider: SendProvider) {
    const { harness, relay } = suite;
    const observed = new ObservedJobs(harness, relay);
    const outage = await prepareOutageCase(harness, observed, provider);
    await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the first send' });
    const [first] = await outboundRows(harness, outage);
    assert.equal(outage.effects().length, 1);
    sentAMinuteAgo(provider, first!.provider_message_id!);
    const text = await relay.conversations.openBody({ id: first!.id, tenantId: outage.tenant.id });
    return { observed, outage, first: first!, text };
  }

  for (const provider of SEND_PROVIDERS) {
    test(`${provider}: a second message with the same text whose send died before reaching the provider is still sent`, async () => {
      const { harness, relay } = suite;
      const { observed, outage, text } = await afterFirstAnswer(provider);
      const second = await storeStaffMessage(harness, relay, outage, text);
      // The second send's process died after marking it started, before calling the provider.
      await harness.db.execute(sql`update messages set send_started_at = now() where id = ${second}`);

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the second send' });

      const ids = (await outboundRows(harness, outage)).map((row) => row.provider_message_id);
      assert.equal(outage.effects().length, 2, 'the second message never reached the contact: the look-up took the first one for it');
      assert.equal(new Set(ids).size, 2, `two messages share one provider id: ${JSON.stringify(ids)}`);
    });

    test(`${provider}: a second message with the same text whose answer was lost is recorded with its own id`, async () => {
      const { harness, relay } = suite;
      const { observed, outage, text } = await afterFirstAnswer(provider);
      const second = await storeStaffMessage(harness, relay, outage, text);
      outage.fake.failNext({ kind: 'drop', afterHandling: true }, { times: 1 });

      await observed.runUntil(queueSettled(harness, outage.tenant.id), { what: 'the second send' });

      const sent = outage.effects();
      assert.equal(sent.length, 2, 'one message each, none doubled');
      const secondRow = (await outboundRows(harness, outage)).find((row) => row.id === second);
      assert.equal(secondRow!.provider_message_id, sent[1]!.id, 'the second message was recorded under the id of the first');
    });
  }
});
