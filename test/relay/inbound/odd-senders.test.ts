import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { inboundSenderOf, normaliseSender } from '../../../src/domain/normalise.js';
import { queryRows } from '../../../src/store/connection.js';
import { DEFAULT_PODIUM_LOCATION, podiumMessageEvent } from '../../fakes/podium.js';
import { describeEachBackend, tablesState } from '../../helpers/database.js';
import { messageSid, openRelayHarness, type RelayHarness } from '../../helpers/relay.js';

/**
 * Issue 15 item 4, "no silent drop, ever": a correctly signed delivery from a sender that is no
 * valid phone number is stored (sealed as received, flagged by `contacts.sender_kind`, indexed
 * over its digits or text), counted, audited per minute, and found again through the API by the
 * sender as received. Short codes and alphanumeric ids get no AI reply; a 555 number gets one.
 */

/** Every odd-but-real sender shape, with the kind it must be stored as and whether it can be answered. */
const ODD_SENDERS = [
  { from: '12345', kind: 'digits', replies: false, label: 'a short code' },
  { from: 'ACME', kind: 'text', replies: false, label: 'an alphanumeric sender id' },
  { from: '+1 555 123 0001', kind: 'digits', replies: true, label: 'a 555 number with spaces' },
  { from: '+15551230002', kind: 'digits', replies: true, label: 'a 555 number in E.164 shape' },
  { from: '5551230003', kind: 'digits', replies: true, label: 'a national 555 number without +' },
  { from: '020 7946 0958', kind: 'digits', replies: false, label: 'a foreign national number without its prefix' },
  { from: '(415) 555-0123', kind: 'e164', replies: true, label: 'a valid national number with punctuation' },
] as const;

test('inboundSenderOf: kinds, replies, and what names no sender', () => {
  for (const sender of ODD_SENDERS) {
    const parsed = inboundSenderOf(sender.from);
    assert.equal(parsed?.kind, sender.kind, sender.label);
    assert.equal(parsed?.replyTo !== undefined, sender.replies, sender.label);
  }
  assert.equal(inboundSenderOf('(415) 555-0123')?.address, '+14155550123');
  assert.equal(inboundSenderOf('  ACME ')?.address, 'ACME');
  assert.equal(inboundSenderOf('+1 555 123 0001')?.address, '+1 555 123 0001', 'stored as received');
  assert.equal(inboundSenderOf('+1 555 123 0001')?.replyTo, '+15551230001', 'answered in E.164 shape');
  assert.equal(inboundSenderOf('5551230003')?.replyTo, '+15551230003');
  for (const nothing of [undefined, '', '   ', '--', '+', 'a\u0000b', 'x'.repeat(65), '!!!']) assert.equal(inboundSenderOf(nothing), undefined, JSON.stringify(nothing));
});

test('normaliseSender: E.164 as before for numbers; other senders can never take an E.164 index form', () => {
  assert.equal(normaliseSender('+1 415 555 0123'), '+14155550123');
  assert.equal(normaliseSender('+1 555 123 0001'), '15551230001');
  assert.equal(normaliseSender('1-555-123-0001'), '15551230001');
  assert.equal(normaliseSender('ACME'), 'ACME');
  assert.equal(normaliseSender('whatsapp:+15554449999'), 'whatsapp:+15554449999');
  assert.throws(() => normaliseSender(''), { name: 'NormaliseError' });
});

