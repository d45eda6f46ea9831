import { randomUUID } from 'node:crypto';
import { and, desc, eq, isNotNull, isNull, lt, ne, or } from 'drizzle-orm';
import { SYSTEM_SCOPE, type SealedFields } from '../../seal/sealed-fields.js';
import type { Db } from '../connection.js';
import { totpFactorsSealed } from '../sealed-tables.js';
import { totpFactors } from '../schema.js';

/**
 * Users' TOTP authenticators. The secret is sealed under the system key and bound to its row;
 * it is taken in plaintext and sealed here, and opened here for the code check. A factor is
 * pending until confirmed with one code; `last_used_step` is the replay guard, moved only
 * forward by a compare-and-set.
 */
export interface TotpSecret {
  id: string;
  secretBase32: string;
}

export interface ConfirmedTotp extends TotpSecret {
  lastUsedStep: number | null;
}

export class TotpFactorsRepository {
  constructor(
    private readonly db: Db,
    private readonly fields: SealedFields,
  ) {}

  /** Whether the user has a confirmed authenticator; `db` is the caller's transaction when the answer must hold until it commits. */
  async hasConfirmed(userId: string, db: Db = this.db): Promise<boolean> {
    const [factor] = await db.select({ id: totpFactors.id }).from(totpFactors).where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt))).limit(1);
    return factor !== undefined;
  }

  /** Stores a new pending authenticator, replacing any earlier pending one; a confirmed one stays. */
  async replacePending(userId: string, secretBase32: string, at: Date): Promise<void> {
    const id = randomUUID();
    const sealed = this.fields.sealRow(totpFactorsSealed, { scope: SYSTEM_SCOPE, id }, { secret: secretBase32 });
    await this.db.transaction(async (tx) => {
      await tx.delete(totpFactors).where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt)));
      await tx.insert(totpFactors).values({ id, userId, ...sealed, createdAt: at });
    });
  }

  /** The newest pending authenticator of the user, its secret opened. */
  async pending(userId: string, db: Db = this.db): Promise<TotpSecret | undefined> {
    const [row] = await db
      .select({ id: totpFactors.id, secret: totpFactors.secret })
      .from(totpFactors)
      .where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt)))
      .orderBy(desc(totpFactors.createdAt))
      .limit(1);
    return row ? { id: row.id, secretBase32: await this.open(row) } : undefined;
  }

  /** The user's confirmed authenticator, its secret opened. */
  async confirmed(userId: string): Promise<ConfirmedTotp | undefined> {
    const [row] = await this.db
      .select({ id: totpFactors.id, secret: totpFactors.secret, lastUsedStep: totpFactors.lastUsedStep })
      .from(totpFactors)
      .where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt)))
      .limit(1);
    return row ? { id: row.id, secretBase32: await this.open(row), lastUsedStep: row.lastUsedStep } : undefined;
  }

  /**
   * Confirms a pending authenticator with the step of the code that proved it and removes every
   * other authenticator of the user; false when it was confirmed already (a concurrent confirm).
   */
  async confirm(userId: string, id: string, step: number, at: Date, db: Db): Promise<boolean> {
    const confirmed = await db
      .update(totpFactors)
      .set({ confirmedAt: at, lastUsedStep: step })
      .where(and(eq(totpFactors.id, id), isNull(totpFactors.confirmedAt)))
      .returning({ id: totpFactors.id });
    if (confirmed.length === 0) return false;
    await db.delete(totpFactors).where(and(eq(totpFactors.userId, userId), ne(totpFactors.id, id)));
    return true;
  }

  /**
   * Moves the replay guard forward to `step`, in one conditional statement: true only for the
   * request that moved it, so two requests carrying the same code cannot both count.
   */
  async advanceLastUsedStep(id: string, step: number): Promise<boolean> {
    const rows = await this.db
      .update(totpFactors)
      .set({ lastUsedStep: step })
      .where(and(eq(totpFactors.id, id), or(isNull(totpFactors.lastUsedStep), lt(totpFactors.lastUsedStep, step))))
      .returning({ id: totpFactors.id });
    return rows.length === 1;
  }

  /** Removes every authenticator of the user, confirmed or pending; returns how many confirmed ones. */
  async removeAll(userId: string, db: Db): Promise<number> {
    const removed = await db.delete(totpFactors).where(eq(totpFactors.userId, userId)).returning({ confirmedAt: totpFactors.confirmedAt });
    return removed.filter((row) => row.confirmedAt !== null).length;
  }

  private async open(row: { id: string; secret: Buffer }): Promise<string> {
    const { secret } = await this.fields.openRowFresh(totpFactorsSealed, { scope: SYSTEM_SCOPE, id: row.id }, { secret: row.secret });
    return secret!;
  }
}
