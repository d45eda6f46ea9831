import { IDENTITY_ERRORS, type IdentityErrorCode } from './error-codes.js';

/**
 * A refused identity request, as data: a code of IDENTITY_ERRORS, a detail written for the
 * caller, and the extension members the answer carries (`challengeToken`, `methods`, `rule`,
 * …). The HTTP error handler answers it through the one table of codes
 * (src/http/problem-codes.ts); the CLI switches on `code`. `detail` never names a secret, an
 * email or whether an account exists.
 */
export class IdentityError extends Error {
  override readonly name: string = 'IdentityError';
  constructor(
    readonly code: IdentityErrorCode,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    /** How long the caller should wait before trying again (a lock, a send limit): the Retry-After of the answer. */
    readonly retryAfterSeconds?: number,
  ) {
    super(detail);
  }

  get status(): number {
    return IDENTITY_ERRORS[this.code].status;
  }

  /** The problem type clients switch on: the code, or the type several codes share. */
  get type(): string {
    const spec = IDENTITY_ERRORS[this.code];
    return 'type' in spec ? spec.type : this.code;
  }

  get title(): string {
    return IDENTITY_ERRORS[this.code].title;
  }
}

/**
 * A step refused by a brute-force limit (src/identity/limits/throttle.ts): `account-locked`
 * for one account from one address, `ip-limit` for one address. Says which limit, never whose
 * account.
 */
export class RateLimitedError extends IdentityError {
  override readonly name = 'RateLimitedError';
  constructor(
    readonly reason: 'account-locked' | 'ip-limit',
    override readonly retryAfterSeconds: number,
  ) {
    super(reason, reason === 'account-locked' ? 'too many failed attempts; try again later' : 'too many attempts from this address; try again later', {}, retryAfterSeconds);
  }
}

/** The one answer for every failed password sign-in, so the response never says which part was wrong. */
export function invalidCredentials(): IdentityError {
  return new IdentityError('invalid-credentials', 'the email or password is wrong, or the account cannot sign in');
}

/** The one answer for a missing, malformed, expired or revoked bearer credential. */
export function unauthenticated(detail = 'a valid access token or API key is required'): IdentityError {
  return new IdentityError('unauthenticated', detail);
}

export function forbidden(detail: string, extensions: Record<string, unknown> = {}): IdentityError {
  return new IdentityError('forbidden', detail, extensions);
}

export function notFound(detail: string): IdentityError {
  return new IdentityError('not-found', detail);
}

export function invalidInput(detail: string): IdentityError {
  return new IdentityError('invalid-input', detail);
}
