/**
 * Every refusal identity's use cases make, as a typed table (after better-auth's
 * `two-factor/error-code.ts` and node-postgres's `postgres-error-codes.ts`): a code is a
 * constant the compiler checks, callers switch on codes, and nobody parses a message.
 *
 * Each entry says how the refusal is answered: the status, the title, and the problem `type`
 * clients switch on (docs/http.md), which is the code itself unless given. Several codes share
 * a type where one kind of refusal happens at different steps (a wrong current password is a
 * 403 `invalid-credentials`, a wrong sign-in password a 401). src/http/problem-codes.ts puts
 * this table into the one table of every code the API answers with.
 */
export const IDENTITY_ERRORS = {
  unauthenticated: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Forbidden' },
  'not-found': { status: 404, title: 'Not Found' },
  /** Input the schema let through that a rule of the use case refuses (a client user without a tenant, an unknown scope). */
  'invalid-input': { status: 400, title: 'Validation failed', type: 'validation-failed' },
  /** A member the request needs in this situation is missing (`currentPassword` to replace a factor). */
  'incomplete-request': { status: 400, title: 'Invalid request', type: 'validation-failed' },
  'invalid-credentials': { status: 401, title: 'Invalid credentials' },
  /** A signed-in user's current password, asked again before a sensitive change, was wrong. */
  'wrong-current-password': { status: 403, title: 'Invalid credentials', type: 'invalid-credentials' },
  'weak-password': { status: 400, title: 'Password rejected' },
  'email-taken': { status: 409, title: 'Email already registered' },
  'invalid-state': { status: 409, title: 'Invalid state' },
  /** A setup or email-verification token that is unknown, expired or spent. */
  'invalid-token': { status: 400, title: 'Invalid token' },
  'invalid-challenge': { status: 401, title: 'Invalid challenge' },
  /** A code that does not complete a sign-in. */
  'invalid-second-factor': { status: 401, title: 'Invalid code' },
  /** A code that does not confirm a factor being enrolled (a new authenticator, a new phone). */
  'invalid-enrollment-code': { status: 400, title: 'Invalid code', type: 'invalid-second-factor' },
  /** A code of the factor being replaced, asked before replacing it, was wrong. */
  'invalid-current-factor': { status: 403, title: 'Invalid code', type: 'invalid-second-factor' },
  'method-not-available': { status: 400, title: 'Method not available' },
  'refresh-token-reused': { status: 401, title: 'Refresh token reused' },
  'invalid-refresh-token': { status: 401, title: 'Invalid refresh token' },
  /** Too many failures for one account from one address; `retryAfterSeconds` says how long. */
  'account-locked': { status: 429, title: 'Too many attempts' },
  /** Too many sign-in steps from one address, whatever the account. */
  'ip-limit': { status: 429, title: 'Too many attempts', type: 'rate-limited' },
  'sms-not-configured': { status: 409, title: 'SMS not configured' },
  'sms-throttled': { status: 429, title: 'Too many codes' },
  'sms-rejected': { status: 400, title: 'Phone number refused' },
  'sms-unavailable': { status: 503, title: 'SMS unavailable' },
  /** RFC 6749 §5.2 errors; the answer also carries `error` and `error_description`. */
  'oauth-invalid-request': { status: 400, title: 'OAuth error', type: 'invalid-request' },
  'oauth-invalid-client': { status: 401, title: 'OAuth error', type: 'invalid-client' },
  'oauth-invalid-scope': { status: 400, title: 'OAuth error', type: 'invalid-scope' },
  'oauth-unsupported-grant-type': { status: 400, title: 'OAuth error', type: 'unsupported-grant-type' },
} as const satisfies Record<string, IdentityErrorSpec>;

export type IdentityErrorCode = keyof typeof IDENTITY_ERRORS;

export interface IdentityErrorSpec {
  status: 400 | 401 | 403 | 404 | 409 | 429 | 503;
  title: string;
  /** The problem type, when it is not the code. */
  type?: string;
}
