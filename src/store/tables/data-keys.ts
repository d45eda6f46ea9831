import { integer, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { byteaColumn } from '../column-types.js';

/**
 * Data keys (DEKs), one per scope (a tenant id, or `system`) and version, stored only wrapped
 * under the KEK of `kek_id`. `destroyed` rows keep their place (versions are never reused) but
 * lose the wrapped key: that is crypto-shredding.
 */
export const dataKeys = pgTable(
  'data_keys',
  {
    scope: text('scope').notNull(),
    version: integer('version').notNull(),
    wrappedKey: byteaColumn('wrapped_key'),
    kekKind: text('kek_kind').notNull(),
    kekId: text('kek_id').notNull(),
    state: text('state', { enum: ['active', 'destroyed'] }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    rewrappedAt: timestamp('rewrapped_at', { withTimezone: true, mode: 'date' }),
  },
  (table) => [primaryKey({ columns: [table.scope, table.version] })],
);
