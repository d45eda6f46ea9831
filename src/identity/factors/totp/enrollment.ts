import { IdentityError } from '../../errors.js';
import type { Principal } from '../../principal.js';
import type { RequestOrigin } from '../../request-origin.js';
import type { SignedIn } from '../../sign-in/auth-steps.js';
import { invalidChallenge } from '../../sign-in/challenges.js';
import type { CurrentFactorProof } from '../../sign-in/step-up.js';
import { FactorSteps, factorOwnerOf } from '../factor-steps.js';
import { deviceLabelFrom } from '../../sign-in/trusted-devices.js';
import { otpauthQrSvg } from './qr-code.js';

/**
 * Enrolling an authenticator app: at a first sign-in, with the enrollment challenge a correct
 * password earned (only while the user has none), or by a signed-in user replacing theirs, who
 * proves the password and the current factor again. Confirming it issues ten fresh recovery
 * codes and ends every other open challenge of the user.
 */
export class TotpEnrollment extends FactorSteps {
  /** Starts (or restarts) enrollment: a pending authenticator, shown as an otpauth URI and its QR code (SVG). */
  async enroll(
    input: { challengeToken?: string | undefined; principal?: Principal | undefined; currentPassword?: string | undefined; currentFactor?: CurrentFactorProof | undefined },
    origin: RequestOrigin,
  ): Promise<{ otpauthUri: string; secret: string; qrCodeSvg: string }> {
    const { factors, users, db } = this.parts;
    await this.steps.spendIpAllowance({ action: 'auth.totp.enroll', origin });
    const { userId } = await this.enrollingUser(input, origin);
    if (input.principal) {
      // Step-up: replacing a factor while signed in needs the password and the factor being
      // replaced, so neither a stolen access token (ten minutes of someone's session) nor one
      // plus the password can swap the victim's authenticator for one of the thief's, destroy
      // the recovery codes and end the victim's other sessions with it.
      await this.stepUp.confirmPassword(userId, input.currentPassword, { action: 'auth.totp.enroll', origin });
      await this.stepUp.confirmCurrentFactor(userId, input.currentFactor, { action: 'auth.totp.enroll', origin });
    } else if (await factors.totp.hasConfirmed(userId)) {
      // Enrollment challenges die when a factor is enrolled (see confirm); this refuses one
      // that was claimed in the same instant.
      await this.steps.record(db, { action: 'auth.totp.enroll', outcome: 'denied', origin, userId, details: { reason: 'factor-already-enrolled' } });
      throw invalidChallenge();
    }
    const user = await users.viewById(userId);
    if (!user) throw invalidChallenge();
    const enrollment = await factors.startTotpEnrollment(userId, user.email);
    await this.steps.record(db, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, details: { stage: 'started' } });
    return { otpauthUri: enrollment.otpauthUri, secret: enrollment.secretBase32, qrCodeSvg: otpauthQrSvg(enrollment.otpauthUri) };
  }

  /**
   * Confirms the new authenticator with one code. From a first sign-in this completes it
   * (tokens, a trusted device and the recovery codes); for a signed-in user it replaces the
   * factor and ends every other session, as any factor change does. Either way every other
   * open challenge of the user ends with it: an enrollment challenge is good for a first
   * factor only, and one kept from before must not enroll a second factor over this one.
   */
  async confirm(input: { challengeToken?: string | undefined; principal?: Principal | undefined; code: string }, origin: RequestOrigin): Promise<{ recoveryCodes: string[]; signedIn?: SignedIn }> {
    const { factors, db, users, challenges, devices, sessions } = this.parts;
    await this.steps.spendIpAllowance({ action: 'auth.totp.confirm', origin });
    // The challenge is opened here, not inside the transaction: on PGlite (one connection) a
    // query outside the transaction's handle waits for the transaction, which waits for it.
    const { userId, challengeId } = await this.enrollingUser(input, origin);
    const user = await users.get(userId);
    if (!user || user.status !== 'active') throw invalidChallenge();
    return db
      .transaction(async (tx) => {
        // Serialises the factor changes of this user: a stale enrollment racing the real one
        // waits here, then finds the factor the other confirmed.
        if (!(await users.lock(userId, tx))) throw invalidChallenge();
        if (!input.principal) {
          if (!challengeId || !(await challenges.spend(challengeId, tx))) throw invalidChallenge();
          if (await factors.totp.hasConfirmed(userId, tx)) throw new EnrollmentFailure('factor-already-enrolled');
        }
        const result = await factors.confirmTotp(userId, input.code, tx);
        // Thrown, the transaction rolls back: the challenge is unspent again, so a wrong code
        // may be retried. The failure is audited outside it, or the audit event would roll back too.
        if (!result.ok) throw new EnrollmentFailure(result.reason);
        await challenges.revokeAllOf(userId, tx);
        if (input.principal) {
          await devices.revokeAll(userId, tx);
          await sessions.revokeForUser(userId, 'factor-changed', { exceptSessionId: input.principal.sessionId ?? undefined }, tx);
          await this.steps.record(tx, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, details: { stage: 'confirmed', replacedFactor: true } });
          return { recoveryCodes: result.recoveryCodes };
        }
        const device = await devices.trust(userId, deviceLabelFrom(origin.userAgent), tx);
        const started = await this.steps.startSession(user, origin, { deviceId: device.deviceId }, tx);
        await this.steps.record(tx, { action: 'auth.totp.enroll', outcome: 'success', origin, userId, sessionId: started.sessionId, details: { stage: 'confirmed', replacedFactor: false } });
        return { recoveryCodes: result.recoveryCodes, signedIn: { ...started, deviceToken: device.deviceToken, recoveryCodes: result.recoveryCodes } };
      })
      .catch(async (error: unknown) => {
        if (!(error instanceof EnrollmentFailure)) throw error;
        if (error.reason === 'factor-already-enrolled') {
          await this.steps.record(db, { action: 'auth.totp.enroll', outcome: 'denied', origin, userId, details: { stage: 'confirm', reason: error.reason } });
          throw invalidChallenge();
        }
        await this.steps.record(db, { action: 'auth.totp.enroll', outcome: 'failure', origin, userId, details: { stage: 'confirm', reason: error.reason } });
        throw new IdentityError('invalid-enrollment-code', error.reason === 'no-pending-enrollment' ? 'start with POST /api/v1/auth/totp/enroll' : 'the code does not match the new authenticator');
      });
  }

  private async enrollingUser(input: { challengeToken?: string | undefined; principal?: Principal | undefined }, origin: RequestOrigin): Promise<{ userId: string; challengeId?: string }> {
    if (input.principal) return { userId: factorOwnerOf(input.principal) };
    const challenge = await this.steps.openChallenge(input.challengeToken, 'enrollment', { action: 'auth.totp.enroll', origin });
    return { userId: challenge.userId, challengeId: challenge.id };
  }
}

/** A refusal inside the confirming transaction, carried out of it to be audited after the rollback. */
class EnrollmentFailure extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}
