import { createHash } from 'node:crypto';
import { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RateLimiterRes } from 'rate-limiter-flexible';
import { createLimiter } from '../identity/throttle.js';
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
 * Per-caller request limit for `/api/` and `/oauth/`, on rate-limiter-flexible. A 429 is a
 * `rate-limited` problem with Retry-After.
 *
 * The caller is the SHA-256 of its access token (bearer header or access cookie), else its
 * address (an IPv6 /64). The token is hashed so that Redis, which is not sealed, never holds
 * a usable credential. It is not verified here (this runs before authentication), so a client
 * sending a different made-up token each time gets a fresh bucket each time: this limit
 * shares capacity fairly between real callers; it is not what stops credential guessing
 * (see `LoginThrottle`).
 *
 * With Redis the counts are shared by all instances. While Redis is unreachable the limiter's
 * in-memory insurance answers instead (`createLimiter`), so each instance still limits on its
 * own and no request fails or waits; sharing resumes when Redis returns (counts made meanwhile
 * are not merged). The outage is logged once by the connection.
 *
 * Call before the API routes are registered. One `onRequest` hook: it neither decorates `app`
 * nor limits routes outside the prefixes.
 */
export async function registerApiRateLimit(app: FastifyInstance, options: ApiRateLimitOptions): Promise<void> {
  if (!Number.isInteger(options.perMinute) || options.perMinute < 1) throw new RangeError('perMinute must be a positive integer');
  const limiter = createLimiter(options.redis, { keyPrefix: `${options.keyPrefix ?? 'cg'}:api-rate`, points: options.perMinute, duration: 60 });
  app.addHook('onRequest', async (request) => {
    if (!isRateLimitedPath(request)) return;
    try {
      await limiter.consume(callerKey(request));
    } catch (rejection) {
      // A store failure with no insurance to answer is not the caller's fault: let it pass.
      if (!(rejection instanceof RateLimiterRes)) return;
      const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      throw new HttpProblem(
        429,
        'rate-limited',
        'Too many requests',
        `more than ${options.perMinute} requests in a minute; retry in ${retryAfterSeconds} s`,
        { retryAfterSeconds },
        { 'retry-after': String(retryAfterSeconds) },
      );
    }
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
