import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DEFAULT_TWILIO_ACCOUNT, signTwilioRequest } from '../fakes/twilio.js';
import { messageSid, openRelayHarness, PUBLIC_URL, TENANT_FROM_NUMBER, type RelayHarness } from '../helpers/relay.js';

/**
 * Issue 15: a delivery refused with `bad-signature` did not say which URL the signature was
 * checked against, so an operator whose CIPHERGATE_PUBLIC_URL differed from the URL given to
 * Twilio (http vs https, another port, a path prefix the proxy strips) had nothing to compare.
 * The log line now names it, without its query, and still no secret, signature or phone number.
 */
let harness: RelayHarness;
before(async () => {
  harness = await openRelayHarness('pglite');
});
after(() => harness.close());

test('bad-signature names the URL checked; no secret, signature or personal data in the line', async () => {
  const tenant = await harness.putTenant();
  const path = `/webhooks/twilio/${tenant.slug}/sms`;
  const params = { MessageSid: messageSid(), AccountSid: DEFAULT_TWILIO_ACCOUNT.accountSid, From: '+14155550142', To: TENANT_FROM_NUMBER, Body: 'hello there' };
  // Twilio was given the http URL; the gateway checks against its https public URL.
  const signature = signTwilioRequest(DEFAULT_TWILIO_ACCOUNT.authToken, `http://gate.example.test${path}?probe=1`, params);
  const response = await harness.postTwilio(tenant.slug, 'sms', params, { signature, query: 'probe=1' });
  assert.equal(response.statusCode, 403);
  const lines = harness.logs.lines().filter((line) => line['msg'] === 'webhook rejected' && line['reason'] === 'bad-signature');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!['checkedUrl'], `${PUBLIC_URL}${path}`);
  const text = JSON.stringify(lines[0]);
  for (const secret of [DEFAULT_TWILIO_ACCOUNT.authToken, signature, '+14155550142', 'hello there', 'probe']) assert.equal(text.includes(secret), false, `${secret} in the log line`);
});

test('other refusals do not carry it (the URL is no hint for them)', async () => {
  const tenant = await harness.putTenant();
  const response = await harness.postTwilio(tenant.slug, 'sms', { MessageSid: messageSid(), From: '+14155550142', Body: 'x' }, { signature: null });
  assert.equal(response.statusCode, 403);
  const line = harness.logs.lines().find((entry) => entry['msg'] === 'webhook rejected' && entry['reason'] === 'missing-signature');
  assert.ok(line);
  assert.equal(line['checkedUrl'], undefined);
});
