import { backoffDelayMs } from '../domain/backoff.js';
import { randomUUID } from 'node:crypto';
import { and, asc, eq, sql } from 'drizzle-orm';
import { queryRows, type Db } from './connection.js';
import { jobs } from './tables/jobs.js';

/**
 * The job queue, on the database the data lives in, so a job is enqueued in the same
 * transaction that stores the message it is about: both commit or neither does.
 *
 * Why not pg-boss 10 or graphile-worker 0.16 (docs/jobs.md has the long form): a job that
 * fails with a provider's Retry-After must wait that long, and pg-boss fixes a job's retry delay
 * when it is sent (`fail()` takes no delay); graphile-worker 0.16 installs its schema with
 * functions and triggers that PGlite runs only through a pool adapter neither supports. What we
 * need is one table, one claiming query and a few updates, on both backends.
 *
 * Semantics: at least once. A worker claims with `FOR UPDATE SKIP LOCKED` and holds a lease; a
 * worker that dies lets its lease run out and the job is claimed again. Handlers are therefore
 * idempotent (src/relay/handlers), and a send looks at the provider before sending twice.
 */

export type JobPayload = Record<string, string | number | boolean | null>;

export interface JobSpec {
  kind: string;
  tenantId?: string | null;
  /** Ids and small flags only: checked here, so plaintext cannot slip into a payload. */
  payload: JobPayload;
  runAt?: Date;
  maxAttempts?: number;
  /** At most one pending job per key; a second enqueue while one waits is a no-op. */
  singletonKey?: string;
}

export interface ClaimedJob {
  id: string;
  kind: string;
  tenantId: string | null;
  payload: JobPayload;
  /** 1 on the first try. */
  attempts: number;
  maxAttempts: number;
}

export interface JobFailure {
  /** False when trying again cannot help (a 400 from a provider, a tenant without that provider). */
  retryable: boolean;
  /** The provider asked us to wait at least this long. */
  retryAfterSeconds?: number | undefined;
  /** A class and code, never a message that could carry data: goes to `jobs.last_error`. */
  summary: string;
}

export interface JobSummary {
  id: string;
  kind: string;
  tenantId: string | null;
  state: 'pending' | 'running' | 'dead';
  attempts: number;
  maxAttempts: number;
  runAt: Date;
  lastError: string | null;
  createdAt: Date;
}

export interface QueueDepth {
  pending: number;
  /** Pending and due now (the rest wait for a retry time). */
  due: number;
  running: number;
  dead: number;
  /** Seconds the oldest due job has waited; 0 when nothing is due. */
  oldestDueSeconds: number;
}

/** One job kind's share of the queue, for the metrics gauge. */
export interface KindDepth {
  kind: string;
  /** Pending and due now. */
  ready: number;
  /** Pending, waiting for a retry time (backing off) or a scheduled run. */
  delayed: number;
  running: number;
  dead: number;
}

export interface RetryPolicy {
  /** The first retry waits about this long; each later one twice the one before. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_MAX_ATTEMPTS = 8;
export const DEFAULT_LEASE_MS = 60_000;
export const DEFAULT_RETRY_POLICY: RetryPolicy = { baseDelayMs: 2_000, maxDelayMs: 15 * 60_000 };

/** Strings a payload may hold: uuids, provider ids, kinds. No spaces, no `+`, no `@`: no bodies, phone numbers or emails. */
const PAYLOAD_STRING = /^[A-Za-z0-9_.:-]{1,120}$/;

export class JobPayloadError extends Error {
  override readonly name = 'JobPayloadError';
}

/** Adds jobs inside the caller's transaction (`db` may be a `tx`). */
export async function enqueueJobs(db: Db, specs: JobSpec[]): Promise<void> {
  if (specs.length === 0) return;
  const now = new Date();
  const rows = specs.map((spec) => {
    assertPayloadHoldsIdsOnly(spec);
    return {
      id: randomUUID(),
      kind: spec.kind,
      tenantId: spec.tenantId ?? null,
      payload: spec.payload,
      state: 'pending' as const,
      attempts: 0,
      maxAttempts: spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      runAt: spec.runAt ?? now,
      singletonKey: spec.singletonKey ?? null,
      createdAt: now,
      updatedAt: now,
    };
  });
  // A singleton already pending is enough: the conflict is the no-op, not an error.
  await db
    .insert(jobs)
    .values(rows)
    .onConflictDoNothing({ target: jobs.singletonKey, where: sql`state = 'pending'` });
}

export class JobQueue {
  private readonly leaseMs: number;
  private readonly retry: RetryPolicy;
  private readonly random: () => number;

  constructor(
    private readonly db: Db,
    options: { leaseMs?: number; retry?: Partial<RetryPolicy>; random?: () => number } = {},
  ) {
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.random = options.random ?? Math.random;
  }

