import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import { addressesOfFailedAttempts } from '../../store/repositories/failed-attempt-sources.js';
import type { UserView } from '../../store/repositories/users.js';
import { IdentityError, forbidden, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { auditActorOf, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';
import { RoleRules } from './role-rules.js';

/** What a lock ended (also the audit details of `user.lock`). */
export interface LockOutcome {
  user: UserView;
  sessions: number;
  devices: number;
}

/** What an unlock did (also the audit details of `user.unlock`). */
export interface UnlockOutcome {
  user: UserView;
  /** Whether the user was locked by an admin (an unlock of an active user only clears failed-attempt locks). */
  wasLocked: boolean;
  /** Runs of failed sign-in attempts (account and address) cleared, the locks among them included. */
  failedAttemptLocks: number;
}

/**
 * Locking a user: an admin's hold on an account, for a suspected compromise or a person on
 * leave, until an unlock. Beside the other two ways a user stops signing in:
 *
 * - the sign-in throttle's lock is automatic, per account and address, and lifts itself after
 *   15 minutes; an unlock clears it at once (every address the user's failures came from);
 * - `disabled` is for someone who left: every API key they created is revoked with it.
 *
 * A lock refuses every sign-in step (password, second factor, enrollment, refresh) and ends every
 * session, trusted device and open login challenge at once; the password, the second factors and
 * the API keys the user created stay, so an unlock returns the account as it was (the next
 * sign-in asks for the second factor, as on a new device). Role rules as for any change of a user
 * (a manager cannot lock an admin or a manager); nobody locks or unlocks themselves; the last
 * active admin cannot be locked (the operator could still unlock them from the command line,
 * but nobody could sign in to notice). Every lock and unlock, and every refusal of one, is audited.
 */
export class AccountLocks {
  private readonly rules: RoleRules;

  constructor(private readonly identity: Identity) {
    this.rules = new RoleRules(identity);
  }

  async lock(actor: Principal, userId: string, origin: RequestOrigin): Promise<LockOutcome> {
    await this.assertMayChange(actor, userId, USER_LOCK, origin);
    return this.lockUser(userId, { actor: auditActorOf(actor), sourceIp: origin.ip, via: 'api' });
  }

  /** The same from the command line: the operator may lock anyone, admins included (but never the last active one). */
  async lockAsOperator(userId: string): Promise<LockOutcome> {
    return this.lockUser(userId, OPERATOR);
  }

  async unlock(actor: Principal, userId: string, origin: RequestOrigin): Promise<UnlockOutcome> {
    await this.assertMayChange(actor, userId, USER_UNLOCK, origin);
    return this.unlockUser(userId, { actor: auditActorOf(actor), sourceIp: origin.ip, via: 'api' });
  }

  async unlockAsOperator(userId: string): Promise<UnlockOutcome> {
    return this.unlockUser(userId, OPERATOR);
  }

  private async assertMayChange(actor: Principal, userId: string, action: AuditAction, origin: RequestOrigin): Promise<void> {
    await this.rules.manageableTarget(actor, userId, { denied: { action, origin } });
    if (actor.kind === 'user' && actor.userId === userId) {
      await this.rules.auditDenied(actor, action, userId, origin, 'self-change');
      throw forbidden('nobody locks or unlocks their own account; ask another admin');
    }
  }

  private async lockUser(userId: string, by: ChangedBy): Promise<LockOutcome> {
    const { db, users, sessions, devices, challenges } = this.identity.parts;
    const outcome = await db.transaction(async (tx) => {
      // The row lock orders this against a concurrent key, role change or second lock of the user.
      const target = await users.getForUpdate(userId, tx);
      if (!target) throw notFound('no such user');
      if (target.status !== 'active') throw new IdentityError('invalid-state', `only an active user can be locked; this one is ${target.status}`);
      if (target.role === 'admin' && (await users.countAdmins(tx)) <= 1) {
        throw new IdentityError('invalid-state', 'the last active admin cannot be locked: nobody could sign in to unlock them');
      }
      await users.update(userId, { status: 'locked' }, tx);
      const ended = await sessions.revokeForUser(userId, 'user-locked', {}, tx);
      const forgotten = await devices.revokeAll(userId, tx);
      await challenges.revokeAllOf(userId, tx);
      const counts = { sessions: ended.length, devices: forgotten };
      await appendAuditEvent(tx, { actor: by.actor, action: USER_LOCK, target: { type: 'user', id: userId }, tenantId: target.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { via: by.via, ...counts } });
      return counts;
    });
    return { user: (await users.viewById(userId))!, ...outcome };
  }

  private async unlockUser(userId: string, by: ChangedBy): Promise<UnlockOutcome> {
    const { db, users, throttle } = this.identity.parts;
    const user = await users.viewById(userId);
    if (!user) throw notFound('no such user');
    if (user.status !== 'locked' && user.status !== 'active') throw new IdentityError('invalid-state', `only a locked or active user can be unlocked; this one is ${user.status}`);
    // Before the status changes, so the user never stands unlocked with a lock of the throttle left.
    const since = new Date(Date.now() - throttle.failureWindowSeconds * 1000);
    const addresses = await addressesOfFailedAttempts(db, userId, since);
    const accountKeys = [this.identity.accountThrottleKey(user.email), ...USER_ID_THROTTLE_KEYS.map((prefix) => `${prefix}${userId}`)];
    const failedAttemptLocks = await throttle.clear(accountKeys, addresses);
    const wasLocked = await db.transaction(async (tx) => {
      const changed = await users.activate(userId, 'locked', tx);
      await appendAuditEvent(tx, { actor: by.actor, action: USER_UNLOCK, target: { type: 'user', id: userId }, tenantId: user.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { via: by.via, wasLocked: changed, failedAttemptLocks } });
      return changed;
    });
    return { user: (await users.viewById(userId))!, wasLocked, failedAttemptLocks };
  }
}

interface ChangedBy {
  actor: AuditEventInput['actor'];
  sourceIp: string | null;
  via: 'api' | 'cli';
}

const OPERATOR: ChangedBy = { actor: { type: 'system', id: 'cli' }, sourceIp: null, via: 'cli' };
const USER_LOCK = 'user.lock' satisfies AuditAction;
const USER_UNLOCK = 'user.unlock' satisfies AuditAction;
/**
 * The throttle's account keys made of the user id: `u:` (second-factor codes, at sign-in and
 * before a factor change) and `p:` (the current password before a change); the sign-in password
 * is keyed by the email's blind index (`Identity.accountThrottleKey`).
 */
const USER_ID_THROTTLE_KEYS = ['u:', 'p:'] as const;
