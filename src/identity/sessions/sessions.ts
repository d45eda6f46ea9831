import { randomUUID } from 'node:crypto';
import { and, desc, eq, gt, inArray, isNull, ne, type SQL } from 'drizzle-orm';
import type { Db } from '../../store/connection.js';
import { refreshTokens, sessions } from '../../store/schema.js';
import { AuthError } from '../errors.js';
import { decideRefresh, hashRefreshToken, isRefreshTokenFormat, issueRefreshToken } from './refresh-tokens.js';
import type { RevocationBus } from '../../store/revocation-bus.js';

/**
 * Sessions: one per signed-in client, checked on every authenticated request so that a
 * revocation takes effect on the next request, not when the access token expires.
 *
 * The liveness check is the hot path, so it is cached per instance for at most
 * `LIVENESS_CACHE_MS`. A revocation made on this instance evicts the entry at once; one made
 * on another instance arrives through the revocation bus (Redis pub/sub) within milliseconds;
 * without Redis the cache age bounds how stale another instance can be. The database stays
 * the source of truth: a cache miss or an expired entry always reads it.
 */
export interface SessionPolicy {
  idleMs: number;
  absoluteMs: number;
  /** A new sign-in ends the user's oldest live sessions beyond this many; undefined = unlimited. */
  maxPerUser?: number;
}

export type RevocationReason =
  | 'logout'
  | 'logout-all'
  | 'revoked-by-user'
  | 'revoked-by-admin'
  | 'refresh-reuse'
  | 'password-changed'
  | 'factor-changed'
  | 'user-disabled'
  | 'user-deleted'
  | 'api-key-revoked'
  | 'token-revoked'
  | 'session-limit';

export interface LiveSession {
  id: string;
  userId: string | null;
  apiKeyId: string | null;
  lastUsedAt: Date;
  absoluteExpiresAt: Date;
}

export interface SessionView {
  id: string;
  deviceLabel: string;
  ip: string | null;
  createdAt: Date;
  lastUsedAt: Date;
  trustedDeviceId: string | null;
}

export interface StartedSession {
  sessionId: string;
  /** Given once to the client; absent for machine sessions, which get no refresh token. */
  refreshToken?: string;
  /** Older sessions this sign-in ended under `maxPerUser`. */
  endedSessionIds: string[];
}

/** One liveness check per session per this interval reads the database; the rest hit memory. */
export const LIVENESS_CACHE_MS = 1_000;
/**
 * `last_used_at` is written at most this often per session: the idle timeout is this coarse.
 * Never more than a quarter of the idle timeout, or a session in steady use would look idle
 * (with a one-minute timeout, a 60 s interval ended busy sessions every minute).
 */
const TOUCH_INTERVAL_MS = 60_000;
const CACHE_MAX_ENTRIES = 50_000;
/** Far longer than any revoking transaction takes to commit; after it, the database answers. */
const TOMBSTONE_MS = 5_000;

export class Sessions {
  private readonly cache = new Map<string, { session: LiveSession | undefined; checkedAt: number }>();
  /**
   * Sessions announced as revoked, refused without a database read for `TOMBSTONE_MS`. A
   * revocation is announced from inside its transaction, before it commits; a request that
   * read the row in that window would otherwise see it live and cache it. Refusing from the
   * announcement on closes the window on every instance (fail-closed: a revocation whose
   * transaction then rolls back refuses its session for those few seconds).
   */
  private readonly tombstones = new Map<string, number>();
  private readonly touchIntervalMs: number;

  constructor(
    private readonly db: Db,
    private readonly bus: RevocationBus,
    readonly policy: SessionPolicy,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.touchIntervalMs = Math.min(TOUCH_INTERVAL_MS, Math.floor(policy.idleMs / 4));
    bus.subscribe((sessionIds) => {
      const until = this.now().getTime() + TOMBSTONE_MS;
      for (const id of sessionIds) {
        this.cache.delete(id);
        this.tombstones.set(id, until);
      }
      this.pruneTombstones();
    });
  }

