/**
 * How long an access token lives and how much clock drift its check forgives. Their own module
 * because both the tokens (access-tokens.ts) and the signing keys (signing-keys.ts: how long a
 * retired key keeps verifying) are built from them, and those two must not import each other.
 */

/** Short, because a token cannot be recalled; session checks cover the gap (issue 5, point 5). */
export const ACCESS_TOKEN_TTL_SECONDS = 600;
/** Covers clock drift between instances without meaningfully stretching a token's life. */
export const CLOCK_TOLERANCE_SECONDS = 5;
