import type { Logger } from '../log/logger.js';

/**
 * Whether `error` means "the database cannot be reached right now" (down, restarting, the
 * connection was cut) rather than "this statement is wrong". The first is answered 503 with
 * Retry-After so the caller tries again; the second is a bug or a bad request.
 *
 * node-postgres reports socket errors by errno code, server shutdowns by SQLSTATE
 * (https://www.postgresql.org/docs/15/errcodes-appendix.html: class 08 connection exception,
 * 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now) and its own losses by
 * message only ("Connection terminated unexpectedly", "… is not queryable"). Drizzle wraps the
 * driver's error in `cause`, so the whole chain is looked at.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof AggregateError && current.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || SERVER_CODES.has(code) || code.startsWith('08'))) return true;
    if (typeof message === 'string' && DRIVER_MESSAGES.some((pattern) => pattern.test(message))) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
/** admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections. */
const SERVER_CODES = new Set(['57P01', '57P02', '57P03', '53300']);
const DRIVER_MESSAGES = [
  /^Connection terminated/,
  /timeout exceeded when trying to connect/,
  /is not queryable/,
  /^Connection ended unexpectedly/,
];

/**
 * Turns the many errors of one database outage into two log lines: a warning when it starts
 * and an info line when the database answers again. Every request, poll and probe during the
 * outage fails too; each of those would otherwise write its own stack trace.
 */
export class DatabaseOutageLog {
  private down = false;
  /** Connection failures seen so far; a new connection counts as recovery only if none follows it. */
  private failures = 0;

  constructor(
    private readonly logger: Logger | undefined,
    private readonly what: string,
    /** How long a new connection must stay up, with no failure anywhere, to count as the database being back. */
    private readonly settleMs = 1_000,
  ) {}

  get isDown(): boolean {
    return this.down;
  }

  /** Reports `error` if it is a connection failure; true when it was one. */
  failed(error: unknown): boolean {
    if (!isDatabaseUnavailable(error)) return false;
    this.failures += 1;
    if (!this.down) {
      this.down = true;
      // The code only: the message of a wrapped query error holds its SQL and parameters.
      this.logger?.warn({ database: this.what, reason: reasonOf(error) }, DATABASE_UNAVAILABLE_MESSAGE);
    }
    return true;
  }

  /**
   * A new connection opened. While the server shuts down it may still accept a connection that
   * it ends a moment later (57P01): counting that as recovery would log the outage twice. So it
   * counts only once it has stayed up for `settleMs` with no failure anywhere meanwhile; a
   * query that answers (`succeeded`) counts at once.
   */
  connectionOpened(): void {
    if (!this.down) return;
    const failuresAtOpen = this.failures;
    setTimeout(() => {
      if (this.failures === failuresAtOpen) this.succeeded();
    }, this.settleMs).unref();
  }

  /** A query or a probe answered. */
  succeeded(): void {
    if (!this.down) return;
    this.down = false;
    this.logger?.info({ database: this.what }, DATABASE_RESTORED_MESSAGE);
  }
}

export const DATABASE_UNAVAILABLE_MESSAGE = 'database unavailable, answering 503 until it returns';
export const DATABASE_RESTORED_MESSAGE = 'database available again';

function reasonOf(error: unknown): string {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const message = (current as { message?: unknown }).message;
    if (typeof message === 'string' && DRIVER_MESSAGES.some((pattern) => pattern.test(message))) return message;
    current = (current as { cause?: unknown }).cause;
  }
  return 'connection lost';
}
