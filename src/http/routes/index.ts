import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../../audit/audit-log.js';
import type { Config } from '../../config/load.js';
import type { Identity } from '../../identity/identity.js';
import type { MetricsExposition } from '../../metrics/exposition.js';
import type { Relay } from '../../relay/relay.js';
import type { SharedLimitBackend } from '../rate-limit.js';
import { consoleRoutes } from '../../console/console.js';
import { apiKeyRoutes } from './api-keys.js';
import { auditRoutes } from './audit.js';
import { authRoutes } from './auth.js';
import { conversationRoutes } from './conversations.js';
import { docsRoutes } from './docs.js';
import { healthRoutes, type ReadinessCheck } from './health.js';
import { messageRoutes } from './messages.js';
import { metricsRoutes } from './metrics.js';
import { oauthRoutes } from './oauth.js';
import { tenantRoutes } from './tenants.js';
import { userRoutes } from './users.js';
import { webhookRoutes } from './webhooks.js';

/**
 * THE route table: every route module of the app, in the order they are registered. `buildApp`
 * registers from it, so serve, the test helpers and the permissions reference
 * (docs/permissions.md, `fullRouteCatalogue`) all get the same routes; a route that is not in it
 * does not exist. To add routes: a module in this folder that declares each route's schema and
 * access beside its handler, and one line here.
 */
export const ROUTE_TABLE: readonly RouteModule[] = [
  { needs: [], routes: ({ readinessChecks }) => (app) => healthRoutes(app, { checks: readinessChecks }) },
  { needs: [], routes: () => docsRoutes },
  { needs: [], routes: ({ metrics }) => metricsRoutes(metrics) },
  { needs: ['identity'], routes: ({ identity }) => authRoutes(identity) },
  { needs: ['identity'], routes: ({ identity }) => userRoutes(identity) },
  { needs: ['identity'], routes: ({ identity }) => apiKeyRoutes(identity) },
  { needs: ['identity'], routes: ({ identity }) => oauthRoutes(identity) },
  { needs: ['identity', 'relay'], routes: ({ relay }) => tenantRoutes({ relay }) },
  { needs: ['identity', 'audit'], routes: ({ audit }) => auditRoutes(audit) },
  {
    needs: ['relay'],
    routes: ({ relay, config, redis }) =>
      webhookRoutes({ relay, publicUrl: config.publicUrl, rateLimit: { perMinute: setting(config.webhookRateLimitPerMinute, 'webhookRateLimitPerMinute'), redis, keyPrefix: config.redisKeyPrefix ?? 'cg' } }),
  },
  { needs: ['identity', 'relay'], routes: ({ relay }) => conversationRoutes({ relay }) },
  { needs: ['identity', 'relay'], routes: ({ relay }) => messageRoutes({ relay }) },
  // The staff console's pages (src/console): a front end over the same use cases.
  { needs: ['identity', 'relay'], routes: ({ identity, relay }) => consoleRoutes({ identity, relay }) },
];

/** The use cases a route module may need; the routes that declare a permission need `identity` for the guard. */
export type RouteNeed = 'identity' | 'relay' | 'audit';

/** Everything the route modules are built over. */
export interface RouteServices {
  /** An app built for a test may leave out the settings of routes it does not register. */
  config: Pick<Config, 'publicUrl'> & Partial<Pick<Config, 'webhookRateLimitPerMinute' | 'redisKeyPrefix'>>;
  identity: Identity;
  relay: Relay;
  audit: AuditLog;
  readinessChecks: ReadinessCheck[];
  /** What `/metrics` serves. */
  metrics: MetricsExposition;
  redis: SharedLimitBackend;
}

export interface RouteModule {
  /**
   * The use cases the module's routes translate to. An app built without one of them (a test of
   * the HTTP plumbing, a benchmark) leaves the module out, and a route that is left out does not
   * exist, so nothing can reach a use case that is not there.
   */
  needs: readonly RouteNeed[];
  routes(services: RouteServices): (app: FastifyInstance) => Promise<void> | void;
}

/** Registers every module of the table whose needs `services` meets. */
export async function registerRoutes(app: FastifyInstance, services: Omit<RouteServices, RouteNeed> & Partial<Pick<RouteServices, RouteNeed>>): Promise<void> {
  for (const module of ROUTE_TABLE) {
    if (!module.needs.every((need) => services[need] !== undefined)) continue;
    // The check above is what `needs` promises the module: what it names is there.
    await app.register(module.routes(services as RouteServices));
  }
}

function setting<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new Error(`config.${name} is needed to register the routes that read it`);
  return value;
}
