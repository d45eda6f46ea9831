import { isIP } from 'node:net';
import nodemailer, { type NodemailerError, type SMTPSentMessageInfo, type SMTPTransportOptions, type Transporter } from 'nodemailer';
import type { Logger } from '../../log/logger.js';

/**
 * Outgoing email for account setup and address verification. Every message we send carries a
 * single-use link that is as good as a password until it is used, so nothing here ever puts
 * the recipient, the subject or the body into a log line or an error message: failures are
 * reported by kind and SMTP reply code only.
 */

export interface OutgoingEmail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  /** Resolves once the SMTP server accepted the message; throws `MailDeliveryError` otherwise. */
  send(message: OutgoingEmail): Promise<void>;
  close(): Promise<void>;
}

export type MailFailure =
  | 'invalid-recipient'
  | 'unreachable'
  | 'timeout'
  | 'auth-failed'
  | 'sender-refused'
  | 'recipient-refused'
  | 'message-refused'
  | 'recipient-throttled'
  | 'failed';

/**
 * An email was not sent, or not accepted by the SMTP server. The message is built from `reason` and the
 * reply code alone: nodemailer's own messages quote the server's reply, which often repeats
 * the recipient address, so neither that text nor the original error (as `cause`) is kept.
 */
export class MailDeliveryError extends Error {
  override readonly name = 'MailDeliveryError';
  constructor(
    readonly reason: MailFailure,
    /** The SMTP reply code when the server answered with one (e.g. 550), for operators. */
    readonly responseCode?: number,
    /** True when retrying the same message would get the same answer (5xx except 503). */
    readonly permanent = false,
  ) {
    super(responseCode === undefined ? DEFAULT_MESSAGES[reason] : `${DEFAULT_MESSAGES[reason]} (SMTP ${responseCode})`);
  }
}

/** CIPHERGATE_SMTP_URL cannot be used. The message names the problem, never the URL: it holds the password. */
export class MailConfigError extends Error {
  override readonly name = 'MailConfigError';
}

/**
 * Ten seconds for each wait (TCP connect, DNS, the greeting, every reply): a request that
 * sends a setup email must fail with an answer rather than hang on a dead SMTP server.
 */
export const SMTP_TIMEOUT_MS = 10_000;

/**
 * Each wait is bounded by `timeoutMs`, but a server that answers slowly at every step could
 * still add them up, so the whole send also has a deadline of this many waits.
 */
const WAITS_PER_SEND = 3;

/**
 * One SMTP connection per message, no pool: these emails are rare, and a pool would only
 * hold idle connections open between them.
 */
export class SmtpMailer implements Mailer {
  private readonly transport: Transporter<SMTPSentMessageInfo, SMTPTransportOptions>;
  private readonly from: string;
  private readonly logger: Logger;
  private readonly deadlineMs: number;

  /** `timeoutMs` bounds each wait (default `SMTP_TIMEOUT_MS`); tests pass a short one. */
  constructor(options: { url: string; from: string; logger: Logger; timeoutMs?: number }) {
    const timeoutMs = options.timeoutMs ?? SMTP_TIMEOUT_MS;
    this.transport = nodemailer.createTransport(transportOptions(options.url, timeoutMs));
    this.from = options.from;
    this.logger = options.logger;
    this.deadlineMs = timeoutMs * WAITS_PER_SEND;
  }

  async send(message: OutgoingEmail): Promise<void> {
    if (!isSingleAddress(message.to)) {
      this.logger.warn({ reason: 'invalid-recipient' }, 'email not sent');
      throw new MailDeliveryError('invalid-recipient');
    }
    let messageId: string;
    try {
      const info = await this.transport.sendMail({
        from: this.from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        signal: AbortSignal.timeout(this.deadlineMs),
      });
      messageId = info.messageId;
    } catch (error) {
      const cause = nodemailerError(error);
      const failure = toDeliveryError(cause);
      // `code`/`originalCode` (ESOCKET, ECONNREFUSED…) say what broke without saying to whom.
      this.logger.warn(
        { reason: failure.reason, responseCode: failure.responseCode, smtpError: cause.code, systemError: cause.originalCode },
        'email not sent',
      );
      throw failure;
    }
    this.logger.info({ messageId }, 'email sent');
  }

  async close(): Promise<void> {
    this.transport.close();
  }
}

/**
 * The mailer for this deployment, or undefined when no SMTP URL is configured (loadConfig
 * only allows that while signup is closed). Callers must not log the URL: it holds the password.
 */
export function openMailer(config: { smtpUrl?: string; publicUrl: string }, logger: Logger): SmtpMailer | undefined {
  if (config.smtpUrl === undefined) return undefined;
  return new SmtpMailer({ url: config.smtpUrl, from: defaultFromAddress(config.publicUrl), logger });
}

