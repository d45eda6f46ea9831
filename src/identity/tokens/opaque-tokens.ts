import { createHash, randomBytes } from 'node:crypto';

/**
 * Random bearer secrets other than refresh tokens: trusted-device tokens, login challenges,
 * setup and email-verification tokens, API keys. Each kind has its own prefix, so a token
 * pasted in the wrong place is refused by shape, and secret scanners can recognise ours.
 *
 * Only the SHA-256 is stored. A slow hash would add nothing to 256 random bits, and a plain
 * digest keeps the lookup an indexed equality; a leaked table yields no usable token.
 */
export const OPAQUE_TOKEN_PREFIXES = {
  device: 'cgd_',
  challenge: 'cgc_',
  setup: 'cgs_',
  verifyEmail: 'cgv_',
  apiKey: 'cgk_',
} as const;
export type OpaqueTokenKind = keyof typeof OPAQUE_TOKEN_PREFIXES;

const TOKEN_BYTES = 32;
const BODY_PATTERN = `[A-Za-z0-9_-]{${Math.ceil((TOKEN_BYTES * 4) / 3)}}`;
const PATTERNS = Object.fromEntries(
  Object.entries(OPAQUE_TOKEN_PREFIXES).map(([kind, prefix]) => [kind, new RegExp(`^${prefix}${BODY_PATTERN}$`)]),
) as Record<OpaqueTokenKind, RegExp>;

export function issueOpaqueToken(kind: OpaqueTokenKind): { token: string; hash: string } {
  const token = OPAQUE_TOKEN_PREFIXES[kind] + randomBytes(TOKEN_BYTES).toString('base64url');
  return { token, hash: hashOpaqueToken(token) };
}

export function hashOpaqueToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** True when `value` has the exact shape of a token of this kind; garbage never reaches the store. */
export function isOpaqueToken(kind: OpaqueTokenKind, value: unknown): value is string {
  return typeof value === 'string' && PATTERNS[kind].test(value);
}
