import { randomUUID } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent, type AuditEventInput } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import { isDatabaseUnavailable } from '../../store/connection-errors.js';
import { tenants, userTokens } from '../../store/schema.js';
import { AuthError, forbidden } from '../errors.js';
import type { Identity } from '../identity.js';
import { renderVerificationEmail } from '../email/emails.js';
import { renderSetupEmail } from '../email/emails.js';
import { renderAlreadyRegisteredEmail } from '../email/emails.js';
import { SETUP_LINK_TTL_HOURS } from '../email/emails.js';
import { MachineAuth } from '../machines/machine-auth.js';
import { hashOpaqueToken, isOpaqueToken, issueOpaqueToken } from '../tokens/opaque-tokens.js';
import { checkPasswordPolicy, hashPassword, verifyAgainstDummy, verifyPassword } from '../passwords/passwords.js';
import { VISIBLE_ROLES, mayManageRole, type Role } from '../permissions.js';
import { auditActorOf, confinedTenant, type Principal } from '../principal.js';
import type { RequestOrigin } from '../sign-in/sign-in.js';
import { type UserRecord, type UserView } from '../../store/repositories/users.js';
import { isUuid } from '../../domain/ids.js';

/** Setup links are valid this long, single use; the email says the same. (Verification links: CIPHERGATE_SIGNUP_PENDING_HOURS.) */
export const USER_TOKEN_TTL_MS = SETUP_LINK_TTL_HOURS * 60 * 60 * 1000;

/** Signups answered but not yet registered, per process; more are dropped with a log line. */
const MAX_QUEUED_SIGNUPS = 1000;

/**
 * Accounts: users made by admins (pending until they set a password with their setup token),
 * optional self-registration with email verification, password changes, and the admin
 * operations on users. Role rules come from permissions.ts; every change is audited.
 */
export class Accounts {
  private readonly machines: MachineAuth;
  /** The after-answer signup work of this instance, run one at a time (see `afterAnswer`). */
  private signupQueue: Promise<void> = Promise.resolve();
  private signupsQueued = 0;

  constructor(private readonly identity: Identity) {
    this.machines = new MachineAuth(identity);
  }

  private get parts() {
    return this.identity.parts;
  }

  /**
   * A user created by an admin or manager: pending, no password, and a setup token returned
   * once (and emailed when SMTP is configured). `actor` is null for the CLI.
   */
  async createPendingUser(actor: Principal, input: { email: string; role: Role; tenantId: string | null }, origin: RequestOrigin): Promise<{ user: UserView; setupToken: string; setupExpiresAt: Date }> {
    await this.assertMayAssign(actor, input.role, { action: 'user.create', userId: null, origin });
    assertTenantRule(input.role, input.tenantId);
    const { db, users, mailer, settings, logger } = this.parts;
    await this.assertTenantExists(input.tenantId);
    const { token, hash } = issueOpaqueToken('setup');
    const expiresAt = new Date(Date.now() + USER_TOKEN_TTL_MS);
    const user = await db.transaction(async (tx) => {
      // An invite takes over a self-registration nobody has verified: it is no account yet.
      const replacedSignup = await users.removePendingSignup(input.email, tx);
      const created = await users.create({ email: input.email, role: input.role, tenantId: input.tenantId, status: 'pending' }, tx);
      await tx.insert(userTokens).values({ id: randomUUID(), userId: created.id, purpose: 'setup', tokenHash: hash, expiresAt, createdAt: new Date() });
      await appendAuditEvent(tx, {
        actor: auditActorOf(actor),
        action: 'user.create',
        target: { type: 'user', id: created.id },
        tenantId: input.tenantId,
        sourceIp: origin.ip,
        outcome: 'success',
        details: { role: input.role, via: 'api', ...(replacedSignup ? { replacedSignup } : {}) },
      });
      return created;
    });
    if (mailer) {
      const link = `${settings.publicUrl}/setup#token=${token}`;
      // The token is in the answer already; a failed email must not undo the user.
      await mailer.send({ to: input.email, ...renderSetupEmail(link) }).catch((error: unknown) => logger.warn({ err: error, userId: user.id }, 'setup email not sent'));
    }
    return { user: (await users.viewById(user.id))!, setupToken: token, setupExpiresAt: expiresAt };
  }

