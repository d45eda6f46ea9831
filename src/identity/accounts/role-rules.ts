import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { UserRecord } from '../../store/repositories/users.js';
import { forbidden, invalidInput, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { VISIBLE_ROLES, mayManageRole, type Role } from '../permissions.js';
import { auditActorOf, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';

/**
 * The rules of who may act on which user, beyond the permission a route declares: the role
 * matrix of permissions.ts applied to one target. Shared by the account, session and factor
 * use cases that act on another user.
 */
export class RoleRules {
  constructor(private readonly identity: Identity) {}

  /**
   * The target user if the actor may manage it. A user who does not exist, and one the actor
   * may not manage, both read as 404 to a manager, so managers cannot probe for admins.
   * With `denied`, a refusal of an existing user is audited (the 404 hides it from the caller only).
   */
  async manageableTarget(actor: Principal, userId: string, options: { allowSelf?: boolean; denied?: { action: AuditAction; origin: RequestOrigin } } = {}): Promise<UserRecord> {
    const target = await this.identity.parts.users.get(userId);
    const absent = notFound('no such user');
    if (!target) throw absent;
    if (options.allowSelf && actor.kind === 'user' && actor.userId === userId) return target;
    if (actor.kind !== 'user') throw forbidden('machines do not manage users');
    if (actor.userId === userId) return target;
    if (!mayManageRole(actor.role, target.role)) {
      if (options.denied) await this.auditDenied(actor, options.denied.action, userId, options.denied.origin, 'not-manageable');
      throw actor.role === 'admin' ? forbidden('not allowed') : absent;
    }
    return target;
  }

  /** Refuses (and audits) giving a role the actor may not give: a manager making an admin is an attempt to climb. */
  async assertMayAssign(actor: Principal, role: Role, attempt: { action: AuditAction; userId: string | null; origin: RequestOrigin }): Promise<void> {
    if (actor.kind !== 'user' || !mayManageRole(actor.role, role)) {
      await this.auditDenied(actor, attempt.action, attempt.userId, attempt.origin, 'role-not-assignable', { role });
      throw forbidden(`a ${actor.kind === 'user' ? actor.role : 'machine'} may not give the role "${role}"`);
    }
  }

  async auditDenied(actor: Principal, action: AuditAction, userId: string | null, origin: RequestOrigin, reason: string, details: Record<string, string> = {}): Promise<void> {
    await appendAuditEvent(this.identity.parts.db, { actor: auditActorOf(actor), action, target: userId ? { type: 'user', id: userId } : null, sourceIp: origin.ip, outcome: 'denied', details: { ...details, reason } });
  }
}

/** Machines see no users (their scopes never include `users:read`); a person sees the roles VISIBLE_ROLES gives theirs. */
export function visibleRolesOf(actor: Principal): readonly Role[] {
  return actor.kind === 'user' ? VISIBLE_ROLES[actor.role] : [];
}

/** Client users belong to exactly one tenant; nobody else is bound to one. */
export function assertTenantRule(role: Role, tenantId: string | null): void {
  if (role === 'client' && !tenantId) throw invalidInput('a client user needs a tenant');
  if (role !== 'client' && tenantId) throw invalidInput('only client users belong to a tenant');
}
