import { listDataKeys } from '../store/repositories/data-keys.js';
import { activeSigningKey, migrationLevel, type MigrationLevel } from '../store/status-queries.js';
import { describePostgres, type Database } from '../store/connection.js';
import { JobQueue, type QueueDepth } from '../store/job-queue.js';
import { describeRedisUrl, openRedis } from '../store/redis.js';
import type { KeyProvider } from '../seal/providers/key-provider.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { CIPHERGATE_VERSION } from '../config/version.js';
import { openKeyProvider } from './sealing.js';

/**
 * `ciphergate status` (like `vault status`): what an operator checks first, gathered in one
 * place so the CLI only formats it. Nothing here opens a sealed value or prints a secret: the
 * database and Redis are named without passwords, keys by version, id and age.
 */
export interface GatewayStatus {
  version: string;
  store: { kind: Database['kind']; location: string; migrations: MigrationLevel };
  keys: {
    provider: Config['keys']['provider'];
    kekReachable: boolean;
    /** Why the KEK is unreachable (one line), when it is. */
    kekError?: string;
    /** Per scope (a tenant id or `system`): the version new values are sealed with and its age. */
    dataKeys: Array<{ scope: string; currentVersion: number; versions: number; currentCreatedAt: string; currentAgeDays: number }>;
    signingKey: { kid: string; createdAt: string; ageDays: number } | null;
  };
  redis: { configured: false } | { configured: true; location: string; reachable: boolean };
  queue: QueueDepth;
  server: { publicUrl: string; listen: string; listening: boolean };
  /** False when something the gateway needs is unusable: the KEK, a configured Redis, pending migrations, the server. */
  healthy: boolean;
}

export interface StatusSources {
  config: Config;
  database: Database;
  logger: Logger;
  /** The server's own key provider when it answers (admin socket); else one is opened and closed. */
  keyProvider?: KeyProvider;
  /** Set when the server itself answers: it is listening there. */
  listeningUrl?: string;
  now?: Date;
}

const DAY_MS = 86_400_000;

export async function gatherStatus(sources: StatusSources): Promise<GatewayStatus> {
  const { config, database } = sources;
  const now = sources.now ?? new Date();
  const ageDays = (date: Date) => Math.floor((now.getTime() - date.getTime()) / DAY_MS);
  const [migrations, keys, signing, queue, kek, redis, listening] = await Promise.all([
    migrationLevel(database.db),
    listDataKeys(database.db),
    activeSigningKey(database.db),
    new JobQueue(database.db).depth(),
    probeKek(sources),
    probeRedis(config, sources.logger),
    sources.listeningUrl ? Promise.resolve(true) : probeServer(config),
  ]);
  const dataKeys = new Map<string, GatewayStatus['keys']['dataKeys'][number]>();
  for (const key of keys) {
    if (key.state !== 'active') continue;
    const entry = dataKeys.get(key.scope);
    const versions = (entry?.versions ?? 0) + 1;
    if (!entry || key.version > entry.currentVersion) {
      dataKeys.set(key.scope, { scope: key.scope, currentVersion: key.version, versions, currentCreatedAt: key.createdAt.toISOString(), currentAgeDays: ageDays(key.createdAt) });
    } else entry.versions = versions;
  }
  const status: GatewayStatus = {
    version: CIPHERGATE_VERSION,
    store: { kind: database.kind, location: config.database.url ? describePostgres(config.database.url) : config.dataDir, migrations },
    keys: {
      provider: config.keys.provider,
      kekReachable: kek.reachable,
      ...(kek.error !== undefined ? { kekError: kek.error } : {}),
      dataKeys: [...dataKeys.values()],
      signingKey: signing ? { kid: signing.kid, createdAt: signing.createdAt.toISOString(), ageDays: ageDays(signing.createdAt) } : null,
    },
    redis,
    queue,
    server: { publicUrl: config.publicUrl, listen: sources.listeningUrl ?? `http://${config.host}:${config.port}`, listening },
    healthy: false,
  };
  status.healthy = kek.reachable && (!redis.configured || redis.reachable) && migrations.applied >= migrations.available && listening;
  return status;
}

async function probeKek(sources: StatusSources): Promise<{ reachable: boolean; error?: string }> {
  try {
    if (sources.keyProvider) {
      await sources.keyProvider.check();
    } else {
      const provider = await openKeyProvider(sources.config, sources.logger);
      await provider.close();
    }
    return { reachable: true };
  } catch (error) {
    return { reachable: false, error: error instanceof Error ? error.message.split('\n')[0]! : String(error) };
  }
}

async function probeRedis(config: Config, logger: Logger): Promise<GatewayStatus['redis']> {
  if (!config.redisUrl) return { configured: false };
  const redis = openRedis(config.redisUrl, logger.child({ component: 'status' }), { connectTimeoutMs: 2_000 });
  try {
    // Commands fail at once until the connection is ready (see openRedis): give it a moment.
    for (let waited = 0; !redis.isReady() && waited < 2_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    await redis.client.ping();
    return { configured: true, location: describeRedisUrl(config.redisUrl), reachable: true };
  } catch {
    return { configured: true, location: describeRedisUrl(config.redisUrl), reachable: false };
  } finally {
    await redis.close().catch(() => undefined);
  }
}

/** Whether a server answers /healthz where this configuration says it listens. */
async function probeServer(config: Config): Promise<boolean> {
  try {
    const response = await fetch(`http://${config.host}:${config.port}/healthz`, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}
