import { isUuid } from '../../domain/ids.js';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import { RoleRules } from '../accounts/role-rules.js';
import { IdentityError, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { auditActorOf, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';
import { AuthSteps, type TokenPair } from '../sign-in/auth-steps.js';
import { ACCESS_TOKEN_TTL_SECONDS } from '../tokens/access-tokens.js';
import type { SessionView } from './sessions.js';
import { invalidRefreshToken } from './sessions.js';

/**
 * What people do with sessions once signed in: refresh (rotation, with reuse ending the
 * session), sign out here or everywhere, list their sessions and end one; and what admins do
 * with the sessions of users they manage.
 */
export class SessionControl {
  private readonly steps: AuthSteps;
  private readonly rules: RoleRules;

  constructor(private readonly identity: Identity) {
    this.steps = new AuthSteps(identity);
    this.rules = new RoleRules(identity);
  }

  private get parts() {
    return this.identity.parts;
  }

  /** Rotates a refresh token. A reused one ends the session and is audited as such. */
  async refresh(refreshToken: string, origin: RequestOrigin): Promise<TokenPair & { sessionId: string }> {
    const { sessions, users, db } = this.parts;
    const rotated = await sessions.rotateRefreshToken(refreshToken);
    if ('reused' in rotated) {
      await this.steps.record(db, { action: 'auth.refresh-reuse', outcome: 'denied', origin, userId: rotated.userId, sessionId: rotated.sessionId, details: { sessionRevoked: true } });
      throw new IdentityError('refresh-token-reused', 'this refresh token was used before; the session has been ended, sign in again');
    }
    const user = await users.get(rotated.userId);
    if (!user || user.status !== 'active') {
      await sessions.revoke([rotated.sessionId], 'user-disabled');
      throw invalidRefreshToken();
    }
    const access = await this.identity.accessTokenFor(user, rotated.sessionId);
    return { accessToken: access.token, refreshToken: rotated.refreshToken, tokenType: 'Bearer', expiresIn: ACCESS_TOKEN_TTL_SECONDS, sessionId: rotated.sessionId };
  }

  async logout(principal: Principal, origin: RequestOrigin): Promise<void> {
    if (principal.kind !== 'user') return;
    await this.parts.sessions.revoke([principal.sessionId], 'logout');
    await this.steps.record(this.parts.db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: principal.userId, sessionId: principal.sessionId, details: { reason: 'logout', count: 1 } });
  }

  async logoutAll(principal: Principal, origin: RequestOrigin): Promise<number> {
    if (principal.kind !== 'user') return 0;
    // "Sign out everywhere" also forgets every trusted device: the next sign-in anywhere needs
    // the second factor again, which is what a user who fears a stolen laptop expects.
    const revoked = await this.parts.sessions.revokeForUser(principal.userId, 'logout-all');
    const devices = await this.parts.devices.revokeAll(principal.userId);
    await this.steps.record(this.parts.db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: principal.userId, details: { reason: 'logout-all', count: revoked.length, devices } });
    return revoked.length;
  }

  /** The caller's own live sessions; a machine has none to list. */
  async ownSessions(principal: Principal): Promise<SessionView[]> {
    if (principal.kind !== 'user') return [];
    return this.parts.sessions.listForUser(principal.userId);
  }

  /** A user's sessions for an admin (or for themselves). */
  async sessionsOf(actor: Principal, userId: string): Promise<SessionView[]> {
    await this.rules.manageableTarget(actor, userId, { allowSelf: true });
    return this.parts.sessions.listForUser(userId);
  }

  /** A user's sessions for the operator (`ciphergate users sessions ID`). */
  async sessionsAsOperator(userId: string): Promise<SessionView[]> {
    if (!(await this.parts.users.get(userId))) throw notFound('no such user');
    return this.parts.sessions.listForUser(userId);
  }

  /**
   * Ends one session of a given user (`DELETE /users/{id}/sessions/{sessionId}`): a session of
   * someone else, or one already ended, is 404 `not-found` like an unknown one. The revocation is
   * announced on the revocation bus, so every instance refuses the session from the next request.
   */
  async revokeSessionOf(actor: Principal, userId: string, sessionId: string, origin: RequestOrigin): Promise<void> {
    const target = await this.rules.manageableTarget(actor, userId, { allowSelf: true, denied: { action: 'auth.session.revoke', origin } });
    await this.revokeOneOf(userId, sessionId, { actor: auditActorOf(actor), tenantId: target.tenantId, sourceIp: origin.ip, via: 'api', own: actor.kind === 'user' && actor.userId === userId });
  }

  async revokeSessionAsOperator(userId: string, sessionId: string): Promise<void> {
    const target = await this.parts.users.get(userId);
    if (!target) throw notFound('no such user');
    await this.revokeOneOf(userId, sessionId, { ...OPERATOR, tenantId: target.tenantId, own: false });
  }

  /**
   * Signs a user out everywhere (`DELETE /users/{id}/sessions`): every session ends and every
   * trusted device is forgotten, as the user's own logout-all does, so the next sign-in anywhere
   * asks for the second factor again.
   */
  async revokeAllOf(actor: Principal, userId: string, origin: RequestOrigin): Promise<{ sessions: number; devices: number }> {
    const target = await this.rules.manageableTarget(actor, userId, { allowSelf: true, denied: { action: 'auth.session.revoke', origin } });
    return this.revokeEverySessionOf(userId, { actor: auditActorOf(actor), tenantId: target.tenantId, sourceIp: origin.ip, via: 'api', own: actor.kind === 'user' && actor.userId === userId });
  }

  async revokeAllAsOperator(userId: string): Promise<{ sessions: number; devices: number }> {
    const target = await this.parts.users.get(userId);
    if (!target) throw notFound('no such user');
    return this.revokeEverySessionOf(userId, { ...OPERATOR, tenantId: target.tenantId, own: false });
  }

  private async revokeOneOf(userId: string, sessionId: string, by: RevokedBy): Promise<void> {
    const { sessions, db } = this.parts;
    const owner = await sessions.owner(sessionId);
    const absent = notFound('no such live session of this user');
    if (!owner || owner.userId !== userId) throw absent;
    const reason = by.own ? 'revoked-by-user' : 'revoked-by-admin';
    await db.transaction(async (tx) => {
      if ((await sessions.revoke([sessionId], reason, tx)).length === 0) throw absent;
      await appendAuditEvent(tx, { actor: by.actor, action: 'auth.session.revoke', target: { type: 'session', id: sessionId }, tenantId: by.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { reason, count: 1, user: userId, via: by.via } });
    });
  }

  private async revokeEverySessionOf(userId: string, by: RevokedBy): Promise<{ sessions: number; devices: number }> {
    const { sessions, devices, db } = this.parts;
    const reason = by.own ? 'logout-all' : 'revoked-by-admin';
    return db.transaction(async (tx) => {
      const ended = await sessions.revokeForUser(userId, reason, {}, tx);
      const forgotten = await devices.revokeAll(userId, tx);
      await appendAuditEvent(tx, { actor: by.actor, action: 'auth.session.revoke', target: { type: 'user', id: userId }, tenantId: by.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { reason, count: ended.length, devices: forgotten, via: by.via } });
      return { sessions: ended.length, devices: forgotten };
    });
  }

  /** Revokes one session. Users revoke their own; `sessions:manage` holders revoke those of users they manage. */
  async revokeSession(actor: Principal, sessionId: string, origin: RequestOrigin, options: { asAdmin: boolean }): Promise<void> {
    const { sessions, db } = this.parts;
    const owner = isUuid(sessionId) ? await sessions.owner(sessionId) : undefined;
    const absent = notFound('no such session');
    if (!owner || owner.userId === null) throw absent;
    const own = actor.kind === 'user' && actor.userId === owner.userId;
    if (!own) {
      if (!options.asAdmin) throw absent;
      await this.rules.manageableTarget(actor, owner.userId, { denied: { action: 'auth.session.revoke', origin } });
    }
    const revoked = await sessions.revoke([sessionId], own ? 'revoked-by-user' : 'revoked-by-admin');
    if (revoked.length === 0) throw absent;
    await appendAuditEvent(db, { actor: auditActorOf(actor), action: 'auth.session.revoke', target: { type: 'session', id: sessionId }, sourceIp: origin.ip, outcome: 'success', details: { reason: own ? 'revoked-by-user' : 'revoked-by-admin', count: 1 } });
  }
}

interface RevokedBy {
  actor: AuditEventInput['actor'];
  tenantId: string | null;
  sourceIp: string | null;
  via: 'api' | 'cli';
  /** The user ends their own session(s) through the admin route. */
  own: boolean;
}

const OPERATOR = { actor: { type: 'system', id: 'cli' }, sourceIp: null, via: 'cli' } as const satisfies Omit<RevokedBy, 'tenantId' | 'own'>;
