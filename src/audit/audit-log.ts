import type { Db } from '../store/connection.js';
import { appendAuditEvent, auditChainContains, listAuditEvents, verifyAuditChain, type AuditEventInput, type AuditQuery, type AuditVerification } from '../store/audit-trail.js';

export type { AuditEventInput, AuditQuery, AuditVerification } from '../store/audit-trail.js';

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

  /** Walks the whole chain and reports the first broken link (`ciphergate audit verify`). */
  verifyChain(): Promise<AuditVerification> {
    return verifyAuditChain(this.db);
  }

  /** Whether the entry with this hash is still in the chain (a head printed by an earlier verify). */
  chainContains(hash: string): Promise<boolean> {
    return auditChainContains(this.db, hash);
  }
}
