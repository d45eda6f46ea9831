import { randomUUID } from 'node:crypto';
import type { Db } from '../../store/connection.js';
import type { SessionSelection, SessionsRepository } from '../../store/repositories/sessions.js';
import type { RevocationBus } from '../../store/revocation-bus.js';
import { IdentityError } from '../errors.js';
import { decideRefresh, hashRefreshToken, isRefreshTokenFormat, issueRefreshToken } from './refresh-tokens.js';

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
  | 'session-limit'
  | 'device-session-limit'
  | 'user-locked';

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
  /** Older sessions of the same trusted device this sign-in ended (`SESSIONS_PER_DEVICE`). */
  endedOnDevice: string[];
}

/**
 * A trusted device keeps at most this many live sessions: signing in again through it beyond
 * that ends its oldest. A browser that signs in again has lost (or overwritten) the cookies of
 * its earlier session, and a script that signs in on every run never signs out, so without a
 * bound each of them would add a session per sign-in for as long as the device stays trusted
 * (30 days, sliding). Three, not one, so that a few clients sharing one device token (a console
 * tab and a script, parallel workers) do not end each other's sessions on every sign-in.
 */
export const SESSIONS_PER_DEVICE = 3;

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
    private readonly store: SessionsRepository,
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
    await this.store.insert(
      {
        id: sessionId,
        userId: input.userId ?? null,
        apiKeyId: input.apiKeyId ?? null,
        deviceId: input.deviceId ?? null,
        deviceLabel: input.deviceLabel.slice(0, 200),
        ip: input.ip,
        createdAt: now,
        absoluteExpiresAt,
      },
      db,
    );
    let refreshToken: string | undefined;
    if (input.userId) {
      const issued = issueRefreshToken();
      await this.store.insertRefreshToken({ sessionId, tokenHash: issued.hash, expiresAt: absoluteExpiresAt, createdAt: now }, db);
      refreshToken = issued.token;
    }
    let endedOnDevice: string[] = [];
    if (input.userId && input.deviceId) {
      const onDevice = await this.store.liveIdsOfDevice(input.userId, input.deviceId, now, db);
      endedOnDevice = await this.revoke(onDevice.filter((id) => id !== sessionId).slice(SESSIONS_PER_DEVICE - 1), 'device-session-limit', db);
    }
    let endedSessionIds: string[] = [];
    if (input.userId && this.policy.maxPerUser !== undefined) {
      const live = await this.store.liveIdsOfUser(input.userId, now, db);
      const beyond = live.filter((id) => id !== sessionId).slice(this.policy.maxPerUser - 1);
      endedSessionIds = await this.revoke(beyond, 'session-limit', db);
    }
    return { sessionId, ...(refreshToken ? { refreshToken } : {}), endedSessionIds, endedOnDevice };
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
      const record = await this.store.findRefreshToken(hash, tx);
      const decision = decideRefresh(record, now);
      if (decision.action === 'reject') throw invalidRefreshToken();
      if (decision.action === 'revoke-session') {
        await this.revoke([record!.sessionId], 'refresh-reuse', tx);
        return { reused: true as const, sessionId: record!.sessionId, userId: record!.userId };
      }
      const session = record!;
      if (!this.isLive(session, now) || session.userId === null) throw invalidRefreshToken();
      if (!(await this.store.spendRefreshToken(hash, now, tx))) {
        // A concurrent refresh with the same token won: two holders exist.
        await this.revoke([session.sessionId], 'refresh-reuse', tx);
        return { reused: true as const, sessionId: session.sessionId, userId: session.userId };
      }
      const next = issueRefreshToken();
      await this.store.insertRefreshToken({ sessionId: session.sessionId, tokenHash: next.hash, expiresAt: session.absoluteExpiresAt, createdAt: now }, tx);
      await this.store.touch(session.sessionId, now, tx);
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
      await this.store.touch(sessionId, session.lastUsedAt);
    }
    return session;
  }

  /** Revokes live sessions among `ids`; returns the ids this call revoked, after telling every instance. */
  async revoke(ids: string[], reason: RevocationReason, db: Db = this.db): Promise<string[]> {
    if (ids.length === 0) return [];
    return this.revokeWhere({ ids }, reason, db);
  }

  /** Every live session of a user, optionally but one (the caller's own, on a password change). */
  async revokeForUser(userId: string, reason: RevocationReason, options: { exceptSessionId?: string } = {}, db: Db = this.db): Promise<string[]> {
    return this.revokeWhere({ userId, ...(options.exceptSessionId ? { exceptSessionId: options.exceptSessionId } : {}) }, reason, db);
  }

  async revokeForApiKeys(apiKeyIds: string[], reason: RevocationReason, db: Db = this.db): Promise<string[]> {
    if (apiKeyIds.length === 0) return [];
    return this.revokeWhere({ apiKeyIds }, reason, db);
  }

  /** A user's live sessions, newest first. */
  async listForUser(userId: string): Promise<SessionView[]> {
    const now = this.now();
    const rows = await this.store.listOfUser(userId, now);
    return rows
      .filter((row) => this.isLive(row, now))
      .map(({ id, deviceLabel, ip, createdAt, lastUsedAt, trustedDeviceId }) => ({ id, deviceLabel, ip, createdAt, lastUsedAt, trustedDeviceId }));
  }

  /** The session a refresh token of ours belongs to, used or not (RFC 7009 revocation); undefined for an unknown one. */
  async sessionOfRefreshToken(token: string): Promise<string | undefined> {
    return this.store.sessionOfRefreshToken(hashRefreshToken(token));
  }

  /** Who owns a session (for authorising a revoke), live or not. */
  async owner(sessionId: string): Promise<{ userId: string | null; apiKeyId: string | null } | undefined> {
    return this.store.owner(sessionId);
  }

  private async revokeWhere(selection: SessionSelection, reason: RevocationReason, db: Db): Promise<string[]> {
    const ids = await this.store.revoke(selection, reason, this.now(), db);
    if (ids.length > 0) {
      for (const id of ids) this.cache.delete(id);
      // Announced before the caller's transaction commits, so every instance refuses the
      // sessions from now on (see `tombstones`), not only once the commit is visible.
      await this.bus.publish(ids);
    }
    return ids;
  }

  private async read(sessionId: string): Promise<LiveSession | undefined> {
    const row = await this.store.read(sessionId);
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

export function invalidRefreshToken(): IdentityError {
  return new IdentityError('invalid-refresh-token', 'the refresh token is unknown, expired, or its session has ended');
}
