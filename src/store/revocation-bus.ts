import { isUuid } from '../domain/ids.js';
import type { Logger } from '../log/logger.js';
import type { RedisConnection } from './redis.js';

/**
 * Tells every instance that sessions were revoked, so a cache of live sessions can drop them
 * before its entries expire. The database remains the source of truth: a missed message only
 * means a revoked session is noticed when the cache next reads the database, never that it
 * comes back to life. That is why publishing never fails a revocation.
 */
export interface RevocationBus {
  /**
   * Delivers to this instance's listeners before it returns, then to other instances (best
   * effort). Ids must be UUIDs.
   */
  publish(sessionIds: string[]): Promise<void>;
  /**
   * Listeners run synchronously and must be idempotent and quick: a message can reach an
   * instance twice (an echo racing a reconnect), and a slow listener delays the others.
   */
  subscribe(listener: (sessionIds: string[]) => void): void;
  close(): Promise<void>;
}

export interface RevocationBusOptions {
  /** Channel prefix, so deployments or tests sharing a Redis keep apart. Default 'cg'. */
  keyPrefix?: string;
  /** Listener failures and ignored messages are logged here; silent without it. */
  logger?: Logger;
}

/** Redis when given one, otherwise in-process only (a single instance needs nothing more). */
export function openRevocationBus(redis?: RedisConnection, options: RevocationBusOptions = {}): RevocationBus {
  return redis ? new RedisRevocationBus(redis, options) : new LocalRevocationBus(options);
}

/** In-process delivery only: enough for one instance, and the local half of the Redis bus. */
export class LocalRevocationBus implements RevocationBus {
  private listeners: Array<(sessionIds: string[]) => void> = [];
  private closed = false;

  constructor(private readonly options: Pick<RevocationBusOptions, 'logger'> = {}) {}

  async publish(sessionIds: string[]): Promise<void> {
    this.assertOpen();
    const valid = validSessionIds(sessionIds);
    if (valid.length > 0) this.deliver(valid);
  }

  subscribe(listener: (sessionIds: string[]) => void): void {
    this.assertOpen();
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners = [];
  }

  /** Runs every listener even if one throws: one broken cache must not shield the others. */
  deliver(sessionIds: string[]): void {
    for (const listener of this.listeners) {
      try {
        listener([...sessionIds]);
      } catch (error) {
        this.options.logger?.error({ err: error }, 'revocation listener failed');
      }
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('revocation bus is closed');
  }
}

/**
 * Local delivery plus Redis pub/sub on `${prefix}:revocations`, so every instance hears of a
 * revocation made on any of them. The subscriber is a duplicated connection (a connection in
 * subscribe mode cannot publish); it resubscribes whenever Redis comes back.
 *
 * While Redis is down a publish still reaches this instance's listeners and the failure to
 * reach the others is swallowed: the database already holds the revocation (see the interface
 * above), and the others find out when their cached entries are next checked.
 *
 * Messages are a bare JSON array of UUIDs. Anything else arriving on the channel (another
 * program, an older version, garbage) is ignored with a warning, never half-applied.
 */
export class RedisRevocationBus implements RevocationBus {
  readonly channel: string;
  private readonly local: LocalRevocationBus;
  private readonly subscriber: RedisConnection;
  private readonly echoes = new PendingEchoes();
  private subscribed = false;
  private readonly firstSubscription: Promise<void>;
  private markSubscribed!: () => void;
  private closed = false;

  constructor(
    private readonly redis: RedisConnection,
    private readonly options: RevocationBusOptions = {},
  ) {
    this.channel = `${options.keyPrefix ?? 'cg'}:revocations`;
    this.local = new LocalRevocationBus(options);
    this.firstSubscription = new Promise((resolve) => (this.markSubscribed = resolve));
    this.subscriber = redis.duplicate();
    this.subscriber.client.on('message', (channel: string, message: string) => this.receive(channel, message));
    // Subscribing on every 'ready' covers the first connection, a start while Redis was
    // down (a SUBSCRIBE refused offline is not remembered by ioredis) and every reconnect.
    this.subscriber.client.on('ready', () => void this.subscribeChannel());
    this.subscriber.client.on('close', () => (this.subscribed = false));
    if (this.subscriber.isReady()) void this.subscribeChannel();
  }

