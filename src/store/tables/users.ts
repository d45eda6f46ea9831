import { index, pgTable, text, timestamp, unique, uuid } from 'drizzle-orm/pg-core';
import { blindIndexColumn, sealedColumn } from '../column-types.js';
import { tenants } from './tenants.js';

/**
 * A person who signs in. The email is sealed under the system key and found again only
 * through its blind index, so a lookup never decrypts the table. `passwordHash` is an
 * argon2id PHC string (not secret in the sealing sense: it is already one-way).
 *
 * status: `pending` (made by an admin, password not set yet), `unverified` (self-registered,
 * email not confirmed), `active`, `locked` (held by an admin until unlocked: no sign-in, API keys
 * kept; a text column, so adding it needed no migration), `disabled`.
 */
export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey(),
    email: sealedColumn('email').notNull(),
    emailIndex: blindIndexColumn('email_index').notNull(),
    role: text('role', { enum: ['admin', 'manager', 'employee', 'client', 'user'] }).notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    status: text('status', { enum: ['pending', 'unverified', 'active', 'locked', 'disabled'] }).notNull(),
    passwordHash: text('password_hash'),
    passwordChangedAt: timestamp('password_changed_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [unique('users_email_index_unique').on(table.emailIndex), index('users_tenant_idx').on(table.tenantId)],
);

/**
 * Single-use tokens sent to a user out of band: the setup token an admin hands over and the
 * email-verification link of self-registration. Only the SHA-256 of the token is kept.
 */
export const userTokens = pgTable(
  'user_tokens',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    purpose: text('purpose', { enum: ['setup', 'verify-email'] }).notNull(),
    tokenHash: text('token_hash').notNull().unique(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [index('user_tokens_user_idx').on(table.userId)],
);
