import type { Logger } from '../../log/logger.js';
import { ProviderError } from '../provider-error.js';
import { createTwilioSmsClient, type TwilioSmsClient } from './sms-client.js';

/** The Twilio account a one-off text is sent from, looked up at each send. */
export interface CodeSenderAccount {
  accountSid: string;
  fromNumber: string;
  openAuthToken(): Promise<string>;
}

export type CodeSendResult = { sent: true } | { sent: false; reason: 'rejected' | 'unavailable' | 'not-configured' };

export interface TwilioCodeSenderOptions {
  /** The sending account, read per use: codes are few, and a change of the account applies at once. */
  account: () => Promise<CodeSenderAccount | undefined>;
  apiUrl: string;
  /**
   * Where Twilio reports the status of the text. The client always asks for a callback; the
   * sender tenant's status webhook accepts it and finds no relay message with the sid.
   */
  statusCallbackUrl: string;
  logger: Logger;
  /**
   * A code is useless once the login gave up, so sends are bounded well below the relay's 15 s:
   * the user hears that SMS is unavailable and can use another method.
   */
  timeoutMs?: number;
  client?: TwilioSmsClient;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Sends single texts now, not through the job queue: sign-in and verification codes, whose
 * sender identity (src/identity/factors/sms/sms-sender.ts) is answered with what Twilio said.
 */
export class TwilioCodeSender {
  private client: TwilioSmsClient | undefined;

  constructor(private readonly options: TwilioCodeSenderOptions) {
    this.client = options.client;
  }

  async configured(): Promise<boolean> {
    return (await this.options.account()) !== undefined;
  }

  /** Never logs `to` or `body`. */
  async send(to: string, body: string): Promise<CodeSendResult> {
    const account = await this.options.account();
    if (!account) return { sent: false, reason: 'not-configured' };
    const authToken = await account.openAuthToken();
    try {
      // Made on first use: most processes (CLI commands, deployments without SMS) never text.
      this.client ??= createTwilioSmsClient({ apiUrl: this.options.apiUrl, timeoutMs: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS });
      await this.client.send({ accountSid: account.accountSid, authToken }, { from: account.fromNumber, to, body, statusCallback: this.options.statusCallbackUrl });
      return { sent: true };
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      // ProviderError messages never quote Twilio's text (which can name the number).
      this.options.logger.warn({ provider: error.provider, status: error.status, code: error.code, retryable: error.retryable }, 'identity SMS code not sent');
      // HTTP 400 is Twilio refusing this number (21211 invalid To,
      // https://www.twilio.com/docs/api/errors/21211; 21614 not a mobile number,
      // https://www.twilio.com/docs/api/errors/21614): retrying will not help. Anything else
      // (no answer, a failure, our credentials refused) is nothing the user can fix.
      return { sent: false, reason: error.status === 400 ? 'rejected' : 'unavailable' };
    }
  }
}
