import { jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import type { TenantSettings } from '../../domain/tenant.js';
import { sealedColumn } from '../column-types.js';

export type { TenantSettings } from '../../domain/tenant.js';

/**
 * A client of the agency. Provider secrets are sealed under the tenant's own data key, so
 * shredding the tenant's keys makes them unreadable with the rest of its data.
 */
export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey(),
  slug: text('slug').notNull().unique(),
  name: text('name').notNull(),
  settings: jsonb('settings').$type<TenantSettings>().notNull(),
  twilioAuthToken: sealedColumn('twilio_auth_token'),
  openaiApiKey: sealedColumn('openai_api_key'),
  airtableApiKey: sealedColumn('airtable_api_key'),
  airtableMacSecret: sealedColumn('airtable_mac_secret'),
  podiumApiKey: sealedColumn('podium_api_key'),
  podiumWebhookSecret: sealedColumn('podium_webhook_secret'),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
});
