import type { Db } from '../../store/connection.js';

/** The names a client gives the methods (`method` of POST /auth/second-factor); the API's schema is built from this list. */
export const SECOND_FACTOR_METHODS = ['totp', 'recovery', 'sms'] as const;
export type SecondFactorMethod = (typeof SECOND_FACTOR_METHODS)[number];

/** The outcome of one code: passed, or the reason it did not (audited and counted as a metric label). */
export type FactorCheck = { ok: true } | { ok: false; reason: string };

/**
 * One way to pass the second step of a sign-in, after Ory Kratos's login strategies and
 * better-auth's two-factor providers: each factor is a folder (`factors/totp/`,
 * `factors/recovery/`, `factors/sms/`) whose class implements this, registered once in
 * `SecondFactors` (second-factors.ts, built by openIdentity). The flows ask the registry which
 * methods a user is offered and which factor checks a code; they never branch on the method.
 *
 * Enrolling is not part of the contract: what is enrolled differs per factor (an app's secret,
 * a phone, a passkey's credential) and so do its steps, so each factor enrolls through its own
 * routes and use case (`factors/totp/enrollment.ts`, `factors/sms/sms-steps.ts`). A passkey
 * factor would be one more folder implementing this with its enrollment, its name added to
 * SECOND_FACTOR_METHODS, and its registration in openIdentity; sign-in does not change.
 */
export interface SecondFactor {
  readonly method: SecondFactorMethod;
  /**
   * Whether the factor may be a user's only one. A correct password of a user who has no
   * standalone factor earns an enrollment challenge instead of a second-factor one. Recovery
   * codes come with an authenticator, and SMS is too weak to stand alone (NIST SP 800-63B
   * §5.1.3.3 calls it restricted).
   */
  readonly standsAlone: boolean;
  /** Whether the user can pass a challenge with it now: listed in `methods` of a second-factor-required answer. */
  offered(userId: string): Promise<boolean>;
  /**
   * Refuses a step naming this method before its challenge is claimed, throwing
   * `IdentityError('method-not-available')`, when this user cannot use the factor at all: so a
   * refusal spends nothing. Factors leave it out when a missing enrolment should answer as a
   * wrong code does (an attempt counted like any other).
   */
  ensureUsable?(userId: string): Promise<void>;
  /**
   * Checks and spends one code. `challengeId` is the login challenge being completed (claimed
   * by the caller before this runs), or null outside a sign-in (the proof of the current factor
   * before replacing it). A wrong, replayed or spent code is a result, never a throw: the
   * caller audits the reason and counts the failure. Spending is a compare-and-set, so of two
   * requests with one code at most one passes.
   */
  verify(attempt: { userId: string; code: string; challengeId: string | null }): Promise<FactorCheck>;
  /**
   * Removes every enrolment of the user in the caller's transaction (an admin reset, after the
   * user's row lock); returns how many usable ones it removed.
   */
  remove(userId: string, tx: Db): Promise<number>;
}
