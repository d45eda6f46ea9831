import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import type { UserRecord } from '../../store/repositories/users.js';
import { ACCESS_TOKEN_TTL_SECONDS } from '../tokens/access-tokens.js';
import type { AuthStage } from '../auth-metrics.js';
import { RateLimitedError } from '../errors.js';
import type { Identity } from '../identity.js';
import type { RequestOrigin } from '../request-origin.js';
import type { ChallengePurpose, OpenChallenge } from './challenges.js';
import { deviceFingerprint, deviceLabelFrom } from './trusted-devices.js';

/**
 * What every step of the sign-in flows shares (password, second factor, enrollment, SMS codes,
 * step-up, refresh): the per-address budget, the account locks, the login challenge, opening
 * the session, and the record of each outcome. Every outcome that matters to security is an
 * audit event and, when refused, a metric; no event carries an email, a password, a code, a
 * phone number or a token.
 */
export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
}

export interface SignedIn extends TokenPair {
  userId: string;
  sessionId: string;
  /** Present after a passed second factor: sent on later logins to skip it on this device. */
  deviceToken?: string;
  /** Present once, after TOTP enrollment. */
  recoveryCodes?: string[];
}

/** One attempt at a step: the audit action it is recorded under, and where it came from. */
export interface Attempt {
  action: AuditAction;
  origin: RequestOrigin;
}

export interface AuthEvent {
  action: AuditAction;
  /** The stage a refusal is counted under, when it is not the action's own (a password confirmation is audited under the action it guards). */
  stage?: AuthStage;
  outcome: 'success' | 'failure' | 'denied';
  origin: RequestOrigin;
  userId?: string | null;
  sessionId?: string;
  details?: Record<string, string | number | boolean | null>;
}

export class AuthSteps {
  constructor(private readonly identity: Identity) {}

  private get parts() {
    return this.identity.parts;
  }

  /** Spends one attempt of the address's per-minute budget, or refuses the step (429 `ip-limit`). */
  async spendIpAllowance({ action, origin }: Attempt): Promise<void> {
    const allowance = await this.parts.throttle.consumeIp(origin.ip);
    if (allowance.allowed) return;
    this.throttled(action, 'ip-limit', origin);
    throw new RateLimitedError('ip-limit', allowance.retryAfterSeconds);
  }

  /** Refuses the step (429 `account-locked`) while the account is locked for this address. */
  async refuseIfLocked(accountKey: string, { action, origin }: Attempt): Promise<void> {
    const lock = await this.parts.throttle.check(accountKey, origin.ip);
    if (!lock.locked) return;
    this.throttled(action, 'account-locked', origin);
    throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
  }

  /** The open challenge behind a token, for this purpose and device; a refusal is audited. */
  async openChallenge(token: unknown, purpose: ChallengePurpose, { action, origin }: Attempt): Promise<OpenChallenge> {
    try {
      return await this.parts.challenges.open(token, purpose, deviceFingerprint(origin.userAgent));
    } catch (error) {
      await this.record(this.parts.db, { action, outcome: 'denied', origin, details: { reason: 'invalid-challenge' } });
      throw error;
    }
  }

  /** A new session with its first token pair; `db` is the caller's transaction when there is one. */
  async startSession(user: UserRecord, origin: RequestOrigin, options: { deviceId?: string | undefined }, db: Db = this.parts.db): Promise<SignedIn> {
    const started = await this.parts.sessions.start({ userId: user.id, deviceId: options.deviceId ?? null, deviceLabel: deviceLabelFrom(origin.userAgent), ip: origin.ip }, db);
    if (started.endedOnDevice.length > 0) {
      await this.record(db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: user.id, details: { reason: 'device-session-limit', count: started.endedOnDevice.length } });
    }
    if (started.endedSessionIds.length > 0) {
      await this.record(db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: user.id, details: { reason: 'session-limit', count: started.endedSessionIds.length } });
    }
    const access = await this.identity.accessTokenFor(user, started.sessionId);
    return { accessToken: access.token, refreshToken: started.refreshToken!, tokenType: 'Bearer', expiresIn: ACCESS_TOKEN_TTL_SECONDS, userId: user.id, sessionId: started.sessionId };
  }

  /**
   * A step refused by a limit (a 429): counted in the metrics like any refused step, and audited
   * as one `auth.throttled` entry per step, reason and minute with its count, never one row per
   * refusal, so hammering a limit cannot fill the audit trail (issue #13 item 1). The lockout
   * that starts a lock is still its own `auth.lockout` entry.
   */
  throttled(action: string, reason: 'ip-limit' | 'account-locked' | 'throttled', origin: RequestOrigin): void {
    this.identity.metrics.recordFailure(action, reason);
    this.identity.throttleAudit.count({ action: 'auth.throttled', outcome: 'denied', tenantId: null, labels: { attempt: action, reason } }, origin.ip);
  }

  /**
   * Every refused step of these flows passes through here (or, refused by a limit, through
   * `throttled`), so the metrics count exactly what the audit trail records.
   */
  async record(db: Db, event: AuthEvent): Promise<void> {
    if (event.action === 'auth.lockout') this.identity.metrics.recordLockout(event.stage ?? event.action);
    else if (event.outcome !== 'success') this.identity.metrics.recordFailure(event.stage ?? event.action, event.details?.reason);
    await appendAuditEvent(db, {
      actor: event.userId ? { type: 'user', id: event.userId } : { type: 'anonymous' },
      action: event.action,
      target: event.sessionId ? { type: 'session', id: event.sessionId } : event.userId ? { type: 'user', id: event.userId } : null,
      sourceIp: event.origin.ip,
      outcome: event.outcome,
      details: event.details ?? {},
    });
  }
}