  /** The first admin (and any user) from the command line: active, with a password. */
  async createUserWithPassword(input: { email: string; role: Role; tenantId: string | null; password: string }): Promise<UserRecord> {
    assertTenantRule(input.role, input.tenantId);
    assertPasswordPolicy(input.password, input.email);
    const { db, users } = this.parts;
    await this.assertTenantExists(input.tenantId);
    const passwordHash = await hashPassword(input.password);
    return db.transaction(async (tx) => {
      const replacedSignup = await users.removePendingSignup(input.email, tx);
      const user = await users.create({ email: input.email, role: input.role, tenantId: input.tenantId, status: 'active', passwordHash }, tx);
      await appendAuditEvent(tx, {
        actor: { type: 'system' },
        action: 'user.create',
        target: { type: 'user', id: user.id },
        tenantId: input.tenantId,
        outcome: 'success',
        details: { role: input.role, via: 'cli', ...(replacedSignup ? { replacedSignup } : {}) },
      });
      return user;
    });
  }

  /** Redeems a setup token: the password is set and the user becomes active. */
  async setup(input: { setupToken: string; password: string }, origin: RequestOrigin): Promise<{ userId: string }> {
    const { db, users } = this.parts;
    const record = await this.openUserToken(input.setupToken, 'setup', origin);
    const user = await users.viewById(record.userId);
    if (!user || user.status !== 'pending') throw invalidUserToken();
    assertPasswordPolicy(input.password, user.email);
    const passwordHash = await hashPassword(input.password);
    await db.transaction(async (tx) => {
      if (!(await this.spendUserToken(record.id, tx))) throw invalidUserToken();
      await users.setPassword(user.id, passwordHash, tx);
      if (!(await users.activate(user.id, 'pending', tx))) throw invalidUserToken();
      await appendAuditEvent(tx, { actor: { type: 'user', id: user.id }, action: 'auth.password.set', target: { type: 'user', id: user.id }, sourceIp: origin.ip, outcome: 'success', details: { via: 'setup-token' } });
    });
    return { userId: user.id };
  }

  /**
   * Self-registration (only with CIPHERGATE_SIGNUP=open). The request carries only the address:
   * the password is chosen at verification (`verifyEmail`), by whoever holds the inbox, so a
   * signup made by someone else for a victim's address (pre-account hijacking) never holds a
   * password that would sign in once the victim follows the link.
   *
   * The answer leaves before the address is looked up, so neither its content nor its timing
   * can say whether the address has an account; what follows (a pending account and its
   * verification link, or a note to the existing owner) happens after it, see `registerSignup`.
   */
  async signup(input: { email: string }, origin: RequestOrigin): Promise<void> {
    if (this.parts.settings.signup !== 'open') throw new AuthError(404, 'not-found', 'Not Found', 'self-registration is not enabled');
    this.afterAnswer(() => this.registerSignup(input.email, origin));
  }

