/**
 * Spaces requests to each Airtable base so that no more than `requestsPerSecond` start within any
 * one-second window. Airtable allows 5 requests per second per base, for the records API and the
 * webhooks API alike, and punishes a burst with a 30-second lock-out
 * (https://airtable.com/developers/web/api/rate-limits), so staying under the limit is cheaper than
 * reacting to 429s.
 *
 * A sliding window rather than fixed one-second buckets (as rate-limiter-flexible's memory limiter
 * counts): with buckets, 5 requests at the end of one second and 5 at the start of the next are 10
 * in one real second. The window is widened by a margin because Airtable counts arrivals, and
 * network jitter can bunch up requests that left here evenly spaced.
 *
 * The pacing is per process. Share one pacer between the records and webhooks clients of a
 * process; several processes writing to one base would each need a share of the budget.
 */
export interface BasePacer {
  /** Resolves when a request to `baseId` may start; the slot is reserved on call, so callers queue fairly. */
  take(baseId: string): Promise<void>;
}

export const AIRTABLE_REQUESTS_PER_SECOND = 5;

export function createBasePacer(options: { requestsPerSecond?: number; marginMs?: number; now?: () => number } = {}): BasePacer {
  const limit = options.requestsPerSecond ?? AIRTABLE_REQUESTS_PER_SECOND;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError('requestsPerSecond must be a positive integer');
  const windowMs = 1000 + (options.marginMs ?? DEFAULT_MARGIN_MS);
  const now = options.now ?? Date.now;
  /** Per base, the start times of the last `limit` requests (some may lie in the future: reserved slots). */
  const recentStarts = new Map<string, number[]>();

  return {
    take(baseId) {
      const current = now();
      forgetIdleBases(recentStarts, current - windowMs);
      const starts = recentStarts.get(baseId) ?? [];
      // The next start must be a full window after the request `limit` places back, so that any
      // `limit + 1` consecutive requests span more than one window.
      const oldestInWindow = starts.length >= limit ? starts[starts.length - limit] : undefined;
      const slot = oldestInWindow === undefined ? current : Math.max(current, oldestInWindow + windowMs);
      starts.push(slot);
      if (starts.length > limit) starts.splice(0, starts.length - limit);
      recentStarts.set(baseId, starts);
      const waitMs = slot - current;
      return waitMs > 0 ? new Promise((resolve) => setTimeout(resolve, waitMs)) : Promise.resolve();
    },
  };
}

/**
 * Airtable counts arrivals; our clock counts departures. A request can leave late (the event loop
 * was busy sealing, PGlite ran a query) and arrive bunched with later ones, so the window is a
 * quarter second longer than Airtable's: at most 5 requests per 1.25 s, i.e. 4 per second.
 */
const DEFAULT_MARGIN_MS = 250;

/** Drops bases whose last request is older than the window, so the map stays as small as the set of busy bases. */
function forgetIdleBases(recentStarts: Map<string, number[]>, before: number): void {
  for (const [baseId, starts] of recentStarts) {
    const last = starts[starts.length - 1];
    if (last === undefined || last < before) recentStarts.delete(baseId);
  }
}
