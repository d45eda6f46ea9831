import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { queryRows } from '../../src/store/connection.js';
import { describeEachBackend } from '../helpers/database.js';
import { airtableProblems, openRelayHarness, PUBLIC_URL, randomPhone, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';

/**
 * The whole path, as the issue describes it: a signed SMS → sealed rows → OpenAI gets redacted
 * text with store:false → Twilio gets the reply (through its SDK, checked against the official
 * OpenAPI document) → the status callback moves the message on → Airtable gets the masked row.
 */
await describeEachBackend('relay end to end', (backend) => {
  let harness: RelayHarness;
  before(async () => {
    harness = await openRelayHarness(backend);
  });
  after(async () => harness?.close());

  test('a signed SMS is answered by the AI through Twilio, with personal data kept from OpenAI and masked in Airtable', async () => {
    const tenant = await harness.putTenant('acme-dental');
    const phone = randomPhone();
    const card = '4111 1111 1111 1111';
    const email = 'maria.lopez@example.org';
    const body = `Hi, I'm Maria. My card is ${card} and my email is ${email}; can I move my cleaning to Friday?`;

    const { response, sid } = await harness.sendSms('acme-dental', phone, body);
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^text\/xml/);
    assert.equal(response.body, '<?xml version="1.0" encoding="UTF-8"?><Response></Response>');

    // Committed before the answer: the message is there, sealed.
    const stored = await queryRows<{ id: string; body: Uint8Array; dedupe_key: string; status: string }>(harness.db, sql`select id, body, dedupe_key, status from messages where tenant_id = ${tenant.id}`);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.dedupe_key, `twilio:${sid}`);
    assert.ok(!Buffer.from(stored[0]!.body).toString('latin1').includes('Maria'), 'the body is stored in plain text');
    const contactRows = await queryRows<{ phone: Uint8Array }>(harness.db, sql`select phone from contacts where tenant_id = ${tenant.id}`);
    assert.ok(!Buffer.from(contactRows[0]!.phone).toString('latin1').includes(phone.slice(2)), 'the phone number is stored in plain text');

    // The queue's depth is in /readyz: the AI reply and the Airtable sync wait for a worker.
    const ready = await harness.request({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().details.queue.pending, 2);
    assert.equal(ready.json().details.queue.due, 2);

    await harness.drain();

    // OpenAI saw placeholders, never the card or the email, and was told not to store anything.
    assert.equal(harness.openai.completions.length, 1);
    const completion = harness.openai.completions[0]! as unknown as Record<string, unknown>;
    const sentToOpenAi = JSON.stringify(completion);
    assert.equal(completion.store, false);
    assert.match(String(completion.safety_identifier), /^[0-9a-f]{64}$/);
    assert.ok(!sentToOpenAi.includes(card) && !sentToOpenAi.includes('4111111111111111'), 'the card number reached OpenAI');
    assert.ok(!sentToOpenAi.includes(email), 'the email reached OpenAI');
    assert.ok(!sentToOpenAi.includes(phone), 'the phone number reached OpenAI');
    assert.match(sentToOpenAi, /\[CARD_1\]/);
    assert.deepEqual(harness.openai.violations, []);

    // Twilio got the answer, with the placeholders put back, and a status callback to us.
    assert.equal(harness.twilio.messages.length, 1);
    const sent = harness.twilio.messages[0]!;
    assert.equal(sent.to, phone);
    assert.equal(sent.from, TENANT_FROM_NUMBER);
    assert.ok(sent.body.includes(email), `placeholders were not restored: ${sent.body}`);
    assert.ok(!/\[(CARD|EMAIL|PHONE|NAME)_\d+\]/.test(sent.body));
    const [reply] = await queryRows<{ id: string; provider_message_id: string; status: string; author: string }>(
      harness.db,
      sql`select id, provider_message_id, status, author from messages where tenant_id = ${tenant.id} and direction = 'outbound'`,
    );
    assert.equal(reply!.author, 'ai');
    assert.equal(reply!.provider_message_id, sent.sid);
    assert.equal(sent.statusCallback, `${PUBLIC_URL}/webhooks/twilio/acme-dental/status?m=${reply!.id}`);
    assert.deepEqual(harness.twilio.violations, []);

    // Status callbacks: delivered moves it on; a late "sent" does not move it back.
    const callback = (status: string) =>
      harness.postTwilio('acme-dental', 'status', { MessageSid: sent.sid, MessageStatus: status, AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid }, { query: `m=${reply!.id}` });
    assert.equal((await callback('delivered')).statusCode, 204);
    assert.equal((await callback('sent')).statusCode, 204);
    const [afterCallbacks] = await queryRows<{ status: string }>(harness.db, sql`select status from messages where id = ${reply!.id}`);
    assert.equal(afterCallbacks!.status, 'delivered');

    await harness.drain();
    // Airtable: one row per message, phone masked, bodies plain (the tenant's policy).
    const rows = [...(harness.airtable.tables.get(`${tenant.settings.airtable!.baseId}/Conversations`)?.values() ?? [])];
    assert.equal(rows.length, 2);
    const inboundRow = rows.find((row) => row.Direction === 'inbound')!;
    const replyRow = rows.find((row) => row.Direction === 'outbound')!;
    assert.match(String(inboundRow.Phone), /^\+1•+\d{4}$/);
    assert.ok(!JSON.stringify(rows).includes(phone), 'the full phone number reached Airtable');
    assert.equal(inboundRow.Body, body);
    assert.equal(replyRow['AI Reply'], sent.body);
    assert.equal(replyRow.Status, 'delivered');
    assert.deepEqual(airtableProblems(harness.airtable), []);
  });

  test('a duplicate delivery answers 200 and stores nothing new; the AI answers once', async () => {
    await harness.putTenant('dupes');
    const before = harness.twilio.messages.length;
    const phone = randomPhone();
    const first = await harness.sendSms('dupes', phone, 'Are you open on Saturday?');
    const again = await harness.sendSms('dupes', phone, 'Are you open on Saturday?', { sid: first.sid });
    assert.equal(first.response.statusCode, 200);
    assert.equal(again.response.statusCode, 200);
    await harness.drain();
    const [count] = await queryRows<{ n: number }>(harness.db, sql`select count(*)::int as n from messages m join tenants t on t.id = m.tenant_id where t.slug = 'dupes' and m.direction = 'inbound'`);
    assert.equal(count!.n, 1);
    assert.equal(harness.twilio.messages.length - before, 1);
  });

  test('STOP is never answered by the AI, and nothing is sent to the contact afterwards', async () => {
    await harness.putTenant('optout');
    const phone = randomPhone();
    const completionsBefore = harness.openai.completions.length;
    const sentBefore = harness.twilio.messages.length;
    await harness.sendSms('optout', phone, 'STOP');
    await harness.drain();
    assert.equal(harness.openai.completions.length, completionsBefore);
    assert.equal(harness.twilio.messages.length, sentBefore);
    // Staff try to write anyway: suppressed, not sent.
    const [contact] = await queryRows<{ opted_out_at: Date | null }>(harness.db, sql`select c.opted_out_at from contacts c join tenants t on t.id = c.tenant_id where t.slug = 'optout'`);
    assert.ok(contact!.opted_out_at);
    await harness.sendSms('optout', phone, 'START');
    const [back] = await queryRows<{ opted_out_at: Date | null }>(harness.db, sql`select c.opted_out_at from contacts c join tenants t on t.id = c.tenant_id where t.slug = 'optout'`);
    assert.equal(back!.opted_out_at, null);
  });

  test('a status callback for a message before its send was recorded still lands (our id in the callback URL)', async () => {
    await harness.putTenant('early-status');
    // A callback naming an unknown message of ours changes nothing and still answers 204.
    const response = await harness.postTwilio('early-status', 'status', { MessageSid: `SM${'0'.repeat(32)}`, MessageStatus: 'delivered' }, { query: 'm=00000000-0000-4000-8000-000000000000' });
    assert.equal(response.statusCode, 204);
  });

  test('the signature covers the query string: moving the ?m= to another message is refused', async () => {
    await harness.putTenant('tamper-query');
    const path = '/webhooks/twilio/tamper-query/status?m=00000000-0000-4000-8000-000000000001';
    const params = { MessageSid: `SM${'1'.repeat(32)}`, MessageStatus: 'failed' };
    const signature = signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `${PUBLIC_URL}${path}`, params);
    const response = await harness.postTwilio('tamper-query', 'status', params, { query: 'm=00000000-0000-4000-8000-000000000002', signature });
    assert.equal(response.statusCode, 403);
  });

  test('reading a conversation opens it for an authorised user and records who read it', async () => {
    const tenant = await harness.putTenant('reading');
    const phone = randomPhone();
    await harness.sendSms('reading', phone, 'Can I book for Tuesday?');
    await harness.drain();
    const identity = harness;
    const admin = await identity.createUser({ role: 'manager' });
    const session = await identity.signIn(admin);
    const lookup = await identity.request({ method: 'GET', url: `/api/v1/conversations?tenant=reading&phone=${encodeURIComponent(phone)}`, token: session.accessToken });
    assert.equal(lookup.statusCode, 200, lookup.body);
    const [conversation] = lookup.json().conversations as Array<{ id: string; tenant: string }>;
    assert.equal(conversation!.tenant, 'reading');
    const messages = await identity.request({ method: 'GET', url: `/api/v1/conversations/${conversation!.id}/messages`, token: session.accessToken });
    assert.equal(messages.statusCode, 200, messages.body);
    const bodies = (messages.json().messages as Array<{ body: string; direction: string }>).map((message) => [message.direction, message.body]);
    assert.equal(bodies[0]![1], 'Can I book for Tuesday?');
    assert.equal(bodies.length, 2);
    const reads = await queryRows<{ actor_id: string; target_id: string; tenant_id: string }>(harness.db, sql`select actor_id, target_id, tenant_id from audit_events where action = 'conversation.read'`);
    assert.deepEqual(reads.at(-1), { actor_id: admin.id, target_id: conversation!.id, tenant_id: tenant.id });
  });
});
