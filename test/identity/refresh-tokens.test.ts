import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  REFRESH_TOKEN_PREFIX,
  decideRefresh,
  hashRefreshToken,
  isRefreshTokenFormat,
  issueRefreshToken,
  type RefreshTokenRecord,
} from '../../src/identity/sessions/refresh-tokens.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const later = (ms: number) => new Date(NOW.getTime() + ms);

function record(overrides: Partial<RefreshTokenRecord> = {}): RefreshTokenRecord {
  return { hash: hashRefreshToken(issueRefreshToken().token), sessionId: 'session-1', usedAt: null, expiresAt: later(3_600_000), ...overrides };
}

describe('issueRefreshToken', () => {
  test('is cgr_ followed by 32 random bytes in base64url (256 bits)', () => {
    const { token } = issueRefreshToken();
    assert.ok(token.startsWith(REFRESH_TOKEN_PREFIX));
    assert.equal(REFRESH_TOKEN_PREFIX, 'cgr_');
    const body = token.slice(REFRESH_TOKEN_PREFIX.length);
    assert.match(body, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(body, 'base64url').length, 32);
    assert.ok(Buffer.from(body, 'base64url').length * 8 >= 128);
    assert.ok(isRefreshTokenFormat(token));
  });

  test('tokens do not repeat', () => {
    const tokens = new Set(Array.from({ length: 1000 }, () => issueRefreshToken().token));
    assert.equal(tokens.size, 1000);
  });

  test('the stored hash is SHA-256 hex of the token, and is not the token', () => {
    const { token, hash } = issueRefreshToken();
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(hash, hashRefreshToken(token));
    assert.notEqual(hash, token);
    assert.ok(!hash.includes(token.slice(REFRESH_TOKEN_PREFIX.length)));
    assert.notEqual(hashRefreshToken(`${token}x`), hash);
  });

  test('format check refuses strays', () => {
    for (const stray of ['', 'cgr_', 'cgr_short', `cgx_${'a'.repeat(43)}`, `cgr_${'a'.repeat(44)}`, `cgr_${'+'.repeat(43)}`, 42, null]) {
      assert.equal(isRefreshTokenFormat(stray), false, String(stray));
    }
  });
});

describe('decideRefresh', () => {
  test('an unused, unexpired token rotates', () => {
    assert.deepEqual(decideRefresh(record(), NOW), { action: 'rotate' });
  });

  test('an unknown token is rejected', () => {
    assert.deepEqual(decideRefresh(undefined, NOW), { action: 'reject', reason: 'unknown' });
  });

  test('an expired token is rejected, from its expiry instant on', () => {
    assert.deepEqual(decideRefresh(record({ expiresAt: NOW }), NOW), { action: 'reject', reason: 'expired' });
    assert.deepEqual(decideRefresh(record({ expiresAt: later(-1) }), NOW), { action: 'reject', reason: 'expired' });
    assert.deepEqual(decideRefresh(record({ expiresAt: later(1) }), NOW), { action: 'rotate' });
  });

  test('a token used before revokes the whole session (RFC 9700 reuse detection)', () => {
    assert.deepEqual(decideRefresh(record({ usedAt: later(-1000) }), NOW), { action: 'revoke-session', reason: 'reused' });
  });

  test('reuse wins over expiry: an old used token showing up still proves a copy exists', () => {
    assert.deepEqual(decideRefresh(record({ usedAt: later(-7_200_000), expiresAt: later(-3_600_000) }), NOW), {
      action: 'revoke-session',
      reason: 'reused',
    });
  });
});
