import { randomUUID } from 'node:crypto';
import { and, desc, eq, gt, inArray, isNull, ne, type SQL } from 'drizzle-orm';
import type { Db } from '../connection.js';
import { refreshTokens, sessions } from '../schema.js';

/**
 * The sessions aggregate: one row per signed-in client (a user's browser or app, or a machine's
 * client-credentials grant) and the hashed refresh tokens of user sessions. The rules (idle and
 * absolute lifetimes, rotation, reuse detection, the liveness cache) are identity's
 * (src/identity/sessions/); this is only their SQL. Methods that write take the caller's
 * transaction as `db` when there is one.
 */
export interface NewSession {
  id: string;
  userId: string | null;
  apiKeyId: string | null;
  deviceId: string | null;
  deviceLabel: string;
  ip: string | null;
  createdAt: Date;
  absoluteExpiresAt: Date;
}

/** The columns a liveness check reads. */
export interface SessionRow {
  id: string;
  userId: string | null;
  apiKeyId: string | null;
  lastUsedAt: Date;
  absoluteExpiresAt: Date;
  revokedAt: Date | null;
}

/** A session as its owner lists it. */
export interface ListedSession extends Omit<SessionRow, 'revokedAt'> {
  deviceLabel: string;
  ip: string | null;
  createdAt: Date;
  trustedDeviceId: string | null;
}

/** A refresh token with the session it belongs to, as the rotation decision needs them. */
export interface RefreshTokenWithSession {
  hash: string;
  sessionId: string;
  usedAt: Date | null;
  expiresAt: Date;
  userId: string | null;
  revokedAt: Date | null;
  lastUsedAt: Date;
  absoluteExpiresAt: Date;
}

/** Which live sessions a revocation ends. */
export type SessionSelection = { ids: string[] } | { userId: string; exceptSessionId?: string } | { apiKeyIds: string[] };

export class SessionsRepository {
  constructor(private readonly db: Db) {}

  async insert(session: NewSession, db: Db = this.db): Promise<void> {
    await db.insert(sessions).values({ ...session, lastUsedAt: session.createdAt });
  }

  async insertRefreshToken(token: { sessionId: string; tokenHash: string; expiresAt: Date; createdAt: Date }, db: Db = this.db): Promise<void> {
    await db.insert(refreshTokens).values({ id: randomUUID(), ...token });
  }

