import { backoffDelayMs } from '../domain/backoff.js';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../log/logger.js';
import { ProviderError } from '../providers/provider-error.js';
import { isDatabaseUnavailable } from '../store/connection-errors.js';
import type { ClaimedJob, JobFailure, JobQueue } from '../store/job-queue.js';

/** A handler does one job kind's work; it must be safe to run again for the same job. */
export type JobHandler = (job: ClaimedJob) => Promise<void>;

/** A failure that waiting cannot fix (a tenant without the provider, a message that is gone). */
export class PermanentJobError extends Error {
  override readonly name = 'PermanentJobError';
}

export interface JobWorkerOptions {
  queue: JobQueue;
  handlers: Record<string, JobHandler>;
  logger: Logger;
  /** Jobs run at once in this process. */
  concurrency?: number;
  /** How often an idle worker looks for due jobs; `wake()` skips the wait. */
  pollIntervalMs?: number;
  /** How often a running job's lease is pushed forward. */
  heartbeatMs?: number;
  onOutcome?: (kind: string, outcome: 'done' | 'retry' | 'dead') => void;
  /** Called as each claimed job starts an attempt (metrics). */
  onAttempt?: (kind: string) => void;
  /** Ceiling of the wait between claims while the database fails. Default 5 000 ms. */
  maxBackoffMs?: number;
}

export interface StopOptions {
  /**
   * How long running jobs may take to finish before their leases are released (made claimable
   * again at once, for another instance). Without it, stop waits for them however long.
   */
  graceMs?: number;
}

/**
 * Claims due jobs and runs their handlers, `concurrency` at a time. Every outcome goes back to
 * the queue: success deletes the job, a failure schedules the retry or the dead letter. A
 * worker stopped with a grace period releases the leases of jobs still running when it ends,
 * so another worker picks them up at once; a worker that dies leaves its leases to run out.
 *
 * While the database fails, claiming backs off exponentially (up to `maxBackoffMs`) and the
 * worker stays up; a connection outage is logged by the connection, once, and another failure
 * once per streak, never a stack per poll.
 */
export class JobWorker {
  readonly workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly concurrency: number;
  private readonly pollIntervalMs: number;
  private readonly heartbeatMs: number;
  private readonly maxBackoffMs: number;
  private readonly inFlight = new Map<Promise<void>, ClaimedJob>();
  private failedClaims = 0;
  private stopping: Promise<{ released: number }> | undefined;
  /** A failure other than a connection outage was logged in the current streak. */
  private claimWarned = false;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private wakeRequested = false;
  private loop: Promise<void> | undefined;
  private resolveSleep: (() => void) | undefined;

  constructor(private readonly options: JobWorkerOptions) {
    this.concurrency = options.concurrency ?? 4;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.heartbeatMs = options.heartbeatMs ?? 20_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = undefined;
    this.loop = this.run();
  }

  /** A job was just enqueued in this process: look now instead of at the next poll. */
  wake(): void {
    this.wakeRequested = true;
    this.resolveSleep?.();
  }

  /**
   * Stops claiming and waits for the jobs in flight to finish, or for `graceMs`; jobs still
   * running then are released. Resolves with how many were released.
   */
  stop(options: StopOptions = {}): Promise<{ released: number }> {
    // A second stop (the server's background shutdown after the signal handler's) gets the
    // first one's outcome instead of waiting again for jobs whose leases were released.
    this.stopping ??= this.drain(options);
    return this.stopping;
  }

  private async drain(options: StopOptions): Promise<{ released: number }> {
    this.running = false;
    this.resolveSleep?.();
    await this.loop;
    const finished = Promise.allSettled([...this.inFlight.keys()]);
    if (options.graceMs === undefined) {
      await finished;
      return { released: 0 };
    }
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'grace-over'>((resolve) => (timer = setTimeout(() => resolve('grace-over'), options.graceMs)));
    const outcome = await Promise.race([finished, graceOver]);
    clearTimeout(timer);
    if (outcome !== 'grace-over' || this.inFlight.size === 0) return { released: 0 };
    const unfinished = [...this.inFlight.values()];
    try {
      const released = await this.options.queue.release(
        unfinished.map((job) => job.id),
        this.workerId,
      );
      this.options.logger.warn({ running: unfinished.length, released }, 'stopped with jobs still running; released their leases for another worker');
      return { released };
    } catch (error) {
      // The leases run out instead and the jobs are retried then: nothing is lost, only later.
      if (!isDatabaseUnavailable(error)) this.options.logger.error({ err: error }, 'could not release the leases of running jobs');
      return { released: 0 };
    }
  }

