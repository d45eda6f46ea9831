import { after, before, describe } from 'node:test';
import type { RedisRevocationBus } from '../../src/store/revocation-bus.js';
import { openRedis, type RedisConnection } from '../../src/store/redis.js';
import { postgresUnavailableReason } from './database.js';
import { openIdentityHarness, type IdentityHarness } from './identity.js';
import { captureLogs } from './log-capture.js';
import { deleteKeys, redisGate, TEST_REDIS_URL, uniquePrefix } from './redis.js';
import { serviceGate } from './services.js';

/**
 * Two instances of one deployment, as two servers behind a load balancer run: one PostgreSQL
 * database and master key, one Redis under one key prefix, and each instance with its own Redis
 * connection, Identity, caches and app. Filled in by the suite's `before` hook.
 */
export interface InstancesOverRedis {
  a: IdentityHarness;
  b: IdentityHarness;
}

/**
 * A suite over {@link InstancesOverRedis}, skipped (or failed under CI) without Redis or
 * PostgreSQL. The instances are open, and both revocation buses subscribed, before the first
 * test: a message sent before a subscription is active would be missed, and that is not what
 * these suites test. `keyPrefixLabel` names the suite's Redis keys, deleted after it.
 */
export async function describeInstancesOverRedis(title: string, keyPrefixLabel: string, body: (instances: InstancesOverRedis) => void): Promise<void> {
  const redis = await redisGate();
  const postgres = serviceGate('PostgreSQL', await postgresUnavailableReason());
  describe(title, { skip: redis.skip || postgres.skip }, () => {
    const prefix = uniquePrefix(keyPrefixLabel);
    const connections: RedisConnection[] = [];
    const instances = {} as InstancesOverRedis;

    before(async () => {
      const connect = () => {
        const connection = openRedis(TEST_REDIS_URL, captureLogs().logger);
        connections.push(connection);
        return connection;
      };
      instances.a = await openIdentityHarness('postgres', { redis: connect(), redisKeyPrefix: prefix });
      instances.b = await openIdentityHarness('postgres', { redis: connect(), redisKeyPrefix: prefix, shareWith: instances.a });
      await Promise.all([instances.a, instances.b].map((h) => (h.identity.parts.bus as RedisRevocationBus).whenSubscribed()));
    });
    after(async () => {
      await instances.b?.close();
      await instances.a?.close();
      for (const connection of connections) await connection.close();
      await deleteKeys(prefix);
    });

    body(instances);
  });
}
