import { bigint, index, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
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

/** Ten one-time recovery codes per user, hashed (src/identity/factors/recovery/recovery-codes.ts). */
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

/**
 * A phone a user receives second-factor codes on (src/identity/factors/sms/sms-factor.ts). The number is
 * sealed; `verifiedAt` is null until the user typed a code sent to it, and only a verified
 * phone is offered as a sign-in method. One per user.
 */
export const smsFactors = pgTable('sms_factors', {
  id: uuid('id').primaryKey(),
  userId: uuid('user_id')
    .notNull()
    .unique()
    .references(() => users.id, { onDelete: 'cascade' }),
  phone: sealedColumn('phone').notNull(),
  verifiedAt: timestamp('verified_at', { withTimezone: true, mode: 'date' }),
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
});

/**
 * A 6-digit code sent by SMS: single use, 10 minutes, five wrong tries and it is gone. Only its
 * HMAC is kept. `challengeId` ties a sign-in code to the login challenge it was sent for;
 * phone verification codes have none.
 */
export const smsCodes = pgTable(
  'sms_codes',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    purpose: text('purpose', { enum: ['sign-in', 'verify-phone'] }).notNull(),
    challengeId: uuid('challenge_id'),
    codeHash: text('code_hash').notNull(),
    failedAttempts: integer('failed_attempts').notNull().default(0),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date' }),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [index('sms_codes_user_idx').on(table.userId)],
);
