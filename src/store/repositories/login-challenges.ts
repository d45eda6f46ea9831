import { randomUUID } from 'node:crypto';
import { and, eq, gt, isNull, lt, sql } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { loginChallenges } from '../schema.js';

/**
 * Login challenges by the hash of their token: what a correct password earns when a second
 * factor (or its enrollment) must follow. Identity decides what makes one usable
 * (src/identity/sign-in/challenges.ts); the compare-and-sets that make spending it race-free
 * are here.
 */
export type ChallengePurpose = (typeof loginChallenges.purpose.enumValues)[number];

export type StoredChallenge = typeof loginChallenges.$inferSelect;

export class LoginChallengesRepository {
  constructor(private readonly db: Db) {}

  async insert(challenge: { userId: string; tokenHash: string; purpose: ChallengePurpose; deviceFingerprint: string; expiresAt: Date; createdAt: Date }): Promise<void> {
    await this.db.insert(loginChallenges).values({ id: randomUUID(), ...challenge });
  }

  async findByTokenHash(tokenHash: string): Promise<StoredChallenge | undefined> {
    const [row] = await this.db.select().from(loginChallenges).where(eq(loginChallenges.tokenHash, tokenHash)).limit(1);
    return row;
  }

  /** Marks the challenge used unless it is already; false when another request got it first. */
  async spend(id: string, at: Date, db: Db = this.db): Promise<boolean> {
    const rows = await db
      .update(loginChallenges)
      .set({ usedAt: at })
      .where(and(eq(loginChallenges.id, id), isNull(loginChallenges.usedAt)))
      .returning({ id: loginChallenges.id });
    return rows.length === 1;
  }

  /**
   * Ends every challenge of the user that is not expired and has fewer than `maxFailures`
   * failures: marked used (keeping an earlier `used_at`) and its failures raised to the limit,
   * so giving it back after a wrong code (`releaseAfterFailure`) cannot revive it.
   */
  async revokeAllOf(userId: string, at: Date, maxFailures: number, db: Db = this.db): Promise<number> {
    const rows = await db
      .update(loginChallenges)
      .set({ usedAt: sql`coalesce(${loginChallenges.usedAt}, ${at.toISOString()}::timestamptz)`, failedAttempts: sql`greatest(${loginChallenges.failedAttempts}, ${maxFailures})` })
      .where(and(eq(loginChallenges.userId, userId), gt(loginChallenges.expiresAt, at), lt(loginChallenges.failedAttempts, maxFailures)))
      .returning({ id: loginChallenges.id });
    return rows.length;
  }

  /** Gives a claimed challenge back and counts one failure against it. */
  async releaseAfterFailure(id: string): Promise<void> {
    await this.db
      .update(loginChallenges)
      .set({ usedAt: null, failedAttempts: sql`${loginChallenges.failedAttempts} + 1` })
      .where(eq(loginChallenges.id, id));
  }
}