  private async run(): Promise<void> {
    const kinds = Object.keys(this.options.handlers);
    while (this.running) {
      this.wakeRequested = false;
      const free = this.concurrency - this.inFlight.size;
      let claimed: ClaimedJob[] = [];
      if (free > 0) {
        try {
          claimed = await this.options.queue.claim(this.workerId, kinds, free);
          if (this.claimWarned) this.options.logger.info({ failedClaims: this.failedClaims }, 'claiming jobs again');
          this.failedClaims = 0;
          this.claimWarned = false;
        } catch (error) {
          // The database is away: keep polling, further apart each time; /readyz reports it.
          if (!this.claimWarned && !isDatabaseUnavailable(error)) {
            this.options.logger.warn({ err: error }, 'could not claim jobs');
            this.claimWarned = true;
          }
          this.failedClaims += 1;
        }
      }
      for (const job of claimed) {
        const execution = this.execute(job).finally(() => {
          this.inFlight.delete(execution);
          this.wake();
        });
        this.inFlight.set(execution, job);
      }
      if (!this.running) break;
      // A full batch means more may be due: look again at once.
      if (claimed.length > 0 && claimed.length === free) continue;
      if (this.failedClaims > 0) await this.sleep(this.backoffMs());
      else if (!this.wakeRequested) await this.sleep(this.pollIntervalMs);
    }
  }

  /** Doubles from the poll interval per failed claim, capped, half of it jittered. */
  private backoffMs(): number {
    return backoffDelayMs(this.failedClaims, { baseMs: this.pollIntervalMs, capMs: this.maxBackoffMs });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.resolveSleep = () => {
        clearTimeout(this.timer);
        this.resolveSleep = undefined;
        resolve();
      };
      this.timer = setTimeout(() => this.resolveSleep?.(), ms);
    });
  }

  private async execute(job: ClaimedJob): Promise<void> {
    const { queue, handlers, logger } = this.options;
    const log = logger.child({ jobId: job.id, kind: job.kind, attempt: job.attempts });
    const heartbeat = setInterval(() => {
      queue.extendLease(job, this.workerId).catch((error: unknown) => {
        if (!isDatabaseUnavailable(error)) log.warn({ err: error }, 'could not extend the job lease');
      });
    }, this.heartbeatMs);
    heartbeat.unref();
    this.options.onAttempt?.(job.kind);
    try {
      await handlers[job.kind]!(job);
      await queue.complete(job, this.workerId);
      this.options.onOutcome?.(job.kind, 'done');
      log.debug('job done');
    } catch (error) {
      const failure = describeFailure(error);
      try {
        const outcome = await queue.fail(job, this.workerId, failure);
        this.options.onOutcome?.(job.kind, outcome);
        // The error itself is logged only by class and code: provider messages can echo data.
        log[outcome === 'dead' ? 'error' : 'warn']({ failure: failure.summary, outcome }, outcome === 'dead' ? 'job moved to the dead letters' : 'job failed, will retry');
      } catch (recordError) {
        // The lease runs out and the job is claimed again: nothing is lost. An outage is
        // already logged by the connection.
        if (isDatabaseUnavailable(recordError)) log.debug({ failure: failure.summary }, 'could not record a job failure: database unavailable');
        else log.error({ err: recordError, failure: failure.summary }, 'could not record a job failure');
      }
    } finally {
      clearInterval(heartbeat);
    }
  }
}

/** What the queue needs to know about a failure, without any text that could carry data. */
export function describeFailure(error: unknown): JobFailure {
  if (error instanceof ProviderError) {
    return {
      retryable: error.retryable,
      retryAfterSeconds: error.retryAfterSeconds,
      summary: `ProviderError ${error.provider} ${error.status ?? 'no-answer'}${error.code ? ` code=${error.code}` : ''}`,
    };
  }
  if (error instanceof PermanentJobError) return { retryable: false, summary: `PermanentJobError: ${error.message}` };
  const name = error instanceof Error ? error.name : typeof error;
  const code = (error as { code?: unknown } | null)?.code;
  // Anything else (a database outage, a bug) is retried: the dead letter catches a real bug.
  return { retryable: true, summary: `${name}${typeof code === 'string' ? ` code=${code}` : ''}` };
}
