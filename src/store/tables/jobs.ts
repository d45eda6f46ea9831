import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { tenants } from './tenants.js';

/**
 * The job queue (src/store/job-queue.ts). A row is `pending` until a worker claims it
 * (`running`, with a lease in `lockedUntil`), is deleted when its handler succeeds, goes back to
 * `pending` with a later `runAt` when it fails and may be retried, and ends `dead` after its
 * last attempt. A `running` row whose lease ran out belongs to a worker that died: it is
 * claimable again.
 *
 * Payloads hold ids only, never plaintext (a test checks every payload the relay writes).
 * `singletonKey` keeps at most one pending job per key (one Airtable fetch per tenant at a time).
 */
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    kind: text('kind').notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    payload: jsonb('payload').$type<Record<string, string | number | boolean | null>>().notNull(),
    state: text('state', { enum: ['pending', 'running', 'dead'] }).notNull(),
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    runAt: timestamp('run_at', { withTimezone: true, mode: 'date' }).notNull(),
    lockedUntil: timestamp('locked_until', { withTimezone: true, mode: 'date' }),
    lockedBy: text('locked_by'),
    /** The last failure, as an error class and code: never a provider message that could echo data. */
    lastError: text('last_error'),
    singletonKey: text('singleton_key'),
    createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (table) => [
    index('jobs_claim_idx').on(table.state, table.runAt),
    uniqueIndex('jobs_pending_singleton_unique').on(table.singletonKey).where(sql`state = 'pending'`),
  ],
);

/** Where the Airtable webhook payload list was last read, per tenant (Airtable's cursor is an integer). */
export const airtableCursors = pgTable('airtable_cursors', {
  tenantId: uuid('tenant_id')
    .primaryKey()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  webhookId: text('webhook_id').notNull(),
  cursor: integer('cursor').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
});

/** Progress of `ciphergate import airtable`, so an interrupted import resumes where it stopped. */
export const importRuns = pgTable('import_runs', {
  id: uuid('id').primaryKey(),
  tenantId: uuid('tenant_id')
    .notNull()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  source: text('source', { enum: ['airtable', 'jsonl'] }).notNull(),
  state: text('state', { enum: ['running', 'done'] }).notNull(),
  /** Airtable's page offset of the next page to read; null at the start. */
  nextOffset: text('next_offset'),
  imported: integer('imported').notNull().default(0),
  skipped: integer('skipped').notNull().default(0),
  startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull(),
});
