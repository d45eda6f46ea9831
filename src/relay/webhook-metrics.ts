import { Counter, Registry } from 'prom-client';

/**
 * The relay's Prometheus metrics, on a registry of their own so tests read them without global
 * state; the `/metrics` endpoint merges it with the others. Labels are fixed words: never a
 * tenant slug from the URL (an attacker would mint series), never data.
 */
export const relayMetrics = new Registry();

export const webhookRejections = new Counter({
  name: 'ciphergate_webhook_rejections_total',
  help: 'Webhook deliveries refused, by provider and reason',
  labelNames: ['provider', 'reason'] as const,
  registers: [relayMetrics],
});

export const webhookAccepted = new Counter({
  name: 'ciphergate_webhook_accepted_total',
  help: 'Webhook deliveries verified and committed (duplicates included), by provider',
  labelNames: ['provider', 'outcome'] as const,
  registers: [relayMetrics],
});

export const jobOutcomes = new Counter({
  name: 'ciphergate_jobs_total',
  help: 'Jobs finished, by kind and outcome (done, retry, dead)',
  labelNames: ['kind', 'outcome'] as const,
  registers: [relayMetrics],
});
