import { backoffDelayMs } from '../domain/backoff.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.js';

export class DatabaseUnavailableError extends Error {
  override readonly name = 'DatabaseUnavailableError';
}

/**
 * Retries `attempt` with exponential backoff and full jitter until it succeeds or the time is
 * up. A database that is still starting (a compose stack, a failover) is normal at boot, so
 * start-up waits for it instead of crash-looping; past the deadline it gives up with one line.
 */
export async function connectWithBackoff(
  attempt: () => Promise<void>,
  options: { timeoutSeconds: number; what: string; logger?: Logger | undefined; baseDelayMs?: number; maxDelayMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  const base = options.baseDelayMs ?? 200;
  const cap = options.maxDelayMs ?? 5_000;
  for (let tries = 0; ; tries += 1) {
    try {
      await attempt();
      return;
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new DatabaseUnavailableError(
          `database: could not reach ${options.what} within ${options.timeoutSeconds}s (${reason})`,
        );
      }
      const delay = Math.min(remaining, backoffDelayMs(tries, { baseMs: base, capMs: cap, jitter: 'full' }));
      options.logger?.warn({ reason, retryInMs: Math.round(delay) }, `waiting for ${options.what}`);
      await sleep(delay);
    }
  }
}