  /** The ids of a user's sessions that are not revoked and not past their absolute life, newest first. */
  async liveIdsOfUser(userId: string, now: Date, db: Db = this.db): Promise<string[]> {
    const rows = await db
      .select({ id: sessions.id })
      .from(sessions)
      .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt), gt(sessions.absoluteExpiresAt, now)))
      .orderBy(desc(sessions.createdAt), desc(sessions.id));
    return rows.map((row) => row.id);
  }

  /** The ids of the live sessions a user holds through one trusted device, newest first (as `liveIdsOfUser`). */
  async liveIdsOfDevice(userId: string, deviceId: string, now: Date, db: Db = this.db): Promise<string[]> {
    const rows = await db
      .select({ id: sessions.id })
      .from(sessions)
      .where(and(eq(sessions.userId, userId), eq(sessions.deviceId, deviceId), isNull(sessions.revokedAt), gt(sessions.absoluteExpiresAt, now)))
      .orderBy(desc(sessions.createdAt), desc(sessions.id));
    return rows.map((row) => row.id);
  }

  /** A refresh token by its hash, joined with its session. */
  async findRefreshToken(tokenHash: string, db: Db = this.db): Promise<RefreshTokenWithSession | undefined> {
    const [record] = await db
      .select({
        hash: refreshTokens.tokenHash,
        sessionId: refreshTokens.sessionId,
        usedAt: refreshTokens.usedAt,
        expiresAt: refreshTokens.expiresAt,
        userId: sessions.userId,
        revokedAt: sessions.revokedAt,
        lastUsedAt: sessions.lastUsedAt,
        absoluteExpiresAt: sessions.absoluteExpiresAt,
      })
      .from(refreshTokens)
      .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
      .where(eq(refreshTokens.tokenHash, tokenHash))
      .limit(1);
    return record;
  }

  /** The session a refresh token belongs to, used or not (for RFC 7009 revocation). */
  async sessionOfRefreshToken(tokenHash: string): Promise<string | undefined> {
    const [row] = await this.db.select({ sessionId: refreshTokens.sessionId }).from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenHash)).limit(1);
    return row?.sessionId;
  }

  /**
   * Marks a refresh token used: a compare-and-set on `used_at`, so of two concurrent refreshes
   * with one token exactly one gets true (the other is reuse).
   */
  async spendRefreshToken(tokenHash: string, at: Date, db: Db = this.db): Promise<boolean> {
    const spent = await db
      .update(refreshTokens)
      .set({ usedAt: at })
      .where(and(eq(refreshTokens.tokenHash, tokenHash), isNull(refreshTokens.usedAt)))
      .returning({ id: refreshTokens.id });
    return spent.length === 1;
  }

  async touch(sessionId: string, at: Date, db: Db = this.db): Promise<void> {
    await db.update(sessions).set({ lastUsedAt: at }).where(eq(sessions.id, sessionId));
  }

  async read(sessionId: string): Promise<SessionRow | undefined> {
    const [row] = await this.db
      .select({
        id: sessions.id,
        userId: sessions.userId,
        apiKeyId: sessions.apiKeyId,
        lastUsedAt: sessions.lastUsedAt,
        absoluteExpiresAt: sessions.absoluteExpiresAt,
        revokedAt: sessions.revokedAt,
      })
      .from(sessions)
      .where(eq(sessions.id, sessionId))
      .limit(1);
    return row;
  }

  /** A user's sessions that are not revoked and not past their absolute life, newest first (idle ones included). */
  async listOfUser(userId: string, now: Date): Promise<ListedSession[]> {
    return this.db
      .select({
        id: sessions.id,
        userId: sessions.userId,
        apiKeyId: sessions.apiKeyId,
        deviceLabel: sessions.deviceLabel,
        ip: sessions.ip,
        createdAt: sessions.createdAt,
        lastUsedAt: sessions.lastUsedAt,
        absoluteExpiresAt: sessions.absoluteExpiresAt,
        trustedDeviceId: sessions.deviceId,
      })
      .from(sessions)
      .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt), gt(sessions.absoluteExpiresAt, now)))
      .orderBy(desc(sessions.createdAt));
  }

  /** Who owns a session, live or not. */
  async owner(sessionId: string): Promise<{ userId: string | null; apiKeyId: string | null } | undefined> {
    const [row] = await this.db.select({ userId: sessions.userId, apiKeyId: sessions.apiKeyId }).from(sessions).where(eq(sessions.id, sessionId)).limit(1);
    return row;
  }

  /** Revokes the selected sessions that are not revoked yet; returns the ids this call revoked. */
  async revoke(selection: SessionSelection, reason: string, at: Date, db: Db = this.db): Promise<string[]> {
    const revoked = await db
      .update(sessions)
      .set({ revokedAt: at, revokedReason: reason })
      .where(and(selected(selection), isNull(sessions.revokedAt)))
      .returning({ id: sessions.id });
    return revoked.map((row) => row.id);
  }
}

function selected(selection: SessionSelection): SQL | undefined {
  if ('ids' in selection) return inArray(sessions.id, selection.ids);
  if ('apiKeyIds' in selection) return inArray(sessions.apiKeyId, selection.apiKeyIds);
  return selection.exceptSessionId ? and(eq(sessions.userId, selection.userId), ne(sessions.id, selection.exceptSessionId)) : eq(sessions.userId, selection.userId);
}
