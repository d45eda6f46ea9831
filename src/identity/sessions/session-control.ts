import { isUuid } from '../../domain/ids.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
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
