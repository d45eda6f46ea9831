import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { verifyAirtableMac } from '../../../src/providers/airtable/webhook-mac.js';
import { signAirtableNotification } from '../../fakes/airtable.js';

/**
 * The X-Airtable-Content-MAC check on notification pings: the genuine header verifies, and every
 * forgery, tampering, or malformed header fails closed.
 */

const macSecretBase64 = randomBytes(32).toString('base64');
const rawBody = Buffer.from('{"base":{"id":"appAAAAAAAAAAAAAA"},"webhook":{"id":"achBBBBBBBBBBBBBB"},"timestamp":"2026-03-06T00:32:58.992Z"}');
const genuine = signAirtableNotification(macSecretBase64, rawBody);

describe('verifyAirtableMac', () => {
  test('the header Airtable sends verifies', () => {
    assert.match(genuine, /^hmac-sha256=[0-9a-f]{64}$/);
    assert.equal(verifyAirtableMac({ macSecretBase64, header: genuine, rawBody }), true);
  });

  test('the digest is keyed by the base64-decoded secret, matching an independent computation', () => {
    const secretBytes = Buffer.alloc(32, 7);
    const body = Buffer.from('{"ping":1}');
    const header = `hmac-sha256=${createHmac('sha256', secretBytes).update(body).digest('hex')}`;
    assert.equal(verifyAirtableMac({ macSecretBase64: secretBytes.toString('base64'), header, rawBody: body }), true);
  });

  test('a MAC keyed by the base64 text instead of its bytes is refused (the common integration bug)', () => {
    const keyedByText = `hmac-sha256=${createHmac('sha256', macSecretBase64).update(rawBody).digest('hex')}`;
    assert.equal(verifyAirtableMac({ macSecretBase64, header: keyedByText, rawBody }), false);
  });

  test('a MAC forged with another secret is refused', () => {
    const forged = signAirtableNotification(randomBytes(32).toString('base64'), rawBody);
    assert.equal(verifyAirtableMac({ macSecretBase64, header: forged, rawBody }), false);
  });

  test('a tampered body is refused', () => {
    const tampered = Buffer.from(rawBody.toString().replace('achBBBBBBBBBBBBBB', 'achCCCCCCCCCCCCCC'));
    assert.equal(verifyAirtableMac({ macSecretBase64, header: genuine, rawBody: tampered }), false);
    assert.equal(verifyAirtableMac({ macSecretBase64, header: genuine, rawBody: Buffer.concat([rawBody, Buffer.from(' ')]) }), false);
  });

  test('a missing or empty header is refused', () => {
    assert.equal(verifyAirtableMac({ macSecretBase64, header: undefined, rawBody }), false);
    assert.equal(verifyAirtableMac({ macSecretBase64, header: '', rawBody }), false);
  });

  test('a wrong or missing scheme prefix is refused even with the right digest', () => {
    const digest = genuine.slice('hmac-sha256='.length);
    for (const header of [digest, `sha256=${digest}`, `hmac-sha1=${digest}`, `HMAC-SHA256=${digest}`, `hmac-sha256:${digest}`, `hmac-sha256= ${digest}`]) {
      assert.equal(verifyAirtableMac({ macSecretBase64, header, rawBody }), false, header.slice(0, 14));
    }
  });

  test('a truncated, extended or non-hex digest is refused', () => {
    const digest = genuine.slice('hmac-sha256='.length);
    for (const header of [`hmac-sha256=${digest.slice(0, 63)}`, `hmac-sha256=${digest}00`, `hmac-sha256=${digest.slice(0, 62)}zz`, `hmac-sha256=${Buffer.from(digest, 'hex').toString('base64')}`]) {
      assert.equal(verifyAirtableMac({ macSecretBase64, header, rawBody }), false);
    }
  });

  test('an empty secret never verifies, even a MAC made with an empty key', () => {
    const emptyKeyed = `hmac-sha256=${createHmac('sha256', Buffer.alloc(0)).update(rawBody).digest('hex')}`;
    assert.equal(verifyAirtableMac({ macSecretBase64: '', header: emptyKeyed, rawBody }), false);
  });

  test('an uppercase hex digest of the right MAC still verifies', () => {
    const upper = `hmac-sha256=${genuine.slice('hmac-sha256='.length).toUpperCase()}`;
    assert.equal(verifyAirtableMac({ macSecretBase64, header: upper, rawBody }), true);
  });
});
