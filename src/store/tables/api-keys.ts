import { index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { tenants } from './tenants.js';

/**
 * Machine credentials. The key is 256 random bits behind a recognisable prefix; only its
 * SHA-256 is stored (a slow hash adds nothing to a key that cannot be guessed). `createdBy`
 * is the user who made it (null from the CLI): disabling that user revokes the key.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    keyHash: text('key_hash').notNull().unique(),
    /** The first characters after the prefix, shown in listings so an operator can tell keys apart. */
    hint: text('hint').notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    scopes: text('scopes').array().notNull(),
    createdBy: uuid('created_by'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true, mode: 'date' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (table) => [index('api_keys_tenant_idx').on(table.tenantId), index('api_keys_created_by_idx').on(table.createdBy)],
);
