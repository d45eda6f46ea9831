import { bigserial, index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * Append-only, hash-chained security trail. `seq` orders the chain; each row's `hash` is
 * SHA-256(prev_hash ‖ canonical entry), see src/store/audit-chain.ts. Nothing here may hold personal
 * data or secrets in clear: targets and actors are ids.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    id: uuid('id').notNull().unique(),
    occurredAt: timestamp('occurred_at', { withTimezone: true, mode: 'date' }).notNull(),
    actorType: text('actor_type').notNull(),
    actorId: text('actor_id'),
    action: text('action').notNull(),
    targetType: text('target_type'),
    targetId: text('target_id'),
    tenantId: text('tenant_id'),
    sourceIp: text('source_ip'),
    outcome: text('outcome').notNull(),
    details: jsonb('details').$type<Record<string, string | number | boolean | null>>().notNull(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
  },
  (table) => [index('audit_events_tenant_idx').on(table.tenantId, table.seq), index('audit_events_action_idx').on(table.action, table.seq)],
);
