import { randomUUID } from 'node:crypto';
import helmet from 'helmet';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { AuditLog } from '../audit/audit-log.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import type { Identity } from '../identity/identity.js';
import { PERMISSIONS } from '../identity/permissions.js';
import type { Relay } from '../relay/relay.js';
import { installErrorHandling, respondToError } from './error-handler.js';
import { installGuard } from './guard.js';
import { installJsonBodyParser } from './json-body.js';
import { installOpenApi } from './openapi.js';
import { requestValidatorFactory } from './request-validation.js';
import { installStrictFormats } from './schemas/formats.js';
import { installTextInputGuard } from './text-input.js';
import { registerApiRateLimit, type SharedLimitBackend } from './rate-limit.js';
import { assertRouteDeclaresAccess, type RouteAccess } from './route-access.js';
import type { ReadinessCheck } from './routes/health.js';
import { grantDocsAccess } from './routes/docs.js';
import { registerRoutes } from './routes/index.js';
import { MetricsExposition } from '../metrics/exposition.js';
import { installHttpMetrics, type HttpMetrics } from '../metrics/http-metrics.js';
import { processMetrics } from '../metrics/process-metrics.js';

export type App = FastifyInstance;

export interface RouteCatalogueEntry {
  method: string | string[];
  url: string;
  access: RouteAccess;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route with its declared access: the source for permission docs and route tests. */
    routeCatalogue: RouteCatalogueEntry[];
    /** What `/metrics` serves; `serve` hands it to the separate metrics listener too. */
    metrics: MetricsExposition;
  }
}

export interface AppDependencies {
  config: Pick<Config, 'publicUrl' | 'trustProxy' | 'bodyLimitBytes'> & Partial<Pick<Config, 'apiRateLimitPerMinute' | 'redisKeyPrefix' | 'webhookRateLimitPerMinute'>>;
  logger: Logger;
  /** Named checks behind `/readyz`: the database, the keys, later the queue. */
  readinessChecks?: ReadinessCheck[];
  /**
   * Sign-in, tokens and the guard's principal lookup, with the audit trail the guard records
   * refusals in. Without them every route that declares a permission answers 401: deny by
   * default, even in an app built for a test.
   */
  identity?: Identity;
  audit?: AuditLog;
  /** The message pipeline: webhooks, messages, conversations, tenants. */
  relay?: Relay;
  /** Shares the rate-limit counts (API and webhooks) between instances. */
  redis?: SharedLimitBackend;
  /**
   * Routes of a test or a benchmark, registered after the route table's (src/http/routes/index.ts),
   * which holds every route the product has.
   */
  routes?: Array<(app: App) => Promise<void> | void>;
  /** Registries of other parts (the relay's) that `/metrics` serves beside the app's own. */
  metricsRegistries?: Registry[];
  /**
   * Sees every answer a route gave (tests: test/helpers/documented-statuses.ts fails a suite whose
   * requests got a status the OpenAPI document does not list for that route).
   */
  observeResponse?: (request: FastifyRequest, reply: FastifyReply) => void;
}

/**
 * Builds the HTTP application without listening, so tests inject requests and `serve` decides
 * where to listen. Every plugin goes through here and every route comes from the one route table
 * (src/http/routes/index.ts), so what tests exercise is what production runs.
 */
