import type { AuditAction } from '../../domain/audit-actions.js';
import { appendAuditEvent } from '../../store/audit-trail.js';
import type { Db } from '../../store/connection.js';
import type { AuthStage } from '../auth-metrics.js';
import { invalidChallenge } from './challenges.js';
import { deviceFingerprint, deviceLabelFrom } from './trusted-devices.js';
import { AuthError, invalidCredentials } from '../errors.js';
import type { Identity } from '../identity.js';
import { hashPassword, needsRehash, verifyAgainstDummy, verifyPassword } from '../passwords/passwords.js';
import type { Principal } from '../principal.js';
import type { SmsCodePurpose, SmsSendOutcome } from '../factors/sms/sms-factor.js';
import { RateLimitedError } from '../limits/throttle.js';
import { ACCESS_TOKEN_TTL_SECONDS } from '../tokens/access-tokens.js';
import type { UserRecord } from '../../store/repositories/users.js';

/**
 * The sign-in flows: password, second factor on a new device, first-time TOTP enrollment,
 * SMS codes and the phone they go to, refresh rotation and sign-out. Every outcome that
 * matters to security is an audit event; no event carries an email, a password, a code, a
 * phone number or a token.
 */

/** Where a request came from: for throttling, session records and the audit trail. */
export interface RequestOrigin {
  ip: string;
  userAgent: string | undefined;
}

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

export class SignIn {
  constructor(private readonly identity: Identity) {}

  private get parts() {
    return this.identity.parts;
  }

  /**
   * Email and password. Answers tokens when the device is trusted, else throws the
   * `second-factor-required` (or `-enrollment-required`) problem carrying a challenge token.
   */
  async login(input: { email: string; password: string; deviceToken?: string | undefined }, origin: RequestOrigin): Promise<SignedIn> {
    const { throttle, users, factors, devices, challenges, db, sms } = this.parts;
    await this.spendIpAllowance(origin, 'auth.login');
    const accountKey = this.identity.accountThrottleKey(input.email);
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.throttled('auth.login', 'account-locked', origin);
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }

