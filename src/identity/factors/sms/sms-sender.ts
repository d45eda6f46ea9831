/**
 * Where identity's SMS codes leave from: the port identity sends through, built by the wiring
 * (src/runtime/tenant-sms-sender.ts: the Twilio account of the tenant named by
 * CIPHERGATE_SMS_SENDER_TENANT). Identity builds no provider client; without a sender, SMS codes
 * are not offered.
 */
export interface SmsCodeSender {
  /** A sender is set up (a tenant with Twilio settings is named); without one, SMS is not offered. */
  configured(): Promise<boolean>;
  /** Sends one text now. Never logs `to` or `body`. */
  send(to: string, body: string): Promise<SmsSendResult>;
}

export type SmsSendResult =
  | { sent: true }
  /** The provider refused this number for good (not a mobile number, not a number): retrying will not help. */
  | { sent: false; reason: 'rejected' }
  /** The provider did not answer, failed, or refused our credentials: nothing the user can fix. */
  | { sent: false; reason: 'unavailable' }
  | { sent: false; reason: 'not-configured' };

/** The sender of a deployment that sends no SMS: codes are never offered. */
export const NO_SMS_SENDER: SmsCodeSender = {
  configured: async () => false,
  send: async () => ({ sent: false, reason: 'not-configured' }),
};
