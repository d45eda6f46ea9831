import type { Logger } from '../../log/logger.js';
import type { EmailSendThrottle } from '../limits/throttle.js';
import type { MailSender, OutgoingEmail } from './mail-sender.js';

/**
 * A MailSender that sends at most the throttle's number of emails per hour to one recipient,
 * whatever the email is for: every email identity sends goes through it (`openIdentity` wraps
 * the configured mailer), so a new kind of email is limited without anyone remembering to.
 * A refused send throws `RecipientThrottledError` like any failed send; the callers already
 * answer the same whether or not an email went out.
 */
export class RecipientLimitedMailer implements MailSender {
  constructor(
    private readonly inner: MailSender,
    private readonly throttle: EmailSendThrottle,
    /** The opaque key of a recipient (`emailRecipientKey`), never the address. */
    private readonly keyOf: (to: string) => string,
    private readonly logger: Logger,
  ) {}

  async send(message: OutgoingEmail): Promise<void> {
    const allowance = await this.throttle.consume(this.keyOf(message.to));
    if (!allowance.allowed) {
      this.logger.warn({ reason: 'recipient-throttled', retryAfterSeconds: allowance.retryAfterSeconds }, 'email not sent');
      throw new RecipientThrottledError();
    }
    await this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** An email refused before it left: its recipient had as many as the limit allows this hour. */
export class RecipientThrottledError extends Error {
  override readonly name = 'RecipientThrottledError';
  readonly reason = 'recipient-throttled';
  constructor() {
    super('too many emails to this recipient recently; not sent');
  }
}
