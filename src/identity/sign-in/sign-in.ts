import type { SecondFactorMethod } from '../factors/second-factor.js';
import { IdentityError, invalidCredentials } from '../errors.js';
import type { Identity } from '../identity.js';
import { hashPassword, needsRehash, verifyAgainstDummy, verifyPassword } from '../passwords/passwords.js';
import type { RequestOrigin } from '../request-origin.js';
import { AuthSteps, type SignedIn } from './auth-steps.js';
import { invalidChallenge } from './challenges.js';
import { deviceFingerprint, deviceLabelFrom } from './trusted-devices.js';

/**
 * Signing in: the password, then a second factor on a device that is not trusted yet. A
 * correct password answers one of three outcomes, none of them an error: signed in (a trusted
 * device), a second factor required, or a first factor to enroll. The second step asks the
 * factor registry which factor checks the code; it never branches on the method.
 */
export type LoginOutcome =
  | { kind: 'signed-in'; signedIn: SignedIn }
  /** The device is new: complete the sign-in with one of `methods` and the challenge token. */
  | { kind: 'second-factor-required'; challengeToken: string; challengeExpiresAt: Date; methods: SecondFactorMethod[] }
  /** The user has no factor that stands alone: enroll one (`methods`) with the challenge token first. */
  | { kind: 'enrollment-required'; challengeToken: string; challengeExpiresAt: Date; methods: SecondFactorMethod[] };

export class SignIn {
  private readonly steps: AuthSteps;

  constructor(private readonly identity: Identity) {
    this.steps = new AuthSteps(identity);
  }

  private get parts() {
    return this.identity.parts;
  }

  /** Email and password. Every wrong answer is the one `invalid-credentials`, whatever was wrong. */
  async login(input: { email: string; password: string; deviceToken?: string | undefined }, origin: RequestOrigin): Promise<LoginOutcome> {
    const { throttle, users, factors, devices, challenges, db } = this.parts;
    await this.steps.spendIpAllowance({ action: 'auth.login', origin });
    const accountKey = this.identity.accountThrottleKey(input.email);
    await this.steps.refuseIfLocked(accountKey, { action: 'auth.login', origin });

    const user = await users.findByEmail(input.email);
    // Unknown, passwordless (pending, self-registered but unverified) and disabled accounts all
    // spend one argon2id verification, so the answer time does not tell them apart from a wrong
    // password. An unverified account has no password of its own: it is chosen at verification.
    const passwordOk = user?.passwordHash && user.status === 'active' ? await verifyPassword(user.passwordHash, input.password) : await verifyAgainstDummy(input.password);
    if (!user || !passwordOk) {
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.steps.record(db, { action: 'auth.login', outcome: 'failure', origin, userId: user?.id ?? null, details: { reason: user ? 'wrong-password-or-inactive' : 'unknown-account' } });
      if (failure.lockedNow) await this.steps.record(db, { action: 'auth.lockout', stage: 'password', outcome: 'success', origin, userId: user?.id ?? null, details: { lockSeconds: failure.retryAfterSeconds } });
      throw invalidCredentials();
    }
    await throttle.recordSuccess(accountKey, origin.ip);
    if (needsRehash(user.passwordHash!)) await users.setPassword(user.id, await hashPassword(input.password));

    const fingerprint = deviceFingerprint(origin.userAgent);
    const standalone = await factors.offeredTo(user.id, 'standalone');
    if (standalone.length === 0) {
      const { challengeToken, expiresAt } = await challenges.issue(user.id, 'enrollment', fingerprint);
      await this.steps.record(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, details: { next: 'enrollment' } });
      return { kind: 'enrollment-required', challengeToken, challengeExpiresAt: expiresAt, methods: factors.registered.filter((factor) => factor.standsAlone).map((factor) => factor.method) };
    }
    const deviceId = input.deviceToken === undefined ? undefined : await devices.recognise(user.id, input.deviceToken);
    if (deviceId) {
      const signedIn = await this.steps.startSession(user, origin, { deviceId });
      await this.steps.record(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, sessionId: signedIn.sessionId, details: { secondFactor: 'trusted-device' } });
      return { kind: 'signed-in', signedIn };
    }
    const { challengeToken, expiresAt } = await challenges.issue(user.id, 'second-factor', fingerprint);
    await this.steps.record(db, { action: 'auth.login', outcome: 'success', origin, userId: user.id, details: { next: 'second-factor', deviceToken: input.deviceToken === undefined ? 'absent' : 'not-recognised' } });
    const methods = factors.inOrder([...standalone, ...(await factors.offeredTo(user.id, 'companions'))]);
    return { kind: 'second-factor-required', challengeToken, challengeExpiresAt: expiresAt, methods };
  }

  /** Completes a sign-in with a code of one of the offered methods; the device becomes trusted. */
  async secondFactor(input: { challengeToken: string; method: SecondFactorMethod; code: string }, origin: RequestOrigin): Promise<SignedIn> {
    const { challenges, factors, throttle, db, devices, users } = this.parts;
    await this.steps.spendIpAllowance({ action: 'auth.second-factor', origin });
    const challenge = await this.steps.openChallenge(input.challengeToken, 'second-factor', { action: 'auth.second-factor', origin });
    const accountKey = `u:${challenge.userId}`;
    await this.steps.refuseIfLocked(accountKey, { action: 'auth.second-factor', origin });
    const factor = factors.get(input.method);
    await factor.ensureUsable?.(challenge.userId);
    // Claimed before the code is checked: of two requests racing on one challenge, the loser
    // stops here without spending its code (a recovery code lost to a race is lost for good).
    if (!(await challenges.spend(challenge.id))) throw invalidChallenge();
    const check = await factor.verify({ userId: challenge.userId, code: input.code, challengeId: challenge.id });
    if (!check.ok) {
      await challenges.releaseAfterFailure(challenge.id);
      const failure = await throttle.recordFailure(accountKey, origin.ip);
      await this.steps.record(db, { action: 'auth.second-factor', outcome: 'failure', origin, userId: challenge.userId, details: { method: input.method, reason: check.reason } });
      if (failure.lockedNow) await this.steps.record(db, { action: 'auth.lockout', stage: 'second-factor', outcome: 'success', origin, userId: challenge.userId, details: { lockSeconds: failure.retryAfterSeconds } });
      throw new IdentityError('invalid-second-factor', 'the code is wrong, expired or was already used');
    }
    await throttle.recordSuccess(accountKey, origin.ip);
    const user = await users.get(challenge.userId);
    if (!user || user.status !== 'active') throw invalidChallenge();
    return db.transaction(async (tx) => {
      const device = await devices.trust(user.id, deviceLabelFrom(origin.userAgent), tx);
      const started = await this.steps.startSession(user, origin, { deviceId: device.deviceId }, tx);
      await this.steps.record(tx, { action: 'auth.second-factor', outcome: 'success', origin, userId: user.id, sessionId: started.sessionId, details: { method: input.method, deviceTrusted: true } });
      return { ...started, deviceToken: device.deviceToken };
    });
  }
}
