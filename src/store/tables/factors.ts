import { bigint, index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { sealedColumn } from '../column-types.js';
import { users } from './users.js';

/**
 * A user's TOTP authenticator. The secret is sealed (it is a shared key: whoever reads it can
 * mint codes). `confirmedAt` is null until the user proved the app works with one code; an
 * unconfirmed factor never satisfies a sign-in. `lastUsedStep` is the replay guard.
 */
export const totpFactors = pgTable(
  'totp_factors',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    secret: sealedColumn('secret').notNull(),
    confirmedAt: timestamp('confirmed_at', { withTimezone: true, mode: 'date' }),
    lastUsedStep: bigint('last_used_step', { mode: 'number' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  // A user replacing an authenticator has the new one pending beside the confirmed one until
  // it is confirmed; confirming deletes the others, so at most one confirmed row remains.
  (table) => [index('totp_factors_user_idx').on(table.userId)],
);

/** Ten one-time recovery codes per user, hashed (src/identity/factors/recovery.ts). */
export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text('code_hash').notNull(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [index('recovery_codes_user_idx').on(table.userId)],
);
