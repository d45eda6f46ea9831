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
