import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { createPodiumClient, type PodiumClient } from '../../../src/providers/podium/client.js';
import { ProviderError } from '../../../src/providers/provider-error.js';
import { DEFAULT_PODIUM_LOCATION, DEFAULT_PODIUM_TOKEN, startPodiumFake, type PodiumFake } from '../../fakes/podium.js';
import { rejection } from '../../helpers/provider-errors.js';

/**
 * The Podium client against the local Podium: sends land as `POST /v4/messages` with the bearer
 * token, every failure mode is a ProviderError the queue can act on, and an uncertain send is
 * found again through the conversation's messages.
 */

const TO = '+15551230000';
const send = { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'See you at 3pm.' };


describe('Podium client against the Podium fake', () => {
  let fake: PodiumFake;
  let client: PodiumClient;

  before(async () => {
    fake = await startPodiumFake();
    // Patient for ordinary calls (a loaded CI machine can take a second to answer the first);
    // the timeout test has its own impatient client.
    client = createPodiumClient({ apiUrl: fake.url, timeoutMs: 10_000 });
  });
  after(async () => {
    await fake.close();
  });
  beforeEach(() => {
    fake.messages.length = 0;
    fake.conversations.length = 0;
    fake.requests.length = 0;
    fake.violations.length = 0;
  });

  test('send posts the documented body with the bearer token and returns the message uid', async () => {
    const sent = await client.send(DEFAULT_PODIUM_TOKEN, { ...send, contactName: 'Dana Smith' });
    assert.equal(fake.messages.length, 1);
    assert.equal(sent.uid, fake.messages[0]!.uid);
    const [request] = fake.requests;
    assert.equal(request!.method, 'POST');
    assert.equal(request!.path, '/v4/messages');
    assert.equal(request!.headers.authorization, `Bearer ${DEFAULT_PODIUM_TOKEN}`);
    assert.deepEqual(JSON.parse(request!.rawBody.toString()), {
      body: 'See you at 3pm.',
      channel: { type: 'phone', identifier: TO },
      locationUid: DEFAULT_PODIUM_LOCATION,
      contactName: 'Dana Smith',
    });
    assert.deepEqual(fake.violations, []);
  });

  test('without a contact name the field is left out', async () => {
    await client.send(DEFAULT_PODIUM_TOKEN, send);
    assert.equal('contactName' in JSON.parse(fake.requests[0]!.rawBody.toString()), false);
    assert.deepEqual(fake.violations, []);
  });

  test('a wrong token is a non-retryable 401', async () => {
    const error = await rejection(client.send('not-the-token', send));
    assert.equal(error.provider, 'podium');
    assert.equal(error.status, 401);
    assert.equal(error.retryable, false);
    assert.equal(fake.messages.length, 0);
  });

  test('no token at all fails before any request', async () => {
    const error = await rejection(client.send('', send));
    assert.equal(error.retryable, false);
    assert.equal(fake.requests.length, 0);
  });

  test('a refused message (400) is not retryable and its error quotes no number or text', async () => {
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, { ...send, locationUid: 'not-a-uuid', body: 'secret words' }));
    assert.equal(error.status, 400);
    assert.equal(error.code, 'invalid_request');
    assert.equal(error.retryable, false);
    assert.doesNotMatch(error.message, /5551230000|secret words/);
  });

  test('500 is retryable', async () => {
    fake.failNext({ kind: 'status', status: 500 });
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, send));
    assert.equal(error.status, 500);
    assert.equal(error.retryable, true);
  });

  test('429 with Retry-After: 7 is retryable after 7 seconds', async () => {
    fake.failNext({ kind: 'rate-limit', retryAfterSeconds: 7 });
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, send));
    assert.equal(error.status, 429);
    assert.equal(error.retryable, true);
    assert.equal(error.retryAfterSeconds, 7);
  });

  test('an answer slower than the timeout is retryable with no status', async () => {
    const impatient = createPodiumClient({ apiUrl: fake.url, timeoutMs: 200 });
    fake.failNext({ kind: 'slow', delayMs: 1_500 });
    const error = await rejection(impatient.send(DEFAULT_PODIUM_TOKEN, send));
    assert.equal(error.status, undefined);
    assert.equal(error.code, 'timeout');
    assert.equal(error.retryable, true);
  });

  test('a dropped connection is retryable', async () => {
    fake.failNext({ kind: 'drop' });
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, send));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
    assert.equal(fake.messages.length, 0);
  });

  test('an answer without a message uid is not retried blindly', async () => {
    fake.failNext({ kind: 'status', status: 200, body: { data: {}, metadata: {} } });
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, send));
    assert.equal(error.code, 'no-message-uid');
    assert.equal(error.retryable, false);
  });

  test('findSent finds a message whose answer was lost (created, then the connection dropped)', async () => {
    const sentAfter = new Date();
    fake.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: TO, body: 'Can I come at 3?' });
    fake.failNext({ kind: 'drop', afterHandling: true });
    const error = await rejection(client.send(DEFAULT_PODIUM_TOKEN, { ...send, body: 'Yes, 3pm works.' }));
    assert.equal(error.retryable, true);
    const created = fake.messages.find((message) => message.direction === 'outbound');
    assert.ok(created, 'Podium did create the message');

    const found = await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'Yes, 3pm works.', sentAfter });
    assert.deepEqual(found, { uid: created.uid });
    assert.deepEqual(fake.violations, []);
  });

  test('findSent matches a conversation stored without +1', async () => {
    const sentAfter = new Date();
    fake.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: '5551230000', body: 'hello' });
    await client.send(DEFAULT_PODIUM_TOKEN, { ...send, to: '5551230000', body: 'hi back' });
    const found = await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'hi back', sentAfter });
    assert.equal(found?.uid, fake.messages.at(-1)!.uid);
  });

  test('findSent returns undefined when there is no such message or no such conversation', async () => {
    const sentAfter = new Date();
    await client.send(DEFAULT_PODIUM_TOKEN, { ...send, body: 'something else' });
    await client.send(DEFAULT_PODIUM_TOKEN, { ...send, to: '+15557654321', body: 'same text' });
    assert.equal(await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'same text', sentAfter }), undefined);
    assert.equal(await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: '+15550009999', body: 'same text', sentAfter }), undefined);
    assert.deepEqual(fake.violations, []);
  });

  test('findSent ignores an identical message from before sentAfter', async () => {
    await client.send(DEFAULT_PODIUM_TOKEN, { ...send, body: 'OK' });
    const later = new Date(Date.now() + 5_000);
    assert.equal(await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'OK', sentAfter: later }), undefined);
  });

  test('findSent follows cursors through conversations and messages', async () => {
    const sentAfter = new Date();
    for (let index = 0; index < 150; index += 1) fake.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: `+1555100${String(index).padStart(4, '0')}`, body: 'hi' });
    for (let index = 0; index < 120; index += 1) fake.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: TO, body: `message ${index}` });
    const sent = await client.send(DEFAULT_PODIUM_TOKEN, { ...send, body: 'the needle' });
    const found = await client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'the needle', sentAfter });
    assert.deepEqual(found, sent);
    assert.ok(fake.requests.filter((request) => request.query.has('cursor')).length >= 2, 'both lists were paged');
    assert.deepEqual(fake.violations, []);
  });

  test('findSent refuses to guess when the page bound runs out first', async () => {
    const bounded = createPodiumClient({ apiUrl: fake.url, timeoutMs: 10_000, maxLookupPages: 1 });
    for (let index = 0; index < 120; index += 1) fake.receive({ locationUid: DEFAULT_PODIUM_LOCATION, from: `+1555100${String(index).padStart(4, '0')}`, body: 'hi' });
    const error = await rejection(bounded.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'x', sentAfter: new Date() }));
    assert.equal(error.code, 'lookup-inconclusive');
    assert.equal(error.retryable, false);
  });

  test('findSent failures are ProviderErrors too', async () => {
    fake.failNext({ kind: 'status', status: 503 });
    const error = await rejection(client.findSent(DEFAULT_PODIUM_TOKEN, { locationUid: DEFAULT_PODIUM_LOCATION, to: TO, body: 'x', sentAfter: new Date() }));
    assert.equal(error.status, 503);
    assert.equal(error.retryable, true);
  });
});
