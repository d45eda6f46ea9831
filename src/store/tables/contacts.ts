import { boolean, pgTable, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { blindIndexColumn, sealedColumn } from '../column-types.js';
import { tenants } from './tenants.js';

/**
 * A person who writes to a tenant. The phone number is sealed and found again through its
 * E.164 blind index; the index is unique per tenant so one number is one contact.
 *
 * `aiPaused`: staff took the conversation over (an Airtable checkbox or the API); the AI stays
 * silent until it is cleared. `optedOutAt`: the contact sent STOP (or another opt-out keyword);
 * nothing but a manual message from staff goes to them until they send START.
 */
export const contacts = pgTable(
  'contacts',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    phone: sealedColumn('phone').notNull(),
    phoneIndex: blindIndexColumn('phone_index').notNull(),
    name: sealedColumn('name'),
    aiPaused: boolean('ai_paused').notNull().default(false),
    optedOutAt: timestamp('opted_out_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  // Lookups always name the tenant, so the unique (tenant, index) pair is also the lookup index.
  (table) => [unique('contacts_tenant_phone_unique').on(table.tenantId, table.phoneIndex)],
);
