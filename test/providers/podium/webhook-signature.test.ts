import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { verifyPodiumRequest } from '../../../src/providers/podium/webhook-signature.js';
import { podiumMessageEvent, signPodiumRequest } from '../../fakes/podium.js';

/**
 * podium-timestamp + podium-signature: HMAC-SHA256 over `${timestamp}.${rawBody}`. Podium does not
 * say whether the digest is hex or base64, so both must pass; every forgery, alteration and
 * replay outside ±5 minutes must fail, with a reason.
 */

const SECRET = 'whsec-podium-test-secret';
const NOW = 1_720_000_000_000;
const rawBody = Buffer.from(
  podiumMessageEvent('message.received', {
    uid: '3f1c2b7a-0000-4000-8000-000000000001',
    body: 'Can I move my appointment?',
    conversation: { uid: '3f1c2b7a-0000-4000-8000-000000000002', channel: { type: 'phone', identifier: '+15551230000' } },
  }),
);

function verify(options: { secret?: string; timestamp?: string | undefined; signature?: string | undefined; body?: Buffer; now?: number; toleranceMs?: number } = {}) {
  const timestamp = 'timestamp' in options ? options.timestamp : String(NOW);
  const signature = 'signature' in options ? options.signature : signPodiumRequest(SECRET, timestamp ?? '', rawBody, 'hex');
  return verifyPodiumRequest({
    secret: options.secret ?? SECRET,
    timestamp,
    signature,
    rawBody: options.body ?? rawBody,
    now: options.now ?? NOW,
    ...(options.toleranceMs === undefined ? {} : { toleranceMs: options.toleranceMs }),
  });
}

describe('verifyPodiumRequest', () => {
  test('a hex digest passes, in either letter case', () => {
    const hex = signPodiumRequest(SECRET, NOW, rawBody, 'hex');
    assert.deepEqual(verify({ signature: hex }), { ok: true });
    assert.deepEqual(verify({ signature: hex.toUpperCase() }), { ok: true });
  });

  test('a base64 digest passes, and so does its base64url spelling', () => {
    const base64 = signPodiumRequest(SECRET, NOW, rawBody, 'base64');
    assert.deepEqual(verify({ signature: base64 }), { ok: true });
    assert.deepEqual(verify({ signature: base64.replace(/=+$/, '') }), { ok: true });
    assert.deepEqual(verify({ signature: Buffer.from(base64, 'base64').toString('base64url') }), { ok: true });
  });

  test('a signature made with another secret fails', () => {
    for (const encoding of ['hex', 'base64'] as const) {
      assert.deepEqual(verify({ signature: signPodiumRequest('another-secret', NOW, rawBody, encoding) }), { ok: false, reason: 'bad-signature' });
    }
    assert.deepEqual(verify({ secret: 'another-secret' }), { ok: false, reason: 'bad-signature' });
  });

  test('a body changed after signing fails', () => {
    const tampered = Buffer.from(rawBody.toString().replace('move', 'cancel'));
    assert.deepEqual(verify({ body: tampered }), { ok: false, reason: 'bad-signature' });
    assert.deepEqual(verify({ body: Buffer.concat([rawBody, Buffer.from(' ')]) }), { ok: false, reason: 'bad-signature' });
  });

  test('a timestamp changed after signing fails as a bad signature, not as stale', () => {
    const signature = signPodiumRequest(SECRET, NOW, rawBody, 'hex');
    assert.deepEqual(verify({ timestamp: String(NOW + 1), signature }), { ok: false, reason: 'bad-signature' });
  });

  test('a genuine delivery more than five minutes old or ahead is stale', () => {
    for (const offsetMs of [-6 * 60_000, 6 * 60_000]) {
      const timestamp = String(NOW + offsetMs);
      for (const encoding of ['hex', 'base64'] as const) {
        assert.deepEqual(verify({ timestamp, signature: signPodiumRequest(SECRET, timestamp, rawBody, encoding) }), { ok: false, reason: 'stale-timestamp' }, `${offsetMs} ${encoding}`);
      }
    }
  });

  test('within the window on both sides passes; the window can be narrowed', () => {
    for (const offsetMs of [-4 * 60_000, 4 * 60_000, -5 * 60_000, 5 * 60_000]) {
      const timestamp = String(NOW + offsetMs);
      assert.deepEqual(verify({ timestamp, signature: signPodiumRequest(SECRET, timestamp, rawBody, 'hex') }), { ok: true }, String(offsetMs));
    }
    const timestamp = String(NOW - 61_000);
    assert.deepEqual(verify({ timestamp, signature: signPodiumRequest(SECRET, timestamp, rawBody, 'hex'), toleranceMs: 60_000 }), { ok: false, reason: 'stale-timestamp' });
  });

  test('a timestamp in seconds or not a number at all, even when signed, is refused', () => {
    for (const timestamp of [String(Math.floor(NOW / 1000)), 'yesterday', '1.72e12', '-1720000000000']) {
      assert.deepEqual(verify({ timestamp, signature: signPodiumRequest(SECRET, timestamp, rawBody, 'hex') }), { ok: false, reason: 'stale-timestamp' }, timestamp);
    }
  });

  test('missing headers are reported as such', () => {
    assert.deepEqual(verify({ timestamp: undefined }), { ok: false, reason: 'missing-header' });
    assert.deepEqual(verify({ signature: undefined }), { ok: false, reason: 'missing-header' });
    assert.deepEqual(verify({ timestamp: '', signature: '' }), { ok: false, reason: 'missing-header' });
  });

  test('signatures in no known encoding, or of the wrong length, fail', () => {
    const hex = signPodiumRequest(SECRET, NOW, rawBody, 'hex');
    for (const signature of [hex.slice(0, 63), `${hex}00`, `sha256=${hex}`, 'x'.repeat(64), '!'.repeat(44), hex.slice(0, 32)]) {
      assert.deepEqual(verify({ signature }), { ok: false, reason: 'bad-signature' }, signature);
    }
  });

  test('a tenant without a secret verifies nothing, even an empty-key signature', () => {
    assert.deepEqual(verify({ secret: '', signature: signPodiumRequest('', NOW, rawBody, 'hex') }), { ok: false, reason: 'bad-signature' });
  });
});
