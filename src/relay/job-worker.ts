import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../log/logger.js';
import { ProviderError } from '../providers/provider-error.js';
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
}

/**
 * Claims due jobs and runs their handlers, `concurrency` at a time. Every outcome goes back to
 * the queue: success deletes the job, a failure schedules the retry or the dead letter. A
 * worker stopped mid-job leaves the lease to run out, and another worker picks the job up.
 */
export class JobWorker {
  readonly workerId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly concurrency: number;
  private readonly pollIntervalMs: number;
  private readonly heartbeatMs: number;
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private wakeRequested = false;
  private loop: Promise<void> | undefined;
  private resolveSleep: (() => void) | undefined;

  constructor(private readonly options: JobWorkerOptions) {
    this.concurrency = options.concurrency ?? 4;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.heartbeatMs = options.heartbeatMs ?? 20_000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** A job was just enqueued in this process: look now instead of at the next poll. */
  wake(): void {
    this.wakeRequested = true;
    this.resolveSleep?.();
  }

  /** Stops claiming and waits for the jobs in flight to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.resolveSleep?.();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
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
        } catch (error) {
          // The database is away: keep polling; /readyz reports the outage meanwhile.
          this.options.logger.warn({ err: error }, 'could not claim jobs');
        }
      }
      for (const job of claimed) {
        const execution = this.execute(job).finally(() => {
          this.inFlight.delete(execution);
          this.wake();
        });
        this.inFlight.add(execution);
      }
      if (!this.running) break;
      // A full batch means more may be due: look again at once.
      if (claimed.length > 0 && claimed.length === free) continue;
      if (!this.wakeRequested) await this.sleep(this.pollIntervalMs);
    }
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
      queue.extendLease(job, this.workerId).catch((error: unknown) => log.warn({ err: error }, 'could not extend the job lease'));
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
        // The lease runs out and the job is claimed again: nothing is lost.
        log.error({ err: recordError, failure: failure.summary }, 'could not record a job failure');
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
