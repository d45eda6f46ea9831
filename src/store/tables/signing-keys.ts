import { jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import type { JWK } from 'jose';
import { sealedColumn } from '../column-types.js';

/**
 * Ed25519 keys that sign access tokens. The private JWK is sealed under the system key; the
 * public half and kid are in clear for listing but are re-derived from the private key on
 * load (src/identity/tokens/signing-keys.ts), so editing them forges nothing.
 */
export const signingKeys = pgTable('signing_keys', {
  id: uuid('id').primaryKey(),
  kid: text('kid').notNull().unique(),
  publicJwk: jsonb('public_jwk').$type<JWK>().notNull(),
  privateJwk: sealedColumn('private_jwk').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  retiredAt: timestamp('retired_at', { withTimezone: true, mode: 'date' }),
});
