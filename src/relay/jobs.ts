import { JOB } from '../domain/job-kinds.js';
import type { JobSpec } from '../store/job-queue.js';

export function aiReplyJob(tenantId: string, messageId: string): JobSpec {
  return { kind: JOB.aiReply, tenantId, payload: { messageId } };
}

export function sendJob(tenantId: string, messageId: string): JobSpec {
  return { kind: JOB.send, tenantId, payload: { messageId } };
}

/**
 * One pending sync per tenant: it writes every message changed since its last write, 10 rows per
 * request (src/relay/handlers/airtable-sync.ts). A message is due because its `updated_at` is
 * newer than its `airtable_synced_at`, so the message id is only a hint for the logs.
 */
export function airtableSyncJob(tenantId: string, _messageId?: string): JobSpec {
  return { kind: JOB.airtableSync, tenantId, payload: { tenantId }, singletonKey: `airtable-sync:${tenantId}` };
}

/** One pending payload fetch per tenant: a burst of pings is one fetch of everything new. */
export function airtableWebhookJob(tenantId: string): JobSpec {
  return { kind: JOB.airtableWebhook, tenantId, payload: { tenantId }, singletonKey: `airtable-webhook:${tenantId}` };
}
