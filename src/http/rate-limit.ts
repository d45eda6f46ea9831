import { createHash } from 'node:crypto';
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisConnection } from '../store/redis.js';
import { ACCESS_COOKIE } from './guard.js';
import { HttpProblem } from './problem.js';

export interface ApiRateLimitOptions {
  /** Requests per minute per caller (one access token, or one address without a token). */
  perMinute: number;
  /** Shares the counts between instances; without it each instance counts on its own. */
  redis?: RedisConnection | undefined;
  /** Prefix of the Redis keys. Default 'cg'. */
  keyPrefix?: string;
}

/** Only the API and the OAuth endpoints are limited here; health probes and docs never are. */
export const RATE_LIMITED_PATH_PREFIXES = ['/api/', '/oauth/'] as const;


/**
 * Per-caller request limit for `/api/` and `/oauth/`, on @fastify/rate-limit. A 429 is a
 * `rate-limited` problem with Retry-After.
 *
 * The caller is the SHA-256 of its access token (bearer header or access cookie), else its
 * address (an IPv6 /64). The token is hashed so that Redis, which is not sealed, never holds
 * a usable credential. It is not verified here (this runs before authentication), so a client
 * sending a different made-up token each time gets a fresh bucket each time: this limit
 * shares capacity fairly between real callers; it is not what stops credential guessing
 * (see `LoginThrottle`).
 *
 * With Redis the counts are shared by all instances. If Redis fails, requests pass unlimited
 * (`skipOnError`) rather than fail: the outage is logged once by the connection.
 *
 * Call before the API routes are registered and before `app.ready()`. The plugin is
 * registered in a scope of its own and driven from one `onRequest` hook, so it neither
 * decorates `app` nor limits routes outside the prefixes; a route wanting a limit of its own
 * registers the plugin where it needs it.
 */
export async function registerApiRateLimit(app: FastifyInstance, options: ApiRateLimitOptions): Promise<void> {
  if (!Number.isInteger(options.perMinute) || options.perMinute < 1) throw new RangeError('perMinute must be a positive integer');
  if (app.hasDecorator('rateLimit')) {
    // The plugin decorates only once per tree: our scope would silently get the other
    // registration's limiter, settings and store.
    throw new Error('@fastify/rate-limit is already registered on this app; register the API rate limit first');
  }
  let limit: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined;
  await app.register(async (scope) => {
    await scope.register(fastifyRateLimit, {
      global: false,
      max: options.perMinute,
      timeWindow: 60_000,
      keyGenerator: callerKey,
      skipOnError: true,
      ...(options.redis ? { redis: options.redis.client, nameSpace: `${options.keyPrefix ?? 'cg'}:api-rate:` } : {}),
      errorResponseBuilder: (_request, context) => {
        const retryAfterSeconds = Math.max(1, Math.ceil(context.ttl / 1000));
        return new HttpProblem(
          429,
          'rate-limited',
          'Too many requests',
          `more than ${context.max} requests in a minute; retry in ${retryAfterSeconds} s`,
          { retryAfterSeconds },
          { 'retry-after': String(retryAfterSeconds) },
        );
      },
    });
    const handler = scope.rateLimit();
    limit = async (request, reply) => {
      await handler.call(scope, request, reply);
    };
  });
  const applyLimit = limit!;
  app.addHook('onRequest', async (request, reply) => {
    if (isRateLimitedPath(request)) await applyLimit(request, reply);
  });
}

/**
 * The matched route's pattern when there is one, so an encoded or oddly written URL of a
 * limited route is still limited; the raw path for a 404, so probing for routes counts too.
 */
function isRateLimitedPath(request: FastifyRequest): boolean {
  const path = request.routeOptions.url ?? request.url.split('?')[0] ?? '';
  return RATE_LIMITED_PATH_PREFIXES.some((prefix) => path.startsWith(prefix));
}

function callerKey(request: FastifyRequest): string {
  const token = bearerToken(request.headers.authorization) ?? cookieValue(request.headers.cookie, ACCESS_COOKIE);
  if (token !== undefined) return `token:${createHash('sha256').update(token).digest('base64url')}`;
  return `ip:${normalizeIP(request.ip)}`;
}

const BEARER = /^Bearer +([^\s]+)\s*$/i;

function bearerToken(header: string | undefined): string | undefined {
  return header === undefined ? undefined : BEARER.exec(header)?.[1];
}

/** Just the one cookie; the access cookie's value is a token, which needs no decoding. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const separator = pair.indexOf('=');
    if (separator !== -1 && pair.slice(0, separator).trim() === name) {
      const value = pair.slice(separator + 1).trim();
      return value.length > 0 ? value : undefined;
    }
  }
  return undefined;
}
