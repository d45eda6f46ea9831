import { index, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { contacts } from './contacts.js';
import { tenants } from './tenants.js';

/**
 * The thread between one contact and a tenant on one channel. Holds no personal data itself:
 * the phone number and name live sealed on the contact, the words sealed on the messages.
 */
export const conversations = pgTable(
  'conversations',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    contactId: uuid('contact_id')
      .notNull()
      .references(() => contacts.id, { onDelete: 'cascade' }),
    channel: text('channel', { enum: ['sms', 'podium'] }).notNull(),
    /** Podium's conversation uid; null for SMS. */
    providerConversationId: text('provider_conversation_id'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    lastMessageAt: timestamp('last_message_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [
    unique('conversations_contact_channel_unique').on(table.tenantId, table.contactId, table.channel),
    index('conversations_tenant_recent_idx').on(table.tenantId, table.lastMessageAt),
  ],
);