const DEFAULT_MESSAGES: Record<MailFailure, string> = {
  'invalid-recipient': 'the recipient is not a single plain email address',
  unreachable: 'could not reach the SMTP server',
  timeout: 'the SMTP server did not answer in time',
  'auth-failed': 'the SMTP server refused the configured credentials',
  'sender-refused': 'the SMTP server refused the sender address',
  'recipient-refused': 'the SMTP server refused the recipient',
  'message-refused': 'the SMTP server refused the message',
  'recipient-throttled': 'too many emails to this recipient recently; not sent',
  failed: 'the email could not be sent',
};


/**
 * The URL is parsed here rather than handed to nodemailer as `url`, because nodemailer reads
 * any query parameter into its options and lets it win over ours: `?logger=true&debug=true`
 * would print every message, links included, to stdout. So query parameters are refused.
 */
function transportOptions(url: string, timeoutMs: number): SMTPTransportOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MailConfigError('CIPHERGATE_SMTP_URL is not a valid URL');
  }
  if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') {
    throw new MailConfigError('CIPHERGATE_SMTP_URL must start with smtp:// or smtps://');
  }
  if (parsed.search !== '') {
    throw new MailConfigError('CIPHERGATE_SMTP_URL must not carry query parameters');
  }
  let user: string;
  let pass: string;
  let host: string;
  try {
    user = decodeURIComponent(parsed.username);
    pass = decodeURIComponent(parsed.password);
    // smtp: is not a "special" scheme to WHATWG URL, so an IPv6 host keeps its brackets.
    host = decodeURIComponent(parsed.hostname).replace(/^\[(.*)\]$/, '$1');
  } catch {
    throw new MailConfigError('CIPHERGATE_SMTP_URL has a malformed percent-encoding');
  }
  if (host === '') throw new MailConfigError('CIPHERGATE_SMTP_URL has no host');
  return {
    host,
    // Unset means nodemailer's defaults: 587 for smtp:// (STARTTLS when offered), 465 for smtps://.
    port: parsed.port === '' ? undefined : Number(parsed.port),
    secure: parsed.protocol === 'smtps:',
    auth: user === '' && pass === '' ? undefined : { user, pass },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    // nodemailer's own logger would write SMTP traffic, message data included, to the console.
    logger: false,
    debug: false,
    // Our messages are plain text we composed; no part of them may make nodemailer read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

/**
 * `Ciphergate <no-reply@HOST>` with the host of the public URL. An IP host must be written as
 * an address literal (RFC 5321 §4.1.3): `no-reply@[192.0.2.1]`, `no-reply@[IPv6:2001:db8::1]`.
 */
function defaultFromAddress(publicUrl: string): string {
  const hostname = new URL(publicUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(hostname);
  const domain = family === 4 ? `[${hostname}]` : family === 6 ? `[IPv6:${hostname}]` : hostname;
  return `Ciphergate <no-reply@${domain}>`;
}

/**
 * One `local@domain`, nothing else. nodemailer's address parser reads `a@x, b@y`, a group
 * `team: a@x;` or a display name `"x" <a@x>` as it would in a header, so a recipient that
 * slipped past validation upstream could otherwise copy a single-use link to a second inbox.
 */
function isSingleAddress(to: string): boolean {
  return /^[^\s@,;:<>()[\]"\\\x00-\x1f\x7f]+@[^\s@,;:<>()[\]"\\\x00-\x1f\x7f]+$/.test(to);
}

function nodemailerError(error: unknown): NodemailerError {
  return (typeof error === 'object' && error !== null ? error : {}) as NodemailerError;
}

function toDeliveryError(cause: NodemailerError): MailDeliveryError {
  const responseCode = typeof cause.responseCode === 'number' ? cause.responseCode : undefined;
  const permanent = cause.permanent === true;
  return new MailDeliveryError(failureOf(cause), responseCode, permanent);
}

function failureOf(cause: NodemailerError): MailFailure {
  switch (cause.code) {
    case 'ETIMEDOUT':
    // Only our own deadline signal aborts a send.
    case 'EABORT':
      return 'timeout';
    case 'ECONNECTION':
    case 'ESOCKET':
    case 'EDNS':
    case 'ETLS':
    case 'EPROXY':
      return 'unreachable';
    case 'EAUTH':
    case 'ENOAUTH':
      return 'auth-failed';
    case 'EMESSAGE':
      return 'message-refused';
    case 'EENVELOPE':
      if (cause.command === 'MAIL FROM') return 'sender-refused';
      if (cause.command === 'RCPT TO') return 'recipient-refused';
      if (cause.command === 'DATA') return 'message-refused';
      return 'failed';
    default:
      return 'failed';
  }
}