await describeEachBackend('senders that are no valid phone number are stored, never dropped', (backend) => {
  let harness: RelayHarness;
  let token: string;
  before(async () => {
    harness = await openRelayHarness(backend);
    const admin = await harness.createUser({ role: 'admin' });
    token = (await harness.signIn(admin)).accessToken;
  });
  after(() => harness.close());

  async function readBack(slug: string, sender: string): Promise<{ bodies: string[]; conversations: number }> {
    const lookup = await harness.request({ method: 'GET', url: `/api/v1/conversations?tenant=${slug}&phone=${encodeURIComponent(sender)}`, token });
    assert.equal(lookup.statusCode, 200, `lookup of ${sender}: ${lookup.body}`);
    const { conversations } = lookup.json() as { conversations: Array<{ id: string }> };
    const bodies: string[] = [];
    for (const conversation of conversations) {
      const read = await harness.request({ method: 'GET', url: `/api/v1/conversations/${conversation.id}/messages?limit=50`, token });
      assert.equal(read.statusCode, 200);
      bodies.push(...(read.json() as { messages: Array<{ body: string; direction: string }> }).messages.filter((m) => m.direction === 'inbound').map((m) => m.body));
    }
    return { bodies, conversations: conversations.length };
  }

  test('Twilio: every odd sender shape is stored, flagged, sealed, counted, audited and readable through the API', async () => {
    const tenant = await harness.putTenant();
    const countsBefore = await notE164Counts(harness);
    for (const sender of ODD_SENDERS) {
      const body = `Hello from ${sender.label} ${randomUUID()}`;
      const { response } = await harness.sendSms(tenant.slug, sender.from, body);
      assert.equal(response.statusCode, 200, `${sender.label}: ${response.body}`);
      const read = await readBack(tenant.slug, sender.from);
      assert.deepEqual(read.bodies, [body], `${sender.label} is stored and readable`);
    }
    // One contact per sender, each flagged with its kind, none holding the sender in plain text.
    const contacts = await queryRows<{ sender_kind: string; phone: Buffer; phone_index: Buffer }>(
      harness.db,
      sql`select sender_kind, phone, phone_index from contacts where tenant_id = ${tenant.id} order by created_at`,
    );
    assert.deepEqual(
      contacts.map((row) => row.sender_kind),
      ODD_SENDERS.map((sender) => sender.kind),
    );
    for (const [index, row] of contacts.entries()) {
      const raw = Buffer.from(row.phone);
      for (const plain of [ODD_SENDERS[index]!.from, ODD_SENDERS[index]!.from.replace(/\D/g, '')]) {
        if (plain.length > 0) assert.equal(raw.includes(Buffer.from(plain)), false, 'the sender is sealed at rest');
      }
    }
    const countsAfter = await notE164Counts(harness);
    assert.equal((countsAfter['twilio/digits'] ?? 0) - (countsBefore['twilio/digits'] ?? 0), 5);
    assert.equal((countsAfter['twilio/text'] ?? 0) - (countsBefore['twilio/text'] ?? 0), 1);

    await harness.relay.rejectionAudit.flush({ all: true });
    const audited = (await harness.auditActions()).filter((entry) => entry.action === 'webhook.sender-not-e164' && entry.details['provider'] === 'twilio');
    const byKind = Object.fromEntries(audited.map((entry) => [entry.details['kind'], entry.details['count']]));
    assert.ok(Number(byKind['digits']) >= 5 && Number(byKind['text']) >= 1, `aggregated audit entries: ${JSON.stringify(audited)}`);
    assert.ok(audited.length <= 4, 'one entry per kind and minute, not one per message');
  });

  test('the AI answers a 555 number, in its E.164 shape; a short code and an alphanumeric id get no reply job', async () => {
    const tenant = await harness.putTenant();
    await harness.drain(); // the earlier tests' replies, so the counts below are this test's
    const completionsBefore = harness.openai.completions.length;
    await harness.sendSms(tenant.slug, '+1 555 123 0009', 'Can I book a cleaning on Monday?');
    await harness.drain();
    assert.equal(harness.openai.completions.length, completionsBefore + 1);
    assert.ok(harness.twilio.messages.some((message) => message.to === '+15551230009'), `the answer went to the 555 number: ${JSON.stringify(harness.twilio.messages.map((m) => m.to))}`);

    const sentBefore = harness.twilio.messages.length;
    for (const from of ['12345', 'ACME']) {
      await harness.sendSms(tenant.slug, from, 'Your code is 4711');
    }
    const jobs = await queryRows<{ kind: string }>(harness.db, sql`select kind from jobs where tenant_id = ${tenant.id} and kind = 'ai-reply'`);
    assert.deepEqual(jobs, []);
    await harness.drain();
    assert.equal(harness.openai.completions.length, completionsBefore + 1, 'no OpenAI call for senders that cannot be answered');
    assert.equal(harness.twilio.messages.length, sentBefore, 'nothing sent to a short code or an alphanumeric id');
    assert.ok(harness.logs.lines().some((line) => String(line['msg']).startsWith('no AI reply: the sender cannot receive SMS')));
  });

  test('a From that names no sender is refused with 4xx and changes nothing', async () => {
    const tenant = await harness.putTenant();
    const stateBefore = await tablesState(harness, ['contacts', 'conversations', 'messages', 'jobs']);
    for (const from of ['', '---', 'x'.repeat(65)]) {
      const { response } = await harness.sendSms(tenant.slug, from, 'hello');
      assert.equal(response.statusCode, 403, `From ${JSON.stringify(from)}`);
    }
    assert.equal(await tablesState(harness, ['contacts', 'conversations', 'messages', 'jobs']), stateBefore);
  });

  test('Podium: a message from a short code, an email address or a 555 number is stored and readable', async () => {
    const tenant = await harness.putTenant();
    for (const from of ['55555', 'maria@example.test', '+1 555 123 0004']) {
      const body = `Podium ${randomBytes(4).toString('hex')}`;
      const message = harness.podium.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from, body });
      const rawBody = podiumMessageEvent('message.received', harness.podium.messageJson(message));
      const response = await harness.postPodium(tenant.slug, rawBody);
      assert.equal(response.statusCode, 204, `${from}: ${response.body}`);
      assert.deepEqual((await readBack(tenant.slug, from)).bodies, [body], `${from} is stored and readable`);
    }
  });

  test('a staff or API reply to a short code dead-letters with the reason, and nothing is sent', async () => {
    const tenant = await harness.putTenant();
    await harness.sendSms(tenant.slug, '12345', 'Your code is 4711');
    const [contact] = await queryRows<{ conversation_id: string; contact_id: string }>(
      harness.db,
      sql`select m.conversation_id, m.contact_id from messages m where m.tenant_id = ${tenant.id} and m.direction = 'inbound'`,
    );
    await harness.relay.conversations.storeOutbound(
      { tenantId: tenant.id, conversationId: contact!.conversation_id, contactId: contact!.contact_id, author: 'staff', body: 'Thanks', dedupeKey: `test:${randomUUID()}` },
      (messageId) => [{ kind: 'send', tenantId: tenant.id, payload: { messageId } }],
    );
    const sentBefore = harness.twilio.messages.length;
    await harness.drain();
    assert.equal(harness.twilio.messages.length, sentBefore);
    const dead = await queryRows<{ last_error: string }>(harness.db, sql`select last_error from jobs where tenant_id = ${tenant.id} and kind = 'send' and state = 'dead'`);
    assert.match(dead[0]?.last_error ?? '', /cannot receive SMS/);
  });

  test('a redelivery of an odd sender is a duplicate: one message, one count', async () => {
    const tenant = await harness.putTenant();
    const sid = messageSid();
    const before = await notE164Counts(harness);
    await harness.sendSms(tenant.slug, 'ACME', 'first', { sid });
    await harness.sendSms(tenant.slug, 'ACME', 'first', { sid });
    assert.equal((await readBack(tenant.slug, 'ACME')).bodies.length, 1);
    assert.equal(((await notE164Counts(harness))['twilio/text'] ?? 0) - (before['twilio/text'] ?? 0), 1);
  });
});

async function notE164Counts(harness: RelayHarness): Promise<Record<string, number>> {
  const metric = await harness.relay.metrics.sendersNotE164.get();
  return Object.fromEntries(metric.values.map((value) => [`${value.labels['provider']}/${value.labels['kind']}`, value.value]));
}
