import type { Db } from '../../../store/connection.js';
import type { TotpFactorsRepository } from '../../../store/repositories/totp-factors.js';
import type { FactorCheck, SecondFactor } from '../second-factor.js';
import { consumeTotpCode, createTotpEnrollment, verifyTotp } from './totp-codes.js';

/**
 * An authenticator app (RFC 6238): the factor every account starts with. Its secret is sealed
 * in `totp_factors` (the repository seals and opens it); each code counts once, by the replay
 * guard's compare-and-set on the last used step (totp-codes.ts). A new authenticator is pending
 * beside the confirmed one until a code from it confirms it.
 */
export class TotpFactor implements SecondFactor {
  readonly method = 'totp';
  readonly standsAlone = true;

  constructor(
    private readonly store: TotpFactorsRepository,
    /** The issuer shown in the authenticator app. */
    private readonly issuer = 'Ciphergate',
  ) {}

  offered(userId: string): Promise<boolean> {
    return this.store.hasConfirmed(userId);
  }

  /** Whether the user has a confirmed authenticator; `db` is the caller's transaction when the answer must hold until it commits. */
  hasConfirmed(userId: string, db?: Db): Promise<boolean> {
    return this.store.hasConfirmed(userId, db);
  }

  /** Checks and spends a code of the confirmed authenticator. */
  async verify(attempt: { userId: string; code: string }, now: Date = new Date()): Promise<FactorCheck> {
    const factor = await this.store.confirmed(attempt.userId);
    if (!factor) return { ok: false, reason: 'no-factor' };
    const result = await consumeTotpCode({ advanceLastUsedStep: (factorId, step) => this.store.advanceLastUsedStep(factorId, step) }, factor, attempt.code, now);
    return result.ok ? { ok: true } : result;
  }

  remove(userId: string, tx: Db): Promise<number> {
    return this.store.removeAll(userId, tx);
  }

  /**
   * A new pending authenticator (replacing any earlier pending one). The confirmed one, if
   * any, keeps working until the new one is confirmed. `label` appears in the authenticator app.
   */
  async startEnrollment(userId: string, label: string): Promise<{ otpauthUri: string; secretBase32: string }> {
    const enrollment = createTotpEnrollment({ issuer: this.issuer, label });
    await this.store.replacePending(userId, enrollment.secretBase32, new Date());
    return enrollment;
  }

  /**
   * Confirms the pending authenticator with one code from it: it becomes the user's factor and
   * the previous one is removed. `tx` is the caller's transaction.
   */
  async confirmEnrollment(userId: string, code: string, tx: Db, now: Date): Promise<{ ok: true } | { ok: false; reason: 'malformed' | 'wrong-code' | 'replayed' | 'no-pending-enrollment' }> {
    const pending = await this.store.pending(userId, tx);
    if (!pending) return { ok: false, reason: 'no-pending-enrollment' };
    const verification = verifyTotp({ secretBase32: pending.secretBase32, code, lastUsedStep: null, now });
    if (!verification.ok) return verification;
    if (!(await this.store.confirm(userId, pending.id, verification.step, now, tx))) return { ok: false, reason: 'replayed' };
    return { ok: true };
  }
}
