import type { AuditAction } from '../../../domain/audit-actions.js';
import { IdentityError } from '../../errors.js';
import type { Principal } from '../../principal.js';
import type { RequestOrigin } from '../../request-origin.js';
import { FactorSteps, factorOwnerOf } from '../factor-steps.js';
import { smsNotAvailable, type SmsCodePurpose, type SmsSendOutcome } from './sms-factor.js';

/**
 * The SMS factor's own steps: a signed-in user sets the phone codes go to (a code sent, then
 * confirmed), and a sign-in asks for a code to be texted for its challenge. Checking a sign-in
 * code is the registry's, like any factor's (SmsFactor.verify).
 */
export class SmsSteps extends FactorSteps {
  /**
   * Texts a sign-in code for an open second-factor challenge to the user's verified phone.
   * Allowed only where `sms` was offered; resends are throttled per user (1 per 30 s, 5 per
   * hour) and each replaces the challenge's earlier code.
   */
  async sendSignInCode(input: { challengeToken: string }, origin: RequestOrigin): Promise<void> {
    const { sms } = this.parts;
    await this.steps.spendIpAllowance({ action: SMS_SENT, origin });
    const challenge = await this.steps.openChallenge(input.challengeToken, 'second-factor', { action: SMS_SENT, origin });
    await this.steps.refuseIfLocked(`u:${challenge.userId}`, { action: SMS_SENT, origin });
    await sms.ensureUsable(challenge.userId);
    await this.reportSend(await sms.sendSignInCode(challenge), 'sign-in', challenge.userId, origin);
  }

  /**
   * Sends a code to a new phone of the signed-in user; the phone is offered at sign-in once
   * confirmed. Needs the current password, as replacing an authenticator does: a stolen access
   * token must not be enough to plant a second factor of the thief's.
   */
  async startPhoneVerification(principal: Principal, input: { phone: string; currentPassword: string | undefined }, origin: RequestOrigin): Promise<void> {
    const userId = factorOwnerOf(principal);
    await this.stepUp.confirmPassword(userId, input.currentPassword, { action: SMS_SENT, origin });
    const outcome = await this.parts.sms.startPhoneVerification(userId, input.phone);
    if (!outcome.sent && outcome.reason === 'not-configured') {
      throw new IdentityError('sms-not-configured', 'this deployment sends no SMS codes (CIPHERGATE_SMS_SENDER_TENANT is unset or names a tenant without Twilio)');
    }
    await this.reportSend(outcome, 'verify-phone', userId, origin);
  }

  /** Confirms the pending phone with the code sent to it. */
  async confirmPhone(principal: Principal, input: { code: string }, origin: RequestOrigin): Promise<void> {
    const userId = factorOwnerOf(principal);
    const { sms, db, challenges } = this.parts;
    const result = await sms.confirmPhone(userId, input.code);
    if (!result.ok) {
      await this.steps.record(db, { action: 'auth.phone_verified', outcome: 'failure', origin, userId, details: { reason: result.reason } });
      throw new IdentityError('invalid-enrollment-code', result.reason === 'no-pending-phone' ? 'start with POST /api/v1/auth/phone' : 'the code is wrong, expired or was already used; ask for a new one');
    }
    // A verified phone is a factor enrolled: challenges earned before it end, as with TOTP.
    await challenges.revokeAllOf(userId);
    await this.steps.record(db, { action: 'auth.phone_verified', outcome: 'success', origin, userId });
  }

  /** Audits a send attempt and turns every refusal into its error. */
  private async reportSend(outcome: SmsSendOutcome, purpose: SmsCodePurpose, userId: string, origin: RequestOrigin): Promise<void> {
    const { db } = this.parts;
    if (outcome.sent) {
      await this.steps.record(db, { action: SMS_SENT, outcome: 'success', origin, userId, details: { purpose } });
      return;
    }
    switch (outcome.reason) {
      case 'throttled':
        this.steps.throttled(SMS_SENT, 'throttled', origin);
        throw new IdentityError('sms-throttled', 'a code was sent recently; wait before asking for another', { retryAfter: outcome.retryAfterSeconds }, outcome.retryAfterSeconds);
      case 'rejected':
        await this.steps.record(db, { action: SMS_SENT, outcome: 'failure', origin, userId, details: { purpose, reason: 'rejected-by-provider' } });
        throw new IdentityError('sms-rejected', 'the SMS provider refused to send to this number; use a mobile number that can receive texts');
      case 'unavailable':
        await this.steps.record(db, { action: SMS_SENT, outcome: 'failure', origin, userId, details: { purpose, reason: 'provider-unavailable' } });
        throw new IdentityError('sms-unavailable', 'the code could not be sent; try again later or use another method');
      case 'not-configured':
        // The sender or the phone went away between the check and the send.
        throw smsNotAvailable();
    }
  }
}

const SMS_SENT = 'auth.sms_code_sent' satisfies AuditAction;