  /** Opens a session; for a user, also its first refresh token and the `maxPerUser` rule. */
  async start(
    input: { userId?: string; apiKeyId?: string; deviceId?: string | null; deviceLabel: string; ip: string | null; absoluteMs?: number },
    db: Db = this.db,
  ): Promise<StartedSession> {
    const now = this.now();
    const sessionId = randomUUID();
    const absoluteExpiresAt = new Date(now.getTime() + (input.absoluteMs ?? this.policy.absoluteMs));
    await db.insert(sessions).values({
      id: sessionId,
      userId: input.userId ?? null,
      apiKeyId: input.apiKeyId ?? null,
      deviceId: input.deviceId ?? null,
      deviceLabel: input.deviceLabel.slice(0, 200),
      ip: input.ip,
      createdAt: now,
      lastUsedAt: now,
      absoluteExpiresAt,
    });
    let refreshToken: string | undefined;
    if (input.userId) {
      const issued = issueRefreshToken();
      await db.insert(refreshTokens).values({ id: randomUUID(), sessionId, tokenHash: issued.hash, expiresAt: absoluteExpiresAt, createdAt: now });
      refreshToken = issued.token;
    }
    let endedSessionIds: string[] = [];
    if (input.userId && this.policy.maxPerUser !== undefined) {
      const live = await db
        .select({ id: sessions.id })
        .from(sessions)
        .where(and(eq(sessions.userId, input.userId), isNull(sessions.revokedAt), gt(sessions.absoluteExpiresAt, now)))
        .orderBy(desc(sessions.createdAt), desc(sessions.id));
      const beyond = live.filter((row) => row.id !== sessionId).slice(this.policy.maxPerUser - 1).map((row) => row.id);
      endedSessionIds = await this.revoke(beyond, 'session-limit', db);
    }
    return { sessionId, ...(refreshToken ? { refreshToken } : {}), endedSessionIds };
  }

  /**
   * Exchanges a refresh token for its successor (RFC 9700 §4.14.2 rotation). A token already
   * used revokes the whole session: either the client or a thief holds a copy, and we cannot
   * tell which. The compare-and-set on `used_at` makes two concurrent uses count as reuse.
   */
  async rotateRefreshToken(token: string): Promise<{ sessionId: string; userId: string; refreshToken: string } | { reused: true; sessionId: string; userId: string | null }> {
    if (!isRefreshTokenFormat(token)) throw invalidRefreshToken();
    const hash = hashRefreshToken(token);
    const now = this.now();
    return this.db.transaction(async (tx) => {
      const [record] = await tx
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
        .where(eq(refreshTokens.tokenHash, hash))
        .limit(1);
      const decision = decideRefresh(record, now);
      if (decision.action === 'reject') throw invalidRefreshToken();
      if (decision.action === 'revoke-session') {
        await this.revoke([record!.sessionId], 'refresh-reuse', tx);
        return { reused: true as const, sessionId: record!.sessionId, userId: record!.userId };
      }
      const session = record!;
      if (!this.isLive(session, now) || session.userId === null) throw invalidRefreshToken();
      const spent = await tx
        .update(refreshTokens)
        .set({ usedAt: now })
        .where(and(eq(refreshTokens.tokenHash, hash), isNull(refreshTokens.usedAt)))
        .returning({ id: refreshTokens.id });
      if (spent.length === 0) {
        // A concurrent refresh with the same token won: two holders exist.
        await this.revoke([session.sessionId], 'refresh-reuse', tx);
        return { reused: true as const, sessionId: session.sessionId, userId: session.userId };
      }
      const next = issueRefreshToken();
      await tx.insert(refreshTokens).values({ id: randomUUID(), sessionId: session.sessionId, tokenHash: next.hash, expiresAt: session.absoluteExpiresAt, createdAt: now });
      await tx.update(sessions).set({ lastUsedAt: now }).where(eq(sessions.id, session.sessionId));
      this.cache.delete(session.sessionId);
      return { sessionId: session.sessionId, userId: session.userId, refreshToken: next.token };
    });
  }

  /**
   * The session if it may still be used: not revoked, not past its absolute life, not idle
   * too long. Cached briefly (see the class comment); marks the session used.
   */
  async checkLive(sessionId: string): Promise<LiveSession | undefined> {
    const nowMs = this.now().getTime();
    const tombstone = this.tombstones.get(sessionId);
    if (tombstone !== undefined && tombstone > nowMs) return undefined;
    const cached = this.cache.get(sessionId);
    let session: LiveSession | undefined;
    if (cached && nowMs - cached.checkedAt < LIVENESS_CACHE_MS) {
      session = cached.session;
    } else {
      session = await this.read(sessionId);
      this.remember(sessionId, session, nowMs);
    }
    if (!session || !this.isLive(session, new Date(nowMs))) return undefined;
    if (nowMs - session.lastUsedAt.getTime() >= this.touchIntervalMs) {
      session.lastUsedAt = new Date(nowMs);
      await this.db.update(sessions).set({ lastUsedAt: session.lastUsedAt }).where(eq(sessions.id, sessionId));
    }
    return session;
  }

