import { appendAuditEvent } from '../../store/audit-trail.js';
import { IdentityError, RateLimitedError, forbidden } from '../errors.js';
import type { Identity } from '../identity.js';
import { assertPasswordPolicy, hashPassword, verifyAgainstDummy, verifyPassword } from '../passwords/passwords.js';
import { auditActorOf, type Principal } from '../principal.js';
import type { RequestOrigin } from '../request-origin.js';

/** A signed-in user changing their own password. */
export class PasswordChange {
  constructor(private readonly identity: Identity) {}

  /**
   * Changes the caller's password after checking the current one, throttled like a sign-in.
   * Every other session ends, and every trusted device, the caller's included: whoever knew the
   * old password may also hold a device token, so the next sign-in anywhere asks for the second
   * factor again.
   */
  async change(principal: Principal, input: { currentPassword: string; newPassword: string }, origin: RequestOrigin): Promise<{ revokedSessions: number }> {
    if (principal.kind !== 'user') throw forbidden('machines have no password');
    const { users, db, sessions, devices, throttle } = this.identity.parts;
    const { metrics } = this.identity;
    const user = await users.viewById(principal.userId);
    const record = await users.get(principal.userId);
    const accountKey = `p:${principal.userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      metrics.recordFailure('password-change', 'account-locked');
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    const ok = record?.passwordHash ? await verifyPassword(record.passwordHash, input.currentPassword) : await verifyAgainstDummy(input.currentPassword);
    if (!user || !ok) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      metrics.recordFailure('password-change', 'wrong-current-password');
      if (failure.lockedNow) metrics.recordLockout('password-change');
      await appendAuditEvent(db, { actor: auditActorOf(principal), action: 'auth.password.change', target: { type: 'user', id: principal.userId }, sourceIp: origin.ip, outcome: 'failure', details: { reason: 'wrong-current-password' } });
      throw new IdentityError('wrong-current-password', 'the current password is wrong');
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
}
