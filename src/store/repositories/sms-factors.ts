import { randomUUID } from 'node:crypto';
import { and, desc, eq, gt, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { SealedValue } from '../../seal/sealed-value.js';
import type { Db } from '../connection.js';
import { smsFactorsSealed } from '../sealed-tables.js';
import { smsCodes, smsFactors } from '../schema.js';

/**
 * The SMS factor's aggregate: one phone per user (sealed under the system key, taken in
 * plaintext and sealed here) and the codes sent to it, kept only as MACs that identity computes
 * (src/identity/factors/sms/sms-factor.ts). Every check of a code is a conditional update, so
 * concurrent guesses and spends are counted exactly.
 */
export type SmsCodePurpose = (typeof smsCodes.purpose.enumValues)[number];

export type StoredSmsCode = typeof smsCodes.$inferSelect;

/** A user's phone, opened, with the sealed bytes it was read as (the compare-and-set of `markVerified`). */
export interface StoredPhone {
  factorId: string;
  phone: string;
  readAs: SealedValue;
}

export class SmsFactorsRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
  ) {}

  async hasVerifiedPhone(userId: string): Promise<boolean> {
    const [row] = await this.db.select({ id: smsFactors.id }).from(smsFactors).where(and(eq(smsFactors.userId, userId), isNotNull(smsFactors.verifiedAt))).limit(1);
    return row !== undefined;
  }

  /** The user's phone once verified, opened. */
  async verifiedPhone(userId: string): Promise<string | undefined> {
    const [factor] = await this.db
      .select({ id: smsFactors.id, phone: smsFactors.phone })
      .from(smsFactors)
      .where(and(eq(smsFactors.userId, userId), isNotNull(smsFactors.verifiedAt)))
      .limit(1);
    return factor ? await this.open(factor) : undefined;
  }

  /** The user's phone, verified or not, opened. */
  async phone(userId: string): Promise<StoredPhone | undefined> {
    const [factor] = await this.db.select({ id: smsFactors.id, phone: smsFactors.phone }).from(smsFactors).where(eq(smsFactors.userId, userId)).limit(1);
    return factor ? { factorId: factor.id, phone: await this.open(factor), readAs: factor.phone } : undefined;
  }

  /** Makes `phone` (E.164) the user's phone, not verified, replacing any earlier one; in the caller's transaction. */
  async setUnverifiedPhone(userId: string, phone: string, at: Date, tx: Db): Promise<void> {
    const [existing] = await tx.select({ id: smsFactors.id }).from(smsFactors).where(eq(smsFactors.userId, userId)).limit(1);
    const factorId = existing?.id ?? randomUUID();
    const sealed = this.fields.sealRow(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factorId }, { phone });
    if (existing) {
      await tx.update(smsFactors).set({ ...sealed, verifiedAt: null }).where(eq(smsFactors.id, factorId));
    } else {
      await tx.insert(smsFactors).values({ id: factorId, userId, ...sealed, createdAt: at });
    }
  }

  /**
   * Marks the phone verified if it still holds the sealed bytes it was read as: a phone replaced
   * meanwhile is not verified by a code sent to the old one. False then.
   */
  async markVerified(phone: StoredPhone, at: Date): Promise<boolean> {
    const verified = await this.db
      .update(smsFactors)
      .set({ verifiedAt: at })
      .where(and(eq(smsFactors.id, phone.factorId), eq(smsFactors.phone, phone.readAs)))
      .returning({ id: smsFactors.id });
    return verified.length === 1;
  }

  /** Removes the user's phone and every code sent to it; true when the phone was verified. */
  async removeAll(userId: string, db: Db): Promise<boolean> {
    await db.delete(smsCodes).where(eq(smsCodes.userId, userId));
    const removed = await db.delete(smsFactors).where(eq(smsFactors.userId, userId)).returning({ verifiedAt: smsFactors.verifiedAt });
    return removed.some((row) => row.verifiedAt !== null);
  }

  /**
   * Stores a code's MAC and removes the user's earlier codes of the same kind (of the same
   * challenge, for sign-in codes) and any that is dead anyway (expired or used).
   */
  async storeCode(code: { id: string; userId: string; purpose: SmsCodePurpose; challengeId: string | null; codeHash: string; expiresAt: Date; createdAt: Date }, tx: Db): Promise<void> {
    const sameKind = code.purpose === 'sign-in' ? and(eq(smsCodes.purpose, 'sign-in'), eq(smsCodes.challengeId, code.challengeId!)) : eq(smsCodes.purpose, 'verify-phone');
    await tx.delete(smsCodes).where(and(eq(smsCodes.userId, code.userId), or(sameKind, lt(smsCodes.expiresAt, code.createdAt), isNotNull(smsCodes.usedAt))));
    await tx.insert(smsCodes).values(code);
  }

  /** The newest code of the user for this purpose: of `challengeId` for sign-in codes, with none for phone verification. */
  async latestCode(userId: string, purpose: SmsCodePurpose, challengeId: string | null): Promise<StoredSmsCode | undefined> {
    const [row] = await this.db
      .select()
      .from(smsCodes)
      .where(and(eq(smsCodes.userId, userId), eq(smsCodes.purpose, purpose), challengeId === null ? isNull(smsCodes.challengeId) : eq(smsCodes.challengeId, challengeId)))
      .orderBy(desc(smsCodes.createdAt))
      .limit(1);
    return row;
  }

  /**
   * Counts one try against a code that is unused, unexpired and under `maxAttempts`, in one
   * conditional update; false when it is none of those any more (another request got there).
   */
  async claimAttempt(id: string, maxAttempts: number, now: Date): Promise<boolean> {
    const claimed = await this.db
      .update(smsCodes)
      .set({ failedAttempts: sql`${smsCodes.failedAttempts} + 1` })
      .where(and(eq(smsCodes.id, id), isNull(smsCodes.usedAt), lt(smsCodes.failedAttempts, maxAttempts), gt(smsCodes.expiresAt, now)))
      .returning({ id: smsCodes.id });
    return claimed.length === 1;
  }

  /** Spends a code whose try matched, taking the try back; false when it was spent meanwhile. */
  async spendCode(id: string, now: Date): Promise<boolean> {
    const spent = await this.db
      .update(smsCodes)
      .set({ usedAt: now, failedAttempts: sql`${smsCodes.failedAttempts} - 1` })
      .where(and(eq(smsCodes.id, id), isNull(smsCodes.usedAt)))
      .returning({ id: smsCodes.id });
    return spent.length === 1;
  }

  private async open(factor: { id: string; phone: Buffer }): Promise<string> {
    const { phone } = await this.fields.openRowFresh(smsFactorsSealed, { scope: SYSTEM_SCOPE, id: factor.id }, { phone: factor.phone });
    return phone!;
  }
}