  enqueue(specs: JobSpec | JobSpec[]): Promise<void> {
    return enqueueJobs(this.db, Array.isArray(specs) ? specs : [specs]);
  }

  /**
   * Takes up to `limit` due jobs of the given kinds for `workerId`. A job whose lease ran out
   * (its worker died) is due again; one that has used all its attempts that way is moved to the
   * dead letters instead of being run once more, so a job that kills its worker cannot loop.
   */
  async claim(workerId: string, kinds: readonly string[], limit: number): Promise<ClaimedJob[]> {
    if (kinds.length === 0 || limit < 1) return [];
    const kindList = sql.join(
      kinds.map((kind) => sql`${kind}`),
      sql`, `,
    );
    type ClaimedRow = { id: string; kind: string; tenant_id: string | null; payload: JobPayload; attempts: number; max_attempts: number };
    const rows = await queryRows<ClaimedRow>(this.db, sql`
      update jobs set
        state = 'running',
        attempts = attempts + 1,
        locked_until = now() + ${`${this.leaseMs} milliseconds`}::interval,
        locked_by = ${workerId},
        updated_at = now()
      where id in (
        select id from jobs
        where kind in (${kindList})
          and ((state = 'pending' and run_at <= now()) or (state = 'running' and locked_until < now()))
        order by run_at
        limit ${limit}
        for update skip locked
      )
      returning id, kind, tenant_id, payload, attempts, max_attempts`);
    const claimed: ClaimedJob[] = [];
    for (const row of rows) {
      const job = { id: row.id, kind: row.kind, tenantId: row.tenant_id, payload: row.payload, attempts: Number(row.attempts), maxAttempts: Number(row.max_attempts) };
      if (job.attempts > job.maxAttempts) {
        await this.markDead(job, workerId, 'LeaseExpired: the worker stopped during every attempt');
        continue;
      }
      claimed.push(job);
    }
    return claimed;
  }

  /** The handler finished: the job is gone. Only the lease holder may remove it. */
  async complete(job: ClaimedJob, workerId: string): Promise<void> {
    await this.db.delete(jobs).where(and(eq(jobs.id, job.id), eq(jobs.lockedBy, workerId), eq(jobs.state, 'running')));
  }

  /**
   * The handler failed. Retryable failures wait an exponentially growing, jittered delay, and at
   * least as long as the provider's Retry-After; the last attempt, or a failure that cannot be
   * helped by waiting, moves the job to the dead letters.
   */
  async fail(job: ClaimedJob, workerId: string, failure: JobFailure): Promise<'retry' | 'dead'> {
    if (!failure.retryable || job.attempts >= job.maxAttempts) {
      await this.markDead(job, workerId, failure.summary);
      return 'dead';
    }
    const delayMs = this.retryDelayMs(job.attempts, failure.retryAfterSeconds);
    await this.db
      .update(jobs)
      .set({ state: 'pending', runAt: sql`now() + ${`${delayMs} milliseconds`}::interval`, lockedUntil: null, lockedBy: null, lastError: failure.summary, updatedAt: new Date() })
      .where(and(eq(jobs.id, job.id), eq(jobs.lockedBy, workerId), eq(jobs.state, 'running')));
    return 'retry';
  }

  /** A long handler keeps its job: pushes the lease forward. False when the lease was lost. */
  async extendLease(job: ClaimedJob, workerId: string): Promise<boolean> {
    const result = await this.db
      .update(jobs)
      .set({ lockedUntil: sql`now() + ${`${this.leaseMs} milliseconds`}::interval` })
      .where(and(eq(jobs.id, job.id), eq(jobs.lockedBy, workerId), eq(jobs.state, 'running')))
      .returning({ id: jobs.id });
    return result.length === 1;
  }

  /**
   * Gives running jobs back without counting the attempt: claimable again at once, by any
   * worker. Used by a worker that stops while a handler still runs, so another instance picks
   * the job up now instead of when the lease runs out. Only the lease holder's jobs move.
   * The handler may still be running here, so handlers stay idempotent (a send is looked up at
   * the provider before it is made again).
   */
  async release(jobIds: readonly string[], workerId: string): Promise<number> {
    if (jobIds.length === 0) return 0;
    const idList = sql.join(
      jobIds.map((id) => sql`${id}::uuid`),
      sql`, `,
    );
    const rows = await queryRows<{ id: string }>(this.db, sql`
      update jobs set
        state = 'pending',
        attempts = greatest(attempts - 1, 0),
        run_at = now(),
        locked_until = null,
        locked_by = null,
        updated_at = now()
      where id in (${idList}) and locked_by = ${workerId} and state = 'running'
        -- A singleton with a newer pending twin keeps its lease (one pending per key): the
        -- twin does the same work, and the lease running out retires this one.
        and (singleton_key is null or not exists (
          select 1 from jobs twin where twin.singleton_key = jobs.singleton_key and twin.state = 'pending'))
      returning id`);
    return rows.length;
  }

