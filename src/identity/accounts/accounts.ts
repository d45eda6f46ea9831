import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import { isDatabaseUnavailable } from '../../store/connection-errors.js';
import { tenantExists } from '../../store/repositories/tenants.js';
import { EmailTakenError, type NewUser, type UserRecord, type UserView } from '../../store/repositories/users.js';
import { renderAlreadyRegisteredEmail, renderSetupEmail, renderVerificationEmail, SETUP_LINK_TTL_HOURS } from '../email/emails.js';
import { IdentityError, forbidden, invalidInput, notFound } from '../errors.js';
import type { Identity } from '../identity.js';
import { MachineAuth } from '../machines/machine-auth.js';
import { assertPasswordPolicy, hashPassword } from '../passwords/passwords.js';
import type { Role } from '../permissions.js';
import { auditActorOf, confinedTenant, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';
import { RoleRules, assertTenantRule, visibleRolesOf } from './role-rules.js';
import { UserTokens, invalidUserToken } from './user-tokens.js';

export type { UserRecord, UserView };

/** Setup links are valid this long, single use; the email says the same. (Verification links: CIPHERGATE_SIGNUP_PENDING_HOURS.) */
export const USER_TOKEN_TTL_MS = SETUP_LINK_TTL_HOURS * 60 * 60 * 1000;

/** Signups answered but not yet registered, per process; more are dropped with a log line. */
const MAX_QUEUED_SIGNUPS = 1000;

/**
 * Accounts: users made by admins (pending until they set a password with their setup token),
 * optional self-registration with email verification, and the admin operations on users. Role
 * rules come from permissions.ts (applied by role-rules.ts); every change is audited.
 */
export class Accounts {
  private readonly machines: MachineAuth;
  private readonly rules: RoleRules;
  private readonly tokens: UserTokens;
  /** The after-answer signup work of this instance, run one at a time (see `afterAnswer`). */
  private signupQueue: Promise<void> = Promise.resolve();
  private signupsQueued = 0;

  constructor(private readonly identity: Identity) {
    this.machines = new MachineAuth(identity);
    this.rules = new RoleRules(identity);
    this.tokens = new UserTokens(identity);
  }

  private get parts() {
    return this.identity.parts;
  }

  /**
   * A user created by an admin or manager: pending, no password, and a setup token returned
   * once (and emailed when SMTP is configured). `actor` is null for the CLI.
   */
  async createPendingUser(actor: Principal, input: { email: string; role: Role; tenantId: string | null }, origin: RequestOrigin): Promise<{ user: UserView; setupToken: string; setupExpiresAt: Date }> {
    await this.rules.assertMayAssign(actor, input.role, { action: 'user.create', userId: null, origin });
    assertTenantRule(input.role, input.tenantId);
    const { db, users, mailer, settings, logger } = this.parts;
    await this.assertTenantExists(input.tenantId);
    const expiresAt = new Date(Date.now() + USER_TOKEN_TTL_MS);
    const { user, token } = await db.transaction(async (tx) => {
      // An invite takes over a self-registration nobody has verified: it is no account yet.
      const replacedSignup = await users.removePendingSignup(input.email, tx);
      const created = await this.createUser({ email: input.email, role: input.role, tenantId: input.tenantId, status: 'pending' }, tx);
      const setupToken = await this.tokens.issue(created.id, 'setup', expiresAt, tx);
      await appendAuditEvent(tx, {
        actor: auditActorOf(actor),
        action: 'user.create',
        target: { type: 'user', id: created.id },
        tenantId: input.tenantId,
        sourceIp: origin.ip,
        outcome: 'success',
        details: { role: input.role, via: 'api', ...(replacedSignup ? { replacedSignup } : {}) },
      });
      return { user: created, token: setupToken };
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
      const user = await this.createUser({ email: input.email, role: input.role, tenantId: input.tenantId, status: 'active', passwordHash }, tx);
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
    const record = await this.tokens.open(input.setupToken, 'setup', origin);
    const user = await users.viewById(record.userId);
    if (!user || user.status !== 'pending') throw invalidUserToken();
    assertPasswordPolicy(input.password, user.email);
    const passwordHash = await hashPassword(input.password);
    await db.transaction(async (tx) => {
      if (!(await this.tokens.spend(record.id, tx))) throw invalidUserToken();
      await users.setPassword(user.id, passwordHash, tx);
      if (!(await users.activate(user.id, 'pending', tx))) throw invalidUserToken();
      await appendAuditEvent(tx, { actor: { type: 'user', id: user.id }, action: 'auth.password.set', target: { type: 'user', id: user.id }, sourceIp: origin.ip, outcome: 'success', details: { via: 'setup-token' } });
    });
    return { userId: user.id };
  }

  /** Whether self-registration is enabled (CIPHERGATE_SIGNUP=open). */
  signupOpen(): boolean {
    return this.parts.settings.signup === 'open';
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
    if (!this.signupOpen()) throw signupNotEnabled();
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
    let registered: { userId: string; token: string };
    try {
      registered = await db.transaction(async (tx) => {
        const replacedPending = await users.removePendingSignup(email, tx);
        const user = await this.createUser({ email, role: 'user', tenantId: null, status: 'unverified' }, tx);
        const token = await this.tokens.issue(user.id, 'verify-email', new Date(user.createdAt.getTime() + settings.signupPendingMs), tx, user.createdAt);
        await appendAuditEvent(tx, {
          actor: { type: 'anonymous' },
          action: 'auth.signup',
          target: { type: 'user', id: user.id },
          sourceIp: origin.ip,
          outcome: 'success',
          details: { role: 'user', ...(replacedPending ? { replacedPending } : {}) },
        });
        return { userId: user.id, token };
      });
    } catch (error) {
      // Lost a race with another signup or an invite of the same address: theirs stands.
      if (error instanceof IdentityError && error.code === 'email-taken') return;
      throw error;
    }
    // The token travels in the fragment: it never reaches a server log, and a mail scanner
    // that prefetches links cannot spend it (verification is a POST from the page).
    const link = `${settings.publicUrl}/verify-email#token=${registered.token}`;
    await this.sendEmail(email, renderVerificationEmail(link, settings.signupPendingMs / 3_600_000), registered.userId);
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
    if (!this.signupOpen()) throw signupNotEnabled();
    const record = await this.tokens.open(input.token, 'verify-email', origin);
    const user = await users.viewById(record.userId);
    // Also refused once older than the pending time now configured, which may have been shortened since.
    if (!user || user.status !== 'unverified' || user.createdAt.getTime() + settings.signupPendingMs <= Date.now()) throw invalidUserToken();
    assertPasswordPolicy(input.password, user.email);
    const passwordHash = await hashPassword(input.password);
    await db.transaction(async (tx) => {
      if (!(await this.tokens.spend(record.id, tx))) throw invalidUserToken();
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
   * Lists the users `actor` may see (permissions.ts, VISIBLE_ROLES: a manager's list has no
   * admins); a principal that cannot see every tenant is refused by the route's permission already.
   */
  async listUsers(actor: Principal, filter: { tenantId?: string }): Promise<UserView[]> {
    return this.parts.users.list({ ...filter, roles: visibleRolesOf(actor) });
  }

  /** Every user, for the operator (`ciphergate users list`); `tenantId` narrows to one tenant. */
  async listUsersAsOperator(filter: { tenantId?: string }): Promise<UserView[]> {
    return this.parts.users.list(filter);
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
    if (!visible) throw notFound('no such user');
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
    const target = await this.rules.manageableTarget(actor, userId, { denied: { action: 'user.update', origin } });
    if (actor.kind === 'user' && actor.userId === userId && (patch.role !== undefined || patch.status !== undefined || patch.tenantId !== undefined)) {
      await this.rules.auditDenied(actor, 'user.update', userId, origin, 'self-change');
      throw forbidden('nobody changes their own role, tenant or status');
    }
    const role = patch.role ?? target.role;
    if (patch.role !== undefined) await this.rules.assertMayAssign(actor, patch.role, { action: 'user.update', userId, origin });
    const tenantId = patch.tenantId !== undefined ? patch.tenantId : target.tenantId;
    assertTenantRule(role, tenantId);
    if (patch.tenantId !== undefined) await this.assertTenantExists(tenantId);
    if (patch.status === 'active' && target.status !== 'disabled' && target.status !== 'active') {
      throw new IdentityError('invalid-state', 'only a disabled user can be re-enabled; pending users activate through their setup token');
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
    const target = await this.rules.manageableTarget(actor, userId, { denied: { action: 'user.delete', origin } });
    if (actor.kind === 'user' && actor.userId === userId) {
      await this.rules.auditDenied(actor, 'user.delete', userId, origin, 'self-delete');
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

  /** Inserts a user in the caller's transaction; an address registered already is `email-taken` (409). */
  private async createUser(input: NewUser, tx: Db): Promise<UserRecord> {
    try {
      return await this.parts.users.create(input, tx);
    } catch (error) {
      if (error instanceof EmailTakenError) throw new IdentityError('email-taken', 'a user with this email exists already');
      throw error;
    }
  }

  /** A tenant id from a request names an existing tenant, or the answer is 400 (never a foreign-key 500). */
  private async assertTenantExists(tenantId: string | null): Promise<void> {
    if (tenantId !== null && !(await tenantExists(this.parts.db, tenantId))) throw invalidInput('tenantId: no such tenant');
  }

  /** Sessions and trusted devices; the user's API keys are `MachineAuth.revokeKeysOfCreator`'s. */
  private async endEverything(userId: string, reason: 'user-disabled' | 'user-deleted' | 'revoked-by-admin', tx: Db): Promise<void> {
    const { sessions, devices } = this.parts;
    await sessions.revokeForUser(userId, reason, {}, tx);
    await devices.revokeAll(userId, tx);
  }
}

function signupNotEnabled(): IdentityError {
  return notFound('self-registration is not enabled');
}