  /**
   * A fresh pending account with a verification link, replacing any earlier pending one for the
   * address (whose link dies with it): the newest request wins, and since every link goes to the
   * same inbox, only its holder ever has one. An address that belongs to an account (active,
   * disabled, or invited by an admin) is left exactly as it is; its owner gets a note instead.
   */
  private async registerSignup(email: string, origin: RequestOrigin): Promise<void> {
    const { settings, db, users } = this.parts;
    const existing = await users.findByEmail(email);
    if (existing && existing.status !== 'unverified') {
      await appendAuditEvent(db, { actor: { type: 'anonymous' }, action: 'auth.signup', target: { type: 'user', id: existing.id }, sourceIp: origin.ip, outcome: 'denied', details: { reason: 'email-taken' } });
      await this.sendEmail(email, renderAlreadyRegisteredEmail(`${settings.publicUrl}/`), existing.id);
      return;
    }
    const { token, hash } = issueOpaqueToken('verifyEmail');
    let userId: string;
    try {
      userId = await db.transaction(async (tx) => {
        const replacedPending = await users.removePendingSignup(email, tx);
        const user = await users.create({ email, role: 'user', tenantId: null, status: 'unverified' }, tx);
        await tx.insert(userTokens).values({ id: randomUUID(), userId: user.id, purpose: 'verify-email', tokenHash: hash, expiresAt: new Date(user.createdAt.getTime() + settings.signupPendingMs), createdAt: user.createdAt });
        await appendAuditEvent(tx, {
          actor: { type: 'anonymous' },
          action: 'auth.signup',
          target: { type: 'user', id: user.id },
          sourceIp: origin.ip,
          outcome: 'success',
          details: { role: 'user', ...(replacedPending ? { replacedPending } : {}) },
        });
        return user.id;
      });
    } catch (error) {
      // Lost a race with another signup or an invite of the same address: theirs stands.
      if (error instanceof AuthError && error.type === 'email-taken') return;
      throw error;
    }
    // The token travels in the fragment: it never reaches a server log, and a mail scanner
    // that prefetches links cannot spend it (verification is a POST from the page).
    const link = `${settings.publicUrl}/verify-email#token=${token}`;
    await this.sendEmail(email, renderVerificationEmail(link, settings.signupPendingMs / 3_600_000), userId);
  }

  /**
   * Runs work that depends on the address after the answer has left. A failure is logged by
   * kind only: an error from the store can quote its statement's parameters. Whoever signed up
   * gets no email then, and can sign up again.
   */
  private afterAnswer(work: () => Promise<void>): void {
    // One at a time: signups for one address that overlapped would each replace the other's
    // pending row, and all but one would lose the race without sending anything. Bounded, so
    // a burst cannot queue work without limit; the API's per-address limit keeps it far below.
    if (this.signupsQueued >= MAX_QUEUED_SIGNUPS) {
      this.parts.logger.error({ reason: 'busy' }, 'signup not completed');
      return;
    }
    this.signupsQueued += 1;
    this.signupQueue = this.signupQueue
      .then(work)
      .catch((error: unknown) => {
        this.parts.logger.error({ reason: isDatabaseUnavailable(error) ? 'database-unavailable' : 'failed', errorName: error instanceof Error ? error.name : typeof error }, 'signup not completed');
      })
      .finally(() => {
        this.signupsQueued -= 1;
      });
  }

  /** A failure is logged without the address; the person can sign up again. */
  private async sendEmail(to: string, email: { subject: string; text: string }, userId: string): Promise<void> {
    const { mailer, logger } = this.parts;
    if (!mailer) {
      logger.error({ userId }, 'no mailer configured; email not sent');
      return;
    }
    await mailer.send({ to, ...email }).catch((error: unknown) => logger.error({ err: error, userId }, 'email not sent'));
  }

