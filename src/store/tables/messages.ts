import { index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { sealedColumn } from '../column-types.js';
import { contacts } from './contacts.js';
import { tenants } from './tenants.js';

/** One SMS or chat message; the body is sealed before the first write. */
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
    direction: text('direction', { enum: ['inbound', 'outbound'] }).notNull(),
    body: sealedColumn('body').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [index('messages_contact_idx').on(table.contactId, table.createdAt)],
);
