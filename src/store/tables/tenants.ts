import { jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { sealedColumn } from '../column-types.js';

/** Non-secret provider settings from tenant.json; the secrets live in the sealed columns. */
export interface TenantSettings {
  twilio?: { accountSid: string; fromNumber: string };
  openai?: { model: string; systemPrompt?: string };
  airtable?: { baseId: string; table: string; fields: Record<string, 'plain' | 'masked' | 'sealed' | 'omitted'>; webhookId?: string };
  podium?: { locationUid: string };
  allowIps: { twilio: string[]; airtable: string[]; podium: string[] };
}

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
