import { boolean, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { SENDER_KINDS } from '../../domain/normalise.js';
import { blindIndexColumn, sealedColumn } from '../column-types.js';
import { tenants } from './tenants.js';

/**
 * A person who writes to a tenant. The phone number is sealed and found again through its
 * blind index (normaliser `sender`: E.164 for a phone number); the index is unique per tenant so
 * one number is one contact.
 *
 * `senderKind`: `e164` for a phone number; `digits` or `text` for a sender that is no valid
 * number (a short code, an alphanumeric id, a 555 number), sealed as received and indexed over
 * its digits or its text (src/domain/normalise.ts, `inboundSenderOf`): the flag that says
 * "sender not E.164".
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
    senderKind: text('sender_kind', { enum: SENDER_KINDS }).notNull().default('e164'),
    aiPaused: boolean('ai_paused').notNull().default(false),
    optedOutAt: timestamp('opted_out_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  // Lookups always name the tenant, so the unique (tenant, index) pair is also the lookup index.
  (table) => [unique('contacts_tenant_phone_unique').on(table.tenantId, table.phoneIndex)],
);