  /**
   * Confirms a self-registered address and sets the account's first password: the one chosen
   * here, by whoever opened the link sent to the address. The user becomes active (role `user`,
   * no tenant) and signs in as usual, enrolling a second factor first. A password the policy
   * refuses answers `weak-password` and leaves the link unspent.
   */
  async verifyEmail(input: { token: string; password: string }, origin: RequestOrigin): Promise<void> {
    const { settings, db, users } = this.parts;
    if (settings.signup !== 'open') throw new AuthError(404, 'not-found', 'Not Found', 'self-registration is not enabled');
    const record = await this.openUserToken(input.token, 'verify-email', origin);
    const user = await users.viewById(record.userId);
    // Also refused once older than the pending time now configured, which may have been shortened since.
    if (!user || user.status !== 'unverified' || user.createdAt.getTime() + settings.signupPendingMs <= Date.now()) throw invalidUserToken();
    assertPasswordPolicy(input.password, user.email);
    const passwordHash = await hashPassword(input.password);
    await db.transaction(async (tx) => {
      if (!(await this.spendUserToken(record.id, tx))) throw invalidUserToken();
      await users.setPassword(user.id, passwordHash, tx);
      if (!(await users.activate(user.id, 'unverified', tx))) throw invalidUserToken();
      await appendAuditEvent(tx, { actor: { type: 'user', id: user.id }, action: 'auth.email.verify', target: { type: 'user', id: user.id }, sourceIp: origin.ip, outcome: 'success', details: { passwordSet: true } });
    });
  }

  /**
   * Removes the self-registrations nobody verified within CIPHERGATE_SIGNUP_PENDING_HOURS; `serve`
   * runs it hourly. Nothing depends on it for correctness (an expired signup's link is refused,
   * and a new signup or an invite for its address replaces it); it exists so that the sealed
   * address of a signup nobody finished, which is personal data, does not stay for ever. One
   * audit event per run that removed any, with the count.
   */
  async removeExpiredSignups(now: Date = new Date()): Promise<number> {
    const { db, users, settings } = this.parts;
    return db.transaction(async (tx) => {
      const removed = await users.removeExpiredSignups(new Date(now.getTime() - settings.signupPendingMs), tx);
      if (removed > 0) await appendAuditEvent(tx, { actor: { type: 'system' }, action: 'auth.signup.expire', outcome: 'success', details: { count: removed } });
      return removed;
    });
  }

