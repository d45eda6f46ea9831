import { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Principal } from '../identity/principal.js';
import { createLimiter } from '../identity/limits/throttle.js';
import { HttpProblem } from './problem.js';

/**
 * What shares the counts between instances: the store's Redis connection, handed in by whoever
 * wires the app (serve, a test) and given to identity's `createLimiter`, which builds every limit
 * on it. Absent, each instance counts on its own.
 */
export type SharedLimitBackend = Parameters<typeof createLimiter>[0];

export interface ApiRateLimitOptions {
  /** Requests per minute per caller (one verified principal, or one address). */
  perMinute: number;
  /** Shares the counts between instances; without it each instance counts on its own. */
  redis?: SharedLimitBackend;
  /** Prefix of the Redis keys. Default 'cg'. */
  keyPrefix?: string;
}

/** Only the API and the OAuth endpoints are limited here; health probes and docs never are. */
export const RATE_LIMITED_PATH_PREFIXES = ['/api/', '/oauth/'] as const;

/** What the guard tells the limit once it has verified a request's credential. */
export interface ApiRateLimit {
  /**
   * Moves a request counted against its address to the budget of the principal whose credential
   * was just verified (429 `rate-limited` when that budget is spent). A no-op for requests the
   * limit did not count (paths outside the prefixes).
   */
  chargePrincipal(request: FastifyRequest, principal: Principal): Promise<void>;
}

/**
 * Per-caller request limit for `/api/` and `/oauth/`, on rate-limiter-flexible. A 429 is a
 * `rate-limited` problem with Retry-After.
 *
 * The caller is a verified principal (a user, or an API key with its OAuth tokens) or else the
 * client address (an IPv6 /64). Nothing unverified picks the bucket: every request is counted
 * against its address in `onRequest`, before anything else runs, and only when the guard has
 * verified the credential (`chargePrincipal`) is that request given back to the address and
 * counted against the principal instead. So a made-up bearer token or cookie costs its address
 * one request like no credential at all, and never opens a fresh bucket (issue #13 item 4); an
 * address whose budget is spent is refused before any credential it sends is checked, which
 * bounds the verification work one address can cause. Public routes (sign-in, signup, OAuth
 * token) never verify a credential, so they always count against the address.
 *
 * Redis keys name the address or the principal's id, never a credential.
 *
 * With Redis the counts are shared by all instances. While Redis is unreachable the limiter's
 * in-memory insurance answers instead (`createLimiter`), so each instance still limits on its
 * own and no request fails or waits; sharing resumes when Redis returns (counts made meanwhile
 * are not merged). The outage is logged once by the connection.
 *
 * Call before the guard is installed, so this `onRequest` hook runs first. It neither decorates
 * `app` nor limits routes outside the prefixes.
 */
export async function registerApiRateLimit(app: FastifyInstance, options: ApiRateLimitOptions): Promise<ApiRateLimit> {
  const { perMinute } = options;
  if (!Number.isInteger(perMinute) || perMinute < 1) throw new RangeError('perMinute must be a positive integer');
  const limiter = createLimiter(options.redis, { keyPrefix: `${options.keyPrefix ?? 'cg'}:api-rate`, points: perMinute, duration: 60 });
  const countedToAddress = new WeakSet<FastifyRequest>();
  const refused = (retryAfterSeconds: number) => rateLimitedProblem(`more than ${perMinute} requests in a minute; retry in ${retryAfterSeconds} s`, retryAfterSeconds);

  app.addHook('onRequest', async (request) => {
    if (!isRateLimitedPath(request)) return;
    await spend(limiter, addressKey(request.ip), refused);
    countedToAddress.add(request);
  });

  return {
    async chargePrincipal(request, principal) {
      if (!countedToAddress.delete(request)) return;
      // The address gets its request back only now that the credential proved whose it is.
      await limiter.reward(addressKey(request.ip), 1).catch(() => undefined);
      await spend(limiter, principalKey(principal), refused);
    },
  };
}

/**
 * Per-address request limit for every route of `app` (the provider webhooks), run in
 * `onRequest`: before the body is read, the tenant looked up or a signature checked, so a
 * flood from one address costs a counter increment per request once it is over the limit.
 * `onLimited` is told of each refusal (for metrics); nothing is audited per refusal.
 */
export function limitByAddress(
  app: FastifyInstance,
  options: { perMinute: number; redis?: SharedLimitBackend; keyPrefix: string; name: string; onLimited?: (request: FastifyRequest) => void },
): void {
  const { perMinute } = options;
  if (!Number.isInteger(perMinute) || perMinute < 1) throw new RangeError('perMinute must be a positive integer');
  const limiter = createLimiter(options.redis, { keyPrefix: `${options.keyPrefix}:${options.name}`, points: perMinute, duration: 60 });
  app.addHook('onRequest', async (request) => {
    await spend(limiter, addressKey(request.ip), (retryAfterSeconds) => {
      options.onLimited?.(request);
      return rateLimitedProblem(`more than ${perMinute} requests in a minute from this address; retry in ${retryAfterSeconds} s`, retryAfterSeconds);
    });
  });
}

/** The one 429 of the HTTP limits: problem type `rate-limited`, with Retry-After. */
export function rateLimitedProblem(detail: string, retryAfterSeconds: number): HttpProblem {
  return new HttpProblem(429, 'rate-limited', 'Too many requests', detail, { retryAfterSeconds }, { 'retry-after': String(retryAfterSeconds) });
}

/** Spends one point of `key`, or throws the limit's problem. A store failure with no insurance to answer is not the caller's fault: it passes. */
async function spend(limiter: RateLimiterAbstract, key: string, refused: (retryAfterSeconds: number) => HttpProblem): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (rejection) {
    if (!(rejection instanceof RateLimiterRes)) return;
    throw refused(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)));
  }
}

/**
 * The matched route's pattern when there is one, so an encoded or oddly written URL of a
 * limited route is still limited; the raw path for a 404, so probing for routes counts too.
 */
function isRateLimitedPath(request: FastifyRequest): boolean {
  const path = request.routeOptions.url ?? request.url.split('?')[0] ?? '';
  return RATE_LIMITED_PATH_PREFIXES.some((prefix) => path.startsWith(prefix));
}

/**
 * The address as Fastify resolved it (X-Forwarded-For only from CIPHERGATE_TRUST_PROXY), with
 * an IPv6 /64 counted as one address (@fastify/rate-limit's normalisation, as the sign-in
 * throttle does): a client usually holds a whole /64.
 */
function addressKey(ip: string): string {
  return `ip:${normalizeIP(ip)}`;
}

/** Ids, never credentials: a user's sessions share one budget, and so do an API key and its OAuth tokens. */
function principalKey(principal: Principal): string {
  return principal.kind === 'user' ? `user:${principal.userId}` : `key:${principal.apiKeyId}`;
}
