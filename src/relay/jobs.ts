import { JOB } from '../domain/job-kinds.js';
import type { TenantSettings } from '../domain/tenant.js';
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

/** What the follow-up rules need of a tenant. */
export interface JobTenant {
  id: string;
  settings: TenantSettings;
}

/** A message of `tenant` was stored or changed: its Airtable sync, when the tenant has a table. */
export function syncJobs(tenant: JobTenant, messageId: string): JobSpec[] {
  return tenant.settings.airtable ? [airtableSyncJob(tenant.id, messageId)] : [];
}

/** A message of `tenant` is to go out: its send, and its Airtable sync when the tenant has a table. */
export function sendJobs(tenant: JobTenant, messageId: string): JobSpec[] {
  return [sendJob(tenant.id, messageId), ...syncJobs(tenant, messageId)];
}
