import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseFormBody, verifyTwilioRequest } from '../../../src/providers/twilio/webhook-signature.js';
import { signTwilioRequest } from '../../fakes/twilio.js';

/**
 * X-Twilio-Signature as Twilio computes it (the SDK's getExpectedTwilioSignature), checked by our
 * verifier over the public URL and the raw body: genuine requests pass, and every way of forging
 * or altering one fails.
 */

const AUTH_TOKEN = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const OTHER_TOKEN = 'ffffffffffffffffffffffffffffffff';
const URL_SMS = 'https://gateway.example.com/webhooks/twilio/acme/sms';
const FORM = 'application/x-www-form-urlencoded';

const inboundSms = {
  AccountSid: 'AC0123456789abcdef0123456789abcdef',
  MessageSid: 'SM11111111111111111111111111111111',
  From: '+15551230000',
  To: '+15550000001',
  Body: 'Hi, is 3pm ok? Café & more',
  NumMedia: '0',
};

function formBody(params: Record<string, string | string[]>): Buffer {
  const form = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) for (const item of [value].flat()) form.append(key, item);
  return Buffer.from(form.toString());
}

function verifyForm(options: { url?: string; signedUrl?: string; token?: string; signedWith?: string; signed?: Record<string, string | string[]>; sent?: Buffer; contentType?: string }) {
  const signedParams = options.signed ?? inboundSms;
  const signature = signTwilioRequest(options.signedWith ?? AUTH_TOKEN, options.signedUrl ?? options.url ?? URL_SMS, signedParams);
  return verifyTwilioRequest({
    authToken: options.token ?? AUTH_TOKEN,
    url: options.url ?? URL_SMS,
    signature,
    contentType: options.contentType ?? FORM,
    rawBody: options.sent ?? formBody(signedParams),
  });
}

describe('verifyTwilioRequest: form-encoded webhooks', () => {
  test('a request signed by Twilio passes', () => {
    assert.equal(verifyForm({}), true);
  });

  test('a Content-Type with a charset is still a form', () => {
    assert.equal(verifyForm({ contentType: 'application/x-www-form-urlencoded; charset=UTF-8' }), true);
  });

  test('form parameters handed in by the caller are used as given', () => {
    const signature = signTwilioRequest(AUTH_TOKEN, URL_SMS, inboundSms);
    const rawBody = formBody(inboundSms);
    assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: URL_SMS, signature, contentType: FORM, rawBody, formParams: parseFormBody(rawBody) }), true);
    assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: URL_SMS, signature, contentType: FORM, rawBody, formParams: { ...inboundSms, Body: 'other' } }), false);
  });

  test('a made-up signature fails', () => {
    const rawBody = formBody(inboundSms);
    for (const signature of ['AAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'not base64 at all', signTwilioRequest(AUTH_TOKEN, URL_SMS, {}).slice(1)]) {
      assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: URL_SMS, signature, contentType: FORM, rawBody }), false, signature);
    }
  });

  test('a signature made with another auth token fails', () => {
    assert.equal(verifyForm({ signedWith: OTHER_TOKEN }), false);
    assert.equal(verifyForm({ token: OTHER_TOKEN }), false);
  });

  test('a changed, added or removed parameter fails', () => {
    assert.equal(verifyForm({ sent: formBody({ ...inboundSms, Body: 'Send me the codes' }) }), false);
    assert.equal(verifyForm({ sent: formBody({ ...inboundSms, From: '+15559999999' }) }), false);
    assert.equal(verifyForm({ sent: formBody({ ...inboundSms, Extra: 'x' }) }), false);
    const { NumMedia: _dropped, ...withoutNumMedia } = inboundSms;
    assert.equal(verifyForm({ sent: formBody(withoutNumMedia) }), false);
  });

  test('a signature for another URL fails: path, tenant, host, scheme or query', () => {
    for (const signedUrl of [
      'https://gateway.example.com/webhooks/twilio/acme/status',
      'https://gateway.example.com/webhooks/twilio/other-tenant/sms',
      'https://evil.example.com/webhooks/twilio/acme/sms',
      'http://gateway.example.com/webhooks/twilio/acme/sms',
      'https://gateway.example.com/webhooks/twilio/acme/sms?x=1',
    ]) {
      assert.equal(verifyForm({ signedUrl }), false, signedUrl);
    }
  });

  test('port variants the SDK accepts: the default port may be present on either side', () => {
    assert.equal(verifyForm({ signedUrl: 'https://gateway.example.com:443/webhooks/twilio/acme/sms', url: URL_SMS }), true);
    assert.equal(verifyForm({ signedUrl: URL_SMS, url: 'https://gateway.example.com:443/webhooks/twilio/acme/sms' }), true);
    assert.equal(verifyForm({ signedUrl: 'http://gateway.example.com:80/hook', url: 'http://gateway.example.com/hook' }), true);
  });

  test('twilio-node quirk: any port is stripped, so a port-less signature matches a non-default port', () => {
    // removePort() strips whatever port the URL has; our URL comes from configuration, never
    // from the request, so this does not widen what an attacker can reach.
    assert.equal(verifyForm({ signedUrl: URL_SMS, url: 'https://gateway.example.com:8443/webhooks/twilio/acme/sms' }), true);
    // The reverse does not hold: a signature over :8443 is not valid for the port-less URL.
    assert.equal(verifyForm({ signedUrl: 'https://gateway.example.com:8443/webhooks/twilio/acme/sms', url: URL_SMS }), false);
  });

  test('the query string is part of what is signed', () => {
    const url = `${URL_SMS}?channel=a&b=2`;
    assert.equal(verifyForm({ url }), true);
    assert.equal(verifyForm({ signedUrl: url, url: `${URL_SMS}?channel=b&b=2` }), false);
  });

  test('repeated keys are signed value by value, in sorted order', () => {
    const withMedia = { ...inboundSms, MediaUrl: ['https://media.example/b.jpg', 'https://media.example/a.jpg'] };
    assert.equal(verifyForm({ signed: withMedia }), true);
    // Twilio may send the values in another order: the signature covers them sorted.
    const reordered = { ...inboundSms, MediaUrl: ['https://media.example/a.jpg', 'https://media.example/b.jpg'] };
    assert.equal(verifyForm({ signed: withMedia, sent: formBody(reordered) }), true);
    const swapped = { ...inboundSms, MediaUrl: ['https://media.example/a.jpg', 'https://media.example/evil.jpg'] };
    assert.equal(verifyForm({ signed: withMedia, sent: formBody(swapped) }), false);
    const dropped = { ...inboundSms, MediaUrl: 'https://media.example/a.jpg' };
    assert.equal(verifyForm({ signed: withMedia, sent: formBody(dropped) }), false);
  });

  test('parameters named like Object.prototype members are plain parameters', () => {
    const params = Object.fromEntries([
      ['constructor', 'x'],
      ['__proto__', 'y'],
      ['Body', 'hello'],
    ]) as Record<string, string>;
    assert.equal(verifyForm({ signed: params, sent: Buffer.from('constructor=x&__proto__=y&Body=hello') }), true);
    assert.equal(verifyForm({ signed: params, sent: Buffer.from('constructor=z&__proto__=y&Body=hello') }), false);
  });

  test('a missing or empty signature header fails, and so does an empty auth token', () => {
    const rawBody = formBody(inboundSms);
    assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: URL_SMS, signature: undefined, contentType: FORM, rawBody }), false);
    assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: URL_SMS, signature: '', contentType: FORM, rawBody }), false);
    const signedWithEmpty = signTwilioRequest('', URL_SMS, inboundSms);
    assert.equal(verifyTwilioRequest({ authToken: '', url: URL_SMS, signature: signedWithEmpty, contentType: FORM, rawBody }), false);
  });

  test('a URL that cannot be parsed fails instead of throwing', () => {
    const rawBody = formBody(inboundSms);
    assert.equal(verifyTwilioRequest({ authToken: AUTH_TOKEN, url: 'not a url', signature: signTwilioRequest(AUTH_TOKEN, 'not a url', inboundSms), contentType: FORM, rawBody }), false);
  });
});

