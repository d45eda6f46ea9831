import { sql } from 'drizzle-orm';
import { index, integer, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { MESSAGE_AUTHORS } from '../../domain/conversation.js';
import { sealedColumn } from '../column-types.js';
import { contacts } from './contacts.js';
import { conversations } from './conversations.js';
import { tenants } from './tenants.js';

export { MESSAGE_AUTHORS, type MessageAuthor } from '../../domain/conversation.js';

/**
 * One SMS or chat message; the body is sealed before the first write.
 *
 * `dedupeKey` makes every way a message can arrive idempotent, unique per tenant: an inbound
 * delivery is `twilio:<MessageSid>` or `podium:<uid>`, an AI answer `ai:<inbound id>`, an API
 * send `api:<api key or user>:<Idempotency-Key>`, an Airtable manual reply
 * `airtable:<record>:<transaction>`, an imported one `import:airtable:<record>` or
 * `import:jsonl:<conversation _id>:<message _id>`. A second delivery hits the unique key and
 * changes nothing.
 *
 * Outbound status moves forward only (`statusRank`): a late `sent` callback never overwrites
 * `delivered`. `sendStartedAt` is written before the provider is called, so a job that finds it
 * set without a `providerMessageId` knows the earlier attempt may have sent, and looks first.
 */
export const messages = pgTable(
  'messages',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    contactId: uuid('contact_id')
      .notNull()
      .references(() => contacts.id, { onDelete: 'cascade' }),
    conversationId: uuid('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    direction: text('direction', { enum: ['inbound', 'outbound'] }).notNull(),
    author: text('author', { enum: MESSAGE_AUTHORS }).notNull(),
    body: sealedColumn('body').notNull(),
    dedupeKey: text('dedupe_key').notNull(),
    providerMessageId: text('provider_message_id'),
    status: text('status').notNull(),
    statusRank: integer('status_rank').notNull(),
    errorCode: text('error_code'),
    /** The inbound message an AI answer replies to. */
    inReplyTo: uuid('in_reply_to'),
    sendStartedAt: timestamp('send_started_at', { withTimezone: true, mode: 'date' }),
    airtableRecordId: text('airtable_record_id'),
    /** The `updatedAt` last written to Airtable; a row with a later `updatedAt` is due for sync. */
    airtableSyncedAt: timestamp('airtable_synced_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [
    unique('messages_tenant_dedupe_unique').on(table.tenantId, table.dedupeKey),
    index('messages_conversation_idx').on(table.conversationId, table.createdAt),
    index('messages_provider_id_idx').on(table.tenantId, table.providerMessageId),
    // Only rows waiting for Airtable: the sync job finds its next batch without a scan.
    index('messages_airtable_due_idx')
      .on(table.tenantId, table.updatedAt)
      .where(sql`airtable_synced_at is null or airtable_synced_at < updated_at`),
  ],
);
