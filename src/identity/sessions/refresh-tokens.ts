import { createHash, randomBytes } from 'node:crypto';

/**
 * Opaque refresh tokens: random strings, stored only as hashes, rotated on every use. A token
 * presented a second time proves a copy exists outside the legitimate client, so the whole
 * session ends (RFC 9700 §4.14.2, refresh token reuse detection).
 *
 * The decision is a pure function; the caller owns the write, and it must be atomic. In one
 * transaction:
 *   UPDATE refresh_tokens SET used_at = now WHERE hash = $1 AND used_at IS NULL
 *   -- exactly one row updated: insert the successor token (same session), commit, answer;
 *   -- zero rows: a concurrent refresh won the race, so treat it as reuse and revoke the session.
 * Without the `used_at IS NULL` compare-and-set, two concurrent refreshes with the same token
 * would both read "unused" and both rotate, leaving two live token chains for one session.
 */

/** Makes our tokens recognisable in logs and to secret scanners, and lets us reject strays cheaply. */
export const REFRESH_TOKEN_PREFIX = 'cgr_';
/** 256 bits: far beyond guessing, and what makes an unsalted fast hash safe below. */
const REFRESH_TOKEN_BYTES = 32;
const REFRESH_TOKEN_PATTERN = new RegExp(`^${REFRESH_TOKEN_PREFIX}[A-Za-z0-9_-]{${Math.ceil((REFRESH_TOKEN_BYTES * 4) / 3)}}$`);

export interface IssuedRefreshToken {
  /** Given to the client once; never stored. */
  token: string;
  /** What the store keeps and looks up by. */
  hash: string;
}

/** The stored side of a refresh token, as much as the rotation decision needs. */
export interface RefreshTokenRecord {
  hash: string;
  sessionId: string;
  /** Set when the token was exchanged for its successor; non-null means any further use is reuse. */
  usedAt: Date | null;
  expiresAt: Date;
}

export type RefreshDecision =
  | { action: 'rotate' }
  | { action: 'reject'; reason: 'unknown' | 'expired' }
  | { action: 'revoke-session'; reason: 'reused' };

export function issueRefreshToken(): IssuedRefreshToken {
  const token = REFRESH_TOKEN_PREFIX + randomBytes(REFRESH_TOKEN_BYTES).toString('base64url');
  return { token, hash: hashRefreshToken(token) };
}

/**
 * SHA-256, hex. A slow password hash (argon2id) would add nothing here: it exists to slow down
 * guessing low-entropy secrets, and a 256-bit random token cannot be guessed at any speed. A
 * fast, unsalted hash also keeps the lookup an indexed equality on `hash`, and a leaked table
 * still yields no usable token.
 */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** True for strings shaped like our tokens; lets callers refuse garbage before touching the store. */
export function isRefreshTokenFormat(token: unknown): token is string {
  return typeof token === 'string' && REFRESH_TOKEN_PATTERN.test(token);
}

/**
 * What to do with a presented refresh token, given its record (undefined when the hash is not
 * stored). Reuse is checked before expiry: a used token showing up again means it was copied,
 * and that stays true after it expired, so the session is revoked either way.
 */
export function decideRefresh(record: RefreshTokenRecord | undefined, now: Date): RefreshDecision {
  if (!record) return { action: 'reject', reason: 'unknown' };
  if (record.usedAt !== null) return { action: 'revoke-session', reason: 'reused' };
  if (now.getTime() >= record.expiresAt.getTime()) return { action: 'reject', reason: 'expired' };
  return { action: 'rotate' };
}
