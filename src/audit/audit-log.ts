import type { Db } from '../store/connection.js';
import { appendAuditEvent, listAuditEvents, type AuditEventInput, type AuditQuery } from '../store/audit-trail.js';

export type { AuditEventInput, AuditQuery } from '../store/audit-trail.js';

/**
 * The audit trail as the front ends use it: an entry appended per security event, and the
 * trail read back in chain order (`GET /api/v1/audit`). The trail itself, hash-chained, is the
 * store's (src/store/audit-trail.ts); refusals that come in floods go through the AuditAggregator
 * instead, one entry per minute.
 */
export class AuditLog {
  constructor(private readonly db: Db) {}

  /** Appends one entry; resolves once it is committed. */
  async record(event: AuditEventInput): Promise<void> {
    await appendAuditEvent(this.db, event);
  }

  /** A page of entries in chain order. */
  list(query: AuditQuery): ReturnType<typeof listAuditEvents> {
    return listAuditEvents(this.db, query);
  }
}