  /** Revokes live sessions among `ids`; returns the ids this call revoked, after telling every instance. */
  async revoke(ids: string[], reason: RevocationReason, db: Db = this.db): Promise<string[]> {
    if (ids.length === 0) return [];
    return this.revokeWhere(and(inArray(sessions.id, ids), isNull(sessions.revokedAt))!, reason, db);
  }

  /** Every live session of a user, optionally but one (the caller's own, on a password change). */
  async revokeForUser(userId: string, reason: RevocationReason, options: { exceptSessionId?: string } = {}, db: Db = this.db): Promise<string[]> {
    const conditions = [eq(sessions.userId, userId), isNull(sessions.revokedAt)];
    if (options.exceptSessionId) conditions.push(ne(sessions.id, options.exceptSessionId));
    return this.revokeWhere(and(...conditions)!, reason, db);
  }

  async revokeForApiKeys(apiKeyIds: string[], reason: RevocationReason, db: Db = this.db): Promise<string[]> {
    if (apiKeyIds.length === 0) return [];
    return this.revokeWhere(and(inArray(sessions.apiKeyId, apiKeyIds), isNull(sessions.revokedAt))!, reason, db);
  }

  /** A user's live sessions, newest first. */
  async listForUser(userId: string): Promise<SessionView[]> {
    const now = this.now();
    const rows = await this.db
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
    return rows
      .filter((row) => this.isLive(row, now))
      .map(({ id, deviceLabel, ip, createdAt, lastUsedAt, trustedDeviceId }) => ({ id, deviceLabel, ip, createdAt, lastUsedAt, trustedDeviceId }));
  }

  /** Who owns a session (for authorising a revoke), live or not. */
  async owner(sessionId: string): Promise<{ userId: string | null; apiKeyId: string | null } | undefined> {
    const [row] = await this.db.select({ userId: sessions.userId, apiKeyId: sessions.apiKeyId }).from(sessions).where(eq(sessions.id, sessionId)).limit(1);
    return row;
  }

  private async revokeWhere(condition: SQL, reason: RevocationReason, db: Db): Promise<string[]> {
    const revoked = await db
      .update(sessions)
      .set({ revokedAt: this.now(), revokedReason: reason })
      .where(condition)
      .returning({ id: sessions.id });
    const ids = revoked.map((row) => row.id);
    if (ids.length > 0) {
      for (const id of ids) this.cache.delete(id);
      // Announced before the caller's transaction commits, so every instance refuses the
      // sessions from now on (see `tombstones`), not only once the commit is visible.
      await this.bus.publish(ids);
    }
    return ids;
  }

  private async read(sessionId: string): Promise<LiveSession | undefined> {
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
    if (!row || row.revokedAt !== null) return undefined;
    const { revokedAt: _revoked, ...session } = row;
    return session;
  }

  private isLive(session: { lastUsedAt: Date; absoluteExpiresAt: Date; revokedAt?: Date | null }, now: Date): boolean {
    if (session.revokedAt) return false;
    if (now.getTime() >= session.absoluteExpiresAt.getTime()) return false;
    return now.getTime() - session.lastUsedAt.getTime() < this.policy.idleMs;
  }

  private pruneTombstones(): void {
    const nowMs = this.now().getTime();
    for (const [id, until] of this.tombstones) {
      if (until <= nowMs) this.tombstones.delete(id);
    }
  }

  private remember(sessionId: string, session: LiveSession | undefined, at: number): void {
    if (this.cache.size >= CACHE_MAX_ENTRIES) {
      // Oldest insertion first: Map iteration order. Dropping an entry only costs a re-read.
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(sessionId, { session, checkedAt: at });
  }
}

export function invalidRefreshToken(): AuthError {
  return new AuthError(401, 'invalid-refresh-token', 'Invalid refresh token', 'the refresh token is unknown, expired, or its session has ended');
}
