import { randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import { and, desc, eq, gt, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import { SYSTEM_SCOPE, type SealedFields } from '../../../seal/sealed-fields.js';
import type { Db } from '../../../store/connection.js';
import { smsFactorsSealed } from '../../../store/sealed-tables.js';
import { smsCodes, smsFactors } from '../../../store/schema.js';
import { phoneRecipientKey } from '../../limits/recipient-keys.js';
import type { SmsSendThrottle } from '../../limits/throttle.js';
import type { IdentitySmsSender, SmsSendResult } from './sms-sender.js';

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

export type SmsCodePurpose = 'sign-in' | 'verify-phone';

export type SmsSendOutcome = SmsSendResult | { sent: false; reason: 'throttled'; retryAfterSeconds: number };

export type SmsCodeCheck =
  | { ok: true }
  | { ok: false; reason: 'malformed' | 'no-code' | 'wrong-code' | 'expired' | 'used' | 'too-many-attempts' | 'raced' | 'phone-changed' };

/** The SMS text: the code and nothing personal (no name, no account, no number). */
export function smsCodeText(code: string, purpose: SmsCodePurpose): string {
  const what = purpose === 'sign-in' ? 'sign-in' : 'verification';
  return `Your Ciphergate ${what} code is ${code}. It expires in 10 minutes.`;
}

export class SmsFactor {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
    private readonly sender: IdentitySmsSender,
    private readonly throttle: SmsSendThrottle,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Whether a sign-in may use SMS: the user has a verified phone and a sender is configured. */
  async offered(userId: string): Promise<boolean> {
    return (await this.hasVerifiedPhone(userId)) && (await this.sender.configured());
  }

  async configured(): Promise<boolean> {
    return this.sender.configured();
  }

  async hasVerifiedPhone(userId: string): Promise<boolean> {
    const [row] = await this.db.select({ id: smsFactors.id }).from(smsFactors).where(and(eq(smsFactors.userId, userId), isNotNull(smsFactors.verifiedAt))).limit(1);
    return row !== undefined;
  }

  /** Removes the user's phone (verified or not) and every code sent to it: an admin reset. True when there was a verified phone. */
  async removePhone(userId: string, db: Db): Promise<boolean> {
    await db.delete(smsCodes).where(eq(smsCodes.userId, userId));
    const removed = await db.delete(smsFactors).where(eq(smsFactors.userId, userId)).returning({ verifiedAt: smsFactors.verifiedAt });
    return removed.some((row) => row.verifiedAt !== null);
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
      const [existing] = await tx.select({ id: smsFactors.id }).from(smsFactors).where(eq(smsFactors.userId, userId)).limit(1);
      const factorId = existing?.id ?? randomUUID();
      const sealed = this.fields.sealRow(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factorId }, { phone });
      if (existing) {
        await tx.update(smsFactors).set({ phone: sealed.phone!, verifiedAt: null }).where(eq(smsFactors.id, factorId));
      } else {
        await tx.insert(smsFactors).values({ id: factorId, userId, phone: sealed.phone!, createdAt: now });
      }
      await this.storeCode(tx, { id: randomUUID(), userId, purpose: 'verify-phone', challengeId: null, binding: phone, code: sending.code, now });
    });
    return sending.outcome;
  }

  /** Checks a verification code against the user's pending phone; the phone is verified when it matches. */
  async confirmPhone(userId: string, code: string): Promise<SmsCodeCheck | { ok: false; reason: 'no-pending-phone' }> {
    const [factor] = await this.db.select({ id: smsFactors.id, phone: smsFactors.phone }).from(smsFactors).where(eq(smsFactors.userId, userId)).limit(1);
    if (!factor) return { ok: false, reason: 'no-pending-phone' };
    const [row] = await this.db
      .select()
      .from(smsCodes)
      .where(and(eq(smsCodes.userId, userId), eq(smsCodes.purpose, 'verify-phone'), isNull(smsCodes.challengeId)))
      .orderBy(desc(smsCodes.createdAt))
      .limit(1);
    if (!row) return { ok: false, reason: 'no-code' };
    const { phone } = await this.fields.openRowFresh(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factor.id }, { phone: factor.phone });
    const check = await this.redeem(row, phone!, code);
    if (!check.ok) return check;
    // Compare-and-set on the sealed bytes read above: if the phone was replaced meanwhile, the
    // code (sent to the old one) must not verify the new one.
    const verified = await this.db
      .update(smsFactors)
      .set({ verifiedAt: this.now() })
      .where(and(eq(smsFactors.id, factor.id), eq(smsFactors.phone, factor.phone)))
      .returning({ id: smsFactors.id });
    return verified.length === 1 ? { ok: true } : { ok: false, reason: 'phone-changed' };
  }

  /** Sends a sign-in code for this login challenge to the user's verified phone. A new code replaces the challenge's earlier one. */
  async sendSignInCode(challenge: { id: string; userId: string }): Promise<SmsSendOutcome> {
    const phone = await this.verifiedPhone(challenge.userId);
    if (phone === undefined) return { sent: false, reason: 'not-configured' };
    const sending = await this.sendCode(challenge.userId, phone, 'sign-in');
    if (!sending.outcome.sent) return sending.outcome;
    await this.db.transaction(async (txDb) => {
      await this.storeCode(txDb, { id: randomUUID(), userId: challenge.userId, purpose: 'sign-in', challengeId: challenge.id, binding: challenge.id, code: sending.code, now: this.now() });
    });
    return sending.outcome;
  }

  /** Checks and spends the sign-in code sent for this challenge (codes sent for other challenges or users do not count). */
  async verifySignInCode(challenge: { id: string; userId: string }, code: string): Promise<SmsCodeCheck> {
    const [row] = await this.db
      .select()
      .from(smsCodes)
      .where(and(eq(smsCodes.userId, challenge.userId), eq(smsCodes.purpose, 'sign-in'), eq(smsCodes.challengeId, challenge.id)))
      .orderBy(desc(smsCodes.createdAt))
      .limit(1);
    if (!row) return { ok: false, reason: 'no-code' };
    return this.redeem(row, challenge.id, code);
  }

  private async verifiedPhone(userId: string): Promise<string | undefined> {
    const [factor] = await this.db
      .select({ id: smsFactors.id, phone: smsFactors.phone })
      .from(smsFactors)
      .where(and(eq(smsFactors.userId, userId), isNotNull(smsFactors.verifiedAt)))
      .limit(1);
    if (!factor) return undefined;
    return (await this.fields.openRowFresh(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factor.id }, { phone: factor.phone })).phone ?? undefined;
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

  /**
   * Stores a code's MAC and retires the user's earlier codes of the same kind (the same
   * challenge for sign-in codes) and any code that is dead anyway.
   */
  private async storeCode(
    tx: Db,
    code: { id: string; userId: string; purpose: SmsCodePurpose; challengeId: string | null; binding: string; code: string; now: Date },
  ): Promise<void> {
    const sameKind =
      code.purpose === 'sign-in' ? and(eq(smsCodes.purpose, 'sign-in'), eq(smsCodes.challengeId, code.challengeId!)) : eq(smsCodes.purpose, 'verify-phone');
    await tx.delete(smsCodes).where(and(eq(smsCodes.userId, code.userId), or(sameKind, lt(smsCodes.expiresAt, code.now), isNotNull(smsCodes.usedAt))));
    await tx.insert(smsCodes).values({
      id: code.id,
      userId: code.userId,
      purpose: code.purpose,
      challengeId: code.challengeId,
      codeHash: this.fields.sealer.blindIndex(CODE_MAC_CONTEXT, macInput(code.id, code.purpose, code.binding, code.code), CODE_MAC).toString('hex'),
      expiresAt: new Date(code.now.getTime() + SMS_CODE_TTL_MS),
      createdAt: code.now,
    });
  }

  /**
   * One try of a stored code. The try is counted before the comparison, by a conditional
   * update that also requires the code to be unused, unexpired and under the limit, so no
   * burst of concurrent guesses gets more than SMS_CODE_MAX_ATTEMPTS comparisons. A match
   * then spends the code (compare-and-set on `used_at`) and takes the try back.
   */
  private async redeem(row: typeof smsCodes.$inferSelect, binding: string, code: string): Promise<SmsCodeCheck> {
    const presented = code.trim();
    if (!SIX_DIGITS.test(presented)) return { ok: false, reason: 'malformed' };
    const now = this.now();
    if (row.usedAt !== null) return { ok: false, reason: 'used' };
    if (row.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'expired' };
    if (row.failedAttempts >= SMS_CODE_MAX_ATTEMPTS) return { ok: false, reason: 'too-many-attempts' };
    const claimed = await this.db
      .update(smsCodes)
      .set({ failedAttempts: sql`${smsCodes.failedAttempts} + 1` })
      .where(and(eq(smsCodes.id, row.id), isNull(smsCodes.usedAt), lt(smsCodes.failedAttempts, SMS_CODE_MAX_ATTEMPTS), gt(smsCodes.expiresAt, now)))
      .returning({ id: smsCodes.id });
    // Another request spent, or used up, the code between the read and the claim.
    if (claimed.length === 0) return { ok: false, reason: 'raced' };
    if (!this.matches(row, binding, presented)) return { ok: false, reason: 'wrong-code' };
    const spent = await this.db
      .update(smsCodes)
      .set({ usedAt: now, failedAttempts: sql`${smsCodes.failedAttempts} - 1` })
      .where(and(eq(smsCodes.id, row.id), isNull(smsCodes.usedAt)))
      .returning({ id: smsCodes.id });
    return spent.length === 1 ? { ok: true } : { ok: false, reason: 'used' };
  }

  /** Constant time over every active key version, with no early exit. */
  private matches(row: typeof smsCodes.$inferSelect, binding: string, code: string): boolean {
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

const SIX_DIGITS = /^[0-9]{6}$/;

/** The key of the MAC: derived per (scope, table, column) like any blind-index key, so it is used for nothing else. */
const CODE_MAC_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'sms_codes', column: 'code_hash' } as const;
/** The whole HMAC-SHA256, untruncated ('exact' keeps the input as given). */
const CODE_MAC = { normaliser: 'exact', lengthBytes: 32 } as const;

function macInput(codeId: string, purpose: SmsCodePurpose, binding: string, code: string): string {
  return `${codeId}\n${purpose}\n${binding}\n${code}`;
}
