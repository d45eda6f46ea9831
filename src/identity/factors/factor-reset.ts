import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import { RoleRules } from '../accounts/role-rules.js';
import { forbidden, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { auditActorOf, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';

/** What a reset removed and ended; counts only (also the audit details of `user.factors.reset`). */
export interface FactorResetOutcome {
  /** Confirmed authenticators removed (0 or 1). */
  authenticators: number;
  /** Unused recovery codes removed. */
  recoveryCodes: number;
  /** Whether a verified phone was removed. */
  phone: boolean;
  sessions: number;
  devices: number;
}

/**
 * Removing every second factor of a user who lost them (authenticator, recovery codes, phone):
 * by an admin, or a manager for the roles it manages, or by the operator from the command
 * line. Every session, trusted device and open login challenge of the user ends with them; at
 * the next sign-in the password earns an enrollment challenge, as for a new user.
 */
export class FactorReset {
  private readonly rules: RoleRules;

  constructor(private readonly identity: Identity) {
    this.rules = new RoleRules(identity);
  }

  /**
   * Nobody resets their own factors here: a signed-in user replaces theirs with the current one
   * (`POST /auth/totp/enroll`), and a stolen session must not be able to strip them.
   */
  async reset(actor: Principal, userId: string, origin: RequestOrigin): Promise<FactorResetOutcome> {
    const target = await this.rules.manageableTarget(actor, userId, { denied: { action: FACTORS_RESET, origin } });
    if (actor.kind === 'user' && actor.userId === userId) {
      await this.rules.auditDenied(actor, FACTORS_RESET, userId, origin, 'self-reset');
      throw forbidden('nobody resets their own second factors; replace yours with POST /api/v1/auth/totp/enroll, or ask another admin');
    }
    return this.removeFactors(userId, { actor: auditActorOf(actor), tenantId: target.tenantId, sourceIp: origin.ip, via: 'api' });
  }

  /** The same from the command line: the operator may reset anyone's factors, admins' included. */
  async resetAsOperator(userId: string): Promise<FactorResetOutcome> {
    const target = await this.identity.parts.users.get(userId);
    if (!target) throw notFound('no such user');
    return this.removeFactors(userId, { actor: { type: 'system', id: 'cli' }, tenantId: target.tenantId, sourceIp: null, via: 'cli' });
  }

  private async removeFactors(userId: string, by: { actor: AuditEventInput['actor']; tenantId: string | null; sourceIp: string | null; via: 'api' | 'cli' }): Promise<FactorResetOutcome> {
    const { db, users, factors, challenges, sessions, devices } = this.identity.parts;
    return db.transaction(async (tx) => {
      // The same lock as an enrollment (TotpEnrollment.confirm): one running at this moment
      // either finishes first and is removed here, or waits and then finds no factor to stand on.
      if (!(await users.lock(userId, tx))) throw notFound('no such user');
      const removed = await factors.removeAll(userId, tx);
      await challenges.revokeAllOf(userId, tx);
      const ended = await sessions.revokeForUser(userId, 'factor-changed', {}, tx);
      const devicesEnded = await devices.revokeAll(userId, tx);
      const reset: FactorResetOutcome = {
        authenticators: removed.totp ?? 0,
        recoveryCodes: removed.recovery ?? 0,
        phone: (removed.sms ?? 0) > 0,
        sessions: ended.length,
        devices: devicesEnded,
      };
      await appendAuditEvent(tx, { actor: by.actor, action: FACTORS_RESET, target: { type: 'user', id: userId }, tenantId: by.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { via: by.via, ...reset } });
      return reset;
    });
  }
}

const FACTORS_RESET = 'user.factors.reset' satisfies AuditAction;
