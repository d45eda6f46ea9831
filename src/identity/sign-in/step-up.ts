import { IdentityError, RateLimitedError } from '../errors.js';
import type { Identity } from '../identity.js';
import { verifyAgainstDummy, verifyPassword } from '../passwords/passwords.js';
import { AuthSteps, type Attempt } from './auth-steps.js';

/** What a signed-in user replacing their authenticator shows of the one being replaced. */
export interface CurrentFactorProof {
  method: 'totp' | 'recovery';
  code: string;
}

/**
 * Proof asked again of a signed-in user before a change a stolen access token must not be
 * enough for (planting a second factor of the thief's): the current password, and for
 * replacing a factor a code of the current one. Throttled and counted like the sign-in steps
 * they repeat.
 */
export class StepUp {
  private readonly steps: AuthSteps;

  constructor(private readonly identity: Identity) {
    this.steps = new AuthSteps(identity);
  }

  /** The user's current password, throttled like a sign-in; 403 `wrong-current-password` otherwise. */
  async confirmPassword(userId: string, password: string | undefined, { action, origin }: Attempt): Promise<void> {
    const { users, throttle, db } = this.identity.parts;
    if (password === undefined) {
      throw new IdentityError('incomplete-request', 'body currentPassword: is required to replace a second factor while signed in');
    }
    const accountKey = `p:${userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.identity.metrics.recordFailure('password-confirmation', 'account-locked');
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    const user = await users.get(userId);
    const ok = user?.passwordHash ? await verifyPassword(user.passwordHash, password) : await verifyAgainstDummy(password);
    if (!ok) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.steps.record(db, { action, stage: 'password-confirmation', outcome: 'failure', origin, userId, details: { reason: 'wrong-current-password' } });
      if (failure.lockedNow) await this.steps.record(db, { action: 'auth.lockout', stage: 'password-confirmation', outcome: 'success', origin, userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new IdentityError('wrong-current-password', 'the current password is wrong');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
  }

  /**
   * A code of the factor about to be replaced: a TOTP code of the current authenticator, or one
   * of the recovery codes (for someone whose authenticator is lost), checked by that factor.
   * Throttled and counted like a second-factor sign-in; 403 `invalid-current-factor` otherwise.
   * Someone who has neither asks an admin to reset their factors (`FactorReset`).
   */
  async confirmCurrentFactor(userId: string, proof: CurrentFactorProof | undefined, { action, origin }: Attempt): Promise<void> {
    const { factors, throttle, db } = this.identity.parts;
    if (proof === undefined) {
      throw new IdentityError(
        'incomplete-request',
        'body currentFactor: is required to replace a second factor while signed in ({method: "totp", code} from the current authenticator, or {method: "recovery", code})',
      );
    }
    const accountKey = `u:${userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.identity.metrics.recordFailure('factor-confirmation', 'account-locked');
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    const check = await factors.get(proof.method).verify({ userId, code: proof.code, challengeId: null });
    if (!check.ok) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.steps.record(db, { action, stage: 'factor-confirmation', outcome: 'failure', origin, userId, details: { method: proof.method, reason: check.reason } });
      if (failure.lockedNow) await this.steps.record(db, { action: 'auth.lockout', stage: 'factor-confirmation', outcome: 'success', origin, userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new IdentityError('invalid-current-factor', 'the code of the current authenticator, or the recovery code, is wrong, expired or was already used');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
  }
}