export async function buildApp(dependencies: AppDependencies): Promise<App> {
  const { config, logger } = dependencies;
  // An API answers JSON, never a page: the OWASP REST profile (nothing may load, nothing may
  // frame it) instead of helmet's document-oriented defaults. Headers that only old browsers
  // read (X-XSS-Protection, X-Download-Options, …) are left out. The console, when it is
  // served, sets its own policy on its own routes.
  //
  // helmet itself, built once: @fastify/helmet rebuilds helmet's middleware (re-parsing every
  // option) on each request, which measured 0.56× of a bare route against 0.74× for this
  // (bench/http-healthz.bench.ts, docs/benchmarks.md). The headers are the same.
  const applySecurityHeaders = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    strictTransportSecurity: config.publicUrl.startsWith('https://') ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    xXssProtection: false,
    xDownloadOptions: false,
    xDnsPrefetchControl: false,
    xPermittedCrossDomainPolicies: false,
    originAgentCluster: false,
  });
  // Set once the app exists: the malformed-URL answer below is built before the hooks are.
  let httpMetrics: HttpMetrics | undefined;
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Ids are always ours: an id taken from a request header could be chosen to confuse logs.
    genReqId: () => randomUUID(),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // While closing, new requests get 503 and idle keep-alive sockets are closed, so a drain
    // waits only for requests actually in flight.
    return503OnClosing: true,
    // One line per request (written when it completes) instead of Fastify's two: half the
    // logging cost on every request, and the line carries everything the two did.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
    // A URL the router cannot decode (`/%zz`) or a path segment over the length limit never
    // reaches a route or the error handler; this makes it a problem like every other error.
    frameworkErrors: (error, request, reply) => {
      // No onResponse hook runs for these requests: they are counted when the answer is written.
      reply.raw.once('finish', () => httpMetrics?.observe(request, reply));
      // Nor does any onRequest hook: the security headers are set here as on every other answer.
      applySecurityHeaders(request.raw, reply.raw, () => {
        respondToError(error, request, reply.header('x-request-id', request.id) as unknown as FastifyReply);
      });
    },
    // JSON bodies are validated as sent, the URL's text is read into declared types
    // (src/http/request-validation.ts).
    schemaController: { compilersFactory: { buildValidator: requestValidatorFactory() } },
    ajv: {
      customOptions: {
        // Unknown properties are an error the client should hear about, not something to drop.
        removeAdditional: false,
        allErrors: false,
      },
      onCreate: installStrictFormats,
    },
  });
  installJsonBodyParser(app);

  httpMetrics = installHttpMetrics(app);
  const exposition = new MetricsExposition([
    httpMetrics.registry,
    // The route catalogue (docs/permissions.md) builds the app around a stand-in identity without metrics.
    ...(dependencies.identity?.metrics ? [dependencies.identity.metrics.registry] : []),
    ...(dependencies.metricsRegistries ?? []),
    processMetrics(),
  ]);
  app.decorate('metrics', exposition);

  const routeCatalogue: RouteCatalogueEntry[] = [];
  app.decorate('routeCatalogue', routeCatalogue);
  app.addHook('onRoute', (route) => {
    grantDocsAccess(route);
    assertRouteDeclaresAccess(route);
    const access = route.config!.access!;
    if ('permission' in access && !Object.hasOwn(PERMISSIONS, access.permission)) {
      throw new Error(`route ${String(route.method)} ${route.url} names an unknown permission "${access.permission}" (src/identity/permissions.ts)`);
    }
    routeCatalogue.push({ method: route.method, url: route.url, access: route.config!.access! });
  });

  // A response finished while the server drains asks its client to close the connection;
  // otherwise an idle keep-alive socket would hold the shutdown open until it times out.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
    dependencies.observeResponse?.(request, reply);
    done();
  });
  installErrorHandling(app);
  installTextInputGuard(app);

  app.addHook('onRequest', (request, reply, done) => {
    applySecurityHeaders(request.raw, reply.raw, (error?: unknown) => done(error as Error | undefined));
  });
  await installOpenApi(app, { publicUrl: config.publicUrl });

  const rateLimit =
    config.apiRateLimitPerMinute === undefined
      ? undefined
      : await registerApiRateLimit(app, { perMinute: config.apiRateLimitPerMinute, redis: dependencies.redis, keyPrefix: config.redisKeyPrefix ?? 'cg' });
  const { identity, audit, relay } = dependencies;
  if (identity && !audit) throw new Error('an app with an identity needs the audit trail its guard records refusals in');
  await installGuard(app, identity && audit ? { identity, audit } : undefined, rateLimit);

  await registerRoutes(app, {
    config,
    identity,
    relay,
    audit,
    readinessChecks: dependencies.readinessChecks ?? [],
    metrics: exposition,
    redis: dependencies.redis,
  });
  for (const routes of dependencies.routes ?? []) await app.register(async (scope) => routes(scope));

  await app.ready();
  return app;
}
