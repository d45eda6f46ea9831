import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerError } from 'smtp-server';

/**
 * A real SMTP server on 127.0.0.1 for tests: plaintext, no STARTTLS (so no certificate to
 * trust), and every accepted message kept in memory. Messages are decoded just enough
 * (headers unfolded, quoted-printable or base64 body) for a test to find a link in them.
 */

export interface ReceivedEmail {
  /** Envelope sender (MAIL FROM), not the From header. */
  from: string | undefined;
  /** Envelope recipients (RCPT TO). */
  to: string[];
  /** The message exactly as received, headers and encoded body. */
  raw: string;
  subject: string;
  /** The decoded body with LF line endings. */
  text: string;
  /** The user the client logged in as, if it did. */
  authenticatedUser: string | undefined;
}

export interface SmtpTestServer {
  url: string;
  port: number;
  messages: ReceivedEmail[];
  /** Resolves with the first message (already received or yet to come) addressed to `to`. */
  waitForMessage(to: string, timeoutMs?: number): Promise<ReceivedEmail>;
  /**
   * The `count`-th message (1-based) to `to` in any letter case, waiting for it: emails sent
   * after an answer arrive later, and an address may be written in another case by the sender.
   */
  nthMessage(to: string, count: number, timeoutMs?: number): Promise<ReceivedEmail>;
  close(): Promise<void>;
}

export interface SmtpTestServerOptions {
  /** Refuse every recipient (or, with `failAt: 'data'`, every message) with this SMTP code. */
  failWith?: number;
  failAt?: 'rcpt' | 'data';
  /** Offer AUTH and accept only these credentials; without it AUTH is optional and unchecked. */
  auth?: { user: string; pass: string };
}

export async function startSmtpServer(options: SmtpTestServerOptions = {}): Promise<SmtpTestServer> {
  const messages: ReceivedEmail[] = [];
  const waiters = new Set<{ to: string; resolve(message: ReceivedEmail): void }>();
  const failAt = options.failAt ?? 'rcpt';

  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    // AUTH over plaintext is what a test of credentials needs; it is loopback only.
    allowInsecureAuth: true,
    logger: false,
    // Tests close the server right after their last message; don't wait 30 s for idle clients.
    closeTimeout: 100,
    onAuth(auth, _session, callback) {
      const expected = options.auth;
      if (expected !== undefined && (auth.username !== expected.user || auth.password !== expected.pass)) {
        callback(smtpError('Authentication failed', 535));
        return;
      }
      callback(null, { user: auth.username ?? 'anonymous' });
    },
    onRcptTo(address, _session, callback) {
      if (options.failWith !== undefined && failAt === 'rcpt') {
        // Echoes the address as real servers do (Postfix: "<a@b>: Recipient address rejected"),
        // so a test notices when that reply text reaches an error message or a log.
        callback(smtpError(`<${address.address}>: Recipient address rejected`, options.failWith));
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (options.failWith !== undefined && failAt === 'data') {
          callback(smtpError('Message refused by test server', options.failWith));
          return;
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const envelopeFrom = session.envelope.mailFrom;
        const message: ReceivedEmail = {
          from: envelopeFrom === false ? undefined : envelopeFrom.address,
          to: session.envelope.rcptTo.map((recipient) => recipient.address),
          raw,
          ...decodeMessage(raw),
          authenticatedUser: typeof session.user === 'string' ? session.user : undefined,
        };
        messages.push(message);
        for (const waiter of waiters) {
          if (message.to.includes(waiter.to)) {
            waiters.delete(waiter);
            waiter.resolve(message);
          }
        }
        callback();
      });
    },
  });
  server.on('error', () => {
    // A client dropping mid-session is expected in failure tests; it must not crash the run.
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    messages,
    waitForMessage(to, timeoutMs = 5000) {
      const received = messages.find((message) => message.to.includes(to));
      if (received !== undefined) return Promise.resolve(received);
      return new Promise((resolve, reject) => {
        const waiter = {
          to,
          resolve: (message: ReceivedEmail) => {
            clearTimeout(timer);
            resolve(message);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no message for ${to} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    async nthMessage(to, count, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const received = messages.filter((message) => message.to.some((recipient) => recipient.toLowerCase() === to.toLowerCase()));
        if (received.length >= count) return received[count - 1]!;
        if (Date.now() > deadline) throw new Error(`only ${received.length} of ${count} messages to ${to} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function smtpError(message: string, responseCode: number): SMTPServerError {
  return Object.assign(new Error(message), { responseCode });
}

/** Enough of RFC 5322/2045/2047 for one text part: unfold headers, decode the body and the subject. */
function decodeMessage(raw: string): { subject: string; text: string } {
  const normalised = raw.replace(/\r\n/g, '\n');
  const split = normalised.indexOf('\n\n');
  const headerBlock = split === -1 ? normalised : normalised.slice(0, split);
  const body = split === -1 ? '' : normalised.slice(split + 2);
  const headers = new Map<string, string>();
  for (const line of headerBlock.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const encoding = (headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  return { subject: decodeEncodedWords(headers.get('subject') ?? ''), text: decodeBody(body, encoding) };
}

function decodeBody(body: string, encoding: string): string {
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body);
  return body;
}

const EQUALS = 0x3d;

/** `=` at a line end is a soft break (the line was only wrapped); `=XX` is one byte. */
function decodeQuotedPrintable(body: string): string {
  const input = Buffer.from(body.replace(/=[ \t]*\n/g, ''), 'utf8');
  const bytes: number[] = [];
  for (let index = 0; index < input.length; index++) {
    const hex = input.toString('latin1', index + 1, index + 3);
    if (input[index] === EQUALS && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      index += 2;
    } else {
      bytes.push(input[index] as number);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** `=?UTF-8?Q?…?=` and `=?UTF-8?B?…?=` (RFC 2047); whitespace between two encoded words is dropped. */
function decodeEncodedWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_match, _charset: string, kind: string, encoded: string) =>
      kind.toUpperCase() === 'B'
        ? Buffer.from(encoded, 'base64').toString('utf8')
        : decodeQuotedPrintable(encoded.replace(/_/g, ' ')),
    );
}
