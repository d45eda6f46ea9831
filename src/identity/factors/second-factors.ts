import type { Db } from '../../store/connection.js';
import { IdentityError } from '../errors.js';
import type { RecoveryCodesFactor } from './recovery/recovery-factor.js';
import type { SecondFactor, SecondFactorMethod } from './second-factor.js';
import type { TotpFactor } from './totp/totp-factor.js';

/**
 * The registry of second factors, built once (openIdentity): sign-in, the second-factor step,
 * the proof of a current factor and an admin's reset ask it which methods a user is offered,
 * which factor checks a method, and what removing them all removed. None of them branches on
 * the method.
 *
 * The authenticator app and its recovery codes are named as well as registered: every account
 * has them (an authenticator is the first factor enrolled, and confirming one issues the
 * recovery codes), and their enrollment spans the two.
 */
export class SecondFactors {
  /** Every factor, in the order `methods` lists them. */
  readonly registered: readonly SecondFactor[];
  private readonly byMethod: ReadonlyMap<SecondFactorMethod, SecondFactor>;

  constructor(
    readonly totp: TotpFactor,
    readonly recovery: RecoveryCodesFactor,
    /** The factors beyond the authenticator and its codes (SMS; passkeys later). */
    more: readonly SecondFactor[],
  ) {
    this.registered = [totp, recovery, ...more];
    this.byMethod = new Map(this.registered.map((factor) => [factor.method, factor]));
  }

  /** The factor that checks `method`; a method nobody registered is not available. */
  get(method: SecondFactorMethod): SecondFactor {
    const factor = this.byMethod.get(method);
    if (!factor) throw new IdentityError('method-not-available', `"${method}" is not a second factor of this deployment`);
    return factor;
  }

  /**
   * The methods the user can pass a challenge with now, in registry order. `standalone` asks
   * only the factors that may stand alone: enough to tell whether the user must enroll one,
   * without the queries of the others (a sign-in on a trusted device needs no more).
   */
  async offeredTo(userId: string, which: 'all' | 'standalone' | 'companions' = 'all'): Promise<SecondFactorMethod[]> {
    const asked = this.registered.filter((factor) => which === 'all' || factor.standsAlone === (which === 'standalone'));
    const offered: SecondFactorMethod[] = [];
    for (const factor of asked) if (await factor.offered(userId)) offered.push(factor.method);
    return offered;
  }

  /** `methods` in registry order, whichever order they were gathered in. */
  inOrder(methods: readonly SecondFactorMethod[]): SecondFactorMethod[] {
    return this.registered.map((factor) => factor.method).filter((method) => methods.includes(method));
  }

  /** Removes every factor of the user in the caller's transaction (an admin reset); what each removed. */
  async removeAll(userId: string, tx: Db): Promise<Partial<Record<SecondFactorMethod, number>>> {
    const removed: Partial<Record<SecondFactorMethod, number>> = {};
    for (const factor of this.registered) removed[factor.method] = await factor.remove(userId, tx);
    return removed;
  }

  /**
   * Starts enrolling an authenticator for the user (a pending one beside any confirmed one).
   * `label` appears in the authenticator app.
   */
  startTotpEnrollment(userId: string, label: string): Promise<{ otpauthUri: string; secretBase32: string }> {
    return this.totp.startEnrollment(userId, label);
  }

  /**
   * Confirms the pending authenticator with one code from it: it becomes the user's factor, the
   * previous one is removed, and ten fresh recovery codes replace the old ones, returned for
   * showing once. `tx` is the caller's transaction.
   */
  async confirmTotp(
    userId: string,
    code: string,
    tx: Db,
    now: Date = new Date(),
  ): Promise<{ ok: true; recoveryCodes: string[] } | { ok: false; reason: 'malformed' | 'wrong-code' | 'replayed' | 'no-pending-enrollment' }> {
    const confirmed = await this.totp.confirmEnrollment(userId, code, tx, now);
    if (!confirmed.ok) return confirmed;
    return { ok: true, recoveryCodes: await this.recovery.issue(userId, tx, now) };
  }

  /** Spends one recovery code of the user; true only for the request that spent it. */
  redeemRecoveryCode(userId: string, code: string): Promise<boolean> {
    return this.recovery.redeem(userId, code);
  }

  /** Re-keys the recovery codes an earlier release stored unkeyed; run at start. */
  upgradeLegacyRecoveryCodes(): Promise<number> {
    return this.recovery.upgradeLegacy();
  }
}
