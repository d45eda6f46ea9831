import { backoffDelayMs } from '../domain/backoff.js';
import { Redis, type RedisOptions } from 'ioredis';
import { redactUrl, type Logger } from '../log/logger.js';

/**
 * One Redis connection for state that instances share but can live without: rate-limit
 * counters and revocation fan-out. PostgreSQL stays the source of truth, so when Redis is
 * away every user of this connection falls back to per-instance state instead of waiting.
 */
export interface RedisConnection {
  /** The ioredis client. Commands reject at once while Redis is unreachable. */
  readonly client: Redis;
  /** `redis://host:port/db` with any password and sensitive query values removed: safe to log. */
  readonly description: string;
  /** True while commands can be sent: callers may skip a doomed round trip. */
  isReady(): boolean;
  /**
   * A second connection to the same server with the same behaviour, for a subscriber (a
   * connection in subscribe mode cannot send other commands). Its outages are reported
   * together with this connection's, so one outage is still one warning.
   */
  duplicate(): RedisConnection;
  /** Closes this connection only (not its duplicates) and stops reconnecting. */
  close(): Promise<void>;
}

export interface RedisConnectionOptions {
  /** Ceiling of the reconnect backoff; reconnecting itself never stops. Default 5 000 ms. */
  maxReconnectDelayMs?: number;
  /**
   * A command that gets no answer in this time fails, so a Redis that is reachable but stuck
   * (a paused VM, a dropped route with no RST) degrades like one that is down. Default 1 000 ms.
   * Do not use blocking commands (BLPOP, …) on this connection.
   */
  commandTimeoutMs?: number;
  /** Default 5 000 ms. */
  connectTimeoutMs?: number;
}

export const REDIS_UNAVAILABLE_MESSAGE = 'redis unavailable, falling back to per-instance state';
export const REDIS_RESTORED_MESSAGE = 'redis available again, sharing state across instances';

/**
 * Connects (in the background: this never waits for Redis) and reconnects forever. Start-up
 * does not fail when Redis is down; it logs one warning and the callers use their fallbacks.
 */
export function openRedis(url: string, logger: Logger, options: RedisConnectionOptions = {}): RedisConnection {
  const description = describeRedisUrl(url);
  const outages = new OutageReporter(logger.child({ redis: description }));
  return connect(url, description, clientOptions(options), outages, 'main');
}

/**
 * `redactUrl` only handles the query string; a Redis URL usually carries its password in
 * the userinfo (`redis://:secret@host`), so that part is dropped here before it.
 */
export function describeRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '(unparseable redis url)';
  }
  parsed.username = '';
  parsed.password = '';
  return redactUrl(parsed.toString());
}

function clientOptions(options: RedisConnectionOptions): RedisOptions {
  const maxDelay = options.maxReconnectDelayMs ?? 5_000;
  return {
    // A command issued while disconnected fails now instead of queueing until Redis returns:
    // a sign-in must not hang on a rate-limit counter.
    enableOfflineQueue: false,
    // A command already sent when the connection drops is retried on one reconnect, then fails.
    maxRetriesPerRequest: 1,
    commandTimeout: options.commandTimeoutMs ?? 1_000,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
    // Exponential, capped, with half of it jittered so instances restarted together do not
    // reconnect in step; always a number (never null), which tells ioredis to keep trying.
    retryStrategy: (attempt) => backoffDelayMs(attempt, { baseMs: 50, capMs: maxDelay }),
  };
}

function connect(
  url: string,
  description: string,
  options: RedisOptions,
  outages: OutageReporter,
  role: 'main' | 'duplicate',
): RedisConnection {
  const client = new Redis(url, options);
  const member = outages.join(role);
  let closing = false;

  client.on('ready', () => member.up());
  // Every failed attempt emits 'error' then 'close'; the reporter turns that stream into one
  // warning per outage. Only the code or message is kept: an ioredis error can carry the
  // command's arguments (`err.command.args`), and for AUTH those are the password.
  client.on('error', (error: NodeJS.ErrnoException) => member.failed(error.code ?? error.message));
  client.on('close', () => {
    if (!closing) member.down();
  });

  return {
    client,
    description,
    isReady: () => client.status === 'ready',
    duplicate: () => connect(url, description, options, outages, 'duplicate'),
    async close() {
      if (closing) return;
      closing = true;
      member.leave();
      // Between attempts there is no socket: disconnect() only cancels the next attempt, and
      // ioredis emits no 'end' for it.
      if (!HAS_SOCKET.has(client.status)) return void client.disconnect();
      // Resolving only at 'end' means the socket is gone, so nothing keeps the process alive.
      const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
      if (client.status === 'ready') {
        // QUIT lets commands already sent finish; disconnect() is the fallback if it fails.
        await client.quit().catch(() => client.disconnect());
      } else {
        client.disconnect();
      }
      await ended;
    },
  };
}

const HAS_SOCKET = new Set(['connecting', 'connect', 'ready']);

/**
 * Shared by a connection and its duplicates. Warns when the first of them loses Redis and
 * reports recovery when all of them are back, so an outage is two log lines however many
 * reconnect attempts (and connections) it spans.
 */
class OutageReporter {
  private readonly down = new Set<symbol>();
  private outage = false;
  private everConnected = false;
  private lastReason: string | undefined;

  constructor(private readonly logger: Logger) {}

  join(role: 'main' | 'duplicate') {
    const id = Symbol(role);
    return {
      up: () => {
        this.down.delete(id);
        this.lastReason = undefined;
        if (this.outage && this.down.size === 0) {
          this.outage = false;
          this.logger.info(REDIS_RESTORED_MESSAGE);
        } else if (!this.everConnected && role === 'main') {
          this.logger.info('redis connected');
        }
        if (role === 'main') this.everConnected = true;
      },
      failed: (reason: string) => {
        this.lastReason = reason;
      },
      down: () => {
        this.down.add(id);
        if (this.outage) return;
        this.outage = true;
        this.logger.warn({ reason: this.lastReason ?? 'connection closed' }, REDIS_UNAVAILABLE_MESSAGE);
        this.lastReason = undefined;
      },
      // A connection closed on purpose is neither down nor back.
      leave: () => {
        this.down.delete(id);
      },
    };
  }
}
