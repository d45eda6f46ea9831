import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Histogram, Registry } from 'prom-client';

/** Route label of a request no route matched (404, 405, a malformed URL). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Methods Node's parser accepts are a fixed list, but a label set should not depend on that:
 * anything outside the usual ones is `other`.
 */
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Seconds; the low end resolves a health probe, the high end a slow provider-bound request. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface HttpMetrics {
  registry: Registry;
  /** Counts one answered request; `onResponse` calls it, and the malformed-URL answer too. */
  observe(request: FastifyRequest, reply: FastifyReply): void;
}

/**
 * Request counts and latency by method, route pattern and status, on the app's own registry.
 * The route is the pattern Fastify matched (`/webhooks/twilio/:tenant/sms`), never the URL: a
 * URL carries tenant slugs, ids and query strings, and anyone could mint a series per URL.
 */
export function installHttpMetrics(app: FastifyInstance): HttpMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'ciphergate_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'ciphergate_http_request_duration_seconds',
    help: 'Time from request to response, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const observe = (request: FastifyRequest, reply: FastifyReply) => {
    const labels = {
      method: METHODS.has(request.method) ? request.method : 'other',
      // The not-found handler (404, 405) matched no route of ours; a route's own 404 keeps its pattern.
      route: request.is404 ? UNMATCHED_ROUTE : (request.routeOptions.url ?? UNMATCHED_ROUTE),
      status: String(reply.statusCode),
    };
    requests.inc(labels);
    duration.observe(labels, reply.elapsedTime / 1000);
  };
  app.addHook('onResponse', (request, reply, done) => {
    observe(request, reply);
    done();
  });
  return { registry, observe };
}
