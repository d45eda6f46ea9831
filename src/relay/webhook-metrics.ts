import { Counter, Gauge, Registry } from 'prom-client';
import type { JobQueue } from '../store/job-queue.js';

export type JobOutcome = 'done' | 'retry' | 'dead';

/**
 * The relay's Prometheus metrics, on a registry each Relay owns, so two relays in one process
 * (tests, a benchmark) never add into each other's counts; `/metrics` merges it with the others.
 * Labels are fixed words: never a tenant slug from the URL (an attacker would mint series), never
 * data. Job kinds are our own constants (src/relay/jobs.ts).
 */
export class RelayMetrics {
  readonly registry = new Registry();

  readonly webhookRejections = new Counter({
    name: 'ciphergate_webhook_rejections_total',
    help: 'Webhook deliveries refused, by provider and reason',
    labelNames: ['provider', 'reason'] as const,
    registers: [this.registry],
  });

  readonly webhookAccepted = new Counter({
    name: 'ciphergate_webhook_accepted_total',
    help: 'Webhook deliveries verified and committed (duplicates included), by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly sendersNotE164 = new Counter({
    name: 'ciphergate_inbound_sender_not_e164_total',
    help: 'Inbound messages stored from a sender that is no valid phone number (short code, alphanumeric id, 555 number), by provider and sender kind (digits, text)',
    labelNames: ['provider', 'kind'] as const,
    registers: [this.registry],
  });

  readonly jobOutcomes = new Counter({
    name: 'ciphergate_jobs_total',
    help: 'Job attempts finished by a worker of this process, by kind and outcome (done, retry, dead)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly jobAttempts = new Counter({
    name: 'ciphergate_job_attempts_total',
    help: 'Job attempts started by a worker of this process, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'ciphergate_job_dead_letters_total',
    help: 'Jobs a worker of this process moved to the dead letters, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  constructor(queue: JobQueue) {
    // Read from the database at scrape time: the queue is shared by every instance, so the figure
    // is the deployment's backlog, not this process's, and it survives restarts.
    new Gauge({
      name: 'ciphergate_job_queue_depth',
      help: 'Jobs in the queue (all instances), by kind and state: ready (due now), delayed (backing off or scheduled), running, dead',
      labelNames: ['kind', 'state'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const row of await queue.depthByKind()) {
          for (const state of ['ready', 'delayed', 'running', 'dead'] as const) this.set({ kind: row.kind, state }, row[state]);
        }
      },
    });
    new Gauge({
      name: 'ciphergate_job_queue_oldest_ready_seconds',
      help: 'Seconds the oldest job that is due has waited (all instances); 0 when none is due',
      registers: [this.registry],
      async collect() {
        this.set((await queue.depth()).oldestDueSeconds);
      },
    });
  }

  /** A worker's report on one finished attempt. */
  recordOutcome(kind: string, outcome: JobOutcome): void {
    this.jobOutcomes.inc({ kind, outcome });
    if (outcome === 'dead') this.deadLetters.inc({ kind });
  }
}