describe('verifyTwilioRequest: JSON bodies bound by bodySHA256', () => {
  const jsonBody = Buffer.from(JSON.stringify({ EventType: 'onMessageAdded', Body: 'Hello ✓', Author: '+15551230000' }));
  const sha256 = (body: Buffer) => createHash('sha256').update(body).digest('hex');
  const jsonUrl = (body: Buffer) => `https://gateway.example.com/webhooks/twilio/acme/status?bodySHA256=${sha256(body)}`;

  function verifyJson(options: { body?: Buffer; signedUrl?: string; url?: string; contentType?: string }) {
    const url = options.url ?? jsonUrl(jsonBody);
    return verifyTwilioRequest({
      authToken: AUTH_TOKEN,
      url,
      signature: signTwilioRequest(AUTH_TOKEN, options.signedUrl ?? url, {}),
      contentType: options.contentType ?? 'application/json',
      rawBody: options.body ?? jsonBody,
    });
  }

  test('a signed URL whose bodySHA256 matches the raw body passes', () => {
    assert.equal(verifyJson({}), true);
  });

  test('a body changed after signing fails', () => {
    const tampered = Buffer.from(jsonBody.toString().replace('Hello', 'Hullo'));
    assert.equal(verifyJson({ body: tampered }), false);
  });

  test('a bodySHA256 recomputed for a new body fails: the URL is what the signature covers', () => {
    const tampered = Buffer.from(jsonBody.toString().replace('Hello', 'Hullo'));
    assert.equal(verifyJson({ body: tampered, url: jsonUrl(tampered), signedUrl: jsonUrl(jsonBody) }), false);
  });

  test('the hash binds the body whatever Content-Type says', () => {
    assert.equal(verifyJson({ contentType: FORM }), true);
    assert.equal(verifyJson({ contentType: FORM, body: Buffer.from('Body=anything') }), false);
  });

  test('a JSON body without bodySHA256 is not covered by any signature and fails', () => {
    const url = 'https://gateway.example.com/webhooks/twilio/acme/status';
    assert.equal(verifyJson({ url, signedUrl: url }), false);
  });

  test('bytes that are not UTF-8 fail rather than being hashed through a lossy decoding', () => {
    const invalid = Buffer.from([0x7b, 0xff, 0x7d]);
    const replacementChar = Buffer.from('{\uFFFD}');
    assert.equal(verifyJson({ body: invalid, url: jsonUrl(replacementChar) }), false);
    assert.equal(verifyJson({ body: replacementChar, url: jsonUrl(replacementChar) }), true);
  });
});
