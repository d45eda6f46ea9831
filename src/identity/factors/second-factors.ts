import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, isNotNull, isNull, lt, ne, or, sql } from 'drizzle-orm';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../../store/connection.js';
import { totpFactorsSealed } from '../../store/sealed-tables.js';
import { recoveryCodes, totpFactors } from '../../store/schema.js';
import { findRecoveryCode, generateRecoveryCodes, isLegacyForm, storedFormOf, type RecoveryCodeKey } from './recovery/recovery-codes.js';
import { consumeTotpCode, createTotpEnrollment, verifyTotp, type TotpVerification } from './totp/totp-codes.js';

/**
 * The database side of the second factors: TOTP secrets sealed under the system key, the
 * replay guard as a compare-and-set on `last_used_step`, recovery codes stored as a keyed MAC
 * (recovery.ts) and spent with a compare-and-set on `used_at`.
 */
export class SecondFactors {
  /** The MAC key of stored recovery codes: the system key's blind-index key of `recovery_codes.code_hash`, every version. */
  private readonly recoveryKey: RecoveryCodeKey = {
    mac: (message) => this.fields.sealer.blindIndex(RECOVERY_CODE_MAC_CONTEXT, message, RECOVERY_CODE_MAC),
    macAllVersions: (message) => this.fields.sealer.blindIndexAllVersions(RECOVERY_CODE_MAC_CONTEXT, message, RECOVERY_CODE_MAC),
  };

  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
    private readonly issuer = 'Ciphergate',
  ) {}

  /** Methods a user can pass a challenge with; empty means enrollment is required. */
  async methods(userId: string): Promise<Array<'totp' | 'recovery'>> {
    const [factor] = await this.db.select({ id: totpFactors.id }).from(totpFactors).where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt))).limit(1);
    if (!factor) return [];
    const [code] = await this.db.select({ id: recoveryCodes.id }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt))).limit(1);
    return code ? ['totp', 'recovery'] : ['totp'];
  }

  /**
   * Whether the user has a confirmed authenticator; `db` is the caller's transaction when the
   * answer must hold until it commits (the user's row locked first, see `UserDirectory.lock`).
   */
  async hasConfirmedTotp(userId: string, db: Db = this.db): Promise<boolean> {
    const [factor] = await db.select({ id: totpFactors.id }).from(totpFactors).where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt))).limit(1);
    return factor !== undefined;
  }

  /** Removes every authenticator (confirmed or pending) and recovery code of the user: an admin reset. */
  async removeAll(userId: string, db: Db): Promise<{ authenticators: number; recoveryCodes: number }> {
    const authenticators = await db.delete(totpFactors).where(eq(totpFactors.userId, userId)).returning({ confirmedAt: totpFactors.confirmedAt });
    const codes = await db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).returning({ usedAt: recoveryCodes.usedAt });
    return { authenticators: authenticators.filter((row) => row.confirmedAt !== null).length, recoveryCodes: codes.filter((row) => row.usedAt === null).length };
  }

  /**
   * A new pending authenticator (replacing any earlier pending one). The confirmed factor, if
   * any, keeps working until the new one is confirmed. `label` appears in the authenticator app.
   */
  async startTotpEnrollment(userId: string, label: string): Promise<{ otpauthUri: string; secretBase32: string }> {
    const enrollment = createTotpEnrollment({ issuer: this.issuer, label });
    const id = randomUUID();
    const sealed = this.fields.sealRow(totpFactorsSealed, { scope: SYSTEM_SCOPE, id }, { secret: enrollment.secretBase32 });
    await this.db.transaction(async (tx) => {
      await tx.delete(totpFactors).where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt)));
      await tx.insert(totpFactors).values({ id, userId, secret: sealed.secret!, createdAt: new Date() });
    });
    return enrollment;
  }

  /**
   * Confirms the pending authenticator with one code from it: it becomes the user's factor, the
   * previous one is removed, and ten fresh recovery codes replace the old ones. The codes are
   * returned for showing once. `db` is the caller's transaction.
   */
  async confirmTotp(userId: string, code: string, db: Db, now: Date = new Date()): Promise<{ ok: true; recoveryCodes: string[] } | { ok: false; reason: 'malformed' | 'wrong-code' | 'replayed' | 'no-pending-enrollment' }> {
    const [pending] = await db
      .select({ id: totpFactors.id, secret: totpFactors.secret })
      .from(totpFactors)
      .where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt)))
      .orderBy(desc(totpFactors.createdAt))
      .limit(1);
    if (!pending) return { ok: false, reason: 'no-pending-enrollment' };
    const { secret } = await this.fields.openRowFresh(totpFactorsSealed, { scope: SYSTEM_SCOPE, id: pending.id }, { secret: pending.secret });
    const verification = verifyTotp({ secretBase32: secret!, code, lastUsedStep: null, now });
    if (!verification.ok) return { ok: false, reason: verification.reason };
    const confirmed = await db
      .update(totpFactors)
      .set({ confirmedAt: now, lastUsedStep: verification.step })
      .where(and(eq(totpFactors.id, pending.id), isNull(totpFactors.confirmedAt)))
      .returning({ id: totpFactors.id });
    if (confirmed.length === 0) return { ok: false, reason: 'replayed' };
    await db.delete(totpFactors).where(and(eq(totpFactors.userId, userId), ne(totpFactors.id, pending.id)));
    const codes = generateRecoveryCodes(userId, this.recoveryKey);
    await db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
    await db.insert(recoveryCodes).values(codes.hashes.map((codeHash) => ({ id: randomUUID(), userId, codeHash, createdAt: now })));
    return { ok: true, recoveryCodes: codes.codes };
  }

  /** Checks and spends a TOTP code of the user's confirmed factor (each code once: the replay guard). */
  async verifyTotp(userId: string, code: string, now: Date = new Date()): Promise<TotpVerification | { ok: false; reason: 'no-factor' }> {
    const [factor] = await this.db
      .select({ id: totpFactors.id, secret: totpFactors.secret, lastUsedStep: totpFactors.lastUsedStep })
      .from(totpFactors)
      .where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt)))
      .limit(1);
    if (!factor) return { ok: false, reason: 'no-factor' };
    const { secret } = await this.fields.openRowFresh(totpFactorsSealed, { scope: SYSTEM_SCOPE, id: factor.id }, { secret: factor.secret });
    return consumeTotpCode(
      {
        advanceLastUsedStep: async (factorId, step) => {
          const rows = await this.db
            .update(totpFactors)
            .set({ lastUsedStep: step })
            .where(and(eq(totpFactors.id, factorId), or(isNull(totpFactors.lastUsedStep), lt(totpFactors.lastUsedStep, step))))
            .returning({ id: totpFactors.id });
          return rows.length === 1;
        },
      },
      { id: factor.id, secretBase32: secret!, lastUsedStep: factor.lastUsedStep },
      code,
      now,
    );
  }

  /**
   * Spends one recovery code; true only for the request that spent it. Codes of this user
   * still in the unkeyed form (written by an older instance while a deployment upgrades)
   * are checked as they are, then re-keyed.
   */
  async redeemRecoveryCode(userId: string, code: string, now: Date = new Date()): Promise<boolean> {
    const stored = await this.db.select({ id: recoveryCodes.id, hash: recoveryCodes.codeHash, usedAt: recoveryCodes.usedAt }).from(recoveryCodes).where(eq(recoveryCodes.userId, userId));
    const id = findRecoveryCode(stored, userId, code, this.recoveryKey);
    for (const row of stored) if (isLegacyForm(row.hash)) await this.rekeyLegacyRow({ id: row.id, userId, hash: row.hash });
    if (id === undefined) return false;
    const rows = await this.db
      .update(recoveryCodes)
      .set({ usedAt: now })
      .where(and(eq(recoveryCodes.id, id), isNull(recoveryCodes.usedAt)))
      .returning({ id: recoveryCodes.id });
    return rows.length === 1;
  }

  /**
   * Re-keys every recovery code still stored as bare SHA-256 (before the keyed form): the MAC
   * is taken over that digest, so no code is needed and nobody is locked out. Run at start
   * (openIdentity); each row is a compare-and-set, so instances starting together do each row
   * once. Returns how many rows this call changed.
   */
  async upgradeLegacyRecoveryCodes(batchSize = 500): Promise<number> {
    let upgraded = 0;
    for (;;) {
      const rows = await this.db
        .select({ id: recoveryCodes.id, userId: recoveryCodes.userId, hash: recoveryCodes.codeHash })
        .from(recoveryCodes)
        .where(sql`${recoveryCodes.codeHash} ~ '^[0-9a-f]{64}$'`)
        .orderBy(asc(recoveryCodes.id))
        .limit(batchSize);
      for (const row of rows) if (await this.rekeyLegacyRow(row)) upgraded += 1;
      // A row another instance re-keyed meanwhile no longer matches, so every pass shrinks the set.
      if (rows.length < batchSize) return upgraded;
    }
  }

  private async rekeyLegacyRow(row: { id: string; userId: string; hash: string }): Promise<boolean> {
    const changed = await this.db
      .update(recoveryCodes)
      .set({ codeHash: storedFormOf(row.userId, row.hash, this.recoveryKey) })
      .where(and(eq(recoveryCodes.id, row.id), eq(recoveryCodes.codeHash, row.hash)))
      .returning({ id: recoveryCodes.id });
    return changed.length === 1;
  }

  async remainingRecoveryCodes(userId: string): Promise<number> {
    const rows = await this.db.select({ id: recoveryCodes.id }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)));
    return rows.length;
  }
}

/** Derived per (scope, table, column) like any blind-index key, so it is used for nothing else. */
const RECOVERY_CODE_MAC_CONTEXT = { tenantId: SYSTEM_SCOPE, table: 'recovery_codes', column: 'code_hash' } as const;
/** The whole HMAC-SHA256, untruncated ('exact' keeps the input as given). */
const RECOVERY_CODE_MAC = { normaliser: 'exact', lengthBytes: 32 } as const;
