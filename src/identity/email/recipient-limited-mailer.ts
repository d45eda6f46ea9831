import type { Logger } from '../../log/logger.js';
import { MailDeliveryError, type Mailer, type OutgoingEmail } from '../../providers/smtp/mailer.js';
import type { EmailSendThrottle } from '../limits/throttle.js';

/**
 * A Mailer that sends at most the throttle's number of emails per hour to one recipient,
 * whatever the email is for: every email identity sends goes through it (`openIdentity` wraps
 * the configured mailer), so a new kind of email is limited without anyone remembering to.
 * A refused send throws `MailDeliveryError('recipient-throttled')` like any failed send; the
 * callers already answer the same whether or not an email went out.
 */
export class RecipientLimitedMailer implements Mailer {
  constructor(
    private readonly inner: Mailer,
    private readonly throttle: EmailSendThrottle,
    /** The opaque key of a recipient (`emailRecipientKey`), never the address. */
    private readonly keyOf: (to: string) => string,
    private readonly logger: Logger,
  ) {}

  async send(message: OutgoingEmail): Promise<void> {
    const allowance = await this.throttle.consume(this.keyOf(message.to));
    if (!allowance.allowed) {
      this.logger.warn({ reason: 'recipient-throttled', retryAfterSeconds: allowance.retryAfterSeconds }, 'email not sent');
      throw new MailDeliveryError('recipient-throttled');
    }
    await this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
