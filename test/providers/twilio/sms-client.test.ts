import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ProviderError } from '../../../src/providers/provider-error.js';
import { createTwilioSmsClient, type TwilioSmsClient } from '../../../src/providers/twilio/sms-client.js';
import { DEFAULT_TWILIO_ACCOUNT, startTwilioFake, type TwilioFake } from '../../fakes/twilio.js';
import { rejection } from '../../helpers/provider-errors.js';

/**
 * The SMS client through the official SDK against the local Twilio: sends land with their status
 * callback, every failure mode becomes a ProviderError the queue can act on, and an uncertain send
 * is found again by findSent. Every valid request also conforms to Twilio's OpenAPI document.
 */

const credentials = { accountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, authToken: DEFAULT_TWILIO_ACCOUNT.authToken };
const FROM = '+15550000001';
const TO = '+15551230000';
const STATUS_CALLBACK = 'https://gateway.example.com/webhooks/twilio/acme/status';


describe('Twilio SMS client against the Twilio fake', () => {
  let fake: TwilioFake;
  let client: TwilioSmsClient;

  before(async () => {
    fake = await startTwilioFake();
    // Patient for ordinary calls (a loaded CI machine can take a second to answer the first);
    // the timeout test has its own impatient client.
    client = createTwilioSmsClient({ apiUrl: fake.url, timeoutMs: 10_000 });
  });
  after(async () => {
    await fake.close();
  });
  beforeEach(() => {
    fake.messages.length = 0;
    fake.requests.length = 0;
    fake.violations.length = 0;
  });

  test('send creates a queued message with its StatusCallback through the SDK', async () => {
    const sent = await client.send(credentials, { from: FROM, to: TO, body: 'Your appointment is at 3pm.', statusCallback: STATUS_CALLBACK });
    assert.match(sent.sid, /^SM[0-9a-f]{32}$/);
    assert.equal(sent.status, 'queued');
    assert.equal(fake.messages.length, 1);
    const [stored] = fake.messages;
    assert.deepEqual(
      { sid: stored!.sid, from: stored!.from, to: stored!.to, body: stored!.body, statusCallback: stored!.statusCallback, accountSid: stored!.accountSid },
      { sid: sent.sid, from: FROM, to: TO, body: 'Your appointment is at 3pm.', statusCallback: STATUS_CALLBACK, accountSid: credentials.accountSid },
    );
    const [request] = fake.requests;
    assert.equal(request!.path, `/2010-04-01/Accounts/${credentials.accountSid}/Messages.json`);
    assert.match(String(request!.headers['user-agent']), /^twilio-node\//);
    assert.deepEqual(fake.violations, []);
  });

  test('several sends reuse the client and all conform to the spec', async () => {
    for (const body of ['one', 'two', 'three']) await client.send(credentials, { from: FROM, to: TO, body, statusCallback: STATUS_CALLBACK });
    assert.deepEqual(
      fake.messages.map((message) => message.body),
      ['one', 'two', 'three'],
    );
    assert.deepEqual(fake.violations, []);
  });

  test('an apiUrl with a trailing slash or a path prefix is honoured', async () => {
    const prefixed = createTwilioSmsClient({ apiUrl: `${fake.url}/`, timeoutMs: 10_000 });
    await prefixed.send(credentials, { from: FROM, to: TO, body: 'slash', statusCallback: STATUS_CALLBACK });
    assert.equal(fake.requests.at(-1)!.path, `/2010-04-01/Accounts/${credentials.accountSid}/Messages.json`);
    const behindProxy = createTwilioSmsClient({ apiUrl: `${fake.url}/twilio-proxy`, timeoutMs: 10_000 });
    await rejection(behindProxy.send(credentials, { from: FROM, to: TO, body: 'prefix', statusCallback: STATUS_CALLBACK }));
    assert.equal(fake.requests.at(-1)!.path, `/twilio-proxy/2010-04-01/Accounts/${credentials.accountSid}/Messages.json`);
    // The fake serves no prefix, and its spec check says so: the check is live.
    assert.ok(fake.violations.some((violation) => violation.includes('no path in the spec matches')), fake.violations.join('\n'));
  });

  test('wrong credentials are a non-retryable 401 with Twilio error 20003', async () => {
    const error = await rejection(client.send({ ...credentials, authToken: 'wrong-token-wrong-token-wrong-tok' }, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.provider, 'twilio');
    assert.equal(error.status, 401);
    assert.equal(error.code, '20003');
    assert.equal(error.retryable, false);
    assert.equal(fake.messages.length, 0);
    assert.equal(fake.violations.length, 1, 'the fake reports the bad credentials');
  });

  test('an account SID that is not one fails before any request, not retryable', async () => {
    const error = await rejection(client.send({ accountSid: 'SK0123', authToken: 'x' }, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.retryable, false);
    assert.equal(error.status, undefined);
    assert.equal(fake.requests.length, 0);
  });

  test('a refused message is not retryable and its error names no number or text', async () => {
    const error = await rejection(client.send(credentials, { from: FROM, to: '5551230000', body: 'secret words', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, 400);
    assert.equal(error.code, '21211');
    assert.equal(error.retryable, false);
    assert.doesNotMatch(error.message, /5551230000|secret words/);
    assert.equal(error.cause, undefined, 'no SDK error (with credentials in its config) is attached');
  });

  test('500 is retryable', async () => {
    fake.failNext({ kind: 'status', status: 500, body: { code: 20500, message: 'Internal Server Error', more_info: 'https://www.twilio.com/docs/errors/20500', status: 500 } });
    const error = await rejection(client.send(credentials, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, 500);
    assert.equal(error.code, '20500');
    assert.equal(error.retryable, true);
  });

  test('429 with Retry-After: 7 is retryable after 7 seconds', async () => {
    fake.failNext({ kind: 'rate-limit', retryAfterSeconds: 7, body: { code: 20429, message: 'Too Many Requests', more_info: 'https://www.twilio.com/docs/errors/20429', status: 429 } });
    const error = await rejection(client.send(credentials, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, 429);
    assert.equal(error.code, '20429');
    assert.equal(error.retryable, true);
    assert.equal(error.retryAfterSeconds, 7);
    assert.equal(fake.requests.length, 1, 'the SDK did not retry on its own');
  });

  test('an answer slower than the timeout is a retryable failure with no status', async () => {
    const impatient = createTwilioSmsClient({ apiUrl: fake.url, timeoutMs: 200 });
    fake.failNext({ kind: 'slow', delayMs: 1_500 });
    const error = await rejection(impatient.send(credentials, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
  });

  test('a dropped connection is retryable', async () => {
    fake.failNext({ kind: 'drop' });
    const error = await rejection(client.send(credentials, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
    assert.equal(fake.messages.length, 0);
  });

  test('findSent finds a message whose answer was lost (created, then the connection dropped)', async () => {
    const sentAfter = new Date();
    fake.failNext({ kind: 'drop', afterHandling: true });
    const error = await rejection(client.send(credentials, { from: FROM, to: TO, body: 'Lost answer', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.retryable, true);
    assert.equal(fake.messages.length, 1, 'Twilio did create the message');

    const found = await client.findSent(credentials, { from: FROM, to: TO, body: 'Lost answer', sentAfter });
    assert.deepEqual(found, { sid: fake.messages[0]!.sid, status: 'queued' });
    assert.deepEqual(fake.violations, []);
  });

  test('findSent finds a message that has already left, through the DateSent filter', async () => {
    const sentAfter = new Date();
    const sent = await client.send(credentials, { from: FROM, to: TO, body: 'Delivered one', statusCallback: STATUS_CALLBACK });
    fake.setStatus(sent.sid, 'delivered');
    fake.requests.length = 0;

    const found = await client.findSent(credentials, { from: FROM, to: TO, body: 'Delivered one', sentAfter });
    assert.deepEqual(found, { sid: sent.sid, status: 'delivered' });
    assert.equal(fake.requests.length, 1, 'found by the first, date-filtered query');
    assert.ok(fake.requests[0]!.query.has('DateSent>'));
    assert.deepEqual(fake.violations, []);
  });

  test('findSent returns undefined when no such message exists', async () => {
    const sentAfter = new Date();
    await client.send(credentials, { from: FROM, to: TO, body: 'Something else', statusCallback: STATUS_CALLBACK });
    await client.send(credentials, { from: FROM, to: '+15557654321', body: 'Same text', statusCallback: STATUS_CALLBACK });
    assert.equal(await client.findSent(credentials, { from: FROM, to: TO, body: 'Same text', sentAfter }), undefined);
    assert.equal(await client.findSent(credentials, { from: FROM, to: TO, body: 'Nothing at all', sentAfter }), undefined);
    assert.deepEqual(fake.violations, []);
  });

  test('findSent ignores an identical message created before sentAfter', async () => {
    await client.send(credentials, { from: FROM, to: TO, body: 'OK', statusCallback: STATUS_CALLBACK });
    const later = new Date(Date.now() + 5_000);
    assert.equal(await client.findSent(credentials, { from: FROM, to: TO, body: 'OK', sentAfter: later }), undefined);
  });

  test('findSent pages through the list', async () => {
    const sentAfter = new Date();
    const target = await client.send(credentials, { from: FROM, to: TO, body: 'needle', statusCallback: STATUS_CALLBACK });
    for (let index = 0; index < 120; index += 1) fake.messages.push({ ...fake.messages[0]!, sid: `SM${index.toString(16).padStart(32, '0')}`, body: `hay ${index}` });
    const found = await client.findSent(credentials, { from: FROM, to: TO, body: 'needle', sentAfter });
    assert.equal(found?.sid, target.sid);
    assert.ok(fake.requests.some((request) => request.query.has('PageToken')), 'a second page was fetched');
    assert.deepEqual(fake.violations, []);
  });

  test('findSent failures are ProviderErrors too', async () => {
    fake.failNext({ kind: 'status', status: 503 });
    const error = await rejection(client.findSent(credentials, { from: FROM, to: TO, body: 'x', sentAfter: new Date() }));
    assert.equal(error.status, 503);
    assert.equal(error.retryable, true);
  });
});

describe('Twilio SMS client with several tenant accounts', () => {
  const accountA = { accountSid: 'AC' + 'a'.repeat(32), authToken: 'token-a-0123456789abcdef0123456789' };
  const accountB = { accountSid: 'AC' + 'b'.repeat(32), authToken: 'token-b-0123456789abcdef0123456789' };
  let fake: TwilioFake;

  before(async () => {
    fake = await startTwilioFake({ accounts: { [accountA.accountSid]: accountA.authToken, [accountB.accountSid]: accountB.authToken } });
  });
  after(async () => {
    await fake.close();
  });

  test('each send goes out under its own account, also when the client cache holds only one', async () => {
    const client = createTwilioSmsClient({ apiUrl: fake.url, timeoutMs: 10_000, maxCachedClients: 1 });
    for (const account of [accountA, accountB, accountA, accountB]) {
      await client.send(account, { from: FROM, to: TO, body: `from ${account.accountSid.slice(0, 3)}`, statusCallback: STATUS_CALLBACK });
    }
    assert.deepEqual(
      fake.messages.map((message) => message.accountSid),
      [accountA.accountSid, accountB.accountSid, accountA.accountSid, accountB.accountSid],
    );
    // One account's token does not open the other's.
    const error = await rejection(client.send({ accountSid: accountA.accountSid, authToken: accountB.authToken }, { from: FROM, to: TO, body: 'x', statusCallback: STATUS_CALLBACK }));
    assert.equal(error.status, 401);
    assert.equal(fake.violations.length, 1);
  });
});
