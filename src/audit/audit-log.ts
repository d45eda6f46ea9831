import type { AuditAction } from '../domain/audit-actions.js';
import type { SealedFields } from '../seal/sealed-fields.js';
import { findTenantBySlug } from '../store/repositories/tenants.js';
import { tenantSlugs, userEmails } from '../store/repositories/audit-labels.js';
import type { Db } from '../store/connection.js';
import { appendAuditEvent, auditChainContains, listAuditEvents, verifyAuditChain, type AuditEventInput, type AuditQuery, type AuditVerification } from '../store/audit-trail.js';

export type { AuditEventInput, AuditQuery, AuditVerification } from '../store/audit-trail.js';

/** Who reads the trail: the audit actor the guard established, and where from. */
export interface AuditReader {
  actor: { type: 'user' | 'api_key'; id: string };
  sourceIp: string;
}

/** The query of a readable page: a tenant by slug, as every route names tenants. */
export interface ReadableAuditQuery {
  afterSeq?: number;
  action?: AuditAction;
  tenantSlug?: string;
  actorId?: string;
  limit: number;
}

/** An entry as a person reads it: the stored entry, and labels for the ids it names. */
export type ReadableAuditEntry = Awaited<ReturnType<typeof listAuditEvents>>[number] & {
  /** The acting user's email (opened); null for machines, the system, or a user since deleted. */
  actorEmail: string | null;
  /** The entry's tenant by slug. */
  tenant: string | null;
  /** The target as a person names it: a user's email, a tenant's slug, otherwise its id (a conversation's UUID). */
  target: string | null;
};

/**
 * The audit trail as the front ends use it: an entry appended per security event, and the
 * trail read back in chain order (`GET /api/v1/audit`). The trail itself, hash-chained, is the
 * store's (src/store/audit-trail.ts); refusals that come in floods go through the AuditAggregator
 * instead, one entry per minute.
 *
 * A readable page opens the emails of the users its entries name (they are sealed), so when a
 * person reads it, that read is itself an entry (`audit.read`), appended before the page is
 * returned. (`audit:read` is no API-key scope today; should a machine get it, its polls are not
 * recorded, or every poll would add an entry.)
 * Without `fields` (an app built for a test of the plumbing) no email is opened and none shown.
 */
export class AuditLog {
  constructor(
    private readonly db: Db,
    private readonly fields?: SealedFields,
  ) {}

  /** Appends one entry; resolves once it is committed. */
  async record(event: AuditEventInput): Promise<void> {
    await appendAuditEvent(this.db, event);
  }

  /** A page of entries in chain order, ids only. */
  list(query: AuditQuery): ReturnType<typeof listAuditEvents> {
    return listAuditEvents(this.db, query);
  }

  /** A page of entries with the emails and slugs behind their ids; a person's read is audited. */
  async readable(reader: AuditReader, query: ReadableAuditQuery): Promise<ReadableAuditEntry[]> {
    const { tenantSlug, ...rest } = query;
    let tenantId: string | undefined;
    if (tenantSlug !== undefined) {
      tenantId = (await findTenantBySlug(this.db, tenantSlug))?.id;
      // No such tenant: no entry can name it, and no query is needed to say so.
      if (tenantId === undefined) return [];
    }
    const rows = await listAuditEvents(this.db, { ...rest, ...(tenantId ? { tenantId } : {}) });
    const userIds = rows.flatMap((row) => [...(row.actorType === 'user' && row.actorId ? [row.actorId] : []), ...(row.targetType === 'user' && row.targetId ? [row.targetId] : [])]);
    const tenantIds = rows.flatMap((row) => [...(row.tenantId ? [row.tenantId] : []), ...(row.targetType === 'tenant' && row.targetId ? [row.targetId] : [])]);
    const [emails, slugs] = await Promise.all([this.fields ? userEmails(this.db, this.fields, userIds) : new Map<string, string>(), tenantSlugs(this.db, tenantIds)]);
    if (reader.actor.type === 'user') {
      await this.record({
        actor: reader.actor,
        action: 'audit.read',
        sourceIp: reader.sourceIp,
        outcome: 'success',
        details: { entries: rows.length, emailsOpened: emails.size },
      });
    }
    return rows.map((row) => ({
      ...row,
      actorEmail: row.actorType === 'user' && row.actorId ? (emails.get(row.actorId) ?? null) : null,
      tenant: row.tenantId ? (slugs.get(row.tenantId) ?? null) : null,
      target: targetLabel(row, emails, slugs),
    }));
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

function targetLabel(row: { targetType: string | null; targetId: string | null }, emails: Map<string, string>, slugs: Map<string, string>): string | null {
  if (row.targetId === null) return null;
  if (row.targetType === 'user') return emails.get(row.targetId) ?? row.targetId;
  if (row.targetType === 'tenant') return slugs.get(row.targetId) ?? row.targetId;
  return row.targetId;
}
