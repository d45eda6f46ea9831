/**
 * Exponential backoff with jitter, the one formula behind every retry we make: job retries,
 * a worker's failed claims, Redis reconnects, waiting for the database at start-up.
 *
 * The delay before try `attempt` (0-based) grows as `baseMs · 2^attempt` up to `capMs`.
 * Jitter spreads clients that failed together (a provider outage, instances restarted at once)
 * so they do not retry in step (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
 * - `equal`: half the delay fixed, half random; never retries at once. The default.
 * - `full`: anywhere from 0 to the delay; spreads widest, for waits where an early try is harmless.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  jitter?: 'equal' | 'full';
  /** A number in [0, 1); tests pass a fixed one. */
  random?: () => number;
}

/** The exponent stops growing here: 2^16 times any base is past every cap we use. */
const MAX_EXPONENT = 16;

export function backoffDelayMs(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? Math.random;
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt), MAX_EXPONENT));
  if (options.jitter === 'full') return random() * ceiling;
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