  async publish(sessionIds: string[]): Promise<void> {
    if (this.closed) throw new Error('revocation bus is closed');
    const valid = validSessionIds(sessionIds);
    for (let start = 0; start < valid.length; start += MAX_IDS_PER_MESSAGE) {
      const chunk = valid.slice(start, start + MAX_IDS_PER_MESSAGE);
      this.local.deliver(chunk);
      await this.broadcast(JSON.stringify(chunk));
    }
  }

  subscribe(listener: (sessionIds: string[]) => void): void {
    this.local.subscribe(listener);
  }

  /**
   * Resolves once the channel subscription is active, so a test (or a start-up that wants to
   * wait a little) knows messages from other instances will arrive. Never rejects: while
   * Redis is away it simply stays pending.
   */
  whenSubscribed(): Promise<void> {
    return this.firstSubscription;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.local.close();
    await this.subscriber.close();
  }

  private async subscribeChannel(): Promise<void> {
    if (this.closed) return;
    try {
      await this.subscriber.client.subscribe(this.channel);
      this.subscribed = true;
      this.markSubscribed();
    } catch {
      // Redis went away again; the next 'ready' retries, and the outage is already logged.
    }
  }

  private async broadcast(payload: string): Promise<void> {
    if (!this.redis.isReady()) return;
    // Our own subscriber hears this message too; it was already delivered locally.
    if (this.subscribed) this.echoes.expect(payload);
    try {
      await this.redis.client.publish(this.channel, payload);
    } catch {
      this.echoes.forget(payload);
    }
  }

  private receive(channel: string, message: string): void {
    if (channel !== this.channel || this.closed) return;
    if (this.echoes.consume(message)) return;
    const sessionIds = parseMessage(message);
    if (sessionIds === undefined) {
      this.options.logger?.warn({ channel, length: message.length }, 'ignored a malformed revocation message');
      return;
    }
    this.local.deliver(sessionIds);
  }
}

/** Keeps one message (~37 KB) far below anything Redis or a listener would notice. */
const MAX_IDS_PER_MESSAGE = 1000;
const MAX_MESSAGE_CHARS = MAX_IDS_PER_MESSAGE * 40 + 2;


/** A caller passing a non-UUID has a bug; other instances would drop it, so fail here, loudly. */
function validSessionIds(sessionIds: string[]): string[] {
  for (const id of sessionIds) {
    if (typeof id !== 'string' || !isUuid(id)) throw new TypeError('session ids must be UUIDs');
  }
  return [...new Set(sessionIds)];
}

function parseMessage(message: string): string[] | undefined {
  if (message.length > MAX_MESSAGE_CHARS) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(message);
  } catch {
    return undefined;
  }
  // More than one publish ever sends is not ours either.
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.length > MAX_IDS_PER_MESSAGE) return undefined;
  if (!parsed.every((id): id is string => isUuid(id))) return undefined;
  return parsed;
}

/**
 * Payloads this instance published and expects to hear back from its own subscription.
 * Redis pub/sub has no "not to myself" option, so without this every listener here would
 * run twice per local revocation. An expected echo that never comes (the subscriber dropped
 * at that moment) is forgotten after a few seconds.
 */
class PendingEchoes {
  private readonly pending = new Map<string, number[]>();

  expect(payload: string): void {
    this.prune();
    const expiries = this.pending.get(payload) ?? [];
    expiries.push(Date.now() + ECHO_WAIT_MS);
    this.pending.set(payload, expiries);
  }

  forget(payload: string): void {
    const expiries = this.pending.get(payload);
    expiries?.pop();
    if (expiries?.length === 0) this.pending.delete(payload);
  }

  /** True (and counted off) when `payload` is an echo of our own publish. */
  consume(payload: string): boolean {
    this.prune();
    const expiries = this.pending.get(payload);
    if (!expiries) return false;
    expiries.shift();
    if (expiries.length === 0) this.pending.delete(payload);
    return true;
  }

  private prune(): void {
    const now = Date.now();
    for (const [payload, expiries] of this.pending) {
      while (expiries.length > 0 && expiries[0]! < now) expiries.shift();
      if (expiries.length === 0) this.pending.delete(payload);
    }
  }
}

const ECHO_WAIT_MS = 5_000;
