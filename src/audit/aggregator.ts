import type { Logger } from '../log/logger.js';
import type { Db } from '../store/connection.js';
import { isDatabaseUnavailable } from '../store/connection-errors.js';
import type { AuditAction } from '../domain/audit-actions.js';
import type { AuditOutcome } from '../store/audit-chain.js';
import { appendAuditEvent } from '../store/audit-trail.js';

/**
 * What one aggregated entry stands for. `labels` are fixed words of ours (a provider, a reason),
 * never data from a request: they become the entry's details, and whoever sends the requests
 * must not be able to mint keys beyond the handful we define.
 */
export interface AggregatedEvent {
  action: AuditAction;
  outcome: AuditOutcome;
  tenantId: string | null;
  labels: Record<string, string>;
}

export interface AuditAggregatorOptions {
  logger: Logger;
  /** Distinct entries held before further keys are counted in one `reason: "other"` entry per action. Default 1000. */
  maxKeys?: number;
  /** How often entries whose minute has ended are written (and failed writes retried). Default 10 s. */
  flushIntervalMs?: number;
  /** The clock, for tests. */
  now?: () => number;
}

/** The `reason` of the entry that counts whatever came after the key limit was reached. */
export const OVERFLOW_REASON = 'other';

const MINUTE_MS = 60_000;

/**
 * Counts refusals (forged webhooks, throttled sign-ins) in memory and writes one audit entry per
 * action, outcome, tenant, labels and minute, with `{count, firstAt, lastAt}` in its details,
 * instead of one entry per request: a flood costs a bounded number of rows, not one per request
 * (issue #13 item 1). Counting is synchronous and touches no database.
 *
 * An entry is written once its minute has ended (checked every `flushIntervalMs`), and every
 * entry at `stop()`, which the close path calls, so a clean stop loses nothing. A failed write
 * keeps the entry for the next tick. Memory stays bounded whatever happens: past `maxKeys`
 * distinct entries, new keys are counted in one overflow entry per action and outcome (no
 * tenant, `reason: "other"`), which is written once its first minute has ended.
 *
 * The entry's source IP is the address when every counted request came from one address, and
 * empty otherwise; per-request detail stays in the request log and the metrics.
 */
export class AuditAggregator {
  private readonly pending = new Map<string, Tally>();
  private readonly maxKeys: number;
  private readonly flushIntervalMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly options: AuditAggregatorOptions,
  ) {
    this.maxKeys = options.maxKeys ?? 1000;
    this.flushIntervalMs = options.flushIntervalMs ?? 10_000;
    this.now = options.now ?? Date.now;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new RangeError('maxKeys must be a positive integer');
  }

  /** Counts one occurrence. `sourceIp` is the client address as the app resolved it. */
  count(event: AggregatedEvent, sourceIp: string | null): void {
    const at = this.now();
    const minute = Math.floor(at / MINUTE_MS) * MINUTE_MS;
    let key = keyOf(event, minute);
    let tally = this.pending.get(key);
    if (!tally && this.pending.size >= this.maxKeys) {
      const overflow: AggregatedEvent = { action: event.action, outcome: event.outcome, tenantId: null, labels: { reason: OVERFLOW_REASON } };
      key = keyOf(overflow, undefined);
      tally = this.pending.get(key);
      if (!tally) {
        tally = newTally(overflow, at, sourceIp);
        this.pending.set(key, tally);
      }
    } else if (!tally) {
      tally = newTally(event, at, sourceIp);
      this.pending.set(key, tally);
    }
    tally.count += 1;
    tally.lastAt = at;
    if (tally.sourceIp !== sourceIp) tally.sourceIp = null;
    this.startTimer();
  }

  /** Entries waiting to be written (for tests and the bound on memory). */
  get pendingEntries(): number {
    return this.pending.size;
  }

  /**
   * Writes the entries whose minute has ended (every entry with `all`). Runs one at a time, so
   * the timer and a stop never write an entry twice. A write that fails ends the run and leaves
   * that entry and the rest for the next one.
   */
  async flush(options: { all?: boolean } = {}): Promise<void> {
    while (this.flushing) await this.flushing;
    this.flushing = this.writeDue(options.all === true).finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Stops the timer and writes everything still counted: the close path calls it before the database closes. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush({ all: true });
  }

  private async writeDue(all: boolean): Promise<void> {
    const currentMinute = Math.floor(this.now() / MINUTE_MS) * MINUTE_MS;
    for (const [key, tally] of [...this.pending]) {
      if (!all && tally.minute >= currentMinute) continue;
      // Out of the map while it is written: counts arriving meanwhile (the overflow entry
      // has no minute in its key) start a new entry instead of being lost with this one.
      this.pending.delete(key);
      try {
        await appendAuditEvent(this.db, {
          actor: { type: 'anonymous' },
          action: tally.event.action,
          tenantId: tally.event.tenantId,
          sourceIp: tally.sourceIp,
          outcome: tally.event.outcome,
          details: { ...tally.event.labels, count: tally.count, firstAt: new Date(tally.firstAt).toISOString(), lastAt: new Date(tally.lastAt).toISOString() },
        });
      } catch (error) {
        this.putBack(key, tally);
        // An outage is logged once by the connection; anything else is worth a line. Never the
        // error itself: a failed query's message can quote its parameters (an address here).
        if (!isDatabaseUnavailable(error)) {
          this.options.logger.warn({ pendingEntries: this.pending.size, errorCode: (error as { code?: unknown }).code }, 'could not write aggregated audit entries; retrying');
        }
        return;
      }
    }
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** A tally whose write failed goes back, merged with anything counted under its key meanwhile. */
  private putBack(key: string, tally: Tally): void {
    const newer = this.pending.get(key);
    if (newer) {
      newer.count += tally.count;
      newer.firstAt = Math.min(newer.firstAt, tally.firstAt);
      newer.minute = Math.min(newer.minute, tally.minute);
      newer.lastAt = Math.max(newer.lastAt, tally.lastAt);
      if (newer.sourceIp !== tally.sourceIp) newer.sourceIp = null;
    } else {
      this.pending.set(key, tally);
    }
  }

  /** Only while something is pending, and never holding the process open. */
  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((error: unknown) => this.options.logger.error({ errorCode: (error as { code?: unknown }).code }, 'aggregated audit flush failed'));
    }, this.flushIntervalMs);
    this.timer.unref();
  }
}

interface Tally {
  event: AggregatedEvent;
  /** Start of the minute of the first occurrence: the entry is due once that minute is over. */
  minute: number;
  count: number;
  firstAt: number;
  lastAt: number;
  /** The one address every occurrence came from, or null when they came from several. */
  sourceIp: string | null;
}

function newTally(event: AggregatedEvent, at: number, sourceIp: string | null): Tally {
  return { event, minute: Math.floor(at / MINUTE_MS) * MINUTE_MS, count: 0, firstAt: at, lastAt: at, sourceIp };
}

/** Labels sorted, so the same labels in another order are the same entry; the overflow entry has no minute. */
function keyOf(event: AggregatedEvent, minute: number | undefined): string {
  const labels = Object.keys(event.labels)
    .sort()
    .map((name) => [name, event.labels[name]]);
  return JSON.stringify([event.action, event.outcome, event.tenantId, labels, minute ?? 'overflow']);
}
