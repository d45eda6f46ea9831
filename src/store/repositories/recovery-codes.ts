import { randomUUID } from 'node:crypto';
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { recoveryCodes } from '../schema.js';

/**
 * Users' one-time recovery codes, kept only in their stored form (a keyed MAC, made by
 * src/identity/factors/recovery/recovery-codes.ts). Spending one is a compare-and-set on
 * `used_at`; re-keying a legacy row is a compare-and-set on its old form.
 */
export interface StoredRecoveryCodeRow {
  id: string;
  hash: string;
  usedAt: Date | null;
}

export class RecoveryCodesRepository {
  constructor(private readonly db: Db) {}

  async listOfUser(userId: string): Promise<StoredRecoveryCodeRow[]> {
    return this.db.select({ id: recoveryCodes.id, hash: recoveryCodes.codeHash, usedAt: recoveryCodes.usedAt }).from(recoveryCodes).where(eq(recoveryCodes.userId, userId));
  }

  async hasUnused(userId: string): Promise<boolean> {
    const [code] = await this.db.select({ id: recoveryCodes.id }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt))).limit(1);
    return code !== undefined;
  }

  async countUnused(userId: string): Promise<number> {
    const rows = await this.db.select({ id: recoveryCodes.id }).from(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)));
    return rows.length;
  }

  /** Replaces every code of the user (used or not) with these stored forms, in the caller's transaction. */
  async replaceAll(userId: string, hashes: string[], at: Date, db: Db): Promise<void> {
    await db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
    await db.insert(recoveryCodes).values(hashes.map((codeHash) => ({ id: randomUUID(), userId, codeHash, createdAt: at })));
  }

  /** Marks a code used unless it is already; true only for the request that spent it. */
  async markUsed(id: string, at: Date): Promise<boolean> {
    const rows = await this.db
      .update(recoveryCodes)
      .set({ usedAt: at })
      .where(and(eq(recoveryCodes.id, id), isNull(recoveryCodes.usedAt)))
      .returning({ id: recoveryCodes.id });
    return rows.length === 1;
  }

  /** Removes every code of the user; returns how many were unused. */
  async removeAll(userId: string, db: Db): Promise<number> {
    const removed = await db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).returning({ usedAt: recoveryCodes.usedAt });
    return removed.filter((row) => row.usedAt === null).length;
  }

  /** Up to `limit` rows, of any user, whose stored form is a bare SHA-256 (the form before codes were keyed). */
  async legacyBatch(limit: number): Promise<Array<{ id: string; userId: string; hash: string }>> {
    return this.db
      .select({ id: recoveryCodes.id, userId: recoveryCodes.userId, hash: recoveryCodes.codeHash })
      .from(recoveryCodes)
      .where(sql`${recoveryCodes.codeHash} ~ '^[0-9a-f]{64}$'`)
      .orderBy(asc(recoveryCodes.id))
      .limit(limit);
  }

  /** Rewrites one row's stored form if it is still `from`; false when another instance got there first. */
  async replaceHash(id: string, from: string, to: string): Promise<boolean> {
    const changed = await this.db
      .update(recoveryCodes)
      .set({ codeHash: to })
      .where(and(eq(recoveryCodes.id, id), eq(recoveryCodes.codeHash, from)))
      .returning({ id: recoveryCodes.id });
    return changed.length === 1;
  }
}
