import { sql } from 'drizzle-orm';
import { queryRows, type Db } from '../../src/store/connection.js';

/** An audit event as the tests read it back. */
export interface AuditRow {
  action: string;
  outcome: string;
  actor_type: string;
  actor_id: string | null;
  target_type: string | null;
  target_id: string | null;
  details: Record<string, unknown>;
}

/** Where the audit trail ends now: pass it to `auditSince` to read what a step wrote. */
export async function auditMark(source: { db: Db }): Promise<number> {
  const [row] = await queryRows<{ seq: number | string }>(source.db, sql`select coalesce(max(seq), 0) as seq from audit_events`);
  return Number(row!.seq);
}

/** The events written after `mark`, oldest first. */
export async function auditSince(source: { db: Db }, mark: number): Promise<AuditRow[]> {
  return queryRows<AuditRow>(source.db, sql`select action, outcome, actor_type, actor_id, target_type, target_id, details from audit_events where seq > ${mark} order by seq`);
}
