/**
 * Identity errors as data: each carries a machine-readable field the HTTP error handler maps
 * to a problem+json type, so routes never parse messages. None of them ever carries a
 * password, a code or a secret.
 */

export type PasswordRule = 'too-short' | 'too-long' | 'common' | 'contains-email';

/** A new password broke the policy; `rule` says which one. */
export class PasswordPolicyError extends Error {
  override readonly name = 'PasswordPolicyError';
  constructor(
    readonly rule: PasswordRule,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A stored TOTP secret could not be decoded. This is corrupt data or a wrong unseal, never
 * user input, so it is thrown rather than reported as a wrong code.
 */
export class TotpSecretError extends Error {
  override readonly name = 'TotpSecretError';
  constructor(message = 'stored TOTP secret is not valid base32') {
    super(message);
  }
}

/**
 * A refused identity request, as data: the HTTP error handler turns it into problem+json
 * (`type` is the slug clients switch on; docs/http.md lists them). `detail` is written for
 * the caller and never names a secret, an email or whether an account exists.
 */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 410 | 429 | 503,
    readonly type: string,
    readonly title: string,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

/** The one answer for every failed password sign-in, so the response never says which part was wrong. */
export function invalidCredentials(): AuthError {
  return new AuthError(401, 'invalid-credentials', 'Invalid credentials', 'the email or password is wrong, or the account cannot sign in');
}

/** The one answer for a missing, malformed, expired or revoked bearer credential. */
export function unauthenticated(detail = 'a valid access token or API key is required'): AuthError {
  return new AuthError(401, 'unauthenticated', 'Authentication required', detail, {}, { 'www-authenticate': 'Bearer realm="ciphergate"' });
}

export function forbidden(detail: string): AuthError {
  return new AuthError(403, 'forbidden', 'Forbidden', detail);
}
