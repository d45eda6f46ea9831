import type { ClaimedJob } from '../../store/job-queue.js';
import type { TenantSettings } from '../../store/schema.js';
import { AIRTABLE_FIELDS } from '../airtable-layout.js';
import { presentField, type FieldPolicy } from '../field-policy.js';
import type { HandlerContext } from './context.js';

/**
 * Job `airtable-sync` (payload: a message id). Upserts the message's row in the tenant's table,
 * each personal field shown as the tenant's policy says. Upserting on "Ciphergate ID" makes the
 * job idempotent: a retry rewrites the same row.
 */
export function airtableSyncHandler(context: HandlerContext) {
  return async (job: ClaimedJob): Promise<void> => {
    const message = await context.conversations.messageForJob(String(job.payload.messageId));
    if (!message) return;
    const tenant = await context.tenants.byId(message.tenantId);
    const airtable = tenant?.settings.airtable;
    if (!tenant || !airtable || !tenant.secrets.airtableApiKey) return;
    const contact = await context.conversations.openContact({ id: message.contactId, tenantId: message.tenantId });
    const body = await context.conversations.openBody(message);
    const policy = (field: keyof NonNullable<TenantSettings['airtable']>['fields']): FieldPolicy => airtable.fields[field] ?? 'omitted';
    const isAiAnswer = message.author === 'ai';
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
    if (isAiAnswer) put(AIRTABLE_FIELDS.aiReply, presentField('aiReply', body, policy('aiReply'), message.id));
    else put(AIRTABLE_FIELDS.body, presentField('body', body, policy('body'), message.id));
    const [record] = await context.clients.airtableRecords.upsert(
      { apiKey: tenant.secrets.airtableApiKey, baseId: airtable.baseId, table: airtable.table },
      [{ fields }],
      [AIRTABLE_FIELDS.id],
    );
    if (record && record.id !== message.airtableRecordId) await context.conversations.setAirtableRecordId(message.id, record.id);
  };
}
