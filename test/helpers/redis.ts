import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { serviceGate } from './services.js';

/** The server Redis suites use; they share it, so every test works under its own key prefix. */
export const TEST_REDIS_URL = process.env.CIPHERGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

let redisProbe: Promise<string | undefined> | undefined;

/** undefined when Redis answers PING, else the reason it does not. */
export function redisUnavailableReason(): Promise<string | undefined> {
  redisProbe ??= (async () => {
    const client = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000 });
    // connect() itself only says "Connection is closed."; the socket error says why.
    let socketError: string | undefined;
    client.on('error', (error: NodeJS.ErrnoException) => (socketError ??= error.code ?? error.message));
    try {
      await client.connect();
      await client.ping();
      return undefined;
    } catch (error) {
      return `cannot reach ${new URL(TEST_REDIS_URL).host} (${socketError ?? (error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
    } finally {
      client.disconnect();
    }
  })();
  return redisProbe;
}

/** `{ skip }` for a Redis suite: a reason on a laptop without Redis, a failure under CI=true. */
export async function redisGate(): Promise<{ skip: string | false }> {
  return serviceGate('redis', await redisUnavailableReason());
}

/** A key prefix no other test (or earlier run) uses. */
export function uniquePrefix(label: string): string {
  return `cgtest:${label}:${randomBytes(6).toString('hex')}`;
}

/**
 * Keys under `prefix`, read and removed through a short-lived connection of its own. SCAN, not
 * KEYS, is what production code would use, but KEYS is fine on a test database.
 */
export async function redisKeys(prefix: string): Promise<string[]> {
  const client = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 0 });
  try {
    return (await client.keys(`${prefix}*`)).sort();
  } finally {
    client.disconnect();
  }
}

export async function deleteKeys(prefix: string): Promise<void> {
  const client = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 0 });
  try {
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
  } finally {
    client.disconnect();
  }
}

/** A redis:// URL on a port where nothing listens: Redis "down" without touching the server. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `redis://127.0.0.1:${port}/0`;
}

/**
 * A TCP proxy in front of the test Redis that can be cut and restored, so a test sees Redis
 * go away and come back while the real server keeps serving every other test.
 */
export class RedisOutageProxy {
  private accepting = true;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<RedisOutageProxy> {
    const target = new URL(TEST_REDIS_URL);
    let proxy: RedisOutageProxy | undefined;
    const server = createServer((socket) => {
      if (!proxy?.accepting) return void socket.destroy();
      const upstream = connect(Number(target.port || 6379), target.hostname);
      proxy.sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      const drop = () => {
        socket.destroy();
        upstream.destroy();
        proxy?.sockets.delete(socket);
        proxy?.sockets.delete(upstream);
      };
      socket.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(TEST_REDIS_URL);
    url.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
    proxy = new RedisOutageProxy(server, url.toString());
    return proxy;
  }

  /** Drops every open connection and refuses new ones, like a Redis that died. */
  cut(): void {
    this.accepting = false;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.accepting = true;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
