import { describeAirtableTable, type AirtableTableSchema } from '../../providers/airtable/base-schema.js';
import type { BasePacer } from '../../providers/airtable/base-pacer.js';
import type { AirtablePayload } from '../../providers/airtable/webhooks-client.js';
import type { ClaimedJob } from '../../store/job-queue.js';
import { isUuid } from '../../domain/ids.js';
import { AIRTABLE_FIELDS } from '../airtable-layout.js';
import { PermanentJobError } from '../job-worker.js';
import { sendJobs } from '../jobs.js';
import type { TenantContext } from '../tenant-directory.js';
import type { HandlerContext } from './context.js';

/** A manual reply longer than this is not an SMS anyone meant to send (Twilio's limit is 1600). */
const MAX_MANUAL_REPLY = 1600;
/** Table schemas change rarely; re-read now and then so a renamed field is picked up. */
const SCHEMA_CACHE_MS = 10 * 60_000;

/**
 * Job `airtable-webhook` (payload: the tenant). Airtable's ping carries no data; this reads the
 * payloads since the stored cursor (looping while `mightHaveMore`) and applies the two edits staff
 * make in the table (https://airtable.com/developers/web/api/list-webhook-payloads):
 *
 * - "Pause AI" checked or cleared on a row pauses or resumes the AI for that row's contact.
 * - "Manual Reply" filled in sends that text to the contact, then the cell is cleared.
 *
 * Only cells a payload says changed are acted on (payloads carry changed cells only, keyed by
 * field id, hence the schema lookup), and only changes people made: our own writes arrive as
 * `publicApi` payloads and are skipped, so the sync never feeds back into itself. The cursor
 * advances after each payload is applied, and a manual reply's dedupe key is the record plus
 * Airtable's transaction number, so a payload applied twice (a crash between the two) sends once.
 */
export function airtableWebhookHandler(context: HandlerContext & { airtableApiUrl: string; pacer: BasePacer }) {
  const schemas = new Map<string, { at: number; schema: AirtableTableSchema }>();

  async function schemaOf(tenant: TenantContext, apiKey: string): Promise<AirtableTableSchema> {
    const airtable = tenant.settings.airtable!;
    const cached = schemas.get(tenant.id);
    if (cached && Date.now() - cached.at < SCHEMA_CACHE_MS) return cached.schema;
    const schema = await describeAirtableTable({ apiKey, baseId: airtable.baseId, table: airtable.table }, { apiUrl: context.airtableApiUrl, pacer: context.pacer });
    if (!schema) throw new PermanentJobError('the Airtable table named in tenant.json does not exist in the base');
    schemas.set(tenant.id, { at: Date.now(), schema });
    return schema;
  }

  return async (job: ClaimedJob): Promise<void> => {
    const tenant = await context.tenants.byId(String(job.payload.tenantId));
    const airtable = tenant?.settings.airtable;
    const apiKey = tenant?.secrets.airtableApiKey;
    if (!tenant || !airtable || !apiKey) return;
    if (!airtable.webhookId) throw new PermanentJobError('tenant has no Airtable webhook id');
    const target = { apiKey, baseId: airtable.baseId };
    const schema = await schemaOf(tenant, apiKey);
    const webhookId = airtable.webhookId;
    const saveCursor = async (value: number | undefined) => {
      if (value !== undefined) await context.airtableCursors.save(tenant.id, webhookId, value);
    };
    let cursor = await context.airtableCursors.find(tenant.id, webhookId);
    for (;;) {
      const page = await context.clients.airtableWebhooks.listPayloads(target, webhookId, cursor);
      for (const payload of page.payloads) {
        await applyPayload(context, tenant, apiKey, schema, payload);
        cursor = (cursor ?? 1) + 1;
        await saveCursor(cursor);
      }
      // Airtable's own cursor is the authority (it skips payloads that expired).
      cursor = page.cursor;
      await saveCursor(cursor);
      if (!page.mightHaveMore) break;
    }
  };
}

async function applyPayload(context: HandlerContext, tenant: TenantContext, apiKey: string, schema: AirtableTableSchema, payload: AirtablePayload): Promise<void> {
  if (payload.error || payload.actionMetadata?.source === 'publicApi') return;
  const changes = payload.changedTablesById?.[schema.tableId]?.changedRecordsById ?? {};
  const pauseField = schema.fieldIds[AIRTABLE_FIELDS.pauseAi];
  const replyField = schema.fieldIds[AIRTABLE_FIELDS.manualReply];
  const idField = schema.fieldIds[AIRTABLE_FIELDS.id];
  const airtable = tenant.settings.airtable!;
  const target = { apiKey, baseId: airtable.baseId, table: airtable.table };
  for (const [recordId, change] of Object.entries(changes)) {
    const cells = change.current?.cellValuesByFieldId ?? {};
    // Airtable leaves a cleared cell out of `current`; it is in `previous`, with its old value.
    const previousCells = change.previous?.cellValuesByFieldId ?? {};
    const touchesPause = pauseField !== undefined && (pauseField in cells || pauseField in previousCells);
    const reply = replyField !== undefined ? cells[replyField] : undefined;
    const hasReply = typeof reply === 'string' && reply.trim().length > 0;
    if (!touchesPause && !hasReply) continue;
    // The payload may not carry the row's id cell (only changed cells); the record does.
    const messageId = await messageIdOf(context, target, recordId, idField ? cells[idField] : undefined);
    if (!messageId) continue;
    const message = await context.conversations.messageForJob(messageId);
    if (!message || message.tenantId !== tenant.id) continue;
    if (touchesPause) {
      const paused = cells[pauseField!] === true;
      await context.conversations.setAiPaused(message.contactId, paused);
      context.logger.info({ tenantId: tenant.id, contactId: message.contactId, paused }, 'AI pause changed from Airtable');
    }
    if (hasReply) {
      const text = (reply as string).trim();
      if (text.length > MAX_MANUAL_REPLY) {
        context.logger.warn({ tenantId: tenant.id, recordId, length: text.length }, 'manual reply from Airtable is too long; not sent');
        continue;
      }
      await context.conversations.storeOutbound(
        {
          tenantId: tenant.id,
          conversationId: message.conversationId,
          contactId: message.contactId,
          author: 'staff',
          body: text,
          dedupeKey: `airtable:${recordId}:${payload.baseTransactionNumber}`,
        },
        (replyId) => sendJobs(tenant, replyId),
      );
      // Cleared so the cell is ready for the next reply, and so the text does not rest in Airtable.
      await context.clients.airtableRecords.update(target, [{ id: recordId, fields: { [AIRTABLE_FIELDS.manualReply]: '' } }]);
    }
  }
}

async function messageIdOf(context: HandlerContext, target: { apiKey: string; baseId: string; table: string }, recordId: string, fromPayload: unknown): Promise<string | undefined> {
  if (typeof fromPayload === 'string' && isUuid(fromPayload)) return fromPayload;
  const record = await context.clients.airtableRecords.find(target, recordId);
  const value = record?.fields[AIRTABLE_FIELDS.id];
  return typeof value === 'string' && isUuid(value) ? value : undefined;
}
