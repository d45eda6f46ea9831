import { randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import { SYSTEM_SCOPE, type SealedFields } from '../../../seal/sealed-fields.js';
import type { Db } from '../../../store/connection.js';
import { SmsFactorsRepository, type SmsCodePurpose, type StoredSmsCode } from '../../../store/repositories/sms-factors.js';
import { IdentityError } from '../../errors.js';
import { phoneRecipientKey } from '../../limits/recipient-keys.js';
import type { SmsSendThrottle } from '../../limits/throttle.js';
import type { FactorCheck, SecondFactor } from '../second-factor.js';
import type { SmsCodeSender, SmsSendResult } from './sms-sender.js';

/**
 * SMS codes as a second factor: a verified phone per user (sealed), and 6-digit codes that
 * live 10 minutes, are spent once, and die after 5 wrong tries.
 *
 * How a code is kept: HMAC-SHA256 under a key derived from the system data key (the
 * blind-index key of `sms_codes.code_hash`), over the row id, the purpose, what the code is
 * bound to (the login challenge, or the phone being verified) and the code. A salted SHA-256
 * would not protect a 20-bit secret: whoever reads the table tries all 10^6 codes per row in
 * milliseconds. The keyed MAC needs the data key, which the database holds only wrapped under
 * the KEK, so a copy of the database (a backup, a replica) yields no live code. The bound
 * context means a code cannot be moved to another row, challenge or phone.
 *
 * SMS is the weakest factor offered (SIM swaps, SS7 interception, phishing relays,
 * NIST SP 800-63B §5.1.3.3 calls it restricted); it is an addition to TOTP, never the only factor.
 */
export const SMS_CODE_TTL_MS = 10 * 60 * 1000;
/** Wrong tries a code survives; the next one, right or not, is refused. */
export const SMS_CODE_MAX_ATTEMPTS = 5;

export type { SmsCodePurpose };

export type SmsSendOutcome = SmsSendResult | { sent: false; reason: 'throttled'; retryAfterSeconds: number };

export type SmsCodeCheck =
  | { ok: true }
  | { ok: false; reason: 'malformed' | 'no-code' | 'wrong-code' | 'expired' | 'used' | 'too-many-attempts' | 'raced' | 'phone-changed' };

/** The SMS text: the code and nothing personal (no name, no account, no number). */
export function smsCodeText(code: string, purpose: SmsCodePurpose): string {
  const what = purpose === 'sign-in' ? 'sign-in' : 'verification';
  return `Your Ciphergate ${what} code is ${code}. It expires in 10 minutes.`;
}

export class SmsFactor implements SecondFactor {
  readonly method = 'sms';
  readonly standsAlone = false;
  private readonly store: SmsFactorsRepository;

  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
    private readonly sender: SmsCodeSender,
    private readonly throttle: SmsSendThrottle,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.store = new SmsFactorsRepository(db, fields);
  }

  /** Whether a sign-in may use SMS: the user has a verified phone and a sender is configured. */
  async offered(userId: string): Promise<boolean> {
    return (await this.store.hasVerifiedPhone(userId)) && (await this.sender.configured());
  }

  /** SMS not offered answers at once, before a challenge is claimed: nothing was sent that a guess could match. */
  async ensureUsable(userId: string): Promise<void> {
    if (!(await this.offered(userId))) throw smsNotAvailable();
  }

  async verify(attempt: { userId: string; code: string; challengeId: string | null }): Promise<FactorCheck> {
    if (attempt.challengeId === null) return { ok: false, reason: 'no-code' };
    return this.verifySignInCode({ id: attempt.challengeId, userId: attempt.userId }, attempt.code);
  }

  async remove(userId: string, tx: Db): Promise<number> {
    return (await this.removePhone(userId, tx)) ? 1 : 0;
  }

  async configured(): Promise<boolean> {
    return this.sender.configured();
  }

  async hasVerifiedPhone(userId: string): Promise<boolean> {
    return this.store.hasVerifiedPhone(userId);
  }

  /** Removes the user's phone (verified or not) and every code sent to it: an admin reset. True when there was a verified phone. */
  async removePhone(userId: string, db: Db): Promise<boolean> {
    return this.store.removeAll(userId, db);
  }

  /**
   * Sends a verification code to `phone` (E.164, already normalised). Once sent, the phone
   * becomes the user's (unverified) SMS phone, replacing any earlier one, and earlier
   * verification codes die. Until confirmed the phone is not offered at sign-in.
   */
  async startPhoneVerification(userId: string, phone: string): Promise<SmsSendOutcome> {
    const sending = await this.sendCode(userId, phone, 'verify-phone');
    if (!sending.outcome.sent) return sending.outcome;
    const now = this.now();
    await this.db.transaction(async (tx) => {
      await this.store.setUnverifiedPhone(userId, phone, now, tx);
      await this.storeCode(tx, { id: randomUUID(), userId, purpose: 'verify-phone', challengeId: null, binding: phone, code: sending.code, now });
    });
    return sending.outcome;
  }

  /** Checks a verification code against the user's pending phone; the phone is verified when it matches. */
  async confirmPhone(userId: string, code: string): Promise<SmsCodeCheck | { ok: false; reason: 'no-pending-phone' }> {
    const phone = await this.store.phone(userId);
    if (!phone) return { ok: false, reason: 'no-pending-phone' };
    const row = await this.store.latestCode(userId, 'verify-phone', null);
    if (!row) return { ok: false, reason: 'no-code' };
    const check = await this.redeem(row, phone.phone, code);
    if (!check.ok) return check;
    // A compare-and-set on the phone as read above: if it was replaced meanwhile, the code
    // (sent to the old one) must not verify the new one.
    return (await this.store.markVerified(phone, this.now())) ? { ok: true } : { ok: false, reason: 'phone-changed' };
  }

  /** Sends a sign-in code for this login challenge to the user's verified phone. A new code replaces the challenge's earlier one. */
  async sendSignInCode(challenge: { id: string; userId: string }): Promise<SmsSendOutcome> {
    const phone = await this.store.verifiedPhone(challenge.userId);
    if (phone === undefined) return { sent: false, reason: 'not-configured' };
    const sending = await this.sendCode(challenge.userId, phone, 'sign-in');
    if (!sending.outcome.sent) return sending.outcome;
    await this.db.transaction(async (tx) => {
      await this.storeCode(tx, { id: randomUUID(), userId: challenge.userId, purpose: 'sign-in', challengeId: challenge.id, binding: challenge.id, code: sending.code, now: this.now() });
    });
    return sending.outcome;
  }

  /** Checks and spends the sign-in code sent for this challenge (codes sent for other challenges or users do not count). */
  async verifySignInCode(challenge: { id: string; userId: string }, code: string): Promise<SmsCodeCheck> {
    const row = await this.store.latestCode(challenge.userId, 'sign-in', challenge.id);
    if (!row) return { ok: false, reason: 'no-code' };
    return this.redeem(row, challenge.id, code);
  }

  /**
   * Throttle, then send. The code is stored only after Twilio accepted the text: when the send
   * fails nothing usable exists, and the user's earlier code (perhaps merely slow) still works.
   */
  private async sendCode(userId: string, phone: string, purpose: SmsCodePurpose): Promise<{ outcome: SmsSendOutcome; code: string }> {
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    if (!(await this.sender.configured())) return { outcome: { sent: false, reason: 'not-configured' }, code };
    const allowance = await this.throttle.consume(`u:${userId}`, purpose, phoneRecipientKey(this.fields, phone));
    if (!allowance.allowed) return { outcome: { sent: false, reason: 'throttled', retryAfterSeconds: allowance.retryAfterSeconds }, code };
    return { outcome: await this.sender.send(phone, smsCodeText(code, purpose)), code };
  }

  /** Stores a code's MAC; the repository retires the user's earlier codes of the same kind and any dead one. */
  private async storeCode(
    tx: Db,
    code: { id: string; userId: string; purpose: SmsCodePurpose; challengeId: string | null; binding: string; code: string; now: Date },
  ): Promise<void> {
    await this.store.storeCode(
      {
        id: code.id,
        userId: code.userId,
        purpose: code.purpose,
        challengeId: code.challengeId,
        codeHash: this.fields.sealer.blindIndex(CODE_MAC_CONTEXT, macInput(code.id, code.purpose, code.binding, code.code), CODE_MAC).toString('hex'),
        expiresAt: new Date(code.now.getTime() + SMS_CODE_TTL_MS),
        createdAt: code.now,
      },
      tx,
    );
  }

  /**
   * One try of a stored code. The try is counted before the comparison, by a conditional
   * update that also requires the code to be unused, unexpired and under the limit, so no
   * burst of concurrent guesses gets more than SMS_CODE_MAX_ATTEMPTS comparisons. A match
   * then spends the code (compare-and-set on `used_at`) and takes the try back.
   */
  private async redeem(row: StoredSmsCode, binding: string, code: string): Promise<SmsCodeCheck> {
    const presented = code.trim();
    if (!SIX_DIGITS.test(presented)) return { ok: false, reason: 'malformed' };
    const now = this.now();
    if (row.usedAt !== null) return { ok: false, reason: 'used' };
    if (row.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'expired' };
    if (row.failedAttempts >= SMS_CODE_MAX_ATTEMPTS) return { ok: false, reason: 'too-many-attempts' };
    // Another request spent, or used up, the code between the read and the claim.
    if (!(await this.store.claimAttempt(row.id, SMS_CODE_MAX_ATTEMPTS, now))) return { ok: false, reason: 'raced' };
    if (!this.matches(row, binding, presented)) return { ok: false, reason: 'wrong-code' };
    return (await this.store.spendCode(row.id, now)) ? { ok: true } : { ok: false, reason: 'used' };
  }

  /** Constant time over every active key version, with no early exit. */
  private matches(row: StoredSmsCode, binding: string, code: string): boolean {
    const stored = Buffer.from(row.codeHash, 'hex');
    let matched = false;
    for (const candidate of this.macs(row.id, row.purpose, binding, code)) {
      const comparable = candidate.length === stored.length;
      const equal = timingSafeEqual(comparable ? stored : candidate, candidate) && comparable;
      matched = matched || equal;
    }
    return matched;
  }

  /** The code's MAC under each active version of the system key, newest first (a rotation may happen within a code's 10 minutes). */
  private macs(codeId: string, purpose: SmsCodePurpose, binding: string, code: string): Buffer[] {
    return this.fields.sealer.blindIndexAllVersions(CODE_MAC_CONTEXT, macInput(codeId, purpose, binding, code), CODE_MAC);
  }
}

/** A step naming SMS for a user it is not offered to. */
export function smsNotAvailable(): IdentityError {
  return new IdentityError('method-not-available', 'SMS codes are not enabled for this account; use "totp" or "recovery"');
}

const SIX_DIGITS = /^[0-9]{6}$/;

/** The key of the MAC: derived per (scope, table, column) like any blind-index key, so it is used for nothing else. */
const CODE_MAC_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'sms_codes', column: 'code_hash' } as const;
/** The whole HMAC-SHA256, untruncated ('exact' keeps the input as given). */
const CODE_MAC = { normaliser: 'exact', lengthBytes: 32 } as const;

function macInput(codeId: string, purpose: SmsCodePurpose, binding: string, code: string): string {
  return `${codeId}\n${purpose}\n${binding}\n${code}`;
}