  /**
   * Changes the caller's password after checking the current one. Every other session ends,
   * and every trusted device, the caller's included: whoever knew the old password may also
   * hold a device token, so the next sign-in anywhere asks for the second factor again.
   */
  async changePassword(principal: Principal, input: { currentPassword: string; newPassword: string }, origin: RequestOrigin): Promise<{ revokedSessions: number }> {
    if (principal.kind !== 'user') throw forbidden('machines have no password');
    const { users, db, sessions, devices, throttle } = this.parts;
    const user = await users.viewById(principal.userId);
    const record = await users.get(principal.userId);
    const accountKey = `p:${principal.userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.identity.metrics.recordFailure('password-change', 'account-locked');
      throw new AuthError(429, 'account-locked', 'Too many attempts', 'too many failed attempts; try again later', {}, { 'retry-after': String(lock.retryAfterSeconds) });
    }
    const ok = record?.passwordHash ? await verifyPassword(record.passwordHash, input.currentPassword) : await verifyAgainstDummy(input.currentPassword);
    if (!user || !ok) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      this.identity.metrics.recordFailure('password-change', 'wrong-current-password');
      if (failure.lockedNow) this.identity.metrics.recordLockout('password-change');
      await appendAuditEvent(db, { actor: auditActorOf(principal), action: 'auth.password.change', target: { type: 'user', id: principal.userId }, sourceIp: origin.ip, outcome: 'failure', details: { reason: 'wrong-current-password' } });
      throw new AuthError(403, 'invalid-credentials', 'Invalid credentials', 'the current password is wrong');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
    assertPasswordPolicy(input.newPassword, user.email);
    const passwordHash = await hashPassword(input.newPassword);
    const revoked = await db.transaction(async (tx) => {
      await users.setPassword(user.id, passwordHash, tx);
      await devices.revokeAll(user.id, tx);
      const ids = await sessions.revokeForUser(user.id, 'password-changed', { exceptSessionId: principal.sessionId }, tx);
      await appendAuditEvent(tx, { actor: auditActorOf(principal), action: 'auth.password.change', target: { type: 'user', id: user.id }, sourceIp: origin.ip, outcome: 'success', details: { revokedSessions: ids.length } });
      return ids.length;
    });
    return { revokedSessions: revoked };
  }

  /**
   * Lists the users `actor` may see (permissions.ts, VISIBLE_ROLES: a manager's list has no
   * admins); a principal that cannot see every tenant is refused by the route's permission already.
   */
  async listUsers(actor: Principal, filter: { tenantId?: string }): Promise<UserView[]> {
    return this.parts.users.list({ ...filter, roles: visibleRolesOf(actor) });
  }

  /**
   * One user, if `actor` may see it: a role VISIBLE_ROLES gives the actor's, within the actor's
   * tenant when it is confined to one. A user it may not see reads as absent (404), like one
   * that does not exist, so the answer does not confirm that an admin's id is real.
   */
  async viewUser(actor: Principal, userId: string): Promise<UserView> {
    const user = await this.parts.users.viewById(userId);
    const confined = confinedTenant(actor);
    const visible = user !== undefined && visibleRolesOf(actor).includes(user.role) && (confined === null || user.tenantId === confined);
    if (!visible) throw new AuthError(404, 'not-found', 'Not Found', 'no such user');
    return user;
  }

  /**
   * Changes a user's role, tenant or status. Nobody changes their own role or disables
   * themselves; a manager touches only roles it may assign. Disabling ends every session,
   * trusted device and API key of the user at once; a role change ends the sessions and the
   * keys the new role could not make (docs/identity.md, "Who owns a key").
   */
  async updateUser(actor: Principal, userId: string, patch: { role?: Role; tenantId?: string | null; status?: 'active' | 'disabled' }, origin: RequestOrigin): Promise<UserView> {
    const { users, db } = this.parts;
    const target = await this.manageableTarget(actor, userId, { denied: { action: 'user.update', origin } });
    if (actor.kind === 'user' && actor.userId === userId && (patch.role !== undefined || patch.status !== undefined || patch.tenantId !== undefined)) {
      await this.auditDenied(actor, 'user.update', userId, origin, 'self-change');
      throw forbidden('nobody changes their own role, tenant or status');
    }
    const role = patch.role ?? target.role;
    if (patch.role !== undefined) await this.assertMayAssign(actor, patch.role, { action: 'user.update', userId, origin });
    const tenantId = patch.tenantId !== undefined ? patch.tenantId : target.tenantId;
    assertTenantRule(role, tenantId);
    if (patch.tenantId !== undefined) await this.assertTenantExists(tenantId);
    if (patch.status === 'active' && target.status !== 'disabled' && target.status !== 'active') {
      throw new AuthError(409, 'invalid-state', 'Invalid state', 'only a disabled user can be re-enabled; pending users activate through their setup token');
    }
    await db.transaction(async (tx) => {
      // The update takes the user's row lock first, so a key this user is making right now
      // either commits before it (and is judged below) or sees the new role (see createKey).
      await users.update(userId, { role, tenantId, ...(patch.status ? { status: patch.status } : {}) }, tx);
      const roleChanged = role !== target.role || tenantId !== target.tenantId;
      const disabled = patch.status === 'disabled' && target.status !== 'disabled';
      // A role or tenant change ends the sessions too: their access tokens carry the old role.
      if (disabled || roleChanged) await this.endEverything(userId, disabled ? 'user-disabled' : 'revoked-by-admin', tx);
      if (roleChanged) await appendAuditEvent(tx, { actor: auditActorOf(actor), action: 'user.role.change', target: { type: 'user', id: userId }, tenantId, sourceIp: origin.ip, outcome: 'success', details: { from: target.role, to: role } });
      if (patch.status && patch.status !== target.status) {
        await appendAuditEvent(tx, { actor: auditActorOf(actor), action: patch.status === 'disabled' ? 'user.disable' : 'user.enable', target: { type: 'user', id: userId }, tenantId, sourceIp: origin.ip, outcome: 'success', details: {} });
      }
      // Keys die with the permission that allowed them: every key once disabled, after a
      // demotion those the new role could not make. A promotion keeps them all.
      if (disabled) await this.machines.revokeKeysOfCreator(actor, userId, { reason: 'creator-disabled' }, tx, origin);
      else if (roleChanged) await this.machines.revokeKeysOfCreator(actor, userId, { reason: 'creator-role-changed', role }, tx, origin);
    });
    return (await users.viewById(userId))!;
  }

  /** Deletes a user after ending all of its sessions, devices and API keys. */
  async deleteUser(actor: Principal, userId: string, origin: RequestOrigin): Promise<void> {
    const { users, db } = this.parts;
    const target = await this.manageableTarget(actor, userId, { denied: { action: 'user.delete', origin } });
    if (actor.kind === 'user' && actor.userId === userId) {
      await this.auditDenied(actor, 'user.delete', userId, origin, 'self-delete');
      throw forbidden('nobody deletes their own account here; ask another admin');
    }
    await db.transaction(async (tx) => {
      // Locked first, so no key of this user commits after its keys were revoked (see createKey).
      await users.getForUpdate(userId, tx);
      await this.endEverything(userId, 'user-deleted', tx);
      await users.delete(userId, tx);
      await appendAuditEvent(tx, { actor: auditActorOf(actor), action: 'user.delete', target: { type: 'user', id: userId }, tenantId: target.tenantId, sourceIp: origin.ip, outcome: 'success', details: { role: target.role } });
      await this.machines.revokeKeysOfCreator(actor, userId, { reason: 'creator-deleted' }, tx, origin);
    });
  }

  /**
   * Removes every second factor of a user who lost them (authenticator, recovery codes, phone),
   * for an admin, or a manager for the roles it manages. Every session, trusted device and open
   * login challenge of the user ends with them; at the next sign-in the password earns an
   * enrollment challenge, as for a new user. Nobody resets their own factors here: a signed-in
   * user replaces theirs with the current one (`POST /auth/totp/enroll`), and a stolen session
   * must not be able to strip them.
   */
  async resetFactors(actor: Principal, userId: string, origin: RequestOrigin): Promise<FactorReset> {
    const target = await this.manageableTarget(actor, userId, { denied: { action: FACTORS_RESET, origin } });
    if (actor.kind === 'user' && actor.userId === userId) {
      await this.auditDenied(actor, FACTORS_RESET, userId, origin, 'self-reset');
      throw forbidden('nobody resets their own second factors; replace yours with POST /api/v1/auth/totp/enroll, or ask another admin');
    }
    return this.removeFactors(userId, { actor: auditActorOf(actor), tenantId: target.tenantId, sourceIp: origin.ip, via: 'api' });
  }

  /** The same from the command line: the operator may reset anyone's factors, admins' included. */
  async resetFactorsAsOperator(userId: string): Promise<FactorReset> {
    const target = await this.parts.users.get(userId);
    if (!target) throw new AuthError(404, 'not-found', 'Not Found', 'no such user');
    return this.removeFactors(userId, { actor: { type: 'system', id: 'cli' }, tenantId: target.tenantId, sourceIp: null, via: 'cli' });
  }

  private async removeFactors(userId: string, by: { actor: AuditEventInput['actor']; tenantId: string | null; sourceIp: string | null; via: 'api' | 'cli' }): Promise<FactorReset> {
    const { db, users, factors, sms, challenges, sessions, devices } = this.parts;
    return db.transaction(async (tx) => {
      // The same lock as an enrollment (SignIn.confirmTotp): one running at this moment either
      // finishes first and is removed here, or waits and then finds no factor to stand on.
      if (!(await users.lock(userId, tx))) throw new AuthError(404, 'not-found', 'Not Found', 'no such user');
      const removed = await factors.removeAll(userId, tx);
      const phone = await sms.removePhone(userId, tx);
      await challenges.revokeAllOf(userId, tx);
      const ended = await sessions.revokeForUser(userId, 'factor-changed', {}, tx);
      const devicesEnded = await devices.revokeAll(userId, tx);
      const reset: FactorReset = { authenticators: removed.authenticators, recoveryCodes: removed.recoveryCodes, phone, sessions: ended.length, devices: devicesEnded };
      await appendAuditEvent(tx, { actor: by.actor, action: FACTORS_RESET, target: { type: 'user', id: userId }, tenantId: by.tenantId, sourceIp: by.sourceIp, outcome: 'success', details: { via: by.via, ...reset } });
      return reset;
    });
  }

  /** A user's sessions for an admin (or for themselves). */
  async sessionsOf(actor: Principal, userId: string) {
    await this.manageableTarget(actor, userId, { allowSelf: true });
    return this.parts.sessions.listForUser(userId);
  }

  /** Revokes one session. Users revoke their own; `sessions:manage` holders revoke those of users they manage. */
  async revokeSession(actor: Principal, sessionId: string, origin: RequestOrigin, options: { asAdmin: boolean }): Promise<void> {
    const { sessions, db } = this.parts;
    const owner = isUuid(sessionId) ? await sessions.owner(sessionId) : undefined;
    const notFound = new AuthError(404, 'not-found', 'Not Found', 'no such session');
    if (!owner || owner.userId === null) throw notFound;
    const own = actor.kind === 'user' && actor.userId === owner.userId;
    if (!own) {
      if (!options.asAdmin) throw notFound;
      await this.manageableTarget(actor, owner.userId, { denied: { action: 'auth.session.revoke', origin } });
    }
    const revoked = await sessions.revoke([sessionId], own ? 'revoked-by-user' : 'revoked-by-admin');
    if (revoked.length === 0) throw notFound;
    await appendAuditEvent(db, { actor: auditActorOf(actor), action: 'auth.session.revoke', target: { type: 'session', id: sessionId }, sourceIp: origin.ip, outcome: 'success', details: { reason: own ? 'revoked-by-user' : 'revoked-by-admin', count: 1 } });
  }

  /** A tenant id from a request names an existing tenant, or the answer is 400 (never a foreign-key 500). */
  private async assertTenantExists(tenantId: string | null): Promise<void> {
    if (tenantId === null) return;
    const [row] = await this.parts.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    if (!row) throw new AuthError(400, 'validation-failed', 'Validation failed', 'tenantId: no such tenant');
  }

  /** Sessions and trusted devices; the user's API keys are `MachineAuth.revokeKeysOfCreator`'s. */
  private async endEverything(userId: string, reason: 'user-disabled' | 'user-deleted' | 'revoked-by-admin', tx: Db): Promise<void> {
    const { sessions, devices } = this.parts;
    await sessions.revokeForUser(userId, reason, {}, tx);
    await devices.revokeAll(userId, tx);
  }

  /**
   * The target user if the actor may manage it. A user who does not exist, and one the actor
   * may not manage, both read as 404 to a manager, so managers cannot probe for admins.
   * With `denied`, a refusal of an existing user is audited (the 404 hides it from the caller only).
   */
  private async manageableTarget(actor: Principal, userId: string, options: { allowSelf?: boolean; denied?: { action: AuditAction; origin: RequestOrigin } } = {}): Promise<UserRecord> {
    const target = await this.parts.users.get(userId);
    const notFound = new AuthError(404, 'not-found', 'Not Found', 'no such user');
    if (!target) throw notFound;
    if (options.allowSelf && actor.kind === 'user' && actor.userId === userId) return target;
    if (actor.kind !== 'user') throw forbidden('machines do not manage users');
    if (actor.userId === userId) return target;
    if (!mayManageRole(actor.role, target.role)) {
      if (options.denied) await this.auditDenied(actor, options.denied.action, userId, options.denied.origin, 'not-manageable');
      throw actor.role === 'admin' ? forbidden('not allowed') : notFound;
    }
    return target;
  }

  /** Refuses (and audits) giving a role the actor may not give: a manager making an admin is an attempt to climb. */
  private async assertMayAssign(actor: Principal, role: Role, attempt: { action: AuditAction; userId: string | null; origin: RequestOrigin }): Promise<void> {
    if (actor.kind !== 'user' || !mayManageRole(actor.role, role)) {
      await this.auditDenied(actor, attempt.action, attempt.userId, attempt.origin, 'role-not-assignable', { role });
      throw forbidden(`a ${actor.kind === 'user' ? actor.role : 'machine'} may not give the role "${role}"`);
    }
  }

  private async auditDenied(actor: Principal, action: AuditAction, userId: string | null, origin: RequestOrigin, reason: string, details: Record<string, string> = {}): Promise<void> {
    await appendAuditEvent(this.parts.db, { actor: auditActorOf(actor), action, target: userId ? { type: 'user', id: userId } : null, sourceIp: origin.ip, outcome: 'denied', details: { ...details, reason } });
  }

  private async openUserToken(token: unknown, purpose: 'setup' | 'verify-email', origin: RequestOrigin): Promise<{ id: string; userId: string }> {
    const kind = purpose === 'setup' ? 'setup' : 'verifyEmail';
    const deny = async () => {
      await appendAuditEvent(this.parts.db, { actor: { type: 'anonymous' }, action: purpose === 'setup' ? 'auth.password.set' : 'auth.email.verify', sourceIp: origin.ip, outcome: 'denied', details: { reason: 'invalid-token' } });
      return invalidUserToken();
    };
    if (!isOpaqueToken(kind, token)) throw await deny();
    const [row] = await this.parts.db
      .select()
      .from(userTokens)
      .where(and(eq(userTokens.tokenHash, hashOpaqueToken(token)), eq(userTokens.purpose, purpose), isNull(userTokens.usedAt)))
      .limit(1);
    if (!row || row.expiresAt.getTime() <= Date.now()) throw await deny();
    return { id: row.id, userId: row.userId };
  }

  private async spendUserToken(id: string, tx: Db): Promise<boolean> {
    const rows = await tx.update(userTokens).set({ usedAt: new Date() }).where(and(eq(userTokens.id, id), isNull(userTokens.usedAt))).returning({ id: userTokens.id });
    return rows.length === 1;
  }
}

/** What an admin reset removed and ended; counts only (also the audit details of `user.factors.reset`). */
export interface FactorReset {
  /** Confirmed authenticators removed (0 or 1). */
  authenticators: number;
  /** Unused recovery codes removed. */
  recoveryCodes: number;
  /** Whether a verified phone was removed. */
  phone: boolean;
  sessions: number;
  devices: number;
}

const FACTORS_RESET = 'user.factors.reset' satisfies AuditAction;

/** Machines see no users (their scopes never include `users:read`); a person sees the roles VISIBLE_ROLES gives theirs. */
function visibleRolesOf(actor: Principal): readonly Role[] {
  return actor.kind === 'user' ? VISIBLE_ROLES[actor.role] : [];
}

function invalidUserToken(): AuthError {
  return new AuthError(400, 'invalid-token', 'Invalid token', 'the token is unknown, expired or already used');
}

/** Client users belong to exactly one tenant; nobody else is bound to one. */
function assertTenantRule(role: Role, tenantId: string | null): void {
  if (role === 'client' && !tenantId) throw new AuthError(400, 'validation-failed', 'Validation failed', 'a client user needs a tenant');
  if (role !== 'client' && tenantId) throw new AuthError(400, 'validation-failed', 'Validation failed', 'only client users belong to a tenant');
}

function assertPasswordPolicy(password: string, email: string): void {
  const result = checkPasswordPolicy(password, { email });
  if (!result.ok) throw new AuthError(400, 'weak-password', 'Password rejected', result.message, { rule: result.rule });
}