  /** Delay before retry number `attempt` (1-based): base·2^(attempt−1), capped, "equal jitter", never under Retry-After. */
  retryDelayMs(attempt: number, retryAfterSeconds?: number): number {
    // Equal jitter: spreads retries of many jobs that failed together (a provider outage)
    // without ever retrying immediately.
    const jittered = backoffDelayMs(attempt - 1, { baseMs: this.retry.baseDelayMs, capMs: this.retry.maxDelayMs, random: this.random });
    return Math.max(jittered, (retryAfterSeconds ?? 0) * 1000);
  }

  async list(options: { dead?: boolean; limit?: number } = {}): Promise<JobSummary[]> {
    const rows = await this.db
      .select({
        id: jobs.id,
        kind: jobs.kind,
        tenantId: jobs.tenantId,
        state: jobs.state,
        attempts: jobs.attempts,
        maxAttempts: jobs.maxAttempts,
        runAt: jobs.runAt,
        lastError: jobs.lastError,
        createdAt: jobs.createdAt,
      })
      .from(jobs)
      .where(options.dead ? eq(jobs.state, 'dead') : sql`${jobs.state} <> 'dead'`)
      .orderBy(asc(jobs.runAt))
      .limit(options.limit ?? 100);
    return rows;
  }

  /** Puts a dead job back in line with a fresh set of attempts. False when there is no dead job with that id. */
  async retryDead(id: string): Promise<boolean> {
    const result = await this.db
      .update(jobs)
      .set({ state: 'pending', attempts: 0, runAt: new Date(), lockedUntil: null, lockedBy: null, updatedAt: new Date() })
      .where(and(eq(jobs.id, id), eq(jobs.state, 'dead')))
      .returning({ id: jobs.id });
    return result.length === 1;
  }

  async depth(): Promise<QueueDepth> {
    type DepthRow = { pending: string; due: string; running: string; dead: string; oldest_due_seconds: string | null };
    const depthRows = await queryRows<DepthRow>(this.db, sql`
      select
        count(*) filter (where state = 'pending') as pending,
        count(*) filter (where state = 'pending' and run_at <= now()) as due,
        count(*) filter (where state = 'running') as running,
        count(*) filter (where state = 'dead') as dead,
        extract(epoch from now() - min(run_at) filter (where state = 'pending' and run_at <= now())) as oldest_due_seconds
      from jobs`);
    const [row] = depthRows;
    return {
      pending: Number(row?.pending ?? 0),
      due: Number(row?.due ?? 0),
      running: Number(row?.running ?? 0),
      dead: Number(row?.dead ?? 0),
      oldestDueSeconds: Math.max(0, Math.floor(Number(row?.oldest_due_seconds ?? 0))),
    };
  }

  /** `depth()` split by job kind: one grouped count, read at scrape time. */
  async depthByKind(): Promise<KindDepth[]> {
    type KindRow = { kind: string; ready: string; delayed: string; running: string; dead: string };
    const rows = await queryRows<KindRow>(this.db, sql`
      select
        kind,
        count(*) filter (where state = 'pending' and run_at <= now()) as ready,
        count(*) filter (where state = 'pending' and run_at > now()) as delayed,
        count(*) filter (where state = 'running') as running,
        count(*) filter (where state = 'dead') as dead
      from jobs
      group by kind
      order by kind`);
    return rows.map((row) => ({ kind: row.kind, ready: Number(row.ready), delayed: Number(row.delayed), running: Number(row.running), dead: Number(row.dead) }));
  }

  private async markDead(job: ClaimedJob, workerId: string, summary: string): Promise<void> {
    await this.db
      .update(jobs)
      .set({ state: 'dead', lockedUntil: null, lockedBy: null, lastError: summary, updatedAt: new Date() })
      .where(and(eq(jobs.id, job.id), eq(jobs.lockedBy, workerId)));
  }
}

function assertPayloadHoldsIdsOnly(spec: JobSpec): void {
  if (!PAYLOAD_STRING.test(spec.kind)) throw new JobPayloadError(`job kind ${JSON.stringify(spec.kind)} is not a plain name`);
  for (const [key, value] of Object.entries(spec.payload)) {
    if (value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) continue;
    if (typeof value === 'string' && PAYLOAD_STRING.test(value)) continue;
    // The value is not echoed: if it is plaintext, it must not reach a log line either.
    throw new JobPayloadError(`job ${spec.kind}: payload member "${key}" is not an id; payloads hold ids only`);
  }
}
