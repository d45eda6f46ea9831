import type { TenantSettings } from '../../domain/tenant.js';
import type { ClaimedJob } from '../../store/job-queue.js';
import { airtableSyncJob } from '../jobs.js';
import { AIRTABLE_FIELDS } from '../airtable-layout.js';
import { presentField, type FieldPolicy } from '../field-policy.js';
import type { TenantContext } from '../tenant-directory.js';
import type { HandlerContext } from './context.js';

/** Rows read per round; the records client writes them 10 per request, paced per base. */
const BATCH = 50;
/** Rounds per job run, so one busy tenant cannot hold a worker forever; the next run continues. */
const MAX_ROUNDS = 20;

/**
 * Job `airtable-sync` (payload: the tenant). Writes every message of the tenant changed since it
 * was last written (new, or a new status) to the tenant's table: one row per message, merged on
 * "Ciphergate ID", 10 rows per request, each personal field shown as the tenant's policy says.
 * A field the policy does not name is omitted. Upserting makes a retry rewrite the same rows.
 */
export function airtableSyncHandler(context: HandlerContext) {
  return async (job: ClaimedJob): Promise<void> => {
    const tenant = await context.tenants.byId(String(job.payload.tenantId ?? job.tenantId));
    const airtable = tenant?.settings.airtable;
    if (!tenant || !airtable || !tenant.secrets.airtableApiKey) return;
    const target = { apiKey: tenant.secrets.airtableApiKey, baseId: airtable.baseId, table: airtable.table };
    for (let round = 0; round < MAX_ROUNDS; round += 1) {
      const due = await context.conversations.dueForAirtable(tenant.id, BATCH);
      if (due.length === 0) return;
      const rows = await Promise.all(due.map(async (message) => ({ fields: await rowFields(context, tenant, message) })));
      const records = await context.clients.airtableRecords.upsert(target, rows, [AIRTABLE_FIELDS.id]);
      const recordIdByMessage = new Map(records.map((record) => [String(record.fields[AIRTABLE_FIELDS.id]), record.id]));
      for (const message of due) await context.conversations.markAirtableSynced(message.id, message.updatedAt, recordIdByMessage.get(message.id));
      if (due.length < BATCH) return;
    }
    // More than MAX_ROUNDS × BATCH rows changed: the rest goes to the next run, queued behind
    // other work instead of holding this worker.
    await context.queue.enqueue(airtableSyncJob(tenant.id));
  };
}

async function rowFields(
  context: HandlerContext,
  tenant: TenantContext,
  message: { id: string; tenantId: string; contactId: string; conversationId: string; direction: string; author: string; status: string; createdAt: Date },
): Promise<Record<string, unknown>> {
  const airtable = tenant.settings.airtable!;
  const contact = await context.conversations.openContact({ id: message.contactId, tenantId: message.tenantId });
  const body = await context.conversations.openBody(message);
  const policy = (field: keyof NonNullable<TenantSettings['airtable']>['fields']): FieldPolicy => airtable.fields[field] ?? 'omitted';
  const fields: Record<string, unknown> = {
    [AIRTABLE_FIELDS.id]: message.id,
    [AIRTABLE_FIELDS.conversation]: message.conversationId,
    [AIRTABLE_FIELDS.direction]: message.direction,
    [AIRTABLE_FIELDS.author]: message.author,
    [AIRTABLE_FIELDS.status]: message.status,
    [AIRTABLE_FIELDS.created]: message.createdAt.toISOString(),
  };
  const put = (name: string, value: string | null | undefined) => {
    // undefined: the policy omits the field, so it is not written at all.
    if (value !== undefined) fields[name] = value;
  };
  put(AIRTABLE_FIELDS.phone, presentField('phone', contact.phone, policy('phone'), message.contactId));
  put(AIRTABLE_FIELDS.name, presentField('name', contact.name, policy('name'), message.contactId));
  if (message.author === 'ai') put(AIRTABLE_FIELDS.aiReply, presentField('aiReply', body, policy('aiReply'), message.id));
  else put(AIRTABLE_FIELDS.body, presentField('body', body, policy('body'), message.id));
  return fields;
}
