/**
 * Where identity's emails leave from: the port identity sends through. The wiring passes the
 * SMTP transport (src/providers/smtp/mailer.ts), which has this shape; identity builds no
 * transport of its own.
 */
export interface OutgoingEmail {
  to: string;
  subject: string;
  text: string;
}

export interface MailSender {
  /** Resolves once the message was accepted for delivery; throws otherwise, never quoting the address or the text. */
  send(message: OutgoingEmail): Promise<void>;
  close(): Promise<void>;
}