    const user = await users.findByEmail(input.email);
    // Unknown, passwordless (pending, self-registered but unverified) and disabled accounts all
    // spend one argon2id verification, so the answer time does not tell them apart from a wrong
    // password. An unverified account has no password of its own: it is chosen at verification.
    const passwordOk = user?.passwordHash && user.status === 'active' ? await verifyPassword(user.passwordHash, input.password) : await verifyAgainstDummy(input.password);
    if (!user || !passwordOk) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.audit(db, { action: 'auth.login', outcome: 'failure', origin, userId: user?.id ?? null, details: { reason: user ? 'wrong-password-or-inactive' : 'unknown-account' } });
      if (failure.lockedNow) await this.audit(db, { action: 'auth.lockout', stage: 'password', outcome: 'success', origin, userId: user?.id ?? null, details: { lockSeconds: failure.retryAfterSeconds } });
      throw invalidCredentials();
    }
    await throttle.recordSuccess(accountKey, origin.ip);
    if (needsRehash(user.passwordHash!)) await users.setPassword(user.id, await hashPassword(input.password));

    const fingerprint = deviceFingerprint(origin.userAgent);
    const methods = await factors.methods(user.id);
    if (methods.length === 0) {
      const { challengeToken, expiresAt } = await challenges.issue(user.id, 'enrollment', fingerprint);
      await this.audit(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, details: { next: 'enrollment' } });
      throw new AuthError(401, 'second-factor-enrollment-required', 'Second factor enrollment required', 'set up an authenticator app with POST /api/v1/auth/totp/enroll and /auth/totp/confirm before any token is issued', {
        challengeToken,
        challengeExpiresAt: expiresAt.toISOString(),
        methods: ['totp'],
      });
    }
    const deviceId = input.deviceToken === undefined ? undefined : await devices.recognise(user.id, input.deviceToken);
    if (deviceId) {
      const signedIn = await this.startSession(user, origin, { deviceId });
      await this.audit(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, sessionId: signedIn.sessionId, details: { secondFactor: 'trusted-device' } });
      return signedIn;
    }
    const { challengeToken, expiresAt } = await challenges.issue(user.id, 'second-factor', fingerprint);
    await this.audit(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, details: { next: 'second-factor', deviceToken: input.deviceToken === undefined ? 'absent' : 'not-recognised' } });
    const offered: SecondFactorMethod[] = (await sms.offered(user.id)) ? [...methods, 'sms'] : methods;
    throw new AuthError(401, 'second-factor-required', 'Second factor required', 'this device is new: complete the sign-in with POST /api/v1/auth/second-factor', {
      challengeToken,
      challengeExpiresAt: expiresAt.toISOString(),
      methods: offered,
    });
  }

  /** Completes a sign-in with a TOTP, recovery or SMS code; the device becomes trusted. */
  async secondFactor(input: { challengeToken: string; method: SecondFactorMethod; code: string }, origin: RequestOrigin): Promise<SignedIn> {
    const { challenges, factors, throttle, db, devices, users, sms } = this.parts;
    await this.spendIpAllowance(origin, 'auth.second-factor');
    const challenge = await this.openChallenge(input.challengeToken, 'second-factor', origin, 'auth.second-factor');
    const accountKey = `u:${challenge.userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.throttled('auth.second-factor', 'account-locked', origin);
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    if (input.method === 'sms' && !(await sms.offered(challenge.userId))) throw smsNotAvailable();
    // Claimed before the code is checked: of two requests racing on one challenge, the loser
    // stops here without spending its code (a recovery code lost to a race is lost for good).
    if (!(await challenges.spend(challenge.id))) throw invalidChallenge();
    let passed: boolean;
    let reason: string;
    if (input.method === 'totp') {
      const result = await factors.verifyTotp(challenge.userId, input.code);
      passed = result.ok;
      reason = result.ok ? 'ok' : result.reason;
    } else if (input.method === 'sms') {
      const result = await sms.verifySignInCode(challenge, input.code);
      passed = result.ok;
      reason = result.ok ? 'ok' : result.reason;
    } else {
      passed = await factors.redeemRecoveryCode(challenge.userId, input.code);
      reason = passed ? 'ok' : 'wrong-or-used-code';
    }
    if (!passed) {
      await challenges.releaseAfterFailure(challenge.id);
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.audit(db, { action: 'auth.second-factor', outcome: 'failure', origin, userId: challenge.userId, details: { method: input.method, reason } });
      if (failure.lockedNow) await this.audit(db, { action: 'auth.lockout', stage: 'second-factor', outcome: 'success', origin, userId: challenge.userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new AuthError(401, 'invalid-second-factor', 'Invalid code', 'the code is wrong, expired or was already used');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
    const user = await users.get(challenge.userId);
    if (!user || user.status !== 'active') throw invalidChallenge();
    const signedIn = await db.transaction(async (tx) => {
      const device = await devices.trust(user.id, deviceLabelFrom(origin.userAgent), tx);
      const started = await this.startSession(user, origin, { deviceId: device.deviceId }, tx);
      await this.audit(tx, { action: 'auth.second-factor', outcome: 'success', origin, userId: user.id, sessionId: started.sessionId, details: { method: input.method, deviceTrusted: true } });
      return { ...started, deviceToken: device.deviceToken };
    });
    return signedIn;
  }

  /**
   * Texts a sign-in code for an open second-factor challenge to the user's verified phone.
   * Allowed only where `sms` was offered; resends are throttled per user (1 per 30 s, 5 per
   * hour) and each replaces the challenge's earlier code.
   */
  async sendSmsCode(input: { challengeToken: string }, origin: RequestOrigin): Promise<void> {
    const { throttle, sms } = this.parts;
    await this.spendIpAllowance(origin, SMS_SENT);
    const challenge = await this.openChallenge(input.challengeToken, 'second-factor', origin, SMS_SENT);
    const lock = await throttle.check(`u:${challenge.userId}`, origin.ip);
    if (lock.locked) {
      this.throttled(SMS_SENT, 'account-locked', origin);
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    if (!(await sms.offered(challenge.userId))) throw smsNotAvailable();
    await this.reportSmsSend(await sms.sendSignInCode(challenge), 'sign-in', challenge.userId, origin);
  }

  /**
   * Sends a code to a new phone of the signed-in user; the phone is offered at sign-in once
   * confirmed. Needs the current password, as replacing an authenticator does: a stolen access
   * token must not be enough to plant a second factor of the thief's.
   */
  async startPhoneVerification(principal: Principal, input: { phone: string; currentPassword: string | undefined }, origin: RequestOrigin): Promise<void> {
    const userId = userOf(principal);
    await this.confirmPassword(userId, input.currentPassword, origin, SMS_SENT);
    const outcome = await this.parts.sms.startPhoneVerification(userId, input.phone);
    if (!outcome.sent && outcome.reason === 'not-configured') {
      throw new AuthError(409, 'sms-not-configured', 'SMS not configured', 'this deployment sends no SMS codes (CIPHERGATE_SMS_SENDER_TENANT is unset or names a tenant without Twilio)');
    }
    await this.reportSmsSend(outcome, 'verify-phone', userId, origin);
  }

  /** Confirms the pending phone with the code sent to it. */
  async confirmPhone(principal: Principal, input: { code: string }, origin: RequestOrigin): Promise<void> {
    const userId = userOf(principal);
    const result = await this.parts.sms.confirmPhone(userId, input.code);
    if (!result.ok) {
      await this.audit(this.parts.db, { action: 'auth.phone_verified', outcome: 'failure', origin, userId, details: { reason: result.reason } });
      throw new AuthError(400, 'invalid-second-factor', 'Invalid code', result.reason === 'no-pending-phone' ? 'start with POST /api/v1/auth/phone' : 'the code is wrong, expired or was already used; ask for a new one');
    }
    // A verified phone is a factor enrolled: challenges earned before it end, as with TOTP.
    await this.parts.challenges.revokeAllOf(userId);
    await this.audit(this.parts.db, { action: 'auth.phone_verified', outcome: 'success', origin, userId });
  }

  /** Audits a send attempt and turns every refusal into its problem. */
  private async reportSmsSend(outcome: SmsSendOutcome, purpose: SmsCodePurpose, userId: string, origin: RequestOrigin): Promise<void> {
    const { db } = this.parts;
    if (outcome.sent) {
      await this.audit(db, { action: SMS_SENT, outcome: 'success', origin, userId, details: { purpose } });
      return;
    }
    switch (outcome.reason) {
      case 'throttled':
        this.throttled(SMS_SENT, 'throttled', origin);
        throw new AuthError(429, 'sms-throttled', 'Too many codes', 'a code was sent recently; wait before asking for another', { retryAfter: outcome.retryAfterSeconds }, { 'retry-after': String(outcome.retryAfterSeconds) });
      case 'rejected':
        await this.audit(db, { action: SMS_SENT, outcome: 'failure', origin, userId, details: { purpose, reason: 'rejected-by-provider' } });
        throw new AuthError(400, 'sms-rejected', 'Phone number refused', 'the SMS provider refused to send to this number; use a mobile number that can receive texts');
      case 'unavailable':
        await this.audit(db, { action: SMS_SENT, outcome: 'failure', origin, userId, details: { purpose, reason: 'provider-unavailable' } });
        throw new AuthError(503, 'sms-unavailable', 'SMS unavailable', 'the code could not be sent; try again later or use another method');
      case 'not-configured':
        throw smsNotAvailable();
    }
  }

  /**
   * Starts (or restarts) TOTP enrollment. Either the enrollment challenge of a first sign-in
   * (only while the user has no authenticator), or a signed-in user replacing their
   * authenticator, who proves the password and the current factor again.
   */
  async enrollTotp(
    input: { challengeToken?: string | undefined; principal?: Principal | undefined; currentPassword?: string | undefined; currentFactor?: CurrentFactorProof | undefined },
    origin: RequestOrigin,
  ): Promise<{ otpauthUri: string; secret: string }> {
    const { factors, users, db } = this.parts;
    await this.spendIpAllowance(origin, 'auth.totp.enroll');
    const { userId } = await this.enrollingUser(input, origin);
    if (input.principal) {
      // Step-up: replacing a factor while signed in needs the password and the factor being
      // replaced, so neither a stolen access token (ten minutes of someone's session) nor one
      // plus the password can swap the victim's authenticator for one of the thief's, destroy
      // the recovery codes and end the victim's other sessions with it.
      await this.confirmPassword(userId, input.currentPassword, origin, 'auth.totp.enroll');
      await this.confirmCurrentFactor(userId, input.currentFactor, origin, 'auth.totp.enroll');
    } else if (await factors.hasConfirmedTotp(userId)) {
      // Enrollment challenges die when a factor is enrolled (see confirmTotp); this refuses one
      // that was claimed in the same instant.
      await this.audit(db, { action: 'auth.totp.enroll', outcome: 'denied', origin, userId, details: { reason: 'factor-already-enrolled' } });
      throw invalidChallenge();
    }
    const user = await users.viewById(userId);
    if (!user) throw invalidChallenge();
    const enrollment = await factors.startTotpEnrollment(userId, user.email);
    await this.audit(db, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, details: { stage: 'started' } });
    return { otpauthUri: enrollment.otpauthUri, secret: enrollment.secretBase32 };
  }

  /**
   * Confirms the new authenticator with one code. From a first sign-in this completes it
   * (tokens, a trusted device and the recovery codes); for a signed-in user it replaces the
   * factor and ends every other session, as any factor change does. Either way every other
   * open challenge of the user ends with it: an enrollment challenge is good for a first
   * factor only, and one kept from before must not enroll a second factor over this one.
   */
  async confirmTotp(input: { challengeToken?: string | undefined; principal?: Principal | undefined; code: string }, origin: RequestOrigin): Promise<{ recoveryCodes: string[]; signedIn?: SignedIn }> {
    const { factors, db, users, challenges, devices, sessions } = this.parts;
    await this.spendIpAllowance(origin, 'auth.totp.confirm');
    // The challenge is opened here, not inside the transaction: on PGlite (one connection) a
    // query outside the transaction's handle waits for the transaction, which waits for it.
    const { userId, challengeId } = await this.enrollingUser(input, origin);
    const user = await users.get(userId);
    if (!user || user.status !== 'active') throw invalidChallenge();
    return db.transaction(async (tx) => {
      // Serialises the factor changes of this user: a stale enrollment racing the real one
      // waits here, then finds the factor the other confirmed.
      if (!(await users.lock(userId, tx))) throw invalidChallenge();
      if (!input.principal) {
        if (!challengeId || !(await challenges.spend(challengeId, tx))) throw invalidChallenge();
        if (await factors.hasConfirmedTotp(userId, tx)) throw new EnrollmentFailure('factor-already-enrolled');
      }
      const result = await factors.confirmTotp(userId, input.code, tx);
      if (!result.ok) {
        // Thrown after the transaction closes would lose the audit event; record it outside.
        // Throwing also rolls the challenge back to unspent: a wrong code may be retried.
        throw new EnrollmentFailure(result.reason);
      }
      await challenges.revokeAllOf(userId, tx);
      if (input.principal) {
        await devices.revokeAll(userId, tx);
        await sessions.revokeForUser(userId, 'factor-changed', { exceptSessionId: input.principal.sessionId ?? undefined }, tx);
        await this.audit(tx, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, details: { stage: 'confirmed', replacedFactor: true } });
        return { recoveryCodes: result.recoveryCodes };
      }
      const device = await devices.trust(userId, deviceLabelFrom(origin.userAgent), tx);
      const started = await this.startSession(user, origin, { deviceId: device.deviceId }, tx);
      await this.audit(tx, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, sessionId: started.sessionId, details: { stage: 'confirmed', replacedFactor: false } });
      return { recoveryCodes: result.recoveryCodes, signedIn: { ...started, deviceToken: device.deviceToken, recoveryCodes: result.recoveryCodes } };
    }).catch(async (error: unknown) => {
      if (!(error instanceof EnrollmentFailure)) throw error;
      if (error.reason === 'factor-already-enrolled') {
        await this.audit(db, { action: 'auth.totp.enroll', outcome: 'denied', origin, userId, details: { stage: 'confirm', reason: error.reason } });
        throw invalidChallenge();
      }
      await this.audit(db, { action: 'auth.totp.enroll', outcome: 'failure', origin, userId, details: { stage: 'confirm', reason: error.reason } });
      throw new AuthError(400, 'invalid-second-factor', 'Invalid code', error.reason === 'no-pending-enrollment' ? 'start with POST /api/v1/auth/totp/enroll' : 'the code does not match the new authenticator');
    });
  }

  /** Rotates a refresh token. A reused one ends the session and is audited as such. */
  async refresh(refreshToken: string, origin: RequestOrigin): Promise<TokenPair & { sessionId: string }> {
    const { sessions, users, db } = this.parts;
    const rotated = await sessions.rotateRefreshToken(refreshToken);
    if ('reused' in rotated) {
      await this.audit(db, { action: 'auth.refresh-reuse', outcome: 'denied', origin, userId: rotated.userId, sessionId: rotated.sessionId, details: { sessionRevoked: true } });
      throw new AuthError(401, 'refresh-token-reused', 'Refresh token reused', 'this refresh token was used before; the session has been ended, sign in again');
    }
    const user = await users.get(rotated.userId);
    if (!user || user.status !== 'active') {
      await sessions.revoke([rotated.sessionId], 'user-disabled');
      throw new AuthError(401, 'invalid-refresh-token', 'Invalid refresh token', 'the refresh token is unknown, expired, or its session has ended');
    }
    const access = await this.identity.accessTokenFor(user, rotated.sessionId);
    return { accessToken: access.token, refreshToken: rotated.refreshToken, tokenType: 'Bearer', expiresIn: ACCESS_TOKEN_TTL_SECONDS, sessionId: rotated.sessionId };
  }

  async logout(principal: Principal, origin: RequestOrigin): Promise<void> {
    if (principal.kind !== 'user') return;
    await this.parts.sessions.revoke([principal.sessionId], 'logout');
    await this.audit(this.parts.db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: principal.userId, sessionId: principal.sessionId, details: { reason: 'logout', count: 1 } });
  }

  async logoutAll(principal: Principal, origin: RequestOrigin): Promise<number> {
    if (principal.kind !== 'user') return 0;
    // "Sign out everywhere" also forgets every trusted device: the next sign-in anywhere needs
    // the second factor again, which is what a user who fears a stolen laptop expects.
    const revoked = await this.parts.sessions.revokeForUser(principal.userId, 'logout-all');
    const devices = await this.parts.devices.revokeAll(principal.userId);
    await this.audit(this.parts.db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: principal.userId, details: { reason: 'logout-all', count: revoked.length, devices } });
    return revoked.length;
  }

  /** A new session with its first token pair; `db` is the caller's transaction when there is one. */
  async startSession(user: UserRecord, origin: RequestOrigin, options: { deviceId?: string | undefined }, db: Db = this.parts.db): Promise<SignedIn> {
    const started = await this.parts.sessions.start({ userId: user.id, deviceId: options.deviceId ?? null, deviceLabel: deviceLabelFrom(origin.userAgent), ip: origin.ip }, db);
    if (started.endedSessionIds.length > 0) {
      await this.audit(db, { action: 'auth.session.revoke', outcome: 'success', origin, userId: user.id, details: { reason: 'session-limit', count: started.endedSessionIds.length } });
    }
    const access = await this.identity.accessTokenFor(user, started.sessionId);
    return { accessToken: access.token, refreshToken: started.refreshToken!, tokenType: 'Bearer', expiresIn: ACCESS_TOKEN_TTL_SECONDS, userId: user.id, sessionId: started.sessionId };
  }

  /** The user's current password, throttled like a sign-in; `invalid-credentials` (403) otherwise. */
  private async confirmPassword(userId: string, password: string | undefined, origin: RequestOrigin, action: AuditAction): Promise<void> {
    const { users, throttle, db } = this.parts;
    if (password === undefined) {
      throw new AuthError(400, 'validation-failed', 'Invalid request', 'body currentPassword: is required to replace a second factor while signed in');
    }
    const accountKey = `p:${userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.identity.metrics.recordFailure('password-confirmation', 'account-locked');
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    const user = await users.get(userId);
    const ok = user?.passwordHash ? await verifyPassword(user.passwordHash, password) : await verifyAgainstDummy(password);
    if (!ok) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.audit(db, { action, stage: 'password-confirmation', outcome: 'failure', origin, userId, details: { reason: 'wrong-current-password' } });
      if (failure.lockedNow) await this.audit(db, { action: 'auth.lockout', stage: 'password-confirmation', outcome: 'success', origin, userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new AuthError(403, 'invalid-credentials', 'Invalid credentials', 'the current password is wrong');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
  }

  /**
   * A code of the factor about to be replaced: a TOTP code of the current authenticator, or one
   * of the recovery codes (for someone whose authenticator is lost). Throttled and counted like
   * a second-factor sign-in; `403 invalid-second-factor` otherwise. Someone who has neither
   * asks an admin to reset their factors (`Accounts.resetFactors`).
   */
  private async confirmCurrentFactor(userId: string, proof: CurrentFactorProof | undefined, origin: RequestOrigin, action: AuditAction): Promise<void> {
    const { factors, throttle, db } = this.parts;
    if (proof === undefined) {
      throw new AuthError(400, 'validation-failed', 'Invalid request', 'body currentFactor: is required to replace a second factor while signed in ({method: "totp", code} from the current authenticator, or {method: "recovery", code})');
    }
    const accountKey = `u:${userId}`;
    const lock = await throttle.check(accountKey, origin.ip);
    if (lock.locked) {
      this.identity.metrics.recordFailure('factor-confirmation', 'account-locked');
      throw new RateLimitedError('account-locked', lock.retryAfterSeconds);
    }
    let reason: string;
    if (proof.method === 'totp') {
      const result = await factors.verifyTotp(userId, proof.code);
      reason = result.ok ? 'ok' : result.reason;
    } else {
      reason = (await factors.redeemRecoveryCode(userId, proof.code)) ? 'ok' : 'wrong-or-used-code';
    }
    if (reason !== 'ok') {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.audit(db, { action, stage: 'factor-confirmation', outcome: 'failure', origin, userId, details: { method: proof.method, reason } });
      if (failure.lockedNow) await this.audit(db, { action: 'auth.lockout', stage: 'factor-confirmation', outcome: 'success', origin, userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new AuthError(403, 'invalid-second-factor', 'Invalid code', 'the code of the current authenticator, or the recovery code, is wrong, expired or was already used');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
  }

  private async enrollingUser(input: { challengeToken?: string | undefined; principal?: Principal | undefined }, origin: RequestOrigin): Promise<{ userId: string; challengeId?: string }> {
    if (input.principal) {
      if (input.principal.kind !== 'user') throw new AuthError(403, 'forbidden', 'Forbidden', 'machines have no second factor');
      return { userId: input.principal.userId };
    }
    const challenge = await this.openChallenge(input.challengeToken, 'enrollment', origin, 'auth.totp.enroll');
    return { userId: challenge.userId, challengeId: challenge.id };
  }

  private async openChallenge(token: unknown, purpose: 'second-factor' | 'enrollment', origin: RequestOrigin, action: AuditAction) {
    try {
      return await this.parts.challenges.open(token, purpose, deviceFingerprint(origin.userAgent));
    } catch (error) {
      await this.audit(this.parts.db, { action, outcome: 'denied', origin, details: { reason: 'invalid-challenge' } });
      throw error;
    }
  }

  private async spendIpAllowance(origin: RequestOrigin, action: AuditAction): Promise<void> {
    const allowance = await this.parts.throttle.consumeIp(origin.ip);
    if (allowance.allowed) return;
    this.throttled(action, 'ip-limit', origin);
    throw new RateLimitedError('ip-limit', allowance.retryAfterSeconds);
  }

  /**
   * A step refused by a limit (a 429): counted in the metrics like any refused step, and audited
   * as one `auth.throttled` entry per step, reason and minute with its count, never one row per
   * refusal, so hammering a limit cannot fill the audit trail (issue #13 item 1). The lockout
   * that starts a lock is still its own `auth.lockout` entry.
   */
  private throttled(action: string, reason: 'ip-limit' | 'account-locked' | 'throttled', origin: RequestOrigin): void {
    this.identity.metrics.recordFailure(action, reason);
    this.identity.throttleAudit.count({ action: 'auth.throttled', outcome: 'denied', tenantId: null, labels: { attempt: action, reason } }, origin.ip);
  }

  /**
   * Every refused step of these flows passes through here (or, refused by a limit, through
   * `throttled`), so the metrics count exactly what the audit trail records; `stage` overrides the stage the action stands for (a password
   * confirmation is audited under the action it guards).
   */
  private async audit(
    db: Db,
    event: {
      action: AuditAction;
      stage?: AuthStage;
      outcome: 'success' | 'failure' | 'denied';
      origin: RequestOrigin;
      userId?: string | null;
      sessionId?: string;
      details?: Record<string, string | number | boolean | null>;
    },
  ): Promise<void> {
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

export type SecondFactorMethod = 'totp' | 'recovery' | 'sms';

/** What a signed-in user replacing their authenticator shows of the one being replaced. */
export interface CurrentFactorProof {
  method: 'totp' | 'recovery';
  code: string;
}

const SMS_SENT = 'auth.sms_code_sent' satisfies AuditAction;

function smsNotAvailable(): AuthError {
  return new AuthError(400, 'method-not-available', 'Method not available', 'SMS codes are not enabled for this account; use "totp" or "recovery"');
}

function userOf(principal: Principal): string {
  if (principal.kind !== 'user') throw new AuthError(403, 'forbidden', 'Forbidden', 'machines have no second factor');
  return principal.userId;
}

class EnrollmentFailure extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}
